"""dvc.yaml cannot drift from the stage table or from the code: dvc.yaml is exactly what
precise/stages.py renders, every stage depends on every file of ours its command can import
(function-local imports included; checked here against what Python really loads), and on every
params section its code reads and no other.

A stage whose deps miss a package would be skipped by `dvc repro` after that package changed,
serving stale outputs as fresh."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from precise import stages as table

REPO = Path(__file__).resolve().parents[2]
OWN = ("core", "precise", "ingest", "training", "validation", "serving", "recall", "features")
# `settings.<attribute>` -> the params.yaml section it comes from.
SECTIONS = {"encode": "encode", "universal": "train_universal", "targeted": "train_targeted", "tasks": "tasks",
            "sequences": "sequences", "spark": "spark", "validate": "validate", "export": "export", "publish": "publish",
            "recall": "recall", "registry": "registry", "run_date": "run.date", "task": "tasks"}


def sections_read(files: set[Path]) -> set[str]:
    """params sections read through `settings.X` / `s.X` (the names the code uses for Settings)."""
    names = set()
    for path in files:
        names |= set(re.findall(r"\b(?:settings|s|world)\.(\w+)", path.read_text()))
    return {SECTIONS[n] for n in names if n in SECTIONS}


def keys(params) -> list[str]:
    """params.yaml keys of a dvc.yaml `params` list (a file-qualified entry is a mapping)."""
    return [p if isinstance(p, str) else next(iter(p)) for p in params]


def declared(section: str, params) -> bool:
    """`section` is one of `params` (or a key of one, or a section holding one)."""
    return any(k == section or k.startswith(section + ".") or section.startswith(k + ".") for k in keys(params))


def test_dvc_yaml_is_the_stage_table():
    """A dep, param or output in dvc.yaml that the table lacks, or one it misses, fails here."""
    assert yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"] == table.dvc_stages()
    assert table.main(["--check"]) == 0, "dvc.yaml's text (comments included): run `python -m precise.stages`"


def stage_calls(function) -> set[str]:
    """The stage names a function runs through the table: `stages.call("name", ...)`."""
    import inspect
    import textwrap

    body = ast.parse(textwrap.dedent(inspect.getsource(function)))
    return {n.args[0].value for n in ast.walk(body) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == "call" and n.args and isinstance(n.args[0], ast.Constant)}


@pytest.mark.parametrize("name", [s.name for s in table.STAGES])
def test_each_stage_command_is_a_cli_verb_running_that_stage(name):
    """`cmd` parses with the CLI's own parser, and the verb runs the stage through the table
    (`stages.call(name)`, so the code deps checked below are the code the command runs). The
    validate verb's `--all` is the one exception: it validates every pending day at once, with the
    stage's module (`validation.validate.run_all`)."""
    import shlex

    from precise import cli

    stage = table.stage(name)
    args = cli.build_parser().parse_args(shlex.split(stage.cmd.replace("${item.name}", "a_task"))[1:])
    if name == "validate":
        assert args.all and args.func is cli.cmd_validate
        return
    if args.func is cli.cmd_pipeline_run:  # a stage without a verb of its own: `precise pipeline run --stages NAME`
        assert args.stages == [name], f"{stage.cmd} runs {args.stages}, not {name}"
        return
    assert name in stage_calls(args.func), f"{args.func.__name__} runs {sorted(stage_calls(args.func))}, not {name}"


def test_every_entry_function_exists_and_takes_the_stage_arguments():
    """Each `module:function` of the table imports, and takes (settings, day) or, per task,
    (settings, task, day), plus its options; an unknown stage name is refused."""
    import importlib
    import inspect

    for s in table.STAGES:
        module, function = s.entry.split(":")
        params = list(inspect.signature(getattr(importlib.import_module(module), function)).parameters)
        expected = ["settings", "task"] if s.per_task else ["settings"]
        assert [p for p in params[:len(expected)]] == expected, f"{s.entry} takes {params}"
        assert all(k in params for k, _ in s.options), f"{s.entry} takes {params}, the table passes {s.options}"
    with pytest.raises(ValueError, match="unknown stages"):
        table.run(None, "2026-01-01", ["train_everything"])
    with pytest.raises(ValueError, match="unknown stage"):
        table.call("train_everything", None, "2026-01-01")


def test_the_dag_task_bodies_run_stages_through_the_table():
    """precise/flows.py names no entry function of the table: its task bodies call `stages.call`
    (or `stage_day`), so the table is the one place a stage's function is named."""
    source = (REPO / "precise" / "flows.py").read_text()
    for s in table.STAGES:
        module, function = s.entry.split(":")
        assert f"{module.split('.')[-1]}.{function}(" not in source, f"flows.py calls {s.entry} directly"


def stages() -> list[tuple[str, dict]]:
    return [(s.name, s) for s in table.STAGES]


@pytest.mark.parametrize("name, stage", stages(), ids=[n for n, _ in stages()])
def test_stage_depends_on_all_the_code_it_runs(name, stage):
    """An oracle apart from the table's static import scan: the modules of ours that Python has
    loaded after importing the CLI and the stage's entry module (function-local imports are not
    run here; the static scan adds them) are all deps of the stage, and every code dep exists."""
    import subprocess
    import sys

    code = (f"import sys, precise.cli, {stage.module}; "
            "print('\\n'.join(m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    loaded = {Path(f).resolve() for f in out.splitlines()}
    ours = {f.relative_to(REPO).as_posix() for f in loaded if f.is_relative_to(REPO) and f.relative_to(REPO).parts[0] in OWN}
    deps = table.spec(stage)["deps"]
    assert ours and not sorted(ours - set(deps)), f"dvc.yaml stage {name} does not depend on {sorted(ours - set(deps))}"
    assert all((REPO / d).exists() for d in deps if not d.startswith("data/")), [d for d in deps if not (REPO / d).exists()]


@pytest.mark.parametrize("name, stage", stages(), ids=[n for n, _ in stages()])
def test_stage_declares_every_params_section_it_reads(name, stage):
    read = sections_read(table.closure([stage.module]))
    missing = sorted(s for s in read if not declared(s, stage.params))
    assert not missing, f"dvc.yaml stage {name} reads params {missing} without declaring them"


@pytest.mark.parametrize("name, stage", stages(), ids=[n for n, _ in stages()])
def test_stage_declares_no_params_its_code_does_not_read(name, stage):
    """The other direction: a declared section (or a key of one) that no module of the stage's
    code reads would re-run the stage for nothing."""
    read = sections_read(table.closure([stage.module]))
    unread = sorted(k for k in keys(stage.params) if not declared(k, read))
    assert not unread, f"dvc.yaml stage {name} declares params {unread} that its code does not read"
