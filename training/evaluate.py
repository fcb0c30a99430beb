"""Evaluation protocols (full ranking over every item; training/metrics.py).

* **next-day** (`precise evaluate universal --date D`, the daily metric): the newest universal
  model trained before D, grown to D's catalog (new items get their text-driven rows), predicts
  each user's first click on D from their history before D.

Leave-one-out tables on public datasets (food-kitchen, MovieLens) are the benchmarks' protocol
(`benchmarks/universal_results.py`), not a pipeline stage.

Breakdowns (`breakdown`): **cold** targets are items among the 80% least frequent of those seen in
training (PRECISE IV-A, Table IV); buckets by the target's training count: **new** (never seen),
**rare** (1-4), **tail** (5-19), **head** (20+); next-day, **fresh** targets were published on the
day or never seen in training (what a platform of today's items lives on).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core import schema
from core.atomic import atomic_path, write_json
from core.errors import PreciseError
from core.settings import Settings
from training.prep import text
from training import audience
from training.lifecycle import tracking
from training.models.baselines import Popularity, Transitions, item_frequency
from training.prep.tensors import Index, days_since_epoch, pad_left, target_contexts
from training.metrics import from_ranks
from training.models.recommender import SequenceRecommender
from training.trainer import model_ranks

log = logging.getLogger(__name__)


# Buckets of a target by how often it was seen in training (issue 30): new 0, rare 1-4, tail 5-19,
# head 20+. Upper bounds, exclusive; the last bucket is open.
BUCKETS = (("new", 1), ("rare", 5), ("tail", 20), ("head", None))
# The parts of a next-day `breakdown` that the evaluations log to MLflow.
PARTS = ("all", "cold", *(name for name, _ in BUCKETS), "fresh")


def breakdown(ranks: np.ndarray, targets: np.ndarray, freq: np.ndarray, ks, fresh: np.ndarray | None = None) -> dict:
    """Metrics overall, on cold targets (the 80% least frequent seen items, PRECISE IV-A), per
    bucket of the target's training count (`BUCKETS`, each with its number of targets `n`) and,
    given fresh ((B,) bool, e.g. published on the day or never seen), on those targets."""
    seen = np.flatnonzero(freq[1:] > 0) + 1
    order = seen[np.argsort(freq[seen], kind="stable")]  # least frequent first
    cold_items = set(order[: int(0.8 * len(order))].tolist())
    is_cold = np.array([t in cold_items for t in targets.tolist()], dtype=bool)
    out = {"all": from_ranks(ranks, ks), "cold": from_ranks(ranks[is_cold], ks)}
    counts, low = freq[targets], 0
    for name, high in BUCKETS:
        within = (counts >= low) & (counts < high) if high is not None else counts >= low
        out[name] = from_ranks(ranks[within], ks)
        low = high
    if fresh is not None:
        out["fresh"] = from_ranks(ranks[np.asarray(fresh, dtype=bool)], ks)
    return out


@torch.no_grad()
def rank_targets(model: SequenceRecommender, histories: list[np.ndarray], targets: np.ndarray,
                 contexts: list[np.ndarray] | None = None, candidates=None, when: np.ndarray | None = None) -> np.ndarray:
    """0-based full-ranking rank of each target given its history (and the history's session
    contexts, training.prep.tensors.session_context, the last one the target's); with candidates ((N+1,)
    bool, array or tensor), the rank among those items only; with when ((B,) the targets' times in
    days since 1970), each item's age offset at that time (`model.age_logit`)."""
    inputs = torch.from_numpy(pad_left(histories, model.cfg.max_len))
    ctx = torch.from_numpy(pad_left(contexts, model.cfg.max_len)) if contexts is not None else None
    mask = torch.as_tensor(candidates) if candidates is not None else None
    at = torch.as_tensor(np.asarray(when, dtype=np.float64)) if when is not None else None
    return model_ranks(model, inputs, torch.from_numpy(targets), ctx, mask, at)[0]


def baseline_metrics(index: Index, train: list[list[str]], histories: list, targets: np.ndarray, ks,
                     candidates=None, fresh: np.ndarray | None = None) -> dict:
    """Counting (last 3 items) and popularity on the same users, targets and candidates as a model
    (and, given fresh ((B,) bool), each on the fresh targets under "fresh")."""
    train_idx = [index.lookup(h) for h in train]
    hist_idx = [np.asarray(h) for h in histories]
    among = np.asarray(candidates) if candidates is not None else None
    out = {}
    for name, rule in (("counting", Transitions), ("popularity", Popularity)):
        ranks = rule(train_idx, len(index)).ranks(hist_idx, targets, among)
        out[name] = from_ranks(ranks, ks) | ({"fresh": from_ranks(ranks[fresh], ks)} if fresh is not None else {})
    return out


