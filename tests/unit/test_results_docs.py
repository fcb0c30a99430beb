"""The results documents are generated, never edited by hand: each is exactly what its command
renders from the JSON in benchmarks/results/ (a hand-edited number, or a JSON row the document
lacks, fails here; regenerate with the command in the document's first line)."""

from __future__ import annotations

import json

import pytest

from benchmarks import universal_results as ur

DOCS = {"universal_results": ur.REPO / "docs" / "results.md", "cold_results": ur.REPO / "docs" / "cold_results.md"}


@pytest.mark.parametrize("tag", sorted(DOCS))
def test_the_results_document_is_its_json_rendered(tag):
    doc = DOCS[tag]
    assert doc.read_text() == ur.render(tag, doc), f"{doc.name} differs from its JSON: run the command in its first line"


def test_every_row_of_the_json_is_in_the_document_with_its_figures(tmp_path):
    """The renderer shows every test row with its numbers (a row dropped or a figure misprinted fails)."""
    results = json.loads((ur.RESULTS / "universal_results.json").read_text())
    text = ur.render("universal_results", DOCS["universal_results"])
    for name, table in results.items():
        section = text.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        for label, row in table["rows"].items():
            line = next(l for l in section.splitlines() if l.startswith(f"| {label}"))
            assert f"| {row['test']['all']['R@10']:.4f} | {row['test']['all']['N@10']:.4f} |" in line, label
