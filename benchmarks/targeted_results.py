"""PRECISE Table VII: universal then targeted training against each alone, per dataset.

    python -m benchmarks.targeted_results [--datasets synthetic food-kitchen] [--epochs 3] [--variants ut-tt tt]

Writes `benchmarks/results/targeted_results.json` (tracked; a run replaces its dataset's rows and
keeps the rows before it as that dataset's earlier runs) and renders `docs/targeted_results.md` from
it (`--render`: only re-render). Rows, all on one
test set per dataset (full ranking over every item, and apart the ranking among the task's items,
which is what the task's export serves):

* UT then TT: the universal model (fused, alternate training) fine-tuned by targeted training,
  reading every click before the target (`train_targeted.input: all_scene`, the default) or the
  task's own sequence (`task`, the paper's): BPR against every catalog item (the default) or only
  the task's items (`candidates: task`), the softmax over the catalog, BPR with user-side
  negatives (the paper's eq. 6) and with the batch's other targets (`VARIANTS`);
* UT only: the universal model's user embedding (its all-scene history) and item embeddings;
* TT only: targeted training from a freshly initialised model on the task data alone;
* counting (last 3 items) and popularity, learnt from the task's training sequences.

Tasks and protocols:
* synthetic (the embedded default world): task = clicks in the `article` scene. Everything is
  trained on days 1..N-1; the test target is each user's first article click of day N, the input
  the history before it (all scenes or the task's, as the row says). TT selects on the last task
  item of 500 training users. Every model reads the session context of its input (the click times).
  Users whose first article click is on day N (new to the task) are reported apart: the
  universal vector is what they are served when the task model cannot embed them.
* synthetic-newcomers: the same world with a random 30% of the users' article clicks before day N
  removed (from every model's data): platforms where most users never used the task's scene.
* food-kitchen: task = the `kitchen` scene. Universal training as in the universal table; TT
  trains on the kitchen sub-sequences' items as targets. Test: the 637 `test` users whose held-out
  item is a kitchen item (select on the 597 such `valid` users), input = their history before it.
  No times: position k of a history is minute k (order only, no session context).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]

from benchmarks import datasets  # noqa: E402
from ingest import synth  # noqa: E402
from core.settings import Settings, Task  # noqa: E402
from training import targeted  # noqa: E402
from training.prep import text  # noqa: E402
from training.prep.tensors import Index, next_item_pairs, pad_left, session_context, target_contexts  # noqa: E402
from training.models.baselines import Popularity, Transitions  # noqa: E402
from benchmarks.common import bucket_cell  # noqa: E402
from core.atomic import write_text  # noqa: E402
from training.evaluate import BUCKETS, breakdown, item_frequency, rank_targets  # noqa: E402
from training.lifecycle.tracking import git_revision  # noqa: E402
from training.metrics import from_ranks  # noqa: E402
from training.trainer import evaluate, fit  # noqa: E402
from training.universal import build, model_spec, train_config  # noqa: E402

OUT = REPO / "benchmarks" / "out"  # encode caches of the runs (ignored)
RESULTS = REPO / "benchmarks" / "results" / "targeted_results.json"  # what the document renders (tracked)
DOC = REPO / "docs" / "targeted_results.md"


def synthetic(settings: Settings, newcomer_share: float = 0.0) -> dict:
    world = synth.build_world(settings.synth)
    events = pd.concat([synth.simulate_day(world, d).assign(day=d) for d in range(settings.synth.days)])
    clicks = events[events["action"] == "click"].sort_values(["user_id", "ts"], kind="stable")
    last = settings.synth.days - 1
    if newcomer_share:  # a share of the users never clicked an article before the test day (not even in universal training)
        users = np.sort(clicks["user_id"].unique())
        hidden = set(np.random.default_rng(3).choice(users, int(len(users) * newcomer_share), replace=False).tolist())
        clicks = clicks[~(clicks["user_id"].isin(hidden) & (clicks["scene"] == "article") & (clicks["day"] < last))]
    past = clicks[clicks["day"] < last]
    universal = past.groupby("user_id")["item_id"].agg(list)
    universal_times = past.groupby("user_id")["ts"].agg(list)  # the universal model's session context
    task_frame = past[past["scene"] == "article"].groupby("user_id")[["item_id", "ts"]].agg(list)
    task, task_times = task_frame["item_id"], task_frame["ts"]
    rng = np.random.default_rng(0)
    eligible = [u for u, s in task.items() if len(s) >= 3]
    valid_users = set(rng.choice(eligible, 500, replace=False).tolist())
    valid = [(u, task[u][:-1], universal[u], task[u][-1]) for u in sorted(valid_users)]
    valid_times = ([task_times[u][:-1] for u in sorted(valid_users)], [task_times[u][-1] for u in sorted(valid_users)])
    # train_targeted.input: all_scene reads every scene's clicks before the target instead
    cuts = [int(np.searchsorted(pd.to_datetime(universal_times[u]), t)) for u, t in zip(sorted(valid_users), valid_times[1])]
    valid_all_scene = ([universal[u][:c] for u, c in zip(sorted(valid_users), cuts)],
                       [universal_times[u][:c] for u, c in zip(sorted(valid_users), cuts)])
    task = pd.Series({u: (s[:-1] if u in valid_users else s) for u, s in task.items()})
    task_times = pd.Series({u: (t[:-1] if u in valid_users else t) for u, t in task_times.items()})
    first = clicks[(clicks["day"] == last) & (clicks["scene"] == "article")].groupby("user_id")[["item_id", "ts"]].first()
    # Users new to the task (no article click before, other clicks yes): an all-scene task model
    # embeds them (train_targeted.newcomers: targeted), else they get the universal vector.
    new = first[~first.index.isin(task.index) & first.index.isin(universal.index)]
    first = first[first.index.isin(task.index) & first.index.isin(universal.index)]
    test = [(u, task[u], universal[u], t) for u, t in first["item_id"].items()]
    catalog = world.items[["item_id", "scene", "title", "text", "published_at"]]
    return {"catalog": catalog, "universal": universal, "task": task, "valid": valid, "test": test,
            "universal_valid": None, "universal_times": universal_times, "test_times": list(first["ts"]),
            "task_times": task_times, "valid_times": valid_times, "task_scene": "article",
            "valid_all_scene": valid_all_scene,
            "new_to_task": ([universal[u] for u in new.index], list(new["item_id"]),
                            target_contexts([universal_times[u] for u in new.index], list(new["ts"]),
                                            settings.universal.model.session_gap_minutes)
                            if settings.universal.model.session_gap_minutes else None)}


def food_kitchen() -> dict:
    """The universal results' food-kitchen split (benchmarks/datasets.py), with the kitchen scene as
    the task: valid and test keep the users whose held-out item is a kitchen item."""
    catalog, universal, valid, test, _ = datasets.food_kitchen()  # no timestamps: no session context
    scene = dict(zip(catalog["item_id"], catalog["scene"]))
    # Order only: position k of a history at minute k (made up, so no session context), which
    # places the kitchen sub-sequence inside the all-scene one (train_targeted.input: all_scene).
    order = universal.map(lambda s: list(pd.date_range("2026-01-01", periods=len(s), freq="min", tz="UTC")))
    kitchen = universal.map(lambda s: [scene[x] == "kitchen" for x in s])
    task = pd.Series({u: [x for x, k in zip(s, kitchen[u]) if k] for u, s in universal.items()})
    task_times = pd.Series({u: [t for t, k in zip(order[u], kitchen[u]) if k] for u in universal.index})
    keep = task.str.len() > 0
    task, task_times = task[keep], task_times[keep]

    def split(users_targets: tuple[list, list]) -> list:
        return [(u, task.get(u, []), universal[u], t) for u, t in zip(*users_targets) if scene[t] == "kitchen"]

    valid_rows = split(valid)  # the held-out item follows the whole history
    end = [order[r[0]][-1] + pd.Timedelta(minutes=1) for r in valid_rows]
    return {"catalog": catalog, "universal": universal, "task": task, "valid": valid_rows, "test": split(test),
            "universal_valid": valid, "task_scene": "kitchen", "task_times": task_times, "made_up_times": True,
            "valid_times": ([task_times.get(r[0], []) for r in valid_rows], end),
            "universal_times": order, "valid_all_scene": ([r[2] for r in valid_rows], [order[r[0]] for r in valid_rows])}


def task_samples(task: pd.Series, per_user: int, times: pd.Series | None = None,
                 all_scene: tuple[pd.Series, pd.Series] | None = None) -> pd.DataFrame:
    """Examples through the pipeline's own preparation (`targeted.samples`): each task sequence's
    `per_user` most recent items as targets, the items before as input. `times`: the sequences'
    timestamps (same index); without them (food-kitchen) the order alone, one minute per position
    (made-up times: train such examples without session context). all_scene: (every scene's
    sequences, their times), for `train_targeted.input: all_scene` (inputs = all clicks before)."""
    def frame(seqs: pd.Series, times: pd.Series | None) -> pd.DataFrame:
        ts = ([pd.to_datetime(times[u], utc=True) for u in seqs.index] if times is not None else
              [pd.date_range("2026-01-01", periods=len(s), freq="min", tz="UTC") for s in seqs])
        return pd.DataFrame({"user_id": seqs.index, "item_ids": seqs.to_numpy(), "ts": ts})

    return targeted.samples(frame(task, times), "1970-01-01", "2100-01-01", per_user,
                            frame(*all_scene) if all_scene is not None else None)


def universal_split(d: dict, index: Index, seqs: list, max_len: int, gap: float) -> tuple:
    """The universal model's data: training sequences, validation tensors (held-out next items of
    all-scene sequences: the dataset's own users, or the last item of 1,000 drawn users, cut from
    training), the training session contexts (None without times) and the test targets' contexts.
    Returns (train, (inputs, targets[, contexts]), contexts, test contexts)."""
    if d["universal_valid"] is None:
        rng = np.random.default_rng(1)
        pick = rng.choice([i for i, s in enumerate(seqs) if len(s) >= 3], 1000, replace=False)
        picked = set(pick.tolist())
        valid = ([seqs[i][:-1] for i in pick], np.array([seqs[i][-1] for i in pick]))
        train = [s[:-1] if i in picked else s for i, s in enumerate(seqs)]
    else:
        hist = dict(zip(d["universal"].index, seqs))
        valid = ([hist[u] for u in d["universal_valid"][0]], index.lookup(d["universal_valid"][1]))
        train = seqs
    valid_t = (torch.from_numpy(pad_left(valid[0], max_len)), torch.from_numpy(valid[1]))
    ctx = test_ctx = None
    if gap and d.get("universal_times") is not None:  # as train and valid, the held-out users' last context their target's
        times = [d["universal_times"][u] for u in d["universal"].index]
        ctx = [session_context(t, gap) for t in times]
        if d["universal_valid"] is None:
            valid_t += (torch.from_numpy(pad_left([ctx[i][:-1] for i in pick], max_len)),)
            ctx = [c[:-1] if i in picked else c for i, c in enumerate(ctx)]
        by_user = dict(zip(d["universal"].index, times))
        test_ctx = target_contexts([by_user[r[0]] for r in d["test"]], d["test_times"], gap)
    return train, valid_t, ctx, test_ctx


def task_inputs(d: dict, index: Index, per_user: int, max_len: int, gap: float, valid: tuple) -> tuple:
    """`train_targeted.input: task`: (training tensors, validation tensors, test histories, test
    contexts) from the task sequences, with session context where the task has real times."""
    train = targeted.to_tensors(task_samples(d["task"], per_user, d.get("task_times")), index, max_len, gap)
    valid_t = (torch.from_numpy(pad_left(valid[0], max_len)), torch.from_numpy(valid[2]))
    test_ctx = None
    if gap:
        valid_t += (torch.from_numpy(pad_left(target_contexts(*d["valid_times"], gap), max_len)),)
        test_ctx = target_contexts([d["task_times"][r[0]] for r in d["test"]], d["test_times"], gap)
    return train, valid_t, [index.lookup(r[1]) for r in d["test"]], test_ctx


def all_scene_inputs(d: dict, index: Index, per_user: int, max_len: int, gap: float, valid: tuple) -> tuple:
    """`train_targeted.input: all_scene`: (training tensors, validation tensors) from each user's
    all-scene clicks before the target, valid and test alike."""
    examples = task_samples(d["task"], per_user, d["task_times"], (d["universal"], d["universal_times"]))
    hist, times = d["valid_all_scene"]
    v = (torch.from_numpy(pad_left([index.lookup(h) for h in hist], max_len)), torch.from_numpy(valid[2]))
    v += (torch.from_numpy(pad_left(target_contexts(times, d["valid_times"][1], gap), max_len)),) if gap else ()
    return targeted.to_tensors(examples, index, max_len, gap), v


def new_to_task(d: dict, index: Index, universal_seqs: list, task_seqs: list, in_task: torch.Tensor,
                ks: tuple) -> tuple[Callable[[torch.nn.Module], dict], dict]:
    """Users new to the task (the dataset's `new_to_task`: all-scene histories, targets, contexts;
    read by all-scene input only): a function model -> its rows on them (full ranking, and among
    the task's items), and the rows of what serving knows of them without a model (counting over
    all-scene transitions, the task's popularity). Both empty without such users."""
    new = d.get("new_to_task")
    if new is None:
        return (lambda model: {}), {}
    hist, targets = [index.lookup(h) for h in new[0]], index.lookup(new[1])

    def model_rows(model) -> dict:
        return {"new_to_task": from_ranks(rank_targets(model, hist, targets, new[2]), ks),
                "new_to_task_task_items": from_ranks(rank_targets(model, hist, targets, new[2], in_task), ks)}

    baselines = {}
    if len(targets):
        for label, fitted in (("counting (last 3 items)", Transitions(universal_seqs, len(index))),
                              ("popularity", Popularity(task_seqs, len(index)))):
            r = fitted.ranks([np.asarray(h) for h in hist], targets, in_task.numpy())
            baselines[label] = {"new_to_task_task_items": from_ranks(r, ks)}
    return model_rows, baselines


def run_dataset(name: str, settings: Settings, epochs: int, cache: Path, per_user: int,
                variants: list[str] | None = None) -> dict:
    """Table VII on one dataset: UT only, the baselines and `variants` (keys of VARIANTS; all by default)."""
    t0 = time.perf_counter()
    d = DATASETS[name](settings)
    world = "synthetic" if name.startswith("synthetic") else name  # one catalog, one text encoding
    enc_out = OUT / f"text-{world}"
    text.run(settings.encode, d["catalog"], REPO, cache, enc_out, OUT / f"encode-{world}.json")
    items, tok_ids, tok_init = text.read(enc_out)
    index = Index(list(items["item_id"]))
    tokens = Index(sorted(str(t) for t in tok_ids))
    spec, ucfg = model_spec(settings.universal), train_config(settings.universal)
    max_len = spec.get("max_len", 50)
    ucfg = dataclasses.replace(ucfg, epochs=epochs or ucfg.epochs, checkpoint_every=0)
    tcfg = targeted.train_config(settings.targeted)
    tcfg = dataclasses.replace(tcfg, epochs=epochs or tcfg.epochs, checkpoint_every=0)
    ks = settings.universal.eval_ks
    universal_seqs = [index.lookup(s) for s in d["universal"]]
    task_seqs = [index.lookup(s) for s in d["task"]]

    def split(rows):  # -> task histories, all-scene histories, targets
        return ([index.lookup(r[1]) for r in rows], [index.lookup(r[2]) for r in rows], index.lookup([r[3] for r in rows]))

    valid, test = split(d["valid"]), split(d["test"])
    freq = item_frequency(task_seqs, len(index))
    rows, seconds = {}, {}

    # Universal training (fused, alternate), selecting on held-out next items of all-scene sequences.
    gap = 0 if d.get("made_up_times") else spec.get("session_gap_minutes", 0)  # made-up times only order: no context
    u_train, u_valid_t, u_ctx, test_ctx = universal_split(d, index, universal_seqs, max_len, gap)
    torch.manual_seed(ucfg.seed)
    ut = build(spec, items, tok_ids, tok_init, settings.encode.max_tokens, index, tokens)
    t1 = time.perf_counter()
    fit(ut, next_item_pairs(u_train, max_len, u_ctx), u_valid_t, ucfg)
    seconds["universal"] = round(time.perf_counter() - t1, 1)
    # (N+1,) bool: the task's items, what the task's export serves (the pipeline's own definition)
    in_task = targeted.task_candidates(Task(name, ("click",), (d["task_scene"],)), d["catalog"], index)

    def model_row(model, histories, contexts) -> dict:  # full ranking, and among the task's items
        return breakdown(rank_targets(model, histories, test[2], contexts), test[2], freq, ks) | {
            "task_items": from_ranks(rank_targets(model, histories, test[2], contexts, in_task), ks)}

    rows["UT only"] = model_row(ut, test[1], test_ctx)
    new_users_row, new_baselines = new_to_task(d, index, universal_seqs, task_seqs, in_task, ks)
    rows["UT only"] |= new_users_row(ut)
    for label, row in new_baselines.items():
        rows.setdefault(label, {}).update(row)
    print(f"{name} UT only: R@10 {rows['UT only']['all']['R@10']:.4f}", flush=True)

    # The non-learned baselines on the same test users: task histories, task training sequences.
    for label, baseline in (("counting (last 3 items)", Transitions), ("popularity", Popularity)):
        fitted, histories = baseline(task_seqs, len(index)), [np.asarray(h) for h in test[0]]
        rows[label] = rows.get(label, {}) | breakdown(fitted.ranks(histories, test[2]), test[2], freq, ks) | {
            "task_items": from_ranks(fitted.ranks(histories, test[2], in_task.numpy()), ks)}

    # Targeted training reads the session context where the task has real times (as the stage does).
    inputs = {"task": task_inputs(d, index, per_user, max_len, gap, valid),
              "all_scene": lambda: all_scene_inputs(d, index, per_user, max_len, gap, valid) + (test[1], test_ctx)}
    train = inputs["task"][0]
    for label, start, negatives, loss, candidates, input_, offset in (VARIANTS[k] for k in variants or VARIANTS):
        tt_train, tt_valid, tt_test, tt_ctx = inputs["task"] if input_ == "task" else inputs["all_scene"]()
        torch.manual_seed(tcfg.seed)
        base = copy.deepcopy(ut) if start == "UT then TT" else build(spec, items, tok_ids, tok_init,
                                                                     settings.encode.max_tokens, index, tokens)
        if not offset:  # the task model without the learned offset of items already read (model.history_offset)
            base.history_bias = None
        model = targeted.Targeted(base, settings.targeted.head_hidden, negatives, loss,
                                  in_task if candidates == "task" else None)
        t1 = time.perf_counter()
        state = fit(model, tt_train, tt_valid, tcfg)  # as the stage: the starting weights are no candidate
        seconds[label] = round(time.perf_counter() - t1, 1)
        rows[label] = model_row(model, tt_test, tt_ctx) | (new_users_row(model) if input_ == "all_scene" else {}) | {
            "valid_R@10": state.best_r10,
            # the same users among the task's items: one candidate set for every row, so validation compares them all
            "valid_task_items_R@10": evaluate(model, *tt_valid, candidates=in_task)[0]["R@10"],
            "epochs": len(state.history), "best_epoch": state.best_epoch}
        print(f"{name} {label}: R@10 {rows[label]['all']['R@10']:.4f} ({seconds[label]} s)", flush=True)
    return {"rows": rows, "seconds": seconds, "items": len(index), "task_sequences": len(task_seqs),
            "task_examples": int(len(train[1])), "test_users": int(len(test[2])), "valid_users": int(len(valid[2])),
            "total_seconds": round(time.perf_counter() - t0, 1)}


DATASETS = {"synthetic": synthetic, "synthetic-newcomers": lambda s: synthetic(s, newcomer_share=0.3),
            "food-kitchen": lambda s: food_kitchen()}

# key (--variants) -> (label, start, negatives, loss, candidates, input, history offset): train_targeted's
# settings, and whether the task model keeps the base's learned offset of items already read.
# The params.yaml default first; `ut-tt`, `tt` and the always-run UT only row are Table VII's
# comparison. TT only trains on the task's data alone (its own sequences), as in the paper.
VARIANTS = {
    "ut-tt": ("UT then TT (all-scene input, BPR, catalog negatives: default)", "UT then TT", "catalog", "bpr", "catalog", "all_scene", True),
    "ut-tt-no-offset": ("UT then TT (all-scene input, without the history offset)", "UT then TT", "catalog", "bpr", "catalog", "all_scene", False),
    "ut-tt-among-task": ("UT then TT (all-scene input, among the task's items)", "UT then TT", "catalog", "bpr", "task", "all_scene", True),
    "ut-tt-s": ("UT then TT (task sequences S'_u, BPR, catalog negatives)", "UT then TT", "catalog", "bpr", "catalog", "task", True),
    "ut-tt-s-among-task": ("UT then TT (task sequences, among the task's items)", "UT then TT", "catalog", "bpr", "task", "task", True),
    "ut-tt-softmax": ("UT then TT (task sequences, softmax over the catalog)", "UT then TT", "catalog", "softmax", "catalog", "task", True),
    "ut-tt-user": ("UT then TT (task sequences, BPR, user-side negatives: eq. 6)", "UT then TT", "user", "bpr", "catalog", "task", True),
    "ut-tt-item": ("UT then TT (task sequences, BPR, item-side in-batch negatives)", "UT then TT", "item", "bpr", "catalog", "task", True),
    "tt": ("TT only (BPR, catalog negatives)", "TT only", "catalog", "bpr", "catalog", "task", True),
    "tt-among-task": ("TT only (among the task's items)", "TT only", "catalog", "bpr", "task", "task", True),
    "tt-user": ("TT only (BPR, user-side negatives: eq. 6)", "TT only", "user", "bpr", "catalog", "task", True),
}
LABELS = [v[0] for v in VARIANTS.values()]
ORDER = [*LABELS[:8], "UT only", *LABELS[8:], "counting (last 3 items)", "popularity"]


def table(rows: dict, seconds: dict) -> list[str]:
    """One run's Table VII rows as markdown (ORDER; bucket cells '-' for runs before the buckets)."""
    lines = ["| variant | test R@10 | test N@10 | test R@50 | cold R@10 | new R@10 (n) | rare R@10 (n) | tail R@10 (n) | head R@10 (n) | R@10 among the task's items | valid R@10 | train s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label in (x for x in ORDER if x in rows):  # a run with --variants has fewer rows
        row = rows[label]
        t, c = row["all"], row["cold"]
        secs = row.get("seconds", seconds.get(label, seconds.get("universal") if label == "UT only" else None))
        task = f"{row['task_items']['R@10']:.4f}" if "task_items" in row else "-"  # runs before the column: none
        valid = f"{row['valid_R@10']:.3f}" if "valid_R@10" in row else "-"  # targeted rows (selection)
        if "valid_task_items_R@10" in row:  # and the same validation users among the task's items
            valid += f" ({row['valid_task_items_R@10']:.3f})"
        buckets = " | ".join(bucket_cell(row.get(b)) for b, _ in BUCKETS)  # by the target's training count
        lines.append(f"| {label} | {t['R@10']:.4f} | {t['N@10']:.4f} | {t['R@50']:.4f} | {c['R@10']:.4f} | {buckets} | {task} | "
                     f"{valid} | {'-' if secs is None else f'{secs:.0f}'} |")
    return lines


def markdown(results: dict) -> str:
    """The document, all from the JSON: per dataset its current run (the line, the run's `intro`,
    its table, its users new to the task), each earlier run kept (`earlier`: intro and table), and
    the dataset's `notes` (prose and tables imported from the hand-kept document before it was
    generated, docs/targeted_results.md at 646cf7c)."""
    lines = ["# Targeted training results (PRECISE Table VII)", "",
             "Generated by `python -m benchmarks.targeted_results --render` from `benchmarks/results/targeted_results.json` "
             "(full ranking over all items; every "
             "training with params.yaml's settings unless a run's line says otherwise, early stopping on the validation users). Cold = targets "
             "among the 80% least frequent items of the task's training data; new / rare / tail / head: targets seen 0, 1-4, "
             "5-19, 20+ times in the task's training data (n: how many; '-' for runs before the buckets). The goals read the full ranking; "
             "\"among the task's items\" ranks only the items of the task's scene, as the task's export serves them "
             "(`precise export` writes a task's item vectors for its scenes only). Valid R@10: what selected the "
             "epoch, on the validation users (among the task's items for the variants that rank only those); in "
             "brackets, where recorded, the selected model's valid R@10 among the task's items, comparable across rows.", ""]
    for name, r in results.items():
        built = f"; built in {r['total_seconds']:.0f} s" if r.get("total_seconds") else ""
        intro = f" {r['intro']}" if r.get("intro") else ""
        lines += [f"## {name}", "", f"{r['items']:,} items, {r['task_sequences']:,} task sequences "
                  f"({r['task_examples']:,} training examples, {r.get('samples_per_user', '?')} per user), {r['valid_users']:,} valid and {r['test_users']:,} test "
                  f"users{built}.{intro}", ""] + table(r["rows"], r.get("seconds", {}))
        new = {label: row for label, row in r["rows"].items() if "new_to_task_task_items" in row}
        if new:
            n = next(iter(new.values()))["new_to_task_task_items"]["n"]
            lines += ["", f"Users new to the task ({n:,}: a first article click on the test day, no article click before, "
                      "other clicks yes), R@10. Counting learns "
                      "transitions from every scene's sequences here; popularity is what recall gives users without a vector of the task's version.", "",
                      "| variant | R@10 among the task's items | full ranking |", "| --- | --- | --- |"]
            for label, row in sorted(new.items(), key=lambda x: ORDER.index(x[0])):
                full = f"{row['new_to_task']['R@10']:.4f}" if "new_to_task" in row else "-"  # baselines: among the task's items only
                lines.append(f"| {label} | {row['new_to_task_task_items']['R@10']:.4f} | {full} |")
        for before in r.get("earlier", []):
            lines += ["", f"*An earlier run:* {before['intro']}", ""] + table(before["rows"], before.get("seconds", {}))
        if r.get("notes"):
            lines += ["", r["notes"]]
        lines.append("")
    return "\n".join(lines)


def replace_run(results: dict, name: str, new: dict, command: str) -> dict:
    """`results` with dataset `name`'s current run replaced by `new`; the run it replaces moves to
    the front of `earlier` (its intro and rows), and the dataset's notes stay."""
    old = results.get(name)
    new = new | {"intro": f"`{command}` at {commit()}, on this machine ({os.cpu_count()} CPUs)."}
    if old is not None:
        new["earlier"] = [{k: old[k] for k in ("intro", "rows", "seconds") if k in old}] + old.get("earlier", [])
        if old.get("notes"):
            new["notes"] = old["notes"]
    return results | {name: new}


def commit() -> str:
    """The short commit of the working tree (suffixed '+changes' if it has uncommitted ones)."""
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True).stdout
    return git_revision(REPO)[:7] + ("+changes" if dirty.strip() else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["synthetic", "food-kitchen"], choices=list(DATASETS),
                        help="synthetic-newcomers: the synthetic world with 30%% of the users new to the task")
    parser.add_argument("--epochs", type=int, default=None, help="cap every training at N epochs (default: params.yaml)")
    parser.add_argument("--fk-samples-per-user", type=int, default=1,
                        help="targeted examples per food-kitchen user (the synthetic world uses params.yaml's)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="targeted rows to train (UT only and the baselines always run); "
                             "Table VII's comparison is `ut-tt tt`")
    parser.add_argument("--render", action="store_true", help="only re-render docs/targeted_results.md from the JSON")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if not args.render:
        settings = Settings.load(REPO / "params.yaml")
        OUT.mkdir(parents=True, exist_ok=True)
        command = "python -m " + " ".join(["benchmarks.targeted_results", *sys.argv[1:]])
        for name in args.datasets:
            per_user = settings.targeted.samples_per_user if name.startswith("synthetic") else args.fk_samples_per_user
            run = run_dataset(name, settings, args.epochs, REPO / "var" / "text_cache", per_user, args.variants)
            results = replace_run(results, name, run | {"samples_per_user": per_user}, command)
            write_text(RESULTS, json.dumps(results, indent=1, default=str))  # atomic
            write_text(DOC, markdown(results))  # after each dataset: a run stopped later keeps it
    text = markdown(results)
    if args.render:
        write_text(DOC, text)
    print(text)


if __name__ == "__main__":
    main()
