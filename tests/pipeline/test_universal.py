"""Encode -> universal training -> next-day evaluation on a tiny synthetic world, with a tiny
Qwen2-style decoder as the language model; daily continuation grows the tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core import schema
from core.settings import Settings
from tests.conftest import TINY_MODEL, TINY_TRAIN, ingested_world
from training import evaluate, universal
from training.prep import sequences, text
from training.lifecycle import tracking
from training.trainer import load_checkpoint

# with the cold gate (model.cold_gate, off by default): its counts are saved, grown and kept across days
TINY_MODEL = TINY_MODEL | {"max_len": 20, "cold_gate": True}
TINY_TRAIN = TINY_TRAIN | {"epochs": 2}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Settings:
    return ingested_world(
        tmp_path_factory.mktemp("universal"), max_tokens=12,
        train_universal={"model": TINY_MODEL, "train": TINY_TRAIN, "valid_users": 40, "replay_days": 2,
                         "new_item_neighbours": 3, "eval_ks": [10, 30, 50]},
    )


def test_encode_caches_by_text_and_reports_the_hit_rate(world):
    days = schema.list_days(world.paths.events)
    first = text.main(world, days[0])
    assert first["cache_hit_rate"] == 0.0 and first["encoded_now"] == first["distinct_texts"]
    items, ids, init = text.read(world.paths.text)
    assert init.shape == (len(ids), 32) and np.isfinite(init).all()
    assert all(len(t) <= 12 for t in items["token_ids"])
    second = text.main(world, days[1])  # the catalog grew by a day of new items
    assert second["encoded_now"] == second["items"] - first["items"]
    assert 0.8 < second["cache_hit_rate"] < 1.0
    assert text.main(world, days[1])["cache_hit_rate"] == 1.0


def test_bundled_minilm_loads_offline():
    lm = text.LanguageModel(text.model_path(text.BUNDLED, Path(".")), max_tokens=8)
    [(ids, states)] = lm.forward(["Football goal report: the striker scores"])
    assert lm.hidden == 384 and states.shape == (len(ids), 384) and 0 < len(ids) <= 8


def test_train_continue_and_evaluate(world):
    days = schema.list_days(world.paths.events)
    d1, d2 = days[-2], days[-1]
    sequences.main(world, d1)
    text.main(world, d1)
    m1 = universal.main(world, d1)
    assert m1["epochs"] == 2 and 0 <= m1["valid"]["R@10"] <= 1
    assert set(m1["fig4b"]) == {"neighbours_mean", "neighbours_median", "random_mean", "random_median"}
    assert (world.paths.data / "plots" / "fig4b_universal.png").is_file()
    ckpt1 = universal.checkpoint_root(world) / f"date={d1}" / "final"
    meta1, w1 = load_checkpoint(ckpt1)
    assert universal.main(world, d1) == meta1["metrics"], "a finished day is not retrained"
    # The stage read the sequences' timestamps: both session codes were trained, "unknown" never.
    assert meta1["model"]["session_gap_minutes"] == 30
    ctx = w1["ctx_emb.weight"]
    assert ctx[0].abs().sum() == 0 and ctx[1].abs().sum() > 0 and ctx[2].abs().sum() > 0
    assert 0.01 < m1["same_session_share"] < 0.99, "the synthetic world's clicks have sessions"

    sequences.main(world, d2)
    text.main(world, d2)
    ev = evaluate.next_day(world, d2)
    assert ev["model"] == f"date={d1}" and ev["users"] > 0 and ev["new_items_in_catalog"] > 0
    assert set(ev) >= {"all", "cold", "new", "rare", "tail", "head", "fresh"} and 0 <= ev["all"]["R@10"] <= 1
    assert sum(ev[b]["n"] for b in ("new", "rare", "tail", "head")) == ev["users"], "the buckets split the targets"
    assert ev["fresh"]["n"] >= ev["new"]["n"] > 0, "d2's clicks on items published that day are fresh"
    base = ev["baselines"]  # the same users and targets, for the first-run summary
    assert set(base) == {"counting", "popularity"} and base["counting"]["R@10"] > 0 and base["popularity"]["R@50"] > 0
    assert base["popularity"]["fresh"]["n"] == ev["fresh"]["n"]
    # ... and as the hourly path serves: never-seen items moved by d2's earlier clicks (training.audience)
    early = ev["early_clicks"]
    assert early["k"] == world.universal.early_clicks_k > 0 and early["clicks"] > ev["users"]
    assert early["fresh"]["n"] == ev["fresh"]["n"] and early["new"]["n"] == ev["new"]["n"]

    m2 = universal.main(world, d2)
    meta2, w2 = load_checkpoint(universal.checkpoint_root(world) / f"date={d2}" / "final")
    n_old = len(meta1["item_ids"])
    assert meta2["item_ids"][:n_old] == meta1["item_ids"], "old rows keep their place"
    assert len(meta2["item_ids"]) == n_old + m2["new_items"] and m2["new_items"] > 0
    assert w2["id_emb.weight"].shape[0] == len(meta2["item_ids"]) + 1
    # the cold gate's counts grew with the table and never shrink (model.cold_gate)
    assert w2["id_counts"].shape[0] == len(meta2["item_ids"]) + 1 and w1["id_counts"][1:].sum() > 0
    assert bool((w2["id_counts"][: n_old + 1] >= w1["id_counts"]).all())

    # MLflow has both training runs with their data version and the evaluation.
    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri(world.paths.var))
    runs = mlflow.search_runs(experiment_names=["precise-universal"])
    assert {"universal-" + d1, "universal-" + d2, "evaluate-" + d2} <= set(runs["tags.mlflow.runName"])
    evaluated = runs[runs["tags.mlflow.runName"] == "evaluate-" + d2].iloc[0]
    assert evaluated["metrics.early_clicks_fresh_R_at_10"] == ev["early_clicks"]["fresh"]["R@10"]
    assert runs["tags.inputs_fingerprint"].dropna().str.len().eq(16).all()
    assert json.loads((world.paths.metrics / "train_universal.json").read_text())["date"] == d2
    assert (world.paths.data / "plots" / "train_universal.csv").is_file()


def test_new_items_start_from_their_texts_neighbours(world):
    ckpt = universal.latest_checkpoint(world, before="9999-01-01")
    meta, weights = load_checkpoint(ckpt)
    items, ids, init = text.read(world.paths.text)
    # A new item whose text is an old item's text: its ID row must come from items that read like it.
    twin = items.iloc[[0]].assign(item_id="brand-new-twin")
    grown, index, _, n_new = universal.grow(meta, weights, pd.concat([items, twin], ignore_index=True), ids, init,
                                            meta["max_tokens"], neighbours=3)
    assert n_new == 1
    new_row = index.pos["brand-new-twin"]
    with torch.no_grad():
        sem = torch.nn.functional.normalize(grown.semantic(torch.arange(1, new_row + 1))[0], dim=-1)
        nearest = (sem[:-1] @ sem[-1]).topk(3).indices + 1
        torch.testing.assert_close(grown.id_emb.weight[new_row], grown.id_emb.weight[nearest].mean(0))
        e = torch.nn.functional.normalize(grown.all_item_embeddings()[1:], dim=-1)
        sims = e[:-1] @ e[new_row - 1]  # to every old item
        twin_sim = float(sims[index.pos[items["item_id"].iloc[0]] - 1])
        top_percentile = float(torch.quantile(sims, 0.99))
    assert twin_sim >= top_percentile, "the new item sits next to its text twin, among the top 1%"
