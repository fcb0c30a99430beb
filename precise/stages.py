"""The pipeline's stages, defined once: name, command, its entry function ("module:function"),
the data it reads and writes, the params it depends on. Everything that runs a stage derives from
this table:

* `dvc.yaml` is generated from it (`python -m precise.stages`; `--check` exits 1 when it differs),
  and tests/unit/test_dvc_deps.py checks each stage's code and params against it;
* `call(name, settings, day, task)` runs one stage's entry function: the `precise` verbs
  (`precise/cli.py`), the Airflow task bodies (`precise/flows.py`) and `precise pipeline run`
  go through it, so a stage's function is named here and nowhere else;
* `run(settings, day, names)` runs stages in the table's order in this process (per-task stages
  once per task): what the tests and the benchmarks that replay days call
  (`benchmarks/common.py` `train_day`).

Stage names follow ARCHITECTURE.md and are the Airflow tasks' names. A stage per task (`per_task`)
becomes a DVC `foreach` over `tasks` with `${item.name}` in its paths, and its function takes
`(settings, task, day)` instead of `(settings, day)`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DVC_YAML = REPO / "dvc.yaml"

# What every stage after encode reads: the day's sequences and texts.
TRAINING_INPUTS = ("data/sequences", "data/text")
# What reads the universal model trained on D (its evaluation and the gate).
AFTER_UNIVERSAL = (*TRAINING_INPUTS, "data/metrics/train_universal.json")
# Our top-level packages: a stage's code deps are the files of these its entry module imports.
OWN = ("core", "precise", "ingest", "training", "validation", "serving", "recall", "features")
# What every command runs before the entry function: the CLI and the table (their module-level imports).
COMMAND = ("precise.cli", "precise.stages")


@dataclass(frozen=True)
class Stage:
    name: str  # dvc.yaml stage name (and the Airflow task's)
    cmd: str  # what `dvc repro` runs
    entry: str  # "module:function" the stage runs (its verb, `call` and the DAG task call it; the code deps are the module's imports)
    doc: str  # the comment above the stage in dvc.yaml ("" for none)
    deps: tuple[str, ...]  # the data it reads, and code it loads other than by import (the code it imports is added: `code_files`)
    params: tuple[str, ...]  # params.yaml sections or keys it depends on
    outs: tuple = ()  # outputs: a path, or {path: {persist: true}}
    metrics: tuple[str, ...] = ()
    plots: tuple = ()
    per_task: bool = False  # one stage per task of params.yaml (DVC foreach)
    outs_first: bool = False  # dvc.yaml lists outs before metrics (kept as written)
    options: tuple[tuple[str, object], ...] = ()  # keyword arguments the pipeline passes (its command's flags)

    @property
    def module(self) -> str:
        return self.entry.split(":")[0]


STAGES: tuple[Stage, ...] = (
    Stage("validate", "precise validate --all", "validation.validate:day_summary", "",
          ("data/events", "data/catalog"), ("validate", "tasks", "run.date"),
          outs=({"data/validation": {"persist": True}},), metrics=("data/metrics/validate.json",), outs_first=True),
    Stage("sequences", "precise sequences", "training.prep.sequences:main", "",
          ("data/events", "data/validation/manifest.json"),
          ("run.date", "sequences", "spark", "tasks", "validate"),
          outs=("data/sequences",), metrics=("data/metrics/sequences.json",), outs_first=True),
    Stage("encode", "precise encode", "training.prep.text:main", "",
          ("data/catalog", "data/validation/manifest.json"),
          ("run.date", "encode"), outs=("data/text",), metrics=("data/metrics/encode.json",), outs_first=True),
    Stage("train_universal", "precise train universal", "training.universal:main",
          "Continues from the previous day's model (state in var/checkpoints/universal/, not DVC).",
          TRAINING_INPUTS,
          ("run.date", "train_universal", "encode", "tasks"),
          outs=("data/plots/fig4b_universal.png",), metrics=("data/metrics/train_universal.json",),
          plots=({"data/plots/train_universal.csv": {"x": "epoch", "y": "R@10"}},)),
    Stage("evaluate_universal", "precise evaluate universal --if-model", "training.evaluate:next_day",
          "Next-day protocol: the newest model trained before D predicts D's first clicks.",
          AFTER_UNIVERSAL,
          ("run.date", "train_universal.eval_ks", "train_universal.new_item_neighbours", "encode", "sequences", "tasks",
           "train_targeted"),
          metrics=("data/metrics/evaluate_universal.json",), options=(("if_model", True),)),
    Stage("gate", "precise registry gate", "training.lifecycle.gate:run_day",
          "The registry gate (progressive validation): versions trained before D are judged on D against\n"
          "the champion; runs before targeted training so that warm-ups start from the gated champion.",
          AFTER_UNIVERSAL,
          ("run.date", "registry", "encode", "sequences", "tasks", "train_targeted", "train_universal"),
          metrics=("data/metrics/gate.json",)),
    Stage("train_targeted", "precise train targeted --task ${item.name}", "training.targeted:main",
          "One stage per task of params.yaml. Continues from yesterday's targeted model or re-warm-starts\n"
          "from the universal model on the cadence (state in var/targeted/<task>/, not DVC).",
          (*TRAINING_INPUTS, "data/metrics/gate.json"),
          ("run.date", "train_targeted", "tasks", "encode", "sequences", "train_universal"),
          metrics=("data/metrics/train_targeted/${item.name}.json",), per_task=True),
    Stage("evaluate_targeted", "precise evaluate targeted --task ${item.name} --if-model", "training.evaluate:targeted_next_day",
          "Next-day protocol per task, with the Figure 4a coverage curve.",
          (*TRAINING_INPUTS, "data/metrics/train_targeted/${item.name}.json"),
          ("run.date", "train_targeted.warmup_every_days", "train_targeted.newcomers", "train_universal.eval_ks",
           "encode", "sequences", "tasks"),
          outs=("data/plots/fig4a_${item.name}.png",), metrics=("data/metrics/evaluate_targeted/${item.name}.json",),
          per_task=True, options=(("if_model", True),)),
    Stage("export", "precise export", "serving.export:main",
          "Embeddings of the champions (registry aliases), per model version.",
          (*TRAINING_INPUTS, "data/metrics/gate.json", "data/metrics/train_targeted"),
          ("run.date", "export", "encode", "sequences", "tasks", "train_targeted", "train_universal"),
          outs=({"data/export": {"persist": True}},), outs_first=True),
    Stage("publish", "precise publish", "serving.publish:main",
          "Feast (offline Parquet, online store) and the FAISS indexes; state in var/feast, var/recall.",
          ("data/export", "features"),  # the Feast repository: loaded by path (serving/store.py), not imported
          ("run.date", "publish", "recall", "tasks"), metrics=("data/metrics/publish.json",)),
)

HEADER = """\
# Generated by `python -m precise.stages` from precise/stages.py (the one table of stages): edit
# the table, not this file; tests/unit/test_dvc_deps.py fails while the two differ.
# Every stage calls the same entry function as `precise <verb>`. Contract partitions (data/events,
# data/catalog, data/rejects) are NOT stage outputs: `precise ingest` writes them and versions each
# with `dvc add` + `dvc push`. Deps and params are exact: the data a stage reads, then every file of
# ours its command can import (the CLI and the table at module level, its entry module with
# function-local imports: computed from the code, so editing precise/cli.py or this table re-runs
# every stage), and every params section it reads (a key where it reads a few keys of a section)
# and no other. The deps test checks them against what Python loads and what the code reads (a
# missing dep serves stale data; an extra one re-runs the stage for nothing). Every output is cached (no `cache: false`): `dvc push` after `dvc repro` (make run
# does it) puts the stage outputs beside the partitions in the remote, so a clone of a pinned
# deployment (its git commit with dvc.lock and the .dvc files) gets everything back with `dvc pull`,
# and `dvc status` then has nothing to do. State outside DVC (var/: checkpoints, MLflow, Feast) is
# not restored. The validation manifest is state (releases by operators): kept across runs (persist).
"""


def stage(name: str) -> Stage:
    found = [s for s in STAGES if s.name == name]
    if not found:
        raise ValueError(f"unknown stage {name!r}; the table has {[s.name for s in STAGES]}")
    return found[0]


def call(name: str, settings, day: str | None, task: str | None = None, **options):
    """Run one stage's entry function as its verb, its DAG task and `run` do: `f(settings, day)`,
    or `f(settings, task, day)` for a per-task stage, with the stage's `options` (its command's
    flags) updated by `options`. Returns what the function returns."""
    import importlib

    s = stage(name)
    module, function = s.entry.split(":")
    fn = getattr(importlib.import_module(module), function)
    kwargs = dict(s.options) | options
    if s.per_task:
        if task is None:
            raise ValueError(f"stage {name} runs per task: say which task")
        return fn(settings, task, day, **kwargs)
    return fn(settings, day, **kwargs)


def run(settings, day: str, names: list[str] | tuple[str, ...]) -> dict[str, object]:
    """Run the named stages for `day` in this process, in the table's order (a per-task stage once
    per task of params.yaml); returns {stage or stage@task: its result}."""
    unknown = sorted(set(names) - {s.name for s in STAGES})
    if unknown:
        raise ValueError(f"unknown stages {unknown}; the table has {[s.name for s in STAGES]}")
    out = {}
    for s in (s for s in STAGES if s.name in names):
        for task in [t.name for t in settings.tasks] if s.per_task else [None]:
            out[s.name if task is None else f"{s.name}@{task}"] = call(s.name, settings, day, task)
    return out


def module_file(name: str) -> Path | None:
    path = REPO / Path(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Our modules a file imports (function-local imports too, unless top_level_only), with the
    packages they sit in (importing a.b.c runs a/__init__.py and a/b/__init__.py)."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in (tree.body if top_level_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    found |= {".".join(m.split(".")[:i]) for m in found for i in range(1, m.count(".") + 1)}
    return {m for m in found if m.split(".")[0] in OWN and module_file(m) is not None}


def closure(modules, top_level_only: bool = False) -> set[Path]:
    """The files of our modules that importing `modules` can run."""
    todo, seen = [".".join(m.split(".")[:i]) for m in modules for i in range(1, m.count(".") + 2)], set()
    while todo:
        path = module_file(todo.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        todo += sorted(imports(path, top_level_only))
    return seen


def code_files(s: Stage) -> list[str]:
    """The code a stage's command runs: the CLI and the table at module level, then everything its
    entry module can import (function-local imports included), as repository paths."""
    files = closure(COMMAND, top_level_only=True) | closure([s.module])
    return sorted(f.relative_to(REPO).as_posix() for f in files)


def spec(s: Stage) -> dict:
    """One stage as dvc.yaml's mapping (the `do` body of a per-task stage)."""
    out: dict = {"cmd": s.cmd, "deps": [*s.deps, *code_files(s)], "params": list(s.params)}
    sections = (("outs", s.outs), ("metrics", s.metrics)) if s.outs_first else (("metrics", s.metrics), ("outs", s.outs))
    for key, values in (*sections, ("plots", s.plots)):
        if values:
            out[key] = list(values)
    return out


