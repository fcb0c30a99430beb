"""The registry gate (MLflow Model Registry in the local store, `var/mlflow/`).

Registered models: `precise-universal` and `precise-<task>`; aliases `champion` and `challenger`.
Every trained model is registered by its training stage: the version points at the run's
`model` artifacts (safetensors + JSON) and carries tags: `trained_through` (its data day D),
`kind` (universal, warmup, incremental), `checkpoint` (the local folder), `data_version`,
`parent_universal` (targeted models) and `gate` (pending, then champion / challenger / first).

The gate that moves the aliases day by day (progressive validation) is `training/lifecycle/gate.py`;
`precise registry promote --task T --version V` moves `champion` by hand (rollback or roll
forward); the old champion becomes `challenger`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from core.errors import PreciseError
from core.settings import Settings
from training.lifecycle import tracking

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"


def model_name(task: str | None) -> str:
    return "precise-universal" if task in (None, "universal") else f"precise-{task}"


def client(settings: Settings):
    import mlflow
    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    (settings.paths.var / "mlflow").mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking.tracking_uri(settings.paths.var))
    return MlflowClient()


def register(settings: Settings, task: str | None, run_id: str, checkpoint: Path, day: str, kind: str,
             tags: dict | None = None) -> str:
    """Register a trained model as a pending version; the first version becomes champion."""
    import mlflow
    from mlflow.exceptions import MlflowException

    c = client(settings)
    name = model_name(task)
    try:
        c.get_registered_model(name)
    except MlflowException:
        c.create_registered_model(name)
    for v in c.search_model_versions(f"name='{name}'"):
        if v.run_id == run_id:
            return str(v.version)  # re-running a registered day: idempotent
    source = mlflow.get_run(run_id).info.artifact_uri + "/model"
    version = c.create_model_version(name, source=source, run_id=run_id, tags={
        "trained_through": day, "kind": kind, "checkpoint": str(Path(checkpoint).resolve()), "gate": "pending",
        **{k: str(v) for k, v in (tags or {}).items()}})
    if champion(settings, task) is None:
        c.set_registered_model_alias(name, CHAMPION, version.version)
        c.set_model_version_tag(name, version.version, "gate", "first")
    log.info("registered %s version %s (%s, trained through %s)", name, version.version, kind, day)
    return str(version.version)


def champion(settings: Settings, task: str | None):
    """The champion ModelVersion of a model, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client(settings).get_model_version_by_alias(model_name(task), CHAMPION)
    except MlflowException:
        return None


def versions(settings: Settings, task: str | None) -> list:
    from mlflow.exceptions import MlflowException

    try:
        found = client(settings).search_model_versions(f"name='{model_name(task)}'")
    except MlflowException:
        return []
    return sorted(found, key=lambda v: int(v.version))


def promote(settings: Settings, task: str | None, version: str) -> dict:
    """Move `champion` to `version` by hand; the previous champion becomes `challenger`."""
    if task not in (None, "universal"):
        settings.task(task)  # an unknown task is a clear error
    c = client(settings)
    name = model_name(task)
    known = {str(v.version): v for v in versions(settings, task)}
    if str(version) not in known:
        raise PreciseError(f"{name} has no version {version} (versions: {', '.join(known) or 'none'})")
    previous = champion(settings, task)
    if previous is not None and str(previous.version) != str(version):
        c.set_registered_model_alias(name, CHALLENGER, previous.version)
    c.set_registered_model_alias(name, CHAMPION, str(version))
    c.set_model_version_tag(name, str(version), "gate", "promoted by hand")
    return {"model": name, "champion": str(version), "previous": None if previous is None else str(previous.version)}


def listing(settings: Settings) -> list[dict]:
    """Every version of every model with its aliases and gate tags."""
    rows = []
    for task in [None] + [t.name for t in settings.tasks]:
        found = versions(settings, task)
        aliases = client(settings).get_registered_model(model_name(task)).aliases if found else {}
        for v in found:
            mine = sorted(a for a, ver in aliases.items() if str(ver) == str(v.version))
            rows.append({"model": model_name(task), "version": str(v.version), "aliases": mine,
                         "trained_through": v.tags.get("trained_through"), "kind": v.tags.get("kind"),
                         "gate": v.tags.get("gate"), "gate_day": v.tags.get("gate_day"),
                         "gate_metric": v.tags.get("gate_metric"), "gate_value": v.tags.get("gate_value"),
                         "data_version": v.tags.get("data_version")})
    return rows
