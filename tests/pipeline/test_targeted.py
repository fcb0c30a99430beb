"""Targeted training per task on a tiny synthetic world: warm start from the universal model,
daily incremental runs, periodic warm-up on the cadence, next-day evaluation and coverage."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from core import schema
from core.settings import RegistryConfig, Settings
from precise import stages
from tests.conftest import TINY_MODEL, TINY_TRAIN, ingested_world, run_cli
from training import evaluate, targeted, universal
from training.lifecycle import gate, registry
from training.models.precise import LEGACY_DEFAULTS, ModelConfig, Precise
from training.trainer import load_checkpoint



@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Settings:
    return ingested_world(
        tmp_path_factory.mktemp("targeted"),
        train_universal={"model": TINY_MODEL, "train": TINY_TRAIN, "valid_users": 30, "replay_days": 2,
                         "new_item_neighbours": 3},
        train_targeted={"train": TINY_TRAIN | {"epochs": 2}, "warmup_every_days": 2, "replay_days": 3,
                        "valid_users": 20, "head_hidden": 32},
        registry={"tolerance": 1.0, "warmup_tolerance": 1.0},  # the gate always promotes here
    )


def prepare(s: Settings, day: str) -> None:
    stages.run(s, day, ["sequences", "encode", "train_universal"])


def test_targeted_model_is_bidirectional_with_an_mlp_over_all_positions():
    torch.manual_seed(0)
    base = Precise(ModelConfig(n_items=30, n_tokens=10, llm_dim=8, id_dim=8, sem_dim=8, layers=1, heads=2,
                               max_len=6, dropout=0.0, **LEGACY_DEFAULTS), torch.randint(0, 11, (31, 4)))
    model = targeted.Targeted(base, hidden=16, negatives="user").eval()
    seq = torch.tensor([[0, 0, 3, 4, 5, 6], [0, 0, 3, 9, 5, 6]])
    torch.testing.assert_close(model.users(seq), base.encode(seq, causal=False)[:, -1])  # a fresh head: the latest slot
    torch.nn.init.normal_(model.head[-1].weight)  # as after training: the MLP over all positions counts
    u = model.users(seq)
    assert u.shape == (2, 16)
    assert not torch.allclose(u[0], u[1]), "an earlier item changes the user embedding"
    # Padding is invisible: the same items with more left padding slots give the same output.
    only = model.users(torch.tensor([[0, 0, 0, 0, 5, 6]]))
    h = base.encode(torch.tensor([[0, 0, 0, 0, 5, 6]]), causal=False)
    assert torch.all(h[0, :4] == 0) and torch.isfinite(only).all()
    # Eq. 6 by hand: user-side BPR over the other users of the batch, same targets masked.
    target = torch.tensor([7, 8, 7])
    seqs = torch.tensor([[0, 0, 3, 4, 5, 6], [0, 0, 1, 2, 5, 6], [0, 0, 0, 9, 9, 2]])
    loss, _ = model.loss(seqs, target, torch.tensor([7, 8]))
    u, e = model.users(seqs), base.item_embeddings(target)
    terms = [-torch.nn.functional.logsigmoid(u[j] @ e[j] - u[i] @ e[j])
             for j in range(3) for i in range(3) if target[i] != target[j]]
    torch.testing.assert_close(loss, torch.stack(terms).mean())
    item_side = targeted.Targeted(base, hidden=16, negatives="item").eval()
    item_side.head.load_state_dict(model.head.state_dict())
    loss, _ = item_side.loss(seqs, target, torch.tensor([7, 8]))
    terms = [-torch.nn.functional.logsigmoid(u[b] @ e[b] - u[b] @ base.item_embeddings(torch.tensor(n)))
             for b in range(3) for n in (7, 8) if n != target[b]]
    torch.testing.assert_close(loss, torch.stack(terms).mean())
    # The default: BPR against every item of the catalog (padding and the target itself left out),
    # and the softmax over the catalog.
    catalog = targeted.Targeted(base, hidden=16).eval()
    assert (catalog.negatives, catalog.loss_kind) == ("catalog", "bpr")
    catalog.head.load_state_dict(model.head.state_dict())
    loss, _ = catalog.loss(seqs, target, None)
    scale = 1.0 / base.cfg.temperature
    every = base.item_embeddings(torch.arange(1, 31))  # (30, D), items 1..30
    terms = [-torch.nn.functional.logsigmoid(scale * (u[b] @ e[b] - u[b] @ every[n - 1]))
             for b in range(3) for n in range(1, 31) if n != target[b]]
    torch.testing.assert_close(loss, torch.stack(terms).mean())
    softmax = targeted.Targeted(base, hidden=16, loss="softmax").eval()
    softmax.head.load_state_dict(model.head.state_dict())
    loss, _ = softmax.loss(seqs, target, None)
    logits = scale * u @ every.T  # (3, 30)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, target - 1))
    # train_targeted.candidates: task: both catalog losses over the task's items only (here 5..12).
    among = torch.zeros(31, dtype=torch.bool)
    among[5:13] = True
    for kind in ("bpr", "softmax"):
        task = targeted.Targeted(base, hidden=16, loss=kind, candidates=among).eval()
        task.head.load_state_dict(model.head.state_dict())
        loss, _ = task.loss(seqs, target, None)
        if kind == "bpr":
            terms = [-torch.nn.functional.logsigmoid(scale * (u[b] @ e[b] - u[b] @ every[n - 1]))
                     for b in range(3) for n in range(5, 13) if n != target[b]]
            torch.testing.assert_close(loss, torch.stack(terms).mean())
        else:
            torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits[:, 4:12], target - 5))
    with pytest.raises(ValueError, match="needs negatives: catalog"):
        targeted.Targeted(base, hidden=16, negatives="user", loss="softmax")


def test_targeted_losses_and_ranks_add_the_learned_offset_of_items_already_read():
    """model.history_offset in a task model: the catalog losses (BPR and softmax, over the catalog
    or the task's items) score every item of the input plus the base's learned offset, the target
    too when it is one of them; the offset is trained, and evaluation ranks with it. Losses that
    never score the catalog (user, item) have none."""
    torch.manual_seed(0)
    base = Precise(ModelConfig(n_items=30, n_tokens=10, llm_dim=8, id_dim=8, sem_dim=8, layers=1, heads=2,
                               max_len=6, dropout=0.0, **(LEGACY_DEFAULTS | {"history_offset": True})),
                   torch.randint(0, 11, (31, 4)))
    with torch.no_grad():
        base.history_bias.fill_(0.13)  # offset +1.3 (HISTORY_OFFSET_SCALE 10)
    seqs = torch.tensor([[0, 0, 3, 4, 7, 6], [0, 0, 1, 2, 5, 6], [0, 9, 9, 2, 12, 30]])
    target = torch.tensor([7, 8, 9])  # rows 0 and 2 read their target before
    among = torch.zeros(31, dtype=torch.bool)
    among[5:13] = True
    for kind in ("bpr", "softmax"):
        for candidates in (None, among):
            model = targeted.Targeted(base, hidden=16, loss=kind, candidates=candidates).eval()
            torch.nn.init.normal_(model.head[-1].weight)
            offset = model.history_logit()
            assert offset is not None and abs(offset.item() - 1.3) < 1e-6
            u = model.users(seqs) / base.cfg.temperature
            cols = list(range(1, 31)) if candidates is None else list(range(5, 13))
            terms = []
            for b in range(3):
                read = set(seqs[b].tolist()) - {0}
                s = {j: u[b] @ base.item_embeddings(torch.tensor(j)) + (offset if j in read else 0.0) for j in cols}
                t = int(target[b])
                if kind == "bpr":
                    terms += [-torch.nn.functional.logsigmoid(s[t] - s[j]) for j in cols if j != t]
                else:
                    terms.append(torch.logsumexp(torch.stack(list(s.values())), 0) - s[t])
            loss, _ = model.loss(seqs, target, None)
            torch.testing.assert_close(loss, torch.stack(terms).mean(), atol=1e-5, rtol=1e-5)
            base.zero_grad()
            loss.backward()
            assert float(base.history_bias.grad) != 0.0, "the offset is trained"
    # Evaluation ranks every input item with the offset (the trainer's one scoring).
    from training.trainer import model_ranks
    model = targeted.Targeted(base, hidden=16).eval()
    ranks, _ = model_ranks(model, seqs, target)
    with torch.no_grad():
        scores = model.users(seqs) / base.cfg.temperature @ base.all_item_embeddings().T
        for b in range(3):
            scores[b, [j for j in set(seqs[b].tolist()) if j]] += 1.3
        scores[:, 0] = float("-inf")
    assert ranks.tolist() == [(scores[b] >= scores[b, target[b]]).sum().item() - 1 for b in range(3)]
    assert targeted.Targeted(base, hidden=16, negatives="user").history_logit() is None

def test_samples_use_only_the_past():
    import pandas as pd

    ts = pd.to_datetime(["2026-01-01 10:00", "2026-01-02 10:00", "2026-01-03 10:00"], utc=True)
    seqs = pd.DataFrame({"user_id": ["u"], "item_ids": [["a", "b", "c"]], "ts": [list(ts)]})
    ex = targeted.samples(seqs, "2026-01-02", "2026-01-03", per_user=5)
    assert ex["history"].tolist() == [["a"], ["a", "b"]] and ex["target"].tolist() == ["b", "c"]
    assert targeted.samples(seqs, "2026-01-03", "2026-01-03", per_user=5)["target"].tolist() == ["c"]
    context = pd.DataFrame({"user_id": ["u"], "item_ids": [["x", "a", "y", "b", "z"]],
                            "ts": [list(pd.to_datetime(["2026-01-01 09:00", "2026-01-01 10:00", "2026-01-02 09:00",
                                                        "2026-01-02 10:00", "2026-01-03 09:00"], utc=True))]})
    ex = targeted.samples(seqs, "2026-01-02", "2026-01-02", per_user=5, all_scene=context)
    assert ex["history"].tolist() == [["x", "a", "y"]], "all-scene input: every click before the target"


def test_targeted_examples_carry_the_session_context_of_their_history_and_target():
    import pandas as pd

    from training.prep.tensors import NEW_SESSION, SAME_SESSION, Index

    ts = pd.to_datetime(["2026-01-01 10:00", "2026-01-01 10:10", "2026-01-01 12:00", "2026-01-01 12:05"], utc=True)
    seqs = pd.DataFrame({"user_id": ["u"], "item_ids": [["a", "gone", "b", "c"]], "ts": [list(ts)]})
    ex = targeted.samples(seqs, "2026-01-01", "2026-01-01", per_user=2)  # targets b (12:00) and c (12:05)
    assert ex["target"].tolist() == ["b", "c"] and ex["target_ts"].tolist() == list(ts[2:])
    index = Index(["a", "b", "c"])  # "gone" left the catalog: dropped with its code
    seq, target, ctx = targeted.to_tensors(ex, index, max_len=4, gap_minutes=30)
    assert seq.tolist() == [[0, 0, 0, 1], [0, 0, 1, 2]] and target.tolist() == [2, 3]
    # a -> gone within 30 min, gone -> b later; the last slot relates the history to the target.
    assert ctx.tolist() == [[0, 0, 0, SAME_SESSION], [0, 0, SAME_SESSION, SAME_SESSION]]
    ex.loc[1, "target_ts"] = ts[3] + pd.Timedelta(hours=5)
    assert targeted.to_tensors(ex, index, 4, 30)[2][1, -1] == NEW_SESSION, "the last code is the target's"
    assert len(targeted.to_tensors(ex, index, 4)) == 2, "no gap: no context"


def test_warm_start_incremental_and_periodic_warmup(world):
    d1, d2, d3 = schema.list_days(world.paths.events)[-3:]
    prepare(world, d1)
    m1 = targeted.main(world, "click_article", d1)
    assert m1["mode"] == "warmup" and m1["universal"] == f"date={d1}" and m1["last_warmup"] == d1
    assert m1["coverage"]["share"] == pytest.approx(1.0)
    t1 = targeted.checkpoint_root(world, "click_article") / f"date={d1}" / "final"
    meta1, _ = load_checkpoint(t1)
    u_meta, _ = load_checkpoint(universal.checkpoint_root(world) / f"date={d1}" / "final")
    assert meta1["item_ids"] == u_meta["item_ids"]
    assert targeted.main(world, "click_article", d1) == meta1["metrics"], "a finished day is not retrained"

    prepare(world, d2)
    ev = evaluate.targeted_next_day(world, "click_article", d2)
    assert ev["model"] == f"date={d1}" and ev["users"] > 0
    assert set(ev["baselines"]) == {"counting", "popularity"} and ev["baselines"]["popularity"]["R@50"] > 0
    # Every user with a click_article on d2 is scored once: by the task model (task history) or
    # by the universal fallback (none), counted from the events themselves.
    day_events = schema.read_events(world.paths.data, [d2])
    clickers = set(day_events.loc[(day_events["scene"] == "article") & (day_events["action"] == "click"), "user_id"])
    assert ev["users"] + ev["fallback"]["users"] == len(clickers)
    assert ev["fallback"]["users"] > 0 and ev["fallback"]["n"] == ev["fallback"]["with_all_scene_history"] > 0, \
        "the users without task history but with an all-scene history are scored"
    ranks_again = evaluate.score_targeted(world, world.task("click_article"), t1, d2)
    assert ranks_again["all"] == ev["all"], "the next-day metric is deterministic"
    assert ev["fallback"]["scored_by"] == "targeted", "train_targeted.newcomers: targeted (the default)"
    old = dataclasses.replace(world, targeted=dataclasses.replace(world.targeted, newcomers="universal"))
    by_universal = evaluate.score_targeted(old, world.task("click_article"), t1, d2)
    assert by_universal["all"] == ev["all"] and by_universal["fallback"]["scored_by"] == "universal"
    assert by_universal["fallback"]["n"] == ev["fallback"]["n"], "the same users, scored by the universal model"
    assert len(ev["coverage"]["with_warmup"]) == len(ev["coverage"]["days"])
    assert (world.paths.data / "plots" / "fig4a_click_article.png").is_file()

    m2 = targeted.main(world, "click_article", d2)
    assert m2["mode"] == "incremental" and m2["last_warmup"] == d1 and m2["universal"] == f"date={d1}"
    meta2, w2 = load_checkpoint(targeted.checkpoint_root(world, "click_article") / f"date={d2}" / "final")
    assert meta2["item_ids"][: len(meta1["item_ids"])] == meta1["item_ids"] and m2["new_items"] > 0
    # New items are NOT copied from the universal model of d2: their rows are text-driven.
    u2_meta, uw2 = load_checkpoint(universal.checkpoint_root(world) / f"date={d2}" / "final")
    new = [i for i in meta2["item_ids"] if i not in set(meta1["item_ids"])]
    rows_t = [meta2["item_ids"].index(i) + 1 for i in new]
    rows_u = [u2_meta["item_ids"].index(i) + 1 for i in new]
    assert not torch.allclose(w2["base.id_emb.weight"][rows_t], uw2["id_emb.weight"][rows_u])
    assert m2["coverage"]["universal_day"] == d1 and m2["coverage"]["share"] < 1.0, "d2's new items are uncovered"

    prepare(world, d3)
    # The gate of d3 judges the universal model trained through d2 on d3 (tolerance 1: promoted).
    [decision] = gate.gate(world, None, d3)
    assert decision["decision"] == "champion" and decision["version"] == "2"
    m3 = targeted.main(world, "click_article", d3)  # warmup_every_days = 2 -> warm-up on d3
    assert m3["mode"] == "warmup" and m3["universal"] == f"date={d2}" and m3["last_warmup"] == d3
    state = json.loads(targeted.state_path(world, "click_article").read_text())
    assert [state["days"][d]["mode"] for d in (d1, d2, d3)] == ["warmup", "incremental", "warmup"]
    assert state["last_warmup"] == d3 and state["universal"] == f"date={d2}"

    # Targeted gate on d3 with a tolerance nothing passes: the d2 version becomes challenger.
    strict = dataclasses.replace(world, registry=RegistryConfig(metric="R@50", tolerance=-10.0, warmup_tolerance=-10.0))
    [decision] = gate.gate(strict, "click_article", d3)
    assert decision["version"] == "2" and decision["value"] is not None and decision["champion_value"] > 0
    assert decision["metric"] == "R@50", "the gate names the metric it judged on"
    assert decision["decision"] == "challenger", decision
    assert str(registry.champion(world, "click_article").version) == "1", "the champion keeps serving"
    rows = {(r["model"], r["version"]): r for r in registry.listing(world)}
    assert rows[("precise-click_article", "2")]["aliases"] == ["challenger"]
    assert rows[("precise-click_article", "3")]["gate"] == "pending" and rows[("precise-universal", "1")]["gate"] == "first"
    # Roll forward by hand from the command line; the old champion becomes challenger.
    run_cli("--params", str(world.params_path), "registry", "promote", "--task", "click_article", "--version", "3",
            cwd=world.paths.root)
    assert str(registry.champion(world, "click_article").version) == "3"
    assert "v1" in run_cli("--params", str(world.params_path), "registry", "list", cwd=world.paths.root).stdout
    bad = run_cli("--params", str(world.params_path), "registry", "promote", "--task", "click_article", "--version", "99",
                  cwd=world.paths.root, check=False)
    assert bad.returncode == 2 and "has no version 99" in bad.stderr

    # --force-warmup from the command line re-initialises an incremental day.
    proc = run_cli("--params", str(world.params_path), "train", "targeted", "--task", "click_article",
                   "--date", d2, "--force-warmup", cwd=world.paths.root)
    assert '"mode": "warmup"' in proc.stdout

    import mlflow

    from training.lifecycle import tracking

    mlflow.set_tracking_uri(tracking.tracking_uri(world.paths.var))
    runs = mlflow.search_runs(experiment_names=["precise-click_article"])
    trained = runs[runs["tags.stage"] == "train_targeted"]
    assert set(trained["tags.parent_universal"]) == {f"date={d1}", f"date={d2}"}
    universal_runs = set(mlflow.search_runs(experiment_names=["precise-universal"])["run_id"])
    assert set(trained["tags.parent_universal_run_id"]) <= universal_runs
    evaluated = runs[(runs["tags.stage"] == "evaluate_targeted") & (runs["tags.mlflow.runName"] == f"evaluate-{d2}")]
    assert len(evaluated) == 1, runs[["tags.stage", "tags.mlflow.runName"]]
    evaluated = evaluated.iloc[0]
    assert evaluated["metrics.fallback_users"] == ev["fallback"]["users"], "the users without task history, apart"
    assert evaluated["metrics.fallback_R_at_10"] == pytest.approx(ev["fallback"]["R@10"])


def test_coverage_curve_from_item_sets():
    universal_items = [{"a", "b"}, {"c"}, {"d"}, {"e"}]
    task_items = [{"a"}, {"a", "c"}, {"c", "d"}, {"d", "e"}]
    assert targeted.coverage_curve(task_items, universal_items, 2) == [1.0, 0.5, 1.0, 0.5]
    assert targeted.coverage_curve(task_items, universal_items, None) == [1.0, 0.5, 0.0, 0.0]
    assert np.isnan(targeted.coverage_curve([set()], [{"a"}], 2)[0])
