"""Data-parallel universal training launched by the product itself (torchrun under the hood).

`precise train universal --nproc N` (or `train_universal.nproc: N`, which `dvc repro` and the DAG
use) starts `python -m torch.distributed.run --nproc-per-node N -m precise.cli train universal ...`:
N worker processes, one process group (gloo on CPU, NCCL when CUDA is present), each rank taking
every N-th batch (training/trainer.py). Rank 0 alone writes checkpoints, MLflow, the registry and
the stage's reports; the other ranks only train. Several machines: the same command on each with
`--nnodes M --node-rank R --rdzv-endpoint HOST:PORT` (torchrun's c10d rendezvous).

A worker that dies ends the whole group: torchrun stops the others and exits non-zero, the stage
fails with an `error:` line, and only complete (atomically written) checkpoints exist, so a re-run
resumes from the last one.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import torch
import torch.distributed as dist

from core.errors import PreciseError


def in_worker() -> bool:
    """True inside a torchrun worker of a group of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


@contextlib.contextmanager
def process_group():
    """The worker's process group for the duration of a stage (no-op outside torchrun)."""
    if not in_worker() or dist.is_initialized():
        yield
        return
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def launch(argv: list[str], nproc: int, nnodes: int = 1, node_rank: int = 0, rdzv_endpoint: str | None = None) -> None:
    """Run `precise <argv>` in `nproc` workers per node; raises PreciseError if any worker fails."""
    if nproc < 1 or nnodes < 1:
        raise PreciseError("--nproc and --nnodes must be at least 1")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if nnodes == 1 and rdzv_endpoint is None:
        cmd.append("--standalone")
    else:
        if rdzv_endpoint is None:
            raise PreciseError("several nodes need --rdzv-endpoint HOST:PORT (the same on every node)")
        cmd += [f"--nnodes={nnodes}", f"--node-rank={node_rank}", "--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}"]
    cmd += ["-m", "precise.cli", *argv]
    # One intra-op thread pool per worker, sharing the machine's cores.
    env = os.environ | {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))}
    code = subprocess.run(cmd, env=env).returncode
    if code != 0:
        raise PreciseError(f"distributed training failed: torchrun exited with {code} (the workers' logs are above); "
                           "complete checkpoints are kept, a re-run resumes from the last one")
