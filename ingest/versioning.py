"""Data versioning with DVC: `dvc add` a partition, `dvc push` it to the default remote.

The md5 that `dvc add` records in `<partition>.dvc` is the partition's data version; later stages
and MLflow runs quote it. DVC runs as a subprocess of this interpreter (`python -m dvc`), so the
DVC of the project's environment is used and its errors are reported, never ignored.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path


from core import schema
from core.errors import PreciseError

log = logging.getLogger(__name__)


def _dvc(root: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        detail = [line for line in (proc.stderr + proc.stdout).strip().splitlines() if line.strip()]
        raise PreciseError(f"`dvc {' '.join(args[:1])}` failed in {root}: " + " | ".join(detail[-5:]))
    return proc.stdout


def require_repo(root: Path) -> None:
    if not (Path(root) / ".dvc").is_dir():
        raise PreciseError(
            f"{root} is not a DVC repository: run `dvc init` there, or set `ingest.dvc: false` in params.yaml"
        )


def _relative(root: Path, paths: list[Path]) -> list[str]:
    return [str(Path(p).resolve().relative_to(Path(root).resolve())) for p in paths]


def add(root: Path, paths: list[Path]) -> dict[str, str]:
    """`dvc add` the given folders in one call. Returns {path: md5}."""
    if not paths:
        return {}
    require_repo(root)
    rel = _relative(root, paths)
    _dvc(Path(root), "add", *rel)
    return {r: data_version(Path(root) / (r + ".dvc")) for r in rel}


def push(root: Path, paths: list[Path]) -> None:
    """`dvc push` the given (already added) folders to the default remote; only missing data moves."""
    if paths:
        _dvc(Path(root), "push", *[r + ".dvc" for r in _relative(root, paths)])


data_version = schema.data_version  # the md5 a `.dvc` file records
