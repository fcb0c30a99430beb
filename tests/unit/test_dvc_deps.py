"""dvc.yaml cannot drift from the code: every stage depends on every package of ours its command can
import (function-local imports included), and on every params section its code reads.

A stage whose deps miss a package would be skipped by `dvc repro` after that package changed,
serving stale outputs as fresh."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
OWN = ("core", "precise", "ingest", "training", "validation", "serving", "recall", "features")
# `settings.<attribute>` -> the params.yaml section it comes from.
SECTIONS = {"encode": "encode", "universal": "train_universal", "targeted": "train_targeted", "tasks": "tasks",
            "sequences": "sequences", "spark": "spark", "validate": "validate", "export": "export", "publish": "publish",
            "recall": "recall", "registry": "registry", "run_date": "run.date", "task": "tasks"}


def module_file(name: str) -> Path | None:
    path = REPO / Path(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports(path: Path) -> set[str]:
    """Our modules imported anywhere in the file (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] in OWN and module_file(m) is not None}


def closure(entry: str) -> set[Path]:
    todo, seen = [entry], set()
    while todo:
        path = module_file(todo.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        todo += sorted(imports(path))
    return seen


def sections_read(files: set[Path]) -> set[str]:
    """params sections read through `settings.X` / `s.X` (the names the code uses for Settings)."""
    names = set()
    for path in files:
        names |= set(re.findall(r"\b(?:settings|s|world)\.(\w+)", path.read_text()))
    return {SECTIONS[n] for n in names if n in SECTIONS}


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


def declared(section: str, params: list) -> bool:
    keys = [p if isinstance(p, str) else next(iter(p)) for p in params]
    return any(k == section or k.startswith(section + ".") or section.startswith(k + ".") for k in keys)


def stages() -> list[tuple[str, dict]]:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return [(name, s.get("do", s)) for name, s in spec.items()]


# The CLI verb of each stage -> the module of its entry function (precise/cli.py dispatches lazily).
ENTRY = {"validate": "validation.validate", "sequences": "training.sequences", "encode": "training.text",
         "train_universal": "training.universal", "evaluate_universal": "training.evaluate",
         "gate": "training.gate", "train_targeted": "training.targeted", "evaluate_targeted": "training.evaluate",
         "export": "training.export", "publish": "serving.publish"}


@pytest.mark.parametrize("name, stage", stages(), ids=[n for n, _ in stages()])
def test_stage_depends_on_all_the_code_it_runs(name, stage):
    files = closure(ENTRY[name]) | closure("precise.cli")
    files = {f for f in files if f.relative_to(REPO).parts[0] != "precise" or f.name != "cli.py"} | {REPO / "precise" / "cli.py"}
    missing = sorted({f.relative_to(REPO).parts[0] for f in closure(ENTRY[name]) if not covered(f, stage["deps"])})
    assert not missing, f"dvc.yaml stage {name} does not depend on {missing}, which its code imports"


@pytest.mark.parametrize("name, stage", stages(), ids=[n for n, _ in stages()])
def test_stage_declares_every_params_section_it_reads(name, stage):
    read = sections_read(closure(ENTRY[name]))
    missing = sorted(s for s in read if not declared(s, stage.get("params", [])))
    assert not missing, f"dvc.yaml stage {name} reads params {missing} without declaring them"