def fresh_targets(items: pd.DataFrame, index: Index, targets: np.ndarray, freq: np.ndarray, day: str) -> np.ndarray:
    """(B,) bool: the targets published on `day` (the catalog's published_at) or never seen in
    training (freq 0): the items a platform of today's content lives on."""
    published = pd.to_datetime(items["published_at"], utc=True).dt.strftime("%Y-%m-%d")
    today = np.zeros(len(index) + 1, dtype=bool)
    today[index.lookup(items.loc[(published == day).to_numpy(), "item_id"])] = True
    return today[targets] | (freq[targets] == 0)


def split_day(seqs: pd.DataFrame, day: str) -> tuple[pd.DataFrame, list[list[str]]]:
    """One pass over the sequences as of `day`:

    * the users with a behaviour on `day`: user_id, history (item ids before the day, oldest first;
      possibly empty), target (the first item of the day), history_ts and target_ts (their times),
      day_items and day_ts (every behaviour of the day and its time: the stream `day_clicks` reads);
    * every user's item ids before the day (users with none left out): what the baselines learn
      from, the same information the model was trained on.
    """
    start = pd.Timestamp(day, tz="UTC")
    rows, before_day = [], []
    for user, items, ts, last_day in zip(seqs["user_id"], seqs["item_ids"], seqs["ts"], seqs["last_day"]):
        if last_day < day:  # the whole sequence is before the day: no time to parse
            before_day.append(list(items))
            continue
        ts = pd.to_datetime(ts, utc=True)
        before = np.asarray(ts < start)
        history = list(np.asarray(items)[before])
        if history:
            before_day.append(history)
        on_day = np.flatnonzero(~before & (ts < start + pd.Timedelta(days=1)))
        if len(on_day):
            rows.append((user, history, items[on_day[0]], np.asarray(ts[before]), ts[on_day[0]],
                         list(np.asarray(items)[on_day]), ts[on_day].tz_convert(None).to_numpy().astype("datetime64[us]")))
    columns = ["user_id", "history", "target", "history_ts", "target_ts", "day_items", "day_ts"]
    return pd.DataFrame(rows, columns=columns), before_day


def day_clicks(users: pd.DataFrame) -> tuple[list, np.ndarray, np.ndarray]:
    """Every behaviour of the day of the rows of a `split_day` frame (item ids, the row's position,
    times datetime64[us] UTC), by time: the stream `training.audience` folds into never-seen items."""
    items = [i for day_items in users["day_items"] for i in day_items]
    rows = np.repeat(np.arange(len(users)), [len(d) for d in users["day_items"]])
    times = np.concatenate(list(users["day_ts"])) if len(users) else np.zeros(0, dtype="datetime64[us]")
    order = np.argsort(times, kind="stable")
    return [items[i] for i in order], rows[order], times[order]


def next_day_targets(seqs: pd.DataFrame, day: str) -> pd.DataFrame:
    """Users with a behaviour on `day`: user_id, history, target (see `split_day`)."""
    return split_day(seqs, day)[0]