def dvc_stages() -> dict:
    """dvc.yaml's `stages` mapping."""
    return {s.name: {"foreach": "${tasks}", "do": spec(s)} if s.per_task else spec(s) for s in STAGES}


def _yaml_list(values: list, indent: str) -> list[str]:
    lines = []
    for v in values:
        if isinstance(v, dict):
            [(path, opts)] = v.items()
            lines.append(f"{indent}- {path}:")
            lines += [f"{indent}    {k}: {str(o).lower() if isinstance(o, bool) else o}" for k, o in opts.items()]
        else:
            lines.append(f"{indent}- {v}")
    return lines


def render() -> str:
    """dvc.yaml's text: the header, then each stage with its doc as a comment."""
    lines = [HEADER.rstrip("\n"), "stages:"]
    for i, s in enumerate(STAGES):
        lines += [""] if i else []
        lines += [f"  # {line}" for line in s.doc.splitlines()]
        body, pad = spec(s), "    "
        lines.append(f"  {s.name}:")
        if s.per_task:
            lines += ["    foreach: ${tasks}", "    do:"]
            pad = "      "
        for key, value in body.items():
            if key == "cmd":
                lines.append(f"{pad}cmd: {value}")
            else:
                lines.append(f"{pad}{key}:")
                lines += _yaml_list(value, pad + "  ")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in argv:
        if DVC_YAML.read_text(encoding="utf-8") != text:
            print("error: dvc.yaml differs from precise/stages.py: run `python -m precise.stages`", file=sys.stderr)
            return 1
        return 0
    from core.atomic import write_text

    write_text(DVC_YAML, text)
    print(f"wrote {DVC_YAML.relative_to(REPO)} ({len(STAGES)} stages)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
