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
