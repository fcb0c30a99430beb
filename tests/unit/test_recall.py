"""FAISS indexes against exact brute force on a clustered 20k catalog (inner product)."""

from __future__ import annotations

import numpy as np
import pytest

from core.settings import RecallConfig
from recall.index import INDEX_KINDS, ExactTopK, make_index


def clustered(n: int, d: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, d)).astype(np.float32)
    x = centers[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, d)).astype(np.float32)
    return x * rng.uniform(0.5, 1.5, size=(n, 1)).astype(np.float32)  # norms vary: inner product, not cosine


def test_exact_top_k_is_brute_force_in_faiss_conventions():
    """ExactTopK (the reference of the recall evaluation) returns the k best rows in order, with
    FAISS's padding (-1, -inf) past the catalog, and agrees with the flat FAISS index."""
    items = clustered(500, 16, 10, seed=4)
    queries = clustered(7, 16, 10, seed=5)
    exact = ExactTopK(items)
    scores, rows = exact.search(queries, 20)
    np.testing.assert_array_equal(rows, np.argsort(-(queries @ items.T), axis=1, kind="stable")[:, :20])
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ items.T, rows, 1), rtol=1e-6)
    flat, _ = make_index(items, RecallConfig(index="flat"))
    np.testing.assert_array_equal(flat.search(queries, 20)[1], rows)
    scores, rows = ExactTopK(items[:3]).search(queries[:2], 5)
    assert (rows[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all() and sorted(rows[0, :3]) == [0, 1, 2]
    np.testing.assert_array_equal(exact.reconstruct(42), items[42])


@pytest.mark.parametrize("kind", ["hnsw", "ivf", "ivfpq"])
def test_ann_recall_at_100_against_exact(kind):
    items = clustered(20_000, 64, 200, seed=0)
    queries = clustered(200, 64, 200, seed=1)
    truth = ExactTopK(items).search(queries, 100)[1]  # (Q, 100)
    index, built = make_index(items, RecallConfig(index=kind, ivf_lists=256, ivf_probe=32))
    assert built == kind
    _, found = index.search(queries, 100)
    recall = np.mean([len(set(f) & set(t)) / 100 for f, t in zip(found, truth)])
    assert recall >= 0.95, f"{kind} recall@100 = {recall:.3f}"


def test_ivfpq_reranks_exactly_and_keeps_its_search_settings(tmp_path):
    """The re-ranked scores are the exact inner products; search settings survive a save/load and
    follow params when they change; added items are searchable (the new-items path)."""
    import faiss

    from recall.index import tune

    items = clustered(5_000, 32, 50, seed=3)
    cfg = RecallConfig(index="ivfpq", ivf_lists=64, ivf_probe=8, rerank_factor=5)
    index, _ = make_index(items[:4_000], cfg)
    q = items[:5]
    scores, rows = index.search(q, 10)
    np.testing.assert_allclose(scores, np.take_along_axis(q @ items[:4_000].T, rows, axis=1), rtol=1e-4)
    faiss.write_index(index, str(tmp_path / "i.faiss"))
    loaded = faiss.read_index(str(tmp_path / "i.faiss"))
    assert faiss.extract_index_ivf(loaded).nprobe == 8 and loaded.k_factor == 5
    tune(loaded, RecallConfig(ivf_probe=16, rerank_factor=2))
    assert faiss.extract_index_ivf(loaded).nprobe == 16 and loaded.k_factor == 2
    grown = np.vstack([items[:4_000], items[4_000:] * 3.0])  # long new vectors: they top the inner products
    loaded.add(grown[4_000:])
    _, rows = loaded.search(items[4_500:4_501], 1)
    best = int(np.argmax(grown @ items[4_500]))
    assert best >= 4_000 and rows[0, 0] == best
    np.testing.assert_allclose(loaded.reconstruct(4_500), items[4_500] * 3.0, rtol=1e-6)


def test_every_settable_index_kind_has_a_builder():
    from typing import get_args, get_type_hints

    settable = set(get_args(get_type_hints(RecallConfig, include_extras=True)["index"])) - {"auto"}
    assert settable == set(INDEX_KINDS)


def test_auto_is_exact_for_small_catalogs():
    items = clustered(1000, 16, 10, seed=2)
    index, kind = make_index(items, RecallConfig(index="auto", exact_max_items=5000))
    assert kind == "flat"
    q = items[:3]
    _, found = index.search(q, 5)
    np.testing.assert_array_equal(found, np.argsort(-(items @ q.T), axis=0)[:5].T)
    _, kind = make_index(items, RecallConfig(index="auto", exact_max_items=500, ivf_lists=16))
    assert kind == "ivfpq", "above exact_max_items: the index that meets the recall goal at 1M"


def _published(settings, item_ids: list[str], vectors: np.ndarray, recent: dict[str, list[str]]) -> dict:
    """A published state of one task version (v1) over these item vectors and recent items,
    written where `Recall` reads it; the user vectors are the items' (one user per item)."""
    import json

    import pandas as pd

    from serving.state import state_path

    folder = settings.paths.var / "published-test"
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"item_id": item_ids, "embedding": list(vectors)}).to_parquet(folder / "item.parquet")
    pd.DataFrame({"user_id": [f"u-{i}" for i in item_ids], "embedding": list(vectors),
                  "model_version": "precise-t:1"}).to_parquet(folder / "user.parquet")
    pd.DataFrame({"user_id": list(recent), "items": list(recent.values())}).to_parquet(folder / "recent.parquet")
    state = {"versions": {"t": {"1": {"item": str(folder / "item.parquet"), "user": str(folder / "user.parquet"),
                                      "model_version": "precise-t:1"}}},
             "recent": {"t": str(folder / "recent.parquet")}, "serving": {"t": "1"}, "feature_service": "ranking_v1"}
    state_path(settings).parent.mkdir(parents=True, exist_ok=True)
    state_path(settings).write_text(json.dumps(state))
    return state


