"""Recommendation quality that can fail: the default universal and targeted models must learn.

On a small synthetic world (four scenes, text that carries the topic, hidden styles that only
behaviour reveals), the model built and trained with `params.yaml`'s `train_universal` settings,
as `precise train universal` trains it, must beat the counting baseline's test R@10 by a margin,
and the text-only model (no ID table) must beat popularity; the universal model fine-tuned by
`train_targeted` on the article-click task must beat counting and popularity learnt from that
task's sequences. Protocol: train on days 1..N-1,
early stopping on held-out last training items, test on every click of day N given what came
before it, full ranking over every item.

The margins come from repeated runs (see MARGIN below); a regression of the loss, the negatives,
the schedule or the fusion that costs a fifth of the model's lead fails this test.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks.targeted_results import task_samples
from ingest import synth
from core.settings import Settings
from tests.conftest import REPO
from training import audience, targeted
from training.prep import text
from training.models.baselines import Popularity, Transitions
from training.prep.tensors import Index, days_since_epoch, next_item_pairs, pad_left, session_context, target_contexts
from training.evaluate import item_frequency, rank_targets
from training.metrics import from_ranks
from training.trainer import fit
from training.universal import build, model_spec, train_config

# Measured (R@10 over about 3,150 next-day clicks, seed 7): on this world the default model
# reached 1.25x counting and text-only 2.45x popularity; on the same generator with 400 items per
# scene, 1.27x / 1.97x (5 days), 1.39x / 2.07x (7 days) and, with 1,000 users and 7 days,
# 1.31x / 2.43x; with the ID-side loss (model.id_aux_weight 1.0, the default since) this world's
# default model reached 1.29x (0.1867 vs 0.1448; 0.1825 without). That run went through all 43
# epochs `min_steps` forces on this world; the model overfits after ~15 (test R@10 falls from ~0.18
# to ~0.146 while the 200-user valid R@10 stays flat), and CI once kept a late epoch on that noise:
# 0.150, 1.04x. Since `train.loss_patience` (5) stops such a run on its validation loss, seeds 7-12
# gave 1.25x, 1.28x, 1.20x, 1.24x, 1.22x, 1.35x (0.1743-0.1952; the fixture itself 0.1771, 1.22x,
# in ~40 s). With the session context (model.session_gap_minutes 30, the default since; this
# world's every-click test is mostly mid-session, where it helps least): seeds 7-12 1.14x, 1.19x,
# 1.18x, 1.21x, 1.26x, 1.19x on two threads, seeds 9-12 1.17x, 1.15x, 1.19x, 1.20x on one (the
# same seeds without it: 1.19x, 1.23x, 1.23x, 1.32x); with its dropout (session_context_dropout
# 0.1, the default since) seeds 7-10 1.24x, 1.28x, 1.21x, 1.25x on one thread; with the learned
# history offset (model.history_offset, the default since) 1.23x, 1.25x, 1.23x, 1.22x. The bounds
# sit below every run seen:
MARGIN = 1.1  # default model R@10 >= MARGIN x counting R@10
TEXT_MARGIN = 1.5  # text-only R@10 >= TEXT_MARGIN x popularity R@10
# Targeted training on the article-click task (1,043 next-day article clicks), seeds S = 7-11
# (this file's world, train_default(world, seed=S), then targeted training with seed S): 1.19x,
# 1.22x, 1.08x, 1.14x, 1.15x the better baseline (counting 0.2033; popularity 0.1304), best
# epoch 5, 5, 5, 3, 5 of 6; on the universal model stopped by `loss_patience`: 1.13x, 1.24x, 1.14x,
# 1.23x, 1.24x (targeted 0.2291-0.2522), best epoch 3, 5, 5, 4, 4. The starting weights (the universal model, zero head) scored valid
# R@10 0.25-0.34 but test 0.13-0.15: they trained on the validation targets, so they are no
# candidate (in CI they once won on noise and the test failed).
# Eq. 6's user-side negatives, the old default, stayed below counting on the full world.
# On the universal model that reads session context, targeted training feeding it code 0 (before
# it read the codes), seeds 7-10: 1.16x, 1.16x, 0.89x, 1.13x; with the context dropout that keeps
# "unknown" familiar: 1.14x, 1.24x, 1.12x, 1.03x (the bound was the better baseline itself then).
# Targeted training reading its examples' session codes: seeds 7-12 1.17x, 1.24x, 1.06x, 1.11x,
# 1.20x, 1.19x on one thread (a second run of the same seeds, whose dropout masks were drawn in
# another order: 1.18x, 1.21x, 1.06x, 1.10x, 1.16x, 1.03x). With every scene's clicks before the
# target as its input (train_targeted.input: all_scene, the default since), the same runs:
# 1.52x, 1.54x, 1.43x, 1.42x, 1.55x, 1.49x (the baselines still read the task's own sequences);
# on the universal model with the history offset, seeds 7-10: 1.43x, 1.50x, 1.50x, 1.51x; with the
# task model learning the offset too (the default since): 1.44x, 1.54x, 1.48x, 1.59x.
TARGETED_MARGIN = 1.25  # targeted R@10 >= this x the better of counting and popularity

WORLD = {"users": 800, "items_per_scene": 300, "new_items_per_scene_per_day": 10, "days": 5}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    settings = Settings.load(REPO / "params.yaml")
    cfg = dataclasses.replace(settings.synth, **WORLD)
    w = synth.build_world(cfg)
    events = pd.concat([synth.simulate_day(w, d).assign(day=d) for d in range(cfg.days)])
    clicks = events[events["action"] == "click"].sort_values(["user_id", "ts"], kind="stable")
    catalog = w.items[["item_id", "scene", "title", "text", "published_at"]]
    tmp = tmp_path_factory.mktemp("quality")
    text.run(settings.encode, catalog, REPO, tmp / "cache", tmp / "text", tmp / "encode.json")
    items, tok_ids, tok_init = text.read(tmp / "text")
    index = Index(list(items["item_id"]))
    last = cfg.days - 1
    past = clicks[clicks["day"] < last].groupby("user_id")[["item_id", "ts"]].agg(list)
    train = [index.lookup(s) for s in past["item_id"]]
    times = [np.asarray(t) for t in past["ts"]]  # the session context's input
    rng = np.random.default_rng(0)
    held = set(rng.choice([i for i, s in enumerate(train) if len(s) >= 3], 200, replace=False).tolist())
    valid = ([s[:-1] for i, s in enumerate(train) if i in held], np.array([s[-1] for i, s in enumerate(train) if i in held]))
    valid_times = ([t[:-1] for i, t in enumerate(times) if i in held], [t[-1] for i, t in enumerate(times) if i in held])
    fit_on = [s[:-1] if i in held else s for i, s in enumerate(train)]
    fit_times = [t[:-1] if i in held else t for i, t in enumerate(times)]
    # Test: every click of the last day, from the user's history before it (more targets than the
    # results table's first click only, so that the comparison has the power to fail).
    users = list(past.index)
    test, test_times = every_click(clicks[clicks["day"] == last], dict(zip(users, train)), index, dict(zip(users, times)))
    # The article-click task (targeted training): task sequences of days 1..N-1; test = every
    # article click of day N from the user's article clicks before it.
    articles = clicks[clicks["scene"] == "article"]
    task_frame = articles[articles["day"] < last].groupby("user_id")[["item_id", "ts"]].agg(list)
    task, task_times = task_frame["item_id"], task_frame["ts"]
    task_test, task_test_times = every_click(articles[articles["day"] == last], {u: index.lookup(s) for u, s in task.items()},
                                             index, dict(task_times.items()))
    # ... and with every scene's clicks as the input (train_targeted.input: all_scene)
    all_test, all_test_times = every_click(clicks[clicks["day"] == last], dict(zip(users, train)), index,
                                           dict(zip(users, times)), "article", set(task.index))
    return {"settings": settings, "items": items, "tok_ids": tok_ids, "tok_init": tok_init, "index": index,
            "tokens": Index(sorted(str(t) for t in tok_ids)), "train": fit_on, "valid": valid,
            "test": test, "task": task, "task_test": task_test,
            "times": {"train": fit_times, "valid": valid_times, "test": test_times, "task": task_times,
                      "task_test": task_test_times, "all_scene_test": all_test_times},
            "past": past, "all_scene_test": all_test}


def every_click(day: pd.DataFrame, history: dict, index: Index, times: dict | None = None,
                target_scene: str | None = None, scene_users: set | None = None):
    """((histories, targets), (history times, target times)): each of the day's clicks with what
    the user did before it (their `history`, then the day's earlier clicks) and when; clicks with
    nothing before them left out. Without `times`, the second pair is None. With `target_scene`,
    only that scene's clicks are targets, and only those of users who clicked in that scene before
    (`scene_users` before the day, or earlier that day): the task's own test users."""
    histories, targets, history_times, target_times = [], [], [], []
    for user, rows in day.groupby("user_id"):
        seen, seen_t = list(history.get(user, [])), list(times.get(user, [])) if times else []
        in_scene = target_scene is None or user in scene_users
        for item, t, scene in zip(index.lookup(rows["item_id"]), rows["ts"], rows["scene"]):
            if seen and in_scene and target_scene in (None, scene):
                histories.append(np.array(seen))
                targets.append(item)
                history_times.append(pd.to_datetime(seen_t, utc=True))
                target_times.append(t)
            seen.append(item)
            seen_t.append(t)
            in_scene = in_scene or scene == target_scene
    return (histories, np.array(targets)), ((history_times, target_times) if times else None)


def train_default(world, seed: int | None = None, model_over: dict | None = None, train_over: dict | None = None):
    """(test R@10, model) of the default universal model (params.yaml's train_universal), with overrides."""
    s = world["settings"]
    spec = model_spec(s.universal) | (model_over or {})
    cfg = dataclasses.replace(train_config(s.universal), checkpoint_every=0, **(train_over or {}))
    cfg = dataclasses.replace(cfg, seed=cfg.seed if seed is None else seed)
    torch.manual_seed(cfg.seed)
    model = build(spec, world["items"], world["tok_ids"], world["tok_init"], s.encode.max_tokens, world["index"], world["tokens"])
    L, gap, times = model.cfg.max_len, model.cfg.session_gap_minutes, world["times"]
    train_ctx = [session_context(t, gap) for t in times["train"]] if gap else None
    valid = (torch.from_numpy(pad_left(world["valid"][0], L)), torch.from_numpy(world["valid"][1]))
    if gap:
        valid += (torch.from_numpy(pad_left(target_contexts(*times["valid"], gap), L)),)
    ages = model.cfg.age_logit  # the item-age offset reads each target's time, as the stage does
    if ages:
        valid = (*valid[:2], valid[2] if gap else None, torch.from_numpy(days_since_epoch(times["valid"][1])))
    fit(model, next_item_pairs(world["train"], L, train_ctx, [days_since_epoch(t) for t in times["train"]] if ages else None),
        valid, cfg)
    test_ctx = target_contexts(*times["test"], gap) if gap else None
    when = days_since_epoch(times["test"][1]) if ages else None
    return from_ranks(rank_targets(model, *world["test"], test_ctx, when=when))["R@10"], model


@pytest.fixture(scope="module")
def default_model(world):
    return train_default(world)


def test_the_default_model_beats_counting_and_text_alone_beats_popularity(world, default_model):
    n = len(world["index"])
    counting = from_ranks(Transitions(world["train"], n).ranks(*world["test"]))["R@10"]
    popularity = from_ranks(Popularity(world["train"], n).ranks(*world["test"]))["R@10"]
    model, _ = default_model
    # The text-only model trains a fifth as long: it only has to show that text alone carries signal.
    text_only, _ = train_default(world, model_over={"item_embedding": "text"}, train_over={"min_steps": 60})
    print(f"R@10 over {len(world['test'][1])} targets: default model {model:.4f}, text-only {text_only:.4f}, "
          f"counting {counting:.4f}, popularity {popularity:.4f}")
    assert model >= MARGIN * counting, (model, counting)
    assert text_only >= TEXT_MARGIN * popularity, (text_only, popularity)


def train_targeted(world, universal_model, seed: int | None = None) -> float:
    """Test R@10 on the article-click task of `universal_model` fine-tuned with params.yaml's
    train_targeted (as `precise train targeted` warm-starts it), session context included; its
    input the task's sequences or every scene's clicks before the target (`input`)."""
    s, index = world["settings"], world["index"]
    L, gap = universal_model.cfg.max_len, universal_model.cfg.session_gap_minutes
    all_scene = s.targeted.input == "all_scene"
    examples = task_samples(world["task"], s.targeted.samples_per_user, world["times"]["task"],
                            (world["past"]["item_id"], world["past"]["ts"]) if all_scene else None)
    train_ex, valid_ex = targeted.split_valid(examples, 200, seed=0)
    cfg = dataclasses.replace(targeted.train_config(s.targeted), checkpoint_every=0)
    cfg = dataclasses.replace(cfg, seed=cfg.seed if seed is None else seed)
    torch.manual_seed(cfg.seed)
    among = targeted.task_candidates(s.task("click_article"), world["items"], index) if s.targeted.candidates == "task" else None
    model = targeted.Targeted(copy.deepcopy(universal_model), s.targeted.head_hidden, s.targeted.negatives, s.targeted.loss, among)
    fit(model, targeted.to_tensors(train_ex, index, L, gap), targeted.to_tensors(valid_ex, index, L, gap), cfg)
    test, times = (world["all_scene_test"], world["times"]["all_scene_test"]) if all_scene else (world["task_test"], world["times"]["task_test"])
    return from_ranks(rank_targets(model, *test, target_contexts(*times, gap) if gap else None))["R@10"]


def test_targeted_training_beats_counting_and_popularity_on_its_task(world, default_model):
    """The universal model fine-tuned by targeted training on the article-click task must beat
    both baselines learnt from the task's sequences, on every article click of the last day."""
    _, universal_model = default_model
    tuned = train_targeted(world, universal_model)
    index = world["index"]
    task_seqs = [index.lookup(x) for x in world["task"]]
    n = len(index)
    counting = from_ranks(Transitions(task_seqs, n).ranks(*world["task_test"]))["R@10"]
    popularity = from_ranks(Popularity(task_seqs, n).ranks(*world["task_test"]))["R@10"]
    print(f"article clicks, R@10 over {len(world['task_test'][1])} targets: targeted {tuned:.4f}, "
          f"counting {counting:.4f}, popularity {popularity:.4f}")
    assert tuned >= TARGETED_MARGIN * max(counting, popularity), (tuned, counting, popularity)


# New items (issue 30): the last day's clicks on items never seen in training (278 of 3,150 test
# targets, published during the test day or the days before it and never clicked in training), ranked
# over the whole catalog (1,360 items). Popularity puts them below every seen item (R@100 0). The
# default model with the cold gate (model.cold_gate: true, off by default since it loses
# food-kitchen's validation: a never-seen item is [G(its text part); its text part], and training
# leaves such items out of its softmax), seeds 7-10 on one thread beside other jobs: R@100 0.428,
# 0.428, 0.374, 0.320 (R@10 0.061, 0.029, 0.047, 0.004; median rank 188, 161, 254, 207); all targets
# R@10 0.194, 0.191, 0.202, 0.190. With the gate but never-seen items left in the training softmax
# as negatives: R@100 0.245, 0.327, 0.255, 0.241, R@10 0 on all four; without the gate (their
# random ID rows) seed 7: R@100 0.011, median rank 921, all targets 0.178 and 0.181 (seeds 7, 8).
NEW_R100 = 0.25  # the gated model's R@100 on never-seen targets, below every run of it seen (0.32-0.43)
# The same test targets scored as the hourly path serves (training.audience, train_universal.early_clicks_k
# 16: never-seen items moved towards the users who clicked them before the target's hour; the module's
# default model, no gate), seeds 7-10 on one thread beside another job: never-seen R@10 0.119, 0.140,
# 0.137, 0.147 (0 without the clicks on every seed; popularity 0), R@50 0.223, 0.237, 0.183, 0.209; all
# targets 0.1822, 0.1873, 0.1841, 0.1794 against 0.1781, 0.1806, 0.1778, 0.1762 without (+0.003 to +0.007).
EARLY_NEW_R10 = 0.08  # below every seed's 0.119-0.147


@pytest.mark.slow(seconds=85)  # its own model (the gate on), beside the module's default one
def test_the_cold_gate_ranks_never_seen_items_from_their_text(world):
    _, model = train_default(world, model_over={"cold_gate": True})
    n = len(world["index"])
    freq = item_frequency(world["train"], n)
    histories, targets = world["test"]
    new = freq[targets] == 0
    gap = model.cfg.session_gap_minutes
    ranks = rank_targets(model, histories, targets, target_contexts(*world["times"]["test"], gap) if gap else None,
                         when=days_since_epoch(world["times"]["test"][1]) if model.cfg.age_logit else None)
    popularity = Popularity(world["train"], n).ranks(histories, targets)
    got, pop = from_ranks(ranks[new], (100,))["R@100"], from_ranks(popularity[new], (100,))["R@100"]
    print(f"never-seen targets ({int(new.sum())} of {len(targets)}): R@100 {got:.4f}, popularity {pop:.4f}, "
          f"median rank {np.median(ranks[new]):.0f} of {n}")
    assert new.sum() > 100, "the world must have new-item targets for this test to mean anything"
    assert got >= NEW_R100 and got > pop, (got, pop)


def early_click_ranks(world, model) -> tuple[np.ndarray, np.ndarray]:
    """(ranks, never-seen mask) of the last day's clicks with never-seen items moved by the day's
    earlier clicks (training.audience): each test row is one click, so the day's stream is the test
    rows themselves, each clicker's vector the query that led to its click."""
    n = len(world["index"])
    freq = item_frequency(world["train"], n)
    histories, targets = world["test"]
    gap, L = model.cfg.session_gap_minutes, model.cfg.max_len
    times = np.asarray(pd.to_datetime(pd.Series(world["times"]["test"][1]), utc=True).dt.tz_convert(None), dtype="datetime64[us]")
    eligible = torch.from_numpy(freq == 0)
    eligible[0] = False
    ctx = torch.from_numpy(pad_left(target_contexts(*world["times"]["test"], gap), L)) if gap else None
    when = torch.from_numpy(days_since_epoch(world["times"]["test"][1])) if model.cfg.age_logit else None
    ranks = audience.ranks(model, torch.from_numpy(pad_left(histories, L)), torch.from_numpy(targets), ctx, when, times,
                           (targets, np.arange(len(targets)), times), eligible, world["settings"].universal.early_clicks_k)
    return ranks, freq[targets] == 0


def test_the_days_first_clicks_bring_never_seen_items_into_the_top_10(world, default_model):
    """The default model, scored as the hourly path serves it (`train_universal.early_clicks_k`),
    ranks never-seen targets in its top 10 and top 50, where without the clicks it ranks none,
    at no loss overall."""
    _, model = default_model
    plain = rank_targets(model, *world["test"], target_contexts(*world["times"]["test"], model.cfg.session_gap_minutes),
                         when=days_since_epoch(world["times"]["test"][1]) if model.cfg.age_logit else None)
    ranks, new = early_click_ranks(world, model)
    got, before = from_ranks(ranks[new], (10, 50)), from_ranks(plain[new], (10, 50))
    overall, overall_before = from_ranks(ranks, (10,))["R@10"], from_ranks(plain, (10,))["R@10"]
    print(f"never-seen targets ({int(new.sum())}): R@10 {got['R@10']:.4f}, R@50 {got['R@50']:.4f} with the day's clicks, "
          f"{before['R@10']:.4f}, {before['R@50']:.4f} without; all targets {overall:.4f} against {overall_before:.4f}")
    assert got["R@10"] >= EARLY_NEW_R10 and got["R@10"] > before["R@10"], (got, before)
    assert overall >= overall_before, (overall, overall_before)  # no loss overall (every seed gained)
