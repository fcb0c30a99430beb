"""Worker for test_distributed.py, run by torchrun: trains the toy model data-parallel (gloo)."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.model.test_model import tiny  # noqa: E402
from tests.model.test_trainer import CFG, toy_data  # noqa: E402
from training.trainer import fit  # noqa: E402

dist.init_process_group("gloo")
rank = dist.get_rank()
train, valid = toy_data()
model = tiny("fused", history_offset=True).train()  # same seed on every rank: the same initial weights; the default offset
state = fit(model, train, valid, CFG)
out = Path(sys.argv[1])
torch.save({k: v.detach() for k, v in model.state_dict().items()}, out / f"rank{rank}.pt")
(out / f"rank{rank}.json").write_text(json.dumps({"steps": state.step, "history": state.history}))
dist.destroy_process_group()
