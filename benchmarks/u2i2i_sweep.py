"""How U2I2I scores its candidates, chosen on a validation day (issue 31).

    python -m benchmarks.ranking_gain --folder /work/ranking-ws        # keeps its workspace
    python -m benchmarks.u2i2i_sweep --folder /work/ranking-ws --export-day 2026-01-12

For each user with a task click on the day after `--export-day`, the exported vectors of that
day's task model score every task item exactly (no index, so the figures are the scoring's, not
the index's) from the user's recent task items (the seeds, as served), the seeds and the user's
recent items left out; recall@50/100/200 of the next-day clicks for all those users and for the
users new to the task (at most 2 task clicks before). Rows: the best similarity to a seed (max),
the mean similarity, each plus the popularity prior (log of an item's count among the users'
recent task items, what serving knows, scaled to 0..1) at a weight, and the weight grown for
users with few seeds (shrink: weight x (1 + shrink / seeds)); and seeds from the user's all-scene
window through the universal model's vectors. Popularity: the task's clicks of the 7 days before
the day. Pick on the validation day; `benchmarks/ranking_gain.py` reads the test day once through
the served index.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.ranking_gain import task_clicks
from core.settings import Settings
from recall.index import popularity_prior, u2i2i_score

NEW_TO_TASK = 2
KS = (50, 100, 200)


def vectors(path: Path) -> tuple[list[str], np.ndarray]:
    frame = pd.read_parquet(path, columns=["item_id", "embedding"])
    return list(frame["item_id"]), np.stack(frame["embedding"].to_numpy()).astype(np.float32)


def day_data(s: Settings, task: str, export_day: str) -> dict:
    """The exported task and universal vectors and recent items of `export_day`, the next day's
    task clicks, and what each user had clicked in the task before."""
    folder = s.paths.data / "export" / f"date={export_day}"
    ids, V = vectors(folder / f"{task}_item.parquet")
    uids, U = vectors(folder / "universal_item.parquet")
    recent = pd.read_parquet(folder / f"{task}_recent_items.parquet")
    window = pd.read_parquet(folder / "universal_user.parquet", columns=["user_id", "window"])
    next_day = (pd.Timestamp(export_day) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    targets, history, popular = task_clicks(s, task, next_day)
    recent_items = dict(zip(recent["user_id"], recent["items"]))
    urow = {x: j for j, x in enumerate(uids)}
    return {"ids": ids, "V": V, "row": {x: j for j, x in enumerate(ids)}, "U": U, "urow": urow,
            "U_task": U[[urow[i] for i in ids]], "recent": recent_items, "window": dict(zip(window["user_id"], window["window"])),
            "targets": targets, "history": history, "popular": popular,
            # what serving knows: counts over the users' recent task items (recall.index.recent_counts)
            "prior": popularity_prior(ids, Counter(itertools.chain.from_iterable(recent_items.values())))}


def similarities(d: dict, user: str, seeds_from: str) -> np.ndarray | None:
    """(S, N) similarity of each seed to every task item, or None without seeds."""
    if seeds_from == "window":  # the last 20 items of the all-scene window, universal vectors
        seeds = [d["urow"][i] for i in list(d["window"].get(user, []))[-20:] if i in d["urow"]]
        return d["U"][seeds] @ d["U_task"].T if seeds else None
    seeds = [d["row"][i] for i in d["recent"].get(user, []) if i in d["row"]]
    return d["V"][seeds] @ d["V"].T if seeds else None


def sweep(d: dict, configs: dict[str, tuple]) -> dict:
    """configs: name -> (seeds from, merge, prior weight, shrink). Returns group -> name -> recalls."""
    out: dict[str, dict[str, list]] = {}
    kmax = max(KS)
    for user, targets in d["targets"].items():
        seen = set(d["recent"].get(user, []))
        popular = [i for i in d["popular"] if i not in seen][:kmax]
        lists = {"popularity": popular}
        for name, (seeds_from, merge, weight, shrink) in configs.items():
            sims = similarities(d, user, seeds_from)
            if sims is None:
                lists[name] = popular  # no seeds: the served fallback
                continue
            score = u2i2i_score(sims, d["prior"], merge, weight, shrink)
            score[[d["row"][i] for i in seen if i in d["row"]]] = -np.inf
            lists[name] = [d["ids"][j] for j in np.argsort(-score, kind="stable")[:kmax]]
        groups = ["all"] + (["new to the task"] if int(d["history"].get(user, 0)) <= NEW_TO_TASK else [])
        for g in groups:
            for name, ranked in lists.items():
                out.setdefault(g, {}).setdefault(name, []).append([len(targets & set(ranked[:k])) / len(targets) for k in KS])
    return {g: {"users": len(rows["popularity"])} | {n: [round(float(x), 4) for x in np.mean(r, 0)] for n, r in rows.items()}
            for g, rows in out.items()}


CONFIGS = {"max (the first version)": ("recent", "max", 0.0, 0.0), "mean": ("recent", "mean", 0.0, 0.0)}
CONFIGS |= {f"mean + prior {w}": ("recent", "mean", w, 0.0) for w in (0.2, 0.3, 0.5, 1.0, 2.0)}
CONFIGS |= {f"mean + prior {w}, shrink {c}": ("recent", "mean", w, c) for w in (0.3, 0.5) for c in (1.0, 2.0, 4.0, 8.0)}
CONFIGS |= {f"all-scene window + prior {w}": ("window", "mean", w, 0.0) for w in (0.0, 0.5, 1.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True, help="a workspace kept by benchmarks/ranking_gain.py")
    parser.add_argument("--task", default="click_article")
    parser.add_argument("--export-day", required=True, help="the export that serves the day after it (validation)")
    args = parser.parse_args()
    d = day_data(Settings.load(args.folder / "params.yaml"), args.task, args.export_day)
    result = sweep(d, CONFIGS)
    for g, rows in result.items():
        print(f"{g} ({rows['users']} users)   R@50 R@100 R@200")
        for name, r in sorted(((n, r) for n, r in rows.items() if n != "users"), key=lambda kv: -kv[1][1]):
            print(f"  {name:40s} {r[0]:.4f} {r[1]:.4f} {r[2]:.4f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