def test_a_republished_version_gets_the_items_exported_since_and_todays_popularity(settings):
    """The same model version published again with a grown catalog: the index gains the new items
    (U2I can return them) and the popularity behind the fallback and U2I2I is today's."""
    from recall.index import Recall, build_serving

    items = clustered(300, 8, 5, seed=6)
    items /= np.linalg.norm(items, axis=1, keepdims=True)  # cosine: each vector's nearest item is itself
    ids = [f"i{j}" for j in range(300)]
    build_serving(settings, _published(settings, ids[:250], items[:250], {"a": ["i1", "i2"], "b": ["i1"]}))
    r = Recall(settings, "t")
    assert r.meta["items"] == 250 and r.meta["popular"][0] == "i1"
    build_serving(settings, _published(settings, ids, items, {"a": ["i7"], "b": ["i7", "i260"], "c": ["i260", "i7"]}))
    r = Recall(settings, "t")
    assert r.meta["items"] == 300 and r.ids[250:] == ids[250:], "the new items, appended in export order"
    assert r.meta["popular"][:2] == ["i7", "i260"], "today's popularity"
    assert [x["item_id"] for x in r.u2i("u-i280", 1, exclude_consumed=False)] == ["i280"], "a new item is recalled"


def test_u2i2i_ranks_by_the_mean_seed_similarity_plus_the_popularity_prior(settings):
    """U2I2I against a brute-force computation of its documented score, with and without the prior."""
    import dataclasses

    from recall.index import Recall, build_serving

    items = clustered(400, 8, 6, seed=7)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    ids = [f"i{j}" for j in range(400)]
    recent = {"a": ["i3", "i50", "i51"], "b": ["i3"]} | {f"p{j}": [f"i{j % 40}"] for j in range(200)}
    build_serving(settings, _published(settings, ids, items, recent))
    for weight in (0.0, 0.5):
        s = dataclasses.replace(settings, recall=dataclasses.replace(settings.recall, u2i2i_popularity=weight))
        r = Recall(s, "t")
        got = [x["item_id"] for x in r.u2i2i("a", 20)]
        seeds = [3, 50, 51]
        counts = np.zeros(400)
        for items_of_user in recent.values():
            for i in items_of_user:
                counts[int(i[1:])] += 1
        prior = np.log1p(counts) / np.log1p(counts.max())
        score = (items[seeds] @ items.T).mean(0) + weight * (1 + s.recall.u2i2i_shrink / 3) * prior
        score[seeds] = -np.inf
        assert got == [ids[j] for j in np.argsort(-score, kind="stable")[:20]], weight
        assert not set(got) & {"i3", "i50", "i51"}
