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


def test_the_targeted_results_document_is_its_json_rendered():
    from benchmarks import targeted_results as tr

    results = json.loads(tr.RESULTS.read_text())
    assert tr.DOC.read_text() == tr.markdown(results), "docs/targeted_results.md differs: run the command in its first line"


def test_a_targeted_run_keeps_the_run_it_replaces():
    """A new run of a dataset becomes its table; the previous run's rows move to its earlier runs
    (rendered below it) and the dataset's notes stay."""
    from benchmarks import targeted_results as tr

    row = {"all": {"R@10": 0.25, "N@10": 0.125, "R@50": 0.5}, "cold": {"R@10": 0.0}}
    old = {"items": 10, "task_sequences": 5, "task_examples": 5, "valid_users": 2, "test_users": 3,
           "intro": "the old run", "rows": {"UT only": row}, "notes": "kept prose"}
    new_row = row | {"all": {"R@10": 0.3125, "N@10": 0.25, "R@50": 0.5}, "rare": {"R@10": 0.5, "n": 2}}
    new = {k: old[k] for k in ("items", "task_sequences", "task_examples", "valid_users", "test_users")} | {
        "rows": {"UT only": new_row}, "seconds": {"universal": 12.0}, "total_seconds": 20.0}
    results = tr.replace_run({"toy": old}, "toy", new, "python -m benchmarks.targeted_results --datasets toy")
    assert results["toy"]["earlier"][0]["rows"] == {"UT only": row} and results["toy"]["notes"] == "kept prose"
    text = tr.markdown(results)
    assert text.index("| UT only | 0.3125 |") < text.index("*An earlier run:* the old run") < text.index("| UT only | 0.2500 |") < text.index("kept prose")
    assert "| 0.5000 (2) |" in text  # the new run's rare bucket; the earlier run's cells read '-'
