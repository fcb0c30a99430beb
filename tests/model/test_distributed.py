"""Data-parallel training under torchrun with 2 processes (gloo on CPU)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.model.test_trainer import CFG, toy_data


def test_two_processes_train_in_step(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert "history_bias" in w0, "the learned offset of items already read (the default) trains data-parallel too"
    assert float(w0["history_bias"]) != 0.0
    for name in w0:
        torch.testing.assert_close(w0[name], w1[name], msg=f"{name} differs between ranks")
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    train, _ = toy_data()
    batches = -(-len(train[0]) // CFG.batch_size)
    assert r0["steps"] == (batches // 2) * CFG.epochs, "each rank takes half of the batches"
    assert r0["history"][-1]["val_loss"] < r0["history"][0]["val_loss"]
