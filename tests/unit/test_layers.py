"""The house's layers are its top-level folders, checked from every module's imports (function-local
ones included):

* ground (`core/`: settings, schema, atomic, errors, hashing) imports nothing of ours outside it;
* the rooms (`ingest`, `validation`, `training`, `serving`, `recall`, `features`) import the ground
  and each other, never the entry layer;
* the entry layer (`precise/`: the CLI, the Airflow task bodies, the status screen; `dags/`) is
  imported by nothing but the entry layer;
* no import cycle between modules.

A failure names the edge (importer -> imported)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OWN = ("core", "precise", "ingest", "training", "validation", "serving", "recall", "features", "dags")
GROUND = ("core",)
ENTRY = ("precise", "dags")


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for top in OWN:
        for path in sorted((REPO / top).rglob("*.py")):
            found[module_name(path)] = path
    return found


def edges() -> dict[str, set[str]]:
    """module -> our modules it imports (an `from a import b` names a.b when b is a module)."""
    mods = modules()
    graph = {}
    for name, path in mods.items():
        out = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                           for a in node.names]
            out |= {t for t in targets if t in mods and t != name}
        graph[name] = out
    return graph


def layer(name: str) -> str:
    top = name.split(".")[0]
    return "ground" if top in GROUND else "entry" if top in ENTRY else "room"


def test_ground_imports_nothing_of_ours_and_nothing_imports_the_entry_layer():
    bad = []
    for src, targets in edges().items():
        for dst in targets:
            if layer(src) == "ground" and layer(dst) != "ground":
                bad.append(f"{src} -> {dst} (the ground imports nothing of ours)")
            if layer(dst) == "entry" and layer(src) != "entry":
                bad.append(f"{src} -> {dst} (only the entry layer imports the entry layer)")
    assert not bad, "\n".join(bad)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle():
    cycle = find_cycle(edges())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
