"""FAISS indexes against exact brute force on a clustered 20k catalog (inner product)."""

from __future__ import annotations

import numpy as np
import pytest

from precise.settings import RecallConfig
from recall.index import make_index


def clustered(n: int, d: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, d)).astype(np.float32)
    x = centers[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, d)).astype(np.float32)
    return x * rng.uniform(0.5, 1.5, size=(n, 1)).astype(np.float32)  # norms vary: inner product, not cosine


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_ann_recall_at_100_against_exact(kind):
    items = clustered(20_000, 64, 200, seed=0)
    queries = clustered(200, 64, 200, seed=1)
    exact = items @ queries.T  # (N, Q)
    truth = np.argsort(-exact, axis=0)[:100].T  # (Q, 100)
    index, built = make_index(items, RecallConfig(index=kind, ivf_lists=256, ivf_probe=32))
    assert built == kind
    _, found = index.search(queries, 100)
    recall = np.mean([len(set(f) & set(t)) / 100 for f, t in zip(found, truth)])
    assert recall >= 0.95, f"{kind} recall@100 = {recall:.3f}"


def test_auto_is_exact_for_small_catalogs():
    items = clustered(1000, 16, 10, seed=2)
    index, kind = make_index(items, RecallConfig(index="auto", exact_max_items=5000))
    assert kind == "flat"
    q = items[:3]
    _, found = index.search(q, 5)
    np.testing.assert_array_equal(found, np.argsort(-(items @ q.T), axis=0)[:5].T)
