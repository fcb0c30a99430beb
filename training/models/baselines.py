"""Non-learned baselines, ranked over all items like the models (training/metrics.py): counting
(item-to-item transitions), popularity and text neighbours (what the items' text alone says)."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np


def item_frequency(histories: list[np.ndarray], n_items: int) -> np.ndarray:
    """(N+1,) occurrences of each item index in the training histories."""
    flat = np.concatenate(histories) if histories else np.zeros(0, dtype=np.int64)
    return np.bincount(flat, minlength=n_items + 1)


def tie_breaker(train: list[np.ndarray], n_items: int) -> np.ndarray:
    """(N+1,) popularity scaled below 1e-3 (below one count, and below any text difference that
    matters): added to a baseline's scores, it only breaks ties; -inf for padding."""
    pop = item_frequency(train, n_items)
    out = pop / max(pop.max(), 1) * 1e-3
    out[0] = -np.inf
    return out


class Transitions:
    """Counting baseline: score(j) = how often j followed any of the user's last `window` items in
    training, summed; ties broken by popularity. No learning."""

    def __init__(self, train: list[np.ndarray], n_items: int, window: int = 3):
        self.window = window
        self.follow: dict[int, Counter] = defaultdict(Counter)
        for s in train:
            for a, b in zip(s[:-1].tolist(), s[1:].tolist()):
                if a and b:
                    self.follow[a][b] += 1
        self.pop = tie_breaker(train, n_items)

    def ranks(self, histories: list[np.ndarray], targets: np.ndarray, candidates: np.ndarray | None = None) -> np.ndarray:
        """0-based rank of each target (ties count against it); among `candidates` ((N+1,) bool) only if given."""
        out = np.empty(len(targets), dtype=np.int64)
        base = self.pop if candidates is None else np.where(candidates, self.pop, -np.inf)
        for i, (h, t) in enumerate(zip(histories, targets.tolist())):
            scores = base.copy()
            for a in h[h > 0][-self.window :].tolist():
                for b, c in self.follow.get(a, {}).items():
                    scores[b] += c
            out[i] = int((scores >= scores[t]).sum()) - 1
        return out


class Popularity:
    """Most-popular baseline: every user gets the items by training frequency. No learning."""

    def __init__(self, train: list[np.ndarray], n_items: int):
        pop = item_frequency(train, n_items).astype(float)
        pop[0] = -np.inf
        self.pop = pop

    def ranks(self, histories: list[np.ndarray], targets: np.ndarray, candidates: np.ndarray | None = None) -> np.ndarray:
        """0-based rank of each target (ties count against it); among `candidates` ((N+1,) bool) only if given."""
        pop = self.pop if candidates is None else np.where(candidates, self.pop, -np.inf)
        return np.array([int((pop >= pop[t]).sum()) - 1 for t in targets.tolist()], dtype=np.int64)


class TextNeighbours:
    """Text baseline: score(j) = cosine of j's text vector with the user's last item's, centred
    (the catalog's mean vector removed: language-model states share a large common direction) and
    L2-normalised; the last item itself is not offered (it is its own nearest neighbour); ties, and
    items without text (a zero vector), by popularity. No learning: it says how much the text
    alone knows about the next item, cold items included.

    vectors (N+1, H) one text vector per item, row 0 = padding (e.g. the mean of its tokens'
    language-model states, `Bags.mean`); a zero row = no text."""

    def __init__(self, vectors: np.ndarray, train: list[np.ndarray], n_items: int):
        v = np.asarray(vectors, dtype=np.float32)
        has = np.linalg.norm(v, axis=1) > 0
        has[0] = False
        v = np.where(has[:, None], v - v[has].mean(0) if has.any() else v, 0.0)
        norm = np.linalg.norm(v, axis=1, keepdims=True)
        self.vectors = np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)
        self.pop = tie_breaker(train, n_items)

    def ranks(self, histories: list[np.ndarray], targets: np.ndarray, candidates: np.ndarray | None = None) -> np.ndarray:
        """0-based rank of each target (ties count against it); among `candidates` ((N+1,) bool) only if given."""
        out = np.empty(len(targets), dtype=np.int64)
        base = self.pop if candidates is None else np.where(candidates, self.pop, -np.inf)
        for i, (h, t) in enumerate(zip(histories, targets.tolist())):
            h = h[h > 0]
            scores = base.copy()
            if len(h):
                last = int(h[-1])
                scores = scores + self.vectors @ self.vectors[last]
                scores[last] = -np.inf
            out[i] = int((scores >= scores[t]).sum()) - 1
        return out
