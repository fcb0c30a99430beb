"""What the benchmark scripts (and tests/conftest.py) share: params.yaml and a temporary project
with the repo's settings and overrides, a repository copy, local ports.

The scripts run as modules from the repository root, `python -m benchmarks.<name>`: the
checkout they run in comes first on sys.path (before the editable install's finder), so a
benchmark in a `git worktree` measures that worktree's code, not whichever checkout the virtual
environment was installed from."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def write_params(folder: Path, **sections) -> Path:
    """`folder/params.yaml`: the repo's own (with `ingest.dvc: false`), `sections` merged in (a dict
    updates a section, anything else replaces it)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ingest"]["dvc"] = False
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(params.get(name), dict):
            params[name].update(values)
        else:
            params[name] = values
    path = Path(folder) / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def repo_copy(folder: Path, remote: Path, edit=None) -> Path:
    """The tracked files of this repository copied into `folder`, made a fresh git repository with
    `remote` as its local DVC remote; `edit(params)` changes the parsed params.yaml first.
    For whole-pipeline runs (`dvc repro` as a user would run it); `project` for stage-level ones."""
    folder = Path(folder)
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (REPO / rel).is_file():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, folder / rel)
    if edit is not None:
        params = yaml.safe_load((folder / "params.yaml").read_text())
        edit(params)
        (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "remote", "add", "--local", "-d", "-f", "local", str(remote)],
                   cwd=folder, check=True, capture_output=True)
    return folder


def project(folder: Path, dvc: bool = False, features: bool = False, **sections) -> "Settings":
    """A project in `folder`: `write_params` with `sections`; with `dvc`, a git + DVC repository
    with a local remote; with `features`, a copy of the Feast repository folder."""
    from core.settings import Settings

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ingest = sections.pop("ingest", {}) | {"dvc": dvc}
    path = write_params(folder, ingest=ingest, **sections)
    if dvc:
        shutil.copytree(REPO / ".dvc", folder / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
        subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
        subprocess.run([sys.executable, "-m", "dvc", "remote", "add", "--local", "-d", "-f", "local",
                        str(folder / "remote")], cwd=folder, check=True)
    if features:
        shutil.copytree(REPO / "features", folder / "features")
    return Settings.load(path)


def train_day(s: "Settings", day: str) -> None:
    """One day of training, from the stage table (precise/stages.py): sequences, encode, the
    registry gate, universal training, then each task's targeted training (benchmarks and test
    worlds that replay days)."""
    from precise import stages

    stages.run(s, day, ["sequences", "encode", "gate", "train_universal", "train_targeted"])


def free_port() -> int:
    """A free TCP port on localhost."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, seconds: float = 60.0) -> None:
    """Until something listens on localhost:`port`, or TimeoutError."""
    end = time.time() + seconds
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {port}")


class RedisServer:
    """A real redis-server on a free localhost port, its files in `folder`: started by `start()`
    (or as a context manager), stopped by `stop()`. `durable` keeps an append-only file, so that a
    stop and a start keep what was written (the online store going away and coming back)."""

    def __init__(self, folder: Path, durable: bool = False):
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port, self.folder, self.durable, self.proc = free_port(), Path(folder), durable, None
        self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> "RedisServer":
        durability = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      *durability, "--dir", str(self.folder)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: Redis flushes its append-only file (if any) and exits
            self.proc.wait(30)
            self.proc = None

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def bucket_cell(m: dict | None) -> str:
    """A results table's cell for one bucket of the target's training count (training.evaluate
    BUCKETS): 'R@10 (n)'; '-' where a run predates buckets."""
    if m is None:
        return "-"
    return f"{m['R@10']:.4f} ({int(m['n'])})" if m["n"] else "- (0)"
