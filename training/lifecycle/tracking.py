"""MLflow tracking: one local store under `var/mlflow/` (SQLite backend, file artifacts).

Every training or evaluation run records its params, metrics per epoch, the data version it read
(the DVC md5 of each partition, hashed into one string) and the git revision of the code.
Nothing here sets a tracking URI at import time: `run()` does it for the duration of a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import subprocess
from pathlib import Path
from typing import Iterator

from core import schema

log = logging.getLogger(__name__)


def tracking_uri(var: Path) -> str:
    return f"sqlite:///{Path(var).resolve() / 'mlflow' / 'mlflow.db'}"


def inputs_fingerprint(data: Path, days: list[str]) -> str:
    """One short string for the exact set of partitions a run read (a hash of their .dvc files, or
    of their bytes when unversioned). Not a data version: `data_version` is a DVC md5."""
    h = hashlib.sha256()
    for day in days:
        dvc_file = schema.dvc_file(Path(data) / "events", day)
        if dvc_file.is_file():
            h.update(dvc_file.read_bytes())
        else:
            h.update((schema.partition_dir(Path(data) / "events", day) / schema.PART_FILE).read_bytes())
    return h.hexdigest()[:16]


def data_md5s(data: Path, days: list[str]) -> dict[str, str | None]:
    """The DVC md5 (data version) of each day's events partition; None when not versioned."""
    return {day: schema.day_data_version(Path(data) / "events", day) for day in days}


def log_data_versions(mlflow, data: Path, days: list[str]) -> dict[str, str | None]:
    """Every partition's DVC md5 as a run artifact, the newest day's as a tag: restore a run's
    exact inputs with `dvc pull` of those versions (docs/data.md, "Data versions"). Returns the md5s by day."""
    md5s = data_md5s(data, days)
    mlflow.log_dict(md5s, "data_versions.json")
    if days:  # the newest day's md5: the `data_version` of that day's Asset event and manifest entry
        mlflow.set_tag("data_version", str(md5s[days[-1]]))
    return md5s


def git_revision(root: Path) -> str:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


def flatten(prefix: str, value) -> dict[str, str]:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out |= flatten(f"{prefix}.{k}" if prefix else str(k), v)
        return out
    return {prefix: str(value)}


@contextlib.contextmanager
def run(var: Path, experiment: str, run_name: str, params: dict, tags: dict) -> Iterator[object]:
    """An MLflow run in the local store; yields the `mlflow` module for logging."""
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    (Path(var) / "mlflow").mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri(var))
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=(Path(var) / "mlflow" / "artifacts" / experiment).resolve().as_uri())
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name, tags=tags) as active:
        mlflow.log_params(flatten("", params))
        yield mlflow
        log.info("MLflow run %s in experiment %s", active.info.run_id, experiment)
