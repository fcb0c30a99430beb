"""A probe, not a results table: do a new item's first clicks of the day, folded into its vector,
bring it into the top 10? (docs/notebook.md, "A new item's first clicks")

    python -m benchmarks.early_clicks --dataset synthetic-dev --weights W   # choose k, beta here
    python -m benchmarks.early_clicks --dataset synthetic --weights W --pairs inf:0 K:B   # read test once

A platform sees its click stream: by the time a user opens the app, other users have clicked
today's new items. For each never-seen item j (no behaviour in training), its audience at a test
target's hour is the users who clicked it earlier that day, before the hour began (the hourly
path's view: point-in-time, the query user's own first click never among them); with n_j such
clicks and a_j the normalised sum of those users' vectors (the model's own user vectors, the
test queries of the day), the item is ranked with

    v'_j = normalise((1 - w) v_j + w a_j),  w = n_j / (n_j + k);   logit += beta log(1 + n_j)

(k = inf: the model unchanged). Items never seen and never clicked before the hour keep v_j.
Weights come from `/tmp`-style files that `torch.save(model.state_dict())` wrote for a row of
`benchmarks.universal_results` (variant `--variant`); `synthetic-dev` is the tuning split shaped
like synthetic's test (its test day is synthetic's day N-1), so (k, beta) are chosen there.
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
from training.metrics import add_history_offset
from training.prep.tensors import days_since_epoch, pad_left
from training.trainer import history_logit


@torch.no_grad()
def ranks(model, data: dict, ctx, only: torch.Tensor, pairs: list[tuple[float, float]], center: bool = False) -> dict:
    """{(k, beta): (ranks (B,), mass on `only` (B,))} of the test targets, hour by hour: the items of
    `only` moved by the day's earlier clicks (`training.audience.blend`), plus beta log(1 + n_j)."""
    model.eval()
    hist, targets = data["test"]
    times = np.asarray(data["times"]["test"][1], dtype="datetime64[us]")
    x = torch.from_numpy(pad_left(hist, model.cfg.max_len))
    c = torch.from_numpy(pad_left(ctx["test"], model.cfg.max_len)) if ctx["test"] is not None else None
    users = torch.cat([model.users(x[i : i + 512], None if c is None else c[i : i + 512]) for i in range(0, len(x), 512)])
    clickers = users - users.mean(0) if center else users
    items, tau, offset = model.all_item_embeddings(), model.cfg.temperature, history_logit(model)
    items_c, rows_c, times_c = data["stream"]
    hours, when = times.astype("datetime64[h]"), days_since_epoch(times)
    out = {p: (np.zeros(len(x), dtype=np.int64), np.zeros(len(x))) for p in pairs}
    for hour in np.unique(hours):
        b = np.flatnonzero(hours == hour)
        early = times_c < hour.astype("datetime64[us]")
        clicked, rows = torch.from_numpy(items_c[early]), torch.from_numpy(rows_c[early])
        counts = torch.bincount(clicked, minlength=len(items)).float()
        base_x, t = x[b], torch.from_numpy(targets[b])
        age = model.age_logit(torch.from_numpy(when[b]))
        for (k, beta), (r, mass) in out.items():
            v = blend(items, clickers, clicked, rows, only, k, model.to_space) if np.isfinite(k) else items
            s = users[b] @ v.T / tau
            if offset is not None:
                add_history_offset(s[:, 1:], base_x, offset)
            if age is not None:
                s = s + age
            s = s + beta * torch.log1p(counts) * only
            s[:, 0] = float("-inf")
            pos = s.gather(1, t.unsqueeze(1))
            r[b] = ((s >= pos).sum(1) - 1).numpy()
            mass[b] = torch.softmax(s, 1)[:, only].sum(1).numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic-dev", choices=["synthetic", "synthetic-dev"])
    parser.add_argument("--variant", default="ut-gen-age-id", choices=list(ur.VARIANTS))
    parser.add_argument("--weights", type=Path, required=True, help="the row's state_dict (torch.save)")
    parser.add_argument("--pairs", nargs="+", default=[f"{k}:{b}" for k in ("inf", 8, 4, 2, 1, 0.5) for b in (0, 0.5, 1)],
                        help="k:beta pairs (k = inf: no audience)")
    parser.add_argument("--items", choices=["never-seen", "all"], default="never-seen", help="which items the clicks apply to")
    parser.add_argument("--center", action="store_true", help="subtract the mean user vector before summing")
    args = parser.parse_args()
    if not args.weights.is_file():
        raise SystemExit(f"error: --weights {args.weights}: no such file")
    logging.basicConfig(level=logging.WARNING)
    settings = Settings.load(ur.REPO / "params.yaml")
    data = ur.prepare(args.dataset, settings, 1.0, ur.REPO / "var" / "text_cache")
    model = ur.build_row(data, settings, args.variant, ({}, {}))[0]
    model.load_state_dict(torch.load(args.weights, weights_only=True))
    freq = item_frequency(data["train"], len(data["item_index"]))
    only = torch.from_numpy(freq == 0) if args.items == "never-seen" else torch.ones(len(freq), dtype=torch.bool)
    only[0] = False
    pairs = [(float(p.split(":")[0]), float(p.split(":")[1])) for p in args.pairs]
    result = ranks(model, data, ur.contexts(data, model.cfg.session_gap_minutes), only, pairs, args.center)
    trending = ur.trending_ranks(data, freq)
    result[("trending", 0.0)] = (trending, np.full(len(trending), np.nan))
    print(f"{args.dataset}, {ur.VARIANTS[args.variant][0]}, {args.weights}: {len(data['stream'][0])} clicks on the test day, "
          f"{int(only.sum())} never-seen items")
    for (k, beta), (r, mass) in result.items():
        b = breakdown(r, data["test"][1], freq, (10, 50))
        new = b["new"]
        print(f"  k {k} beta {beta:g}: R@10 {b['all']['R@10']:.4f} N@10 {b['all']['N@10']:.4f} R@50 {b['all']['R@50']:.4f} "
              f"head {b['head']['R@10']:.4f} new R@10 {new['R@10']:.4f} ({round(new['R@10'] * new['n'])} of {new['n']}) "
              f"new R@50 {new['R@50']:.4f} mass on never-seen {mass.mean():.3f}")


if __name__ == "__main__":
    main()
