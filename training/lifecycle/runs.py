"""One training run of a stage (universal or targeted), the part both stages share:

* a day already trained is not retrained: the stage reads what it saved (`finished`) and its
  registration is repaired (`repair_registration`, idempotent);
* otherwise an MLflow run with the data versions, `fit` with every evaluation logged, the summary
  metrics, the model saved (safetensors + JSON) and logged as artifacts, the resumable run folder
  removed, the version registered (`train_and_register`).

What differs (the model, the examples, the summary) stays in the stage.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from core.settings import Settings
from training import distributed
from training.lifecycle import registry, tracking
from training.trainer import State, TrainConfig, fit, save_model

log = logging.getLogger(__name__)


@dataclass
class RunSpec:
    """Where a run goes and how it is named and registered."""

    out: Path                     # var/checkpoints/<...>/date=D: `final/` and the resumable `run/`
    day: str
    experiment: str               # MLflow experiment, e.g. precise-universal
    run_name: str
    task: str | None              # None = the universal model
    kind: str                     # registry tag: universal, warmup, incremental
    params: dict                  # MLflow params
    tags: dict = field(default_factory=dict)           # MLflow tags beyond the data versions
    register_tags: dict = field(default_factory=dict)  # registry tags beyond data_version

    @property
    def final(self) -> Path:
        return self.out / "final"


def finished(final: Path) -> dict | None:
    """What a finished run saved beside its weights (state, metrics, ...), or None."""
    path = Path(final) / "state.json"
    return json.loads(path.read_text()) if path.is_file() else None


def repair_registration(settings: Settings, spec: RunSpec, metrics: dict) -> None:
    """Register a finished run again (idempotent): a crash between saving and registering is repaired."""
    if metrics.get("mlflow_run_id") and distributed.rank() == 0:
        registry.register(settings, spec.task, metrics["mlflow_run_id"], spec.final, spec.day, spec.kind,
                          {"data_version": str(metrics.get("data_version"))} | spec.register_tags)


def train_and_register(settings: Settings, spec: RunSpec, model: torch.nn.Module, train, valid, tcfg: TrainConfig,
                       days: list[str], summarize: Callable[[State, object], dict], meta: dict,
                       domain=None) -> tuple[dict, State]:
    """Fit, summarize, save, log and register one run (see module docstring).

    `summarize(state, mlflow)` returns the stage's metrics, with `valid` (the best epoch's R@K / N@K),
    and may log more to the active MLflow run; the data versions and the run id are added here.
    `meta` is saved with the weights beside the state, the train config and the metrics; `domain`
    goes to `fit` (CPRec's per-scene pairs).
    """
    if distributed.rank() != 0:  # data-parallel: rank 0 alone saves, logs and registers
        state = fit(model, train, valid, tcfg, run_dir=spec.out / "run", domain=domain)
        return {}, state
    fingerprint = tracking.inputs_fingerprint(settings.paths.data, days)
    tags = {"inputs_fingerprint": fingerprint, "git_revision": tracking.git_revision(settings.paths.root)} | spec.tags
    with tracking.run(settings.paths.var, spec.experiment, spec.run_name, spec.params, tags) as mlflow:
        md5s = tracking.log_data_versions(mlflow, settings.paths.data, days)
        version = md5s[days[-1]] if days else None  # the data_version: the newest day's md5
        state = fit(model, train, valid, tcfg, run_dir=spec.out / "run", domain=domain,
                    on_eval=lambda m: mlflow.log_metrics(
                        {k.replace("@", "_at_"): v for k, v in m.items() if isinstance(v, (int, float))}, step=m["epoch"]))
        metrics = summarize(state, mlflow) | {"data_version": version, "inputs_fingerprint": fingerprint}
        mlflow.log_metrics({f"best_{k.replace('@', '_at_')}": v for k, v in metrics["valid"].items()})
        metrics["mlflow_run_id"] = mlflow.active_run().info.run_id
        save_model(spec.final, model, {"state": dataclasses.asdict(state), "train": tcfg.to_dict(), **meta,
                                       "metrics": metrics})
        mlflow.log_artifacts(str(spec.final), artifact_path="model")
    shutil.rmtree(spec.out / "run", ignore_errors=True)
    (spec.out / "run-best.safetensors").unlink(missing_ok=True)
    metrics["registered_version"] = registry.register(
        settings, spec.task, metrics["mlflow_run_id"], spec.final, spec.day, spec.kind,
        {"data_version": str(version), "inputs_fingerprint": fingerprint} | spec.register_tags)
    return metrics, state
