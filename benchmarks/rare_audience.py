"""A probe, not a results table: do rarely seen items rank better when moved towards the users
who clicked them in training? (docs/notebook.md, "Rare items and their training audience")

    python -m benchmarks.rare_audience --dataset food-kitchen --save /tmp/fk-ut.pt   # ~25 min on 2 cores
    python -m benchmarks.rare_audience --dataset food-kitchen --weights /tmp/fk-ut.pt --ks 1 4 16

The transfer of `training.audience` (a never-seen item moved by its first clicks) to items seen a
few times: an item with 1 to `--max-count` training behaviours has an ID row trained by those few
positives against every negative; its audience, the model's own query vectors at the training
positions that predicted it, says where its clickers were. Each such item j is ranked with
`training.audience.blend` (w = n_j / (n_j + k), n_j its training count). Chosen on the validation
split by R@10 (ties: the larger k, the smaller change); the test split read once for no move and
for the chosen k.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from benchmarks import universal_results as ur
from core.settings import Settings
from training.audience import blend
from training.evaluate import breakdown, item_frequency
from training.prep.tensors import next_item_pairs, pad_left
from training.trainer import model_ranks


@torch.no_grad()
def training_audience(model, data: dict, eligible: torch.Tensor, batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(query vectors (P, D), their targets (P,)) of every training position whose target is eligible."""
    model.eval()
    ctx = ur.contexts(data, model.cfg.session_gap_minutes)["train"]
    pairs = next_item_pairs(data["train"], model.cfg.max_len, ctx)
    inputs, targets = pairs[0], pairs[1]
    context = pairs[2] if len(pairs) > 2 else None
    queries, items = [], []
    for i in range(0, len(inputs), batch):
        t = targets[i : i + batch]
        keep = eligible[t] & (t > 0)
        if not keep.any():
            continue
        h = model.to_space(model.encode(inputs[i : i + batch], context=None if context is None else context[i : i + batch]))
        queries.append(h[keep])
        items.append(t[keep])
    return torch.cat(queries), torch.cat(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="food-kitchen", choices=ur.datasets.DATASETS + ur.datasets.DEV_DATASETS)
    parser.add_argument("--variant", default="ut", choices=list(ur.VARIANTS))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ks", nargs="+", type=float, default=[0.25, 1.0, 4.0, 16.0])
    parser.add_argument("--max-count", type=int, default=4, help="items seen 1..this many times move")
    parser.add_argument("--weights", type=Path, help="load this row's weights (from --save) instead of training")
    parser.add_argument("--save", type=Path, help="save the trained row's weights here")
    args = parser.parse_args()
    if args.weights and not args.weights.is_file():
        raise SystemExit(f"error: --weights {args.weights}: no such file")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.load(ur.REPO / "params.yaml")
    data = ur.prepare(args.dataset, settings, 1.0, ur.REPO / "var" / "text_cache")
    if args.weights:
        model = ur.build_row(data, settings, args.variant, ({}, {}))[0]
        model.load_state_dict(torch.load(args.weights, weights_only=True))
    else:
        row, model = ur.train_row(data, settings, args.variant, args.seed, ({}, {}), True, settings.universal.eval_ks)
        print(f"{args.dataset} {ur.VARIANTS[args.variant][0]} seed {args.seed}: {row['train_seconds']} s, "
              f"best epoch {row['best_epoch']} of {row['epochs']}", flush=True)
        if args.save:
            torch.save(model.state_dict(), args.save)
    freq = item_frequency(data["train"], len(data["item_index"]))
    eligible = torch.from_numpy((freq >= 1) & (freq <= args.max_count))
    queries, clicked = training_audience(model, data, eligible)
    print(f"{int(eligible.sum())} items seen 1-{args.max_count} times, {len(clicked)} training positions", flush=True)
    base = model.all_item_embeddings()
    ids = torch.arange(len(base))
    ctx = ur.contexts(data, model.cfg.session_gap_minutes)
    rows = torch.arange(len(clicked))

    def ranks(split: str, k: float) -> np.ndarray:
        hist, targets = data[split]
        items = blend(base, queries, clicked, rows, eligible, k, model.to_space) if k > 0 else base
        c = ctx[split]
        return model_ranks(model, torch.from_numpy(pad_left(hist, model.cfg.max_len)), torch.from_numpy(targets),
                           None if c is None else torch.from_numpy(pad_left(c, model.cfg.max_len)),
                           items=model.with_text_items(items, ids))[0]

    def show(split: str, k: float, r: np.ndarray) -> dict:
        b = breakdown(r, data[split][1], freq, (10, 50))
        print(f"  {split} k {k:g}: R@10 {b['all']['R@10']:.4f} N@10 {b['all']['N@10']:.4f} cold {b['cold']['R@10']:.4f} "
              f"rare {b['rare']['R@10']:.4f} ({round(b['rare']['R@10'] * b['rare']['n'])} of {b['rare']['n']}) "
              f"tail {b['tail']['R@10']:.4f} head {b['head']['R@10']:.4f}", flush=True)
        return b

    valid = {k: show("valid", k, ranks("valid", k)) for k in [0.0, *sorted(args.ks, reverse=True)]}
    chosen = max(valid, key=lambda k: (valid[k]["all"]["R@10"], k == 0.0, k))
    print(f"chosen on validation: k {chosen:g}")
    for k in sorted({0.0, chosen}):
        show("test", k, ranks("test", k))


if __name__ == "__main__":
    main()