def score_universal(settings: Settings, ckpt: Path, day: str) -> dict:
    """Next-day metrics of one universal checkpoint on `day` (no side effects)."""
    from training import universal

    meta, weights = universal.load_checkpoint(ckpt)
    items, tok_ids, tok_init = text.read(settings.paths.text)
    model, index, _, n_new = universal.grow(meta, weights, items, tok_ids, tok_init, meta["max_tokens"],
                                            settings.universal.new_item_neighbours)
    seqs = schema.read_sequences(settings.paths.sequences)
    split, before_day = split_day(seqs, day)
    with_history = split[split["history"].str.len() > 0]
    skipped = len(split) - len(with_history)
    histories, targets = [index.lookup(h) for h in with_history["history"]], index.lookup(with_history["target"])
    if not len(targets):
        raise PreciseError(f"no user has both a history and a click on {day}")
    gap = model.cfg.session_gap_minutes
    contexts = target_contexts(with_history["history_ts"], with_history["target_ts"], gap) if gap else None
    ranks = rank_targets(model, histories, targets, contexts, when=days_since_epoch(with_history["target_ts"]))
    # the buckets' training count: behaviours before D, what a model trained before D could have seen
    # (D's own later clicks counted before, so a new item clicked 20 times on D read as "head")
    freq = item_frequency([index.lookup(h) for h in before_day], len(index))
    ks = settings.universal.eval_ks
    fresh = fresh_targets(items, index, targets, freq, day)
    metrics = {"date": day, "model": ckpt.parent.name, "users": len(targets),
               "users_without_history": skipped, "new_items_in_catalog": n_new,
               **breakdown(ranks, targets, freq, ks, fresh),
               "baselines": baseline_metrics(index, before_day, histories, targets, ks, fresh=fresh)}
    k = settings.universal.early_clicks_k
    if k > 0:  # as the hourly path serves: never-seen items moved by the day's earlier clicks
        clicked, rows, times = day_clicks(with_history)
        eligible = torch.from_numpy(freq == 0)
        eligible[0] = False
        gap_ctx = torch.from_numpy(pad_left(contexts, model.cfg.max_len)) if contexts is not None else None
        early = audience.ranks(model, torch.from_numpy(pad_left(histories, model.cfg.max_len)), torch.from_numpy(targets),
                               gap_ctx, torch.from_numpy(days_since_epoch(with_history["target_ts"])),
                               np.asarray(pd.to_datetime(with_history["target_ts"], utc=True).dt.tz_convert(None), dtype="datetime64[us]"),
                               (index.lookup(clicked), np.asarray(rows, dtype=np.int64), times), eligible, k)
        metrics["early_clicks"] = {"k": k, "clicks": len(clicked), **breakdown(early, targets, freq, ks, fresh)}
    return metrics


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
    metrics = score_universal(settings, ckpt, day)
    with tracking.run(settings.paths.var, "precise-universal", f"evaluate-{day}",
                      {"date": day, "model": ckpt.parent.name, "protocol": "next_day"},
                      {"stage": "evaluate_universal"}) as mlflow:
        early = metrics.get("early_clicks", {})  # as the hourly path serves (training.audience)
        mlflow.log_metrics({f"{part}_{k.replace('@', '_at_')}": v for part in PARTS
                            for k, v in metrics[part].items()}
                           | {f"early_clicks_{part}_{k.replace('@', '_at_')}": v for part in PARTS if part in early
                              for k, v in early[part].items()})
    write_json(settings.paths.metrics / "evaluate_universal.json", metrics)
    return metrics


def score_targeted(settings: Settings, task, ckpt: Path, day: str) -> dict:
    """Next-day metrics of one targeted checkpoint on `day`, with the users without task history
    (`fallback`) scored apart: by the newest universal model before `day`, or by this model
    (`train_targeted.newcomers: targeted`, all-scene input). No side effects."""
    from training import targeted, universal

    meta, weights = targeted.load_checkpoint(ckpt)
    items, tok_ids, tok_init = text.read(settings.paths.text)
    model, index, _, n_new = targeted.grow(meta, weights, items, tok_ids, tok_init, settings.universal.new_item_neighbours)
    task_seqs = schema.read_sequences(settings.paths.sequences, f"task={task.name}")
    split, before_day = split_day(task_seqs, day)
    has_task = split["history"].str.len() > 0
    users, fallback = split[has_task], split[~has_task]
    all_scene_before: dict = {}  # user -> (all-scene history before the day, its times), read once if needed
    if meta.get("input") == "all_scene" or len(fallback):
        context = next_day_targets(schema.read_sequences(settings.paths.sequences), day)
        all_scene_before = dict(zip(context["user_id"], zip(context["history"], context["history_ts"])))
    if meta.get("input") == "all_scene":
        full = [all_scene_before.get(u, ht) for u, ht in zip(users["user_id"], zip(users["history"], users["history_ts"]))]
        users = users.assign(history=[h for h, _ in full], history_ts=[t for _, t in full])
    ks = settings.universal.eval_ks
    freq = item_frequency([index.lookup(h) for h in users["history"]], len(index))
    metrics = {"date": day, "task": task.name, "model": ckpt.parent.name, "mode": meta["metrics"]["mode"],
               "users": len(users), "new_items_in_catalog": n_new}
    if len(users):
        targets = index.lookup(users["target"])
        histories = [index.lookup(h) for h in users["history"]]
        gap = model.cfg.session_gap_minutes
        contexts = target_contexts(users["history_ts"], users["target_ts"], gap) if gap else None
        candidates = targeted.task_candidates(task, items, index) if meta.get("candidates") == "task" else None
        fresh = fresh_targets(items, index, targets, freq, day)
        metrics |= breakdown(rank_targets(model, histories, targets, contexts, candidates), targets, freq, ks, fresh)
        metrics["baselines"] = baseline_metrics(index, before_day, histories, targets, ks, candidates, fresh)
    # Users without task history, as the export serves them: by this model from their all-scene
    # history (an all-scene model, `train_targeted.newcomers: targeted`), else by the universal
    # model (its user and item embeddings, never mixed with targeted ones).
    by_task_model = meta.get("input") == "all_scene" and settings.targeted.newcomers == "targeted"
    metrics["fallback"] = {"users": len(fallback), "scored_by": "targeted" if by_task_model else "universal"}
    has = [len(all_scene_before.get(u, ((), ()))[0]) > 0 for u in fallback["user_id"]]
    scored = fallback[has]  # fallback users with an all-scene history
    u_ckpt = None if by_task_model else universal.latest_checkpoint(settings, before=day)
    if len(scored) and (by_task_model or u_ckpt is not None):
        if by_task_model:
            f_model, f_index = model, index
        else:
            u_meta, u_weights = universal.load_checkpoint(u_ckpt)
            f_model, f_index, _, _ = universal.grow(u_meta, u_weights, items, tok_ids, tok_init, u_meta["max_tokens"],
                                                    settings.universal.new_item_neighbours)
        hist, hist_ts = zip(*(all_scene_before[u] for u in scored["user_id"]))
        gap = f_model.cfg.session_gap_minutes
        contexts = target_contexts(hist_ts, scored["target_ts"], gap) if gap else None
        candidates = targeted.task_candidates(task, items, f_index) if by_task_model and meta.get("candidates") == "task" else None
        ranks = rank_targets(f_model, [f_index.lookup(h) for h in hist], f_index.lookup(scored["target"]), contexts, candidates,
                             when=days_since_epoch(scored["target_ts"]))
        metrics["fallback"] |= {"with_all_scene_history": len(scored), **from_ranks(ranks, ks)}
    return metrics


