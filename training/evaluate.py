"""Evaluation protocols (full ranking over every item; training/metrics.py).

* **next-day** (`precise evaluate universal --date D`, the daily metric): the newest universal
  model trained before D, grown to D's catalog (new items get their text-driven rows), predicts
  each user's first click on D from their history before D.
* **leave-one-out** (sequence datasets such as food-kitchen): the held-out last item of each
  `valid` or `test` user (the importer's split sidecar), from the user's history.

Breakdowns: **cold** targets are items among the 80% least frequent of those seen in training
(PRECISE IV-A, Table IV); **new** targets were never seen in training.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from precise.atomic import write_json
from precise.errors import PreciseError
from precise.settings import Settings
from training import sequences, text, tracking
from training.data import Index, pad_left
from training.metrics import from_ranks, target_ranks
from training.model import Precise

log = logging.getLogger(__name__)


def item_frequency(histories: list[np.ndarray], n_items: int) -> np.ndarray:
    """(N+1,) occurrences of each item index in the training histories."""
    flat = np.concatenate(histories) if histories else np.zeros(0, dtype=np.int64)
    return np.bincount(flat, minlength=n_items + 1)


def breakdown(ranks: np.ndarray, targets: np.ndarray, freq: np.ndarray, ks) -> dict:
    """Metrics overall, on cold targets (80% least frequent seen items) and on new targets."""
    seen = np.flatnonzero(freq[1:] > 0) + 1
    order = seen[np.argsort(freq[seen], kind="stable")]  # least frequent first
    cold_items = set(order[: int(0.8 * len(order))].tolist())
    is_new = freq[targets] == 0
    is_cold = np.array([t in cold_items for t in targets.tolist()], dtype=bool)
    return {
        "all": from_ranks(ranks, ks),
        "cold": from_ranks(ranks[is_cold], ks),
        "new": from_ranks(ranks[is_new], ks),
    }


@torch.no_grad()
def rank_targets(model: Precise, histories: list[np.ndarray], targets: np.ndarray) -> np.ndarray:
    """0-based full-ranking rank of each target given its history."""
    model.eval()
    inputs = torch.from_numpy(pad_left(histories, model.cfg.max_len))
    users = torch.cat([model.encode(inputs[i : i + 512])[:, -1] for i in range(0, len(inputs), 512)])
    ranks, _ = target_ranks(users, model.all_item_embeddings(), torch.from_numpy(targets))
    return ranks


def next_day_split(seqs: pd.DataFrame, day: str, index: Index) -> tuple[list[np.ndarray], np.ndarray, int]:
    """Histories before `day` and the first item on `day`, for users with both.

    Returns (histories, targets, users skipped for lack of history).
    """
    start = pd.Timestamp(day, tz="UTC")
    histories, targets, skipped = [], [], 0
    for items, ts, last_day in zip(seqs["item_ids"], seqs["ts"], seqs["last_day"]):
        if last_day < day:
            continue
        ts = pd.to_datetime(ts, utc=True)
        before = np.asarray(ts < start)
        on_day = np.flatnonzero(~before & (ts < start + pd.Timedelta(days=1)))
        if not len(on_day):
            continue
        if not before.any():
            skipped += 1
            continue
        histories.append(index.lookup(np.asarray(items)[before]))
        targets.append(index.lookup([items[on_day[0]]])[0])
    return histories, np.array(targets, dtype=np.int64), skipped


def next_day(settings: Settings, date: str | None = None, if_model: bool = False) -> dict:
    """The daily metric of the universal model (see module docstring). With `if_model`, a day
    with no earlier model records that it was skipped instead of failing (first day of a world)."""
    from training import universal
    from validation import manifest

    day = manifest.resolve_day(settings, date)
    ckpt = universal.latest_checkpoint(settings, before=day)
    if ckpt is None:
        reason = f"no universal model trained before {day}; train one on an earlier day first"
        if not if_model:
            raise PreciseError(reason)
        metrics = {"date": day, "skipped": reason}
        write_json(settings.paths.metrics / "evaluate_universal.json", metrics)
        return metrics
    meta, weights = universal.load_checkpoint(ckpt)
    items, tok_ids, tok_init = text.read(settings.paths.text)
    model, index, _, n_new = universal.grow(meta, weights, items, tok_ids, tok_init, meta["max_tokens"],
                                            settings.universal.new_item_neighbours)
    seqs = sequences.read(settings.paths.sequences)
    histories, targets, skipped = next_day_split(seqs, day, index)
    if not len(targets):
        raise PreciseError(f"no user has both a history and a click on {day}")
    ranks = rank_targets(model, histories, targets)
    freq = item_frequency([index.lookup(s) for s in seqs["item_ids"]], len(index))  # through D ...
    freq = freq - np.bincount(targets, minlength=len(freq))  # ... minus the targets themselves
    metrics = {"date": day, "model": ckpt.parent.name, "users": int(len(targets)),
               "users_without_history": skipped, "new_items_in_catalog": n_new,
               **breakdown(ranks, targets, np.maximum(freq, 0), settings.universal.eval_ks)}
    with tracking.run(settings.paths.var, "precise-universal", f"evaluate-{day}",
                      {"date": day, "model": ckpt.parent.name, "protocol": "next_day"},
                      {"stage": "evaluate_universal"}) as mlflow:
        mlflow.log_metrics({f"{part}_{k.replace('@', '_at_')}": v for part in ("all", "cold", "new")
                            for k, v in metrics[part].items()})
    write_json(settings.paths.metrics / "evaluate_universal.json", metrics)
    return metrics


def leave_one_out(model: Precise, index: Index, seqs: pd.DataFrame, splits: pd.DataFrame, split: str, ks) -> dict:
    """Held-out last items of `split` users (sidecar: user_id, split, target_item_id)."""
    chosen = splits[splits["split"] == split]
    history = dict(zip(seqs["user_id"], seqs["item_ids"]))
    histories = [index.lookup(history.get(u, [])) for u in chosen["user_id"]]
    targets = index.lookup(chosen["target_item_id"])
    keep = targets > 0
    ranks = rank_targets(model, [h for h, k in zip(histories, keep) if k], targets[keep])
    freq = item_frequency([index.lookup(s) for s in seqs["item_ids"]], len(index))
    out = breakdown(ranks, targets[keep], freq, ks)
    out["unknown_targets"] = int((~keep).sum())
    return out


def read_splits(path: Path) -> pd.DataFrame:
    if not Path(path).is_file():
        raise PreciseError(f"no split sidecar at {path}; import the dataset with `precise data import food-kitchen`")
    return pd.read_parquet(path)
