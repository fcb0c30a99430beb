"""The registry gate (MLflow Model Registry in the local store, `var/mlflow/`).

Registered models: `precise-universal` and `precise-<task>`; aliases `champion` and `challenger`.
Every trained model is registered by its training stage: the version points at the run's
`model` artifacts (safetensors + JSON) and carries tags: `trained_through` (its data day D),
`kind` (universal, warmup, incremental), `checkpoint` (the local folder), `data_version`,
`parent_universal` (targeted models) and `gate` (pending, then champion / challenger / first).

**Progressive validation.** A version is judged on the first validated day it did not train on:
the newest validated day after `trained_through`. The daily gate of day D (`precise registry gate
--date D`) takes every pending version trained before D and scores it and the current champion on
D with the next-day protocol (R@10 of each user's first behaviour on D; both models grown to D's
catalog). The version becomes `champion` if

    R@10(version) >= R@10(champion) * (1 - tolerance)

(the metric is `registry.metric`, R@10 by default) with `registry.tolerance`, or `registry.warmup_tolerance` for a targeted warm-up version (it
restores coverage of new items and may score a little lower on its first day); otherwise it
becomes `challenger` and the champion keeps serving. The first version of a model has nothing to
be compared with and becomes champion at once (gate tag `first`). A pending version of which a
newer version was already gated is skipped (`superseded`).

So a model trained on D serves from D+1's gate on, after being checked on D+1: one day of lag,
the price of judging every model on data it has not seen. `precise registry promote --task T
--version V` moves `champion` by hand (rollback or roll forward); the old champion becomes
`challenger`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from precise.errors import PreciseError
from precise.settings import Settings
from training import tracking

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


def score(settings: Settings, task: str | None, checkpoint: Path, day: str) -> float | None:
    """Next-day `registry.metric` (R@10 by default) of a checkpoint on `day` (None: no user to score)."""
    from training import evaluate

    try:
        if task in (None, "universal"):
            metrics = evaluate.score_universal(settings, checkpoint, day)
        else:
            metrics = evaluate.score_targeted(settings, settings.task(task), checkpoint, day)
    except PreciseError as exc:
        log.warning("cannot score %s on %s: %s", checkpoint, day, exc)
        return None
    return metrics["all"][settings.registry.metric] if "all" in metrics else None


def gate(settings: Settings, task: str | None, day: str) -> list[dict]:
    """Judge the pending versions trained before `day` on `day` (see module docstring)."""
    c = client(settings)
    name = model_name(task)
    pending = [v for v in versions(settings, task) if v.tags.get("gate") == "pending" and v.tags["trained_through"] < day]
    decisions = []
    for i, v in enumerate(pending):
        if i < len(pending) - 1:  # a newer pending version will be judged instead
            c.set_model_version_tag(name, v.version, "gate", "superseded")
            decisions.append({"model": name, "version": str(v.version), "decision": "superseded"})
            continue
        current = champion(settings, task)
        cand = score(settings, task, Path(v.tags["checkpoint"]), day)
        champ = score(settings, task, Path(current.tags["checkpoint"]), day) if current is not None else None
        tol = settings.registry.warmup_tolerance if v.tags.get("kind") == "warmup" else settings.registry.tolerance
        if cand is None:
            decisions.append({"model": name, "version": str(v.version), "decision": "pending", "reason": f"no users to score on {day}"})
            continue
        promote = champ is None or cand >= champ * (1 - tol)
        decision = CHAMPION if promote else CHALLENGER
        c.set_registered_model_alias(name, decision, v.version)
        metric = settings.registry.metric
        for key, value in {"gate": decision, "gate_day": day, "gate_metric": metric, "gate_value": f"{cand:.6f}",
                           "gate_champion_value": "" if champ is None else f"{champ:.6f}",
                           "gate_champion_version": "" if current is None else str(current.version),
                           "gate_tolerance": str(tol)}.items():
            c.set_model_version_tag(name, v.version, key, value)
        log.info("%s version %s on %s: %s %.4f vs champion %s -> %s", name, v.version, day, metric, cand,
                 "none" if champ is None else f"{champ:.4f}", decision)
        decisions.append({"model": name, "version": str(v.version), "decision": decision, "metric": metric,
                          "value": cand, "champion_value": champ, "tolerance": tol})
    return decisions


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
                         "gate_metric": v.tags.get("gate_metric"), "gate_value": v.tags.get("gate_value")})
    return rows