def targeted_next_day(settings: Settings, task: str, date: str | None = None, if_model: bool = False) -> dict:
    """Daily metrics of a task: the newest targeted model trained before D predicts each user's
    first task behaviour on D from their history (task or all-scene, as the model was trained).
    Users with a task behaviour on D but no task history are scored as the export serves them (the
    universal model, or the task model with `train_targeted.newcomers: targeted`) and reported
    apart as `fallback`. Also the Figure 4a coverage curve."""
    from training import targeted
    from validation import manifest

    task = settings.task(task)
    day = manifest.resolve_day(settings, date)
    out = settings.paths.metrics / "evaluate_targeted" / f"{task.name}.json"
    metrics: dict = {"date": day, "task": task.name, "coverage": coverage_report(settings, task, day)}
    ckpt = targeted.latest_checkpoint(settings, task.name, before=day)
    if ckpt is None:
        reason = f"no targeted model of {task.name} trained before {day}"
        if not if_model:
            raise PreciseError(reason)
        write_json(out, metrics | {"skipped": reason})
        return metrics | {"skipped": reason}
    metrics |= score_targeted(settings, task, ckpt, day)
    with tracking.run(settings.paths.var, f"precise-{task.name}", f"evaluate-{day}",
                      {"date": day, "model": ckpt.parent.name, "protocol": "next_day"},
                      {"stage": "evaluate_targeted", "task": task.name}) as mlflow:
        mlflow.log_metrics({f"{part}_{k.replace('@', '_at_')}": v for part in (*PARTS, "fallback") if part in metrics
                            for k, v in metrics[part].items() if isinstance(v, (int, float))}
                           | {"coverage": metrics["coverage"]["with_warmup"][-1]})
    write_json(out, metrics)
    return metrics


def coverage_report(settings: Settings, task, day: str) -> dict:
    """Figure 4a over the good days up to D, from item sets: warm-up every N days vs never."""
    from training import diagnostics, targeted
    from validation import manifest

    days = manifest.good_days(settings, up_to=day)
    task_items, universal_items = [], []
    for d in days:
        ev = schema.read_events(settings.paths.data, [d])
        task_items.append(targeted.task_items(ev, task))
        universal_items.append(set(ev.loc[ev["action"].isin(settings.sequences.universal_actions), "item_id"]))
    every = settings.targeted.warmup_every_days
    curves = {f"warm-up every {every} days": targeted.coverage_curve(task_items, universal_items, every),
              "never (first day only)": targeted.coverage_curve(task_items, universal_items, None)}
    with atomic_path(settings.paths.data / "plots" / f"fig4a_{task.name}.png") as tmp:
        diagnostics.plot_coverage(days, curves, tmp, f"{task.name}: items trained by the universal model of the last warm-up")
    with_w, never = list(curves.values())
    return {"days": days, "with_warmup": [round(x, 4) for x in with_w], "never": [round(x, 4) for x in never],
            "mean_with_warmup": float(np.nanmean(with_w)) if days else None,
            "mean_never": float(np.nanmean(never)) if days else None}
