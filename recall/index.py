"""FAISS recall (PRECISE section VI): an index per (model, version) over its item embeddings.

Similarity = inner product of the exported vectors, the score the model was trained and evaluated
with (they are L2-normalised when the model uses cosine similarity, so the inner product is the cosine).
Index kinds (`recall.index`): `flat` (exact, IndexFlatIP), `hnsw` (IndexHNSWFlat, inner product),
`ivf` (IndexIVFFlat, inner product), `ivfpq` (IVF over 4-bit PQ codes scanned with SIMD "fast
scan", the best `rerank_factor` x k candidates re-ranked with the exact vectors: IndexRefineFlat),
`auto` = flat up to `exact_max_items`, else ivfpq. Why ivfpq: on 1M clustered inner-product items
(`benchmarks/serving_latency.py`) HNSW stayed below recall@100 0.95 in every setting tried (the
top 100 of an inner product reach into many clusters, which a greedy graph walk misses), while
ivfpq scans many lists cheaply and reaches >= 0.95 within the 2 ms budget (figures in docs/serving.md).
Each kind is one builder in `INDEX_KINDS`; whatever the kind, `Recall` reads it through the `TopK`
contract (search, reconstruct), which `ExactTopK` implements in numpy as the reference of the
recall evaluations (`Recall(..., exact=True)`: the same users, exclusions and offsets, exact search).
Saved with the version in `var/recall/<model>/v<N>/`: `index.faiss` (FAISS's own format),
`ids.json` (item ids in row order), `meta.json` (kind, dim, version, popular items).

* **U2I** (`precise recall u2i --task T --user U`): the user's embedding of the serving version to
  the top-K items, scored as the model scores them: items its vector has read get the model's
  learned offset (`model.history_offset`; exported with the user, `serving/export.py`
  `with_history`), so a negative offset pushes them down and a positive one up; items the user
  already has in the task sequence are dropped (`recall.exclude_consumed`).
* **U2I2I** (`precise recall u2i2i ...`): the user's recent task items (recent clicks for a click
  task, recent shares for a share task) to their nearest items; a candidate scores its mean
  similarity to the seeds plus a popularity prior (how often it is among the users' recent items,
  `popularity.json` beside the index), weighted more for users with few seeds (`recall.u2i2i_*`,
  chosen on a validation day: docs/ranking.md); the seeds themselves are dropped.
* Unknown users (no embedding, no recent items) get the most popular items of the task's recent
  items: the popularity fallback.
"""

from __future__ import annotations

import functools
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow.parquet as pq

from core.atomic import atomic_dir
from core.errors import PreciseError
from core.settings import RecallConfig, Settings
from serving.state import read_state

log = logging.getLogger(__name__)


def index_dir(settings: Settings, model: str, version: str) -> Path:
    return settings.paths.var / "recall" / model / f"v{version}"


class TopK(Protocol):
    """The top-k search `Recall` reads: a FAISS index (any kind) or `ExactTopK`."""

    ntotal: int  # rows (items) held

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries (Q, D) float32 -> (scores (Q, k), rows (Q, k) int64; -1 where fewer than k)."""
        ...

    def reconstruct(self, row: int) -> np.ndarray:
        """The stored vector (D,) of a row."""
        ...


class ExactTopK:
    """Exact inner-product top-k over vectors held in memory (numpy): the reference the FAISS
    kinds are measured against (`benchmarks/ranking_gain.py`, tests/unit/test_recall.py)."""

    def __init__(self, vectors: np.ndarray):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (N, D)
        self.ntotal = len(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.asarray(queries, dtype=np.float32) @ self.vectors.T  # (Q, N)
        take = min(k, self.ntotal)
        rows = np.argpartition(-scores, take - 1, axis=1)[:, :take] if take else np.zeros((len(scores), 0), np.int64)
        top = np.take_along_axis(scores, rows, 1)
        order = np.argsort(-top, axis=1, kind="stable")
        rows, top = np.take_along_axis(rows, order, 1), np.take_along_axis(top, order, 1)
        pad = k - take  # FAISS's convention for missing results: row -1, score -inf
        return (np.pad(top, ((0, 0), (0, pad)), constant_values=-np.inf),
                np.pad(rows.astype(np.int64), ((0, 0), (0, pad)), constant_values=-1))

    def reconstruct(self, row: int) -> np.ndarray:
        return self.vectors[row]


# `recall.index` kinds: (width d, IVF lists, config) -> an untrained or trained FAISS index.
def _flat(d: int, lists: int, cfg: RecallConfig):
    import faiss
    return faiss.IndexFlatIP(d)


def _hnsw(d: int, lists: int, cfg: RecallConfig):
    import faiss
    index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = cfg.hnsw_ef_construction
    return index


def _ivf(d: int, lists: int, cfg: RecallConfig):
    import faiss
    return faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, lists, faiss.METRIC_INNER_PRODUCT)


def _ivfpq(d: int, lists: int, cfg: RecallConfig):
    import faiss
    if d % 4:
        raise PreciseError(f"recall.index ivfpq needs a vector width divisible by 4, got {d}; use hnsw or ivf")
    # Two dimensions per 4-bit sub-quantizer; the exact vectors re-rank the candidates.
    return faiss.index_factory(d, f"IVF{lists},PQ{d // 2}x4fs,RFlat", faiss.METRIC_INNER_PRODUCT)


INDEX_KINDS = {"flat": _flat, "hnsw": _hnsw, "ivf": _ivf, "ivfpq": _ivfpq}


def make_index(vectors: np.ndarray, cfg: RecallConfig):
    """A FAISS inner-product index over `vectors` (N, D) float32, of the configured kind."""
    n, d = vectors.shape
    kind = cfg.index if cfg.index != "auto" else ("flat" if n <= cfg.exact_max_items else "ivfpq")
    if kind not in INDEX_KINDS:
        raise PreciseError(f"recall.index must be {', '.join(INDEX_KINDS)} or auto, got {cfg.index!r}")
    index = INDEX_KINDS[kind](d, max(1, min(cfg.ivf_lists, n // 39)), cfg)
    if not index.is_trained:
        sample = np.random.default_rng(0).choice(n, min(n, 200_000), replace=False)
        index.train(vectors[np.sort(sample)])
    index.add(vectors)
    tune(index, cfg)
    return index, kind


def tune(index, cfg: RecallConfig) -> None:
    """Search-time settings of an index, from params (FAISS saves them, but params may change)."""
    import faiss

    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = cfg.hnsw_ef_search
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = min(cfg.ivf_probe, ivf.nlist)
    if isinstance(index, faiss.IndexRefine):
        index.k_factor = float(cfg.rerank_factor)


def embeddings(path: str | Path, key: str) -> tuple[list[str], np.ndarray]:
    t = pq.read_table(path, columns=[key, "embedding"])
    ids = t.column(key).to_pylist()
    emb = t.column("embedding").combine_chunks()
    dim = len(emb[0]) if len(emb) else 0
    return ids, np.asarray(emb.flatten(), dtype=np.float32).reshape(len(ids), dim)


def build_serving(settings: Settings, state: dict) -> dict:
    """The index of every serving version, in line with what was exported and published today:
    built on the version's first publish; on a later publish of the same version, the items
    exported since (new items, with the vectors the export gave them) are added, and the
    popularity behind the fallback and U2I2I's prior is refreshed. Returns {model: index folder}."""
    built = {}
    for model, version in state["serving"].items():
        folder = index_dir(settings, model, str(version))
        files = state["versions"][model][str(version)]
        ids, vectors = embeddings(files["item"], "item_id")
        if (folder / "meta.json").is_file():
            index, ids, meta, _ = grown(folder, ids, vectors)
        else:
            index, kind = make_index(vectors, settings.recall)
            meta = {"model": model, "version": str(version), "model_version": files["model_version"], "kind": kind,
                    "dim": int(vectors.shape[1])}
        write_index(folder, index, ids, meta, recent_counts(state, model), settings.recall.top_k)
        built[model] = str(folder)
    return built


def grown(folder: Path, ids: list[str], vectors: np.ndarray) -> tuple:
    """A built index folder's index with the items of `ids` it lacks appended (their rows of
    `vectors` (len(ids), D)). Returns (index, every id in row order, meta, number appended)."""
    import faiss

    index, known = faiss.read_index(str(folder / "index.faiss")), json.loads((folder / "ids.json").read_text())
    seen = set(known)
    fresh = [j for j, i in enumerate(ids) if i not in seen]
    if fresh:
        index.add(np.ascontiguousarray(vectors[fresh], dtype=np.float32))
    return index, known + [ids[j] for j in fresh], json.loads((folder / "meta.json").read_text()), len(fresh)


def write_index(folder: Path, index, ids: list[str], meta: dict, counts: Counter | dict, top_k: int) -> None:
    """One index folder, swapped in whole (a reader sees the old folder or the new one): the FAISS
    index, its item ids in row order, the items' popularity and the meta (with the popular items)."""
    import faiss

    counts = Counter(counts)
    popular = [i for i, _ in counts.most_common(top_k)] or meta.get("popular", [])  # (a folder from before the counts)
    meta = meta | {"items": int(index.ntotal), "popular": popular}
    with atomic_dir(folder) as tmp:
        faiss.write_index(index, str(Path(tmp) / "index.faiss"))
        (Path(tmp) / "ids.json").write_text(json.dumps(ids))
        (Path(tmp) / "popularity.json").write_text(json.dumps(dict(counts.most_common())))
        (Path(tmp) / "meta.json").write_text(json.dumps(meta, indent=1))


def recent_counts(state: dict, model: str) -> Counter:
    """How often each item appears among the users' recent task items (the task's `recent` table;
    every task's for the universal model): the popularity that serving knows, behind the popular
    fallback and U2I2I's prior."""
    counts: Counter = Counter()
    paths = [state["recent"][model]] if model in state.get("recent", {}) else list(state.get("recent", {}).values())
    for path in paths:
        for items in pq.read_table(path, columns=["items"]).column("items").to_pylist():
            counts.update(items)
    return counts


def popularity_prior(ids: list[str], counts: dict) -> np.ndarray:
    """(N,) U2I2I's popularity prior of items `ids`: log(1 + count) / log(1 + largest count), 0 for
    items without a count."""
    logs = np.log1p(np.array([counts.get(i, 0) for i in ids], dtype=np.float32))
    return logs / logs.max() if len(logs) and logs.max() > 0 else np.zeros(len(ids), np.float32)


def u2i2i_score(sims: np.ndarray, prior: np.ndarray, merge: str, weight: float, shrink: float) -> np.ndarray:
    """sims (S, C) similarity of each of S seeds to C candidates, prior (C,) -> (C,) U2I2I's score:
    the seeds' mean (or best) similarity plus the prior weighted `weight x (1 + shrink / S)`."""
    merged = sims.mean(0) if merge == "mean" else sims.max(0)
    return merged + weight * (1 + shrink / len(sims)) * prior


class Recall:
    """The serving index of one model (a task or `universal`), with its user vectors."""

    def __init__(self, settings: Settings, model: str, exact: bool = False):
        """exact: search the index's vectors exactly (`ExactTopK`) instead of through FAISS, with
        everything else (users, exclusions, offsets, seeds) as served: the reference of recall evaluations."""
        import faiss

        state = read_state(settings)
        if model not in state["serving"]:
            raise PreciseError(f"nothing published for {model!r}; published: {', '.join(state['serving']) or 'none'}")
        self.version = str(state["serving"][model])
        folder = index_dir(settings, model, self.version)
        if not (folder / "meta.json").is_file():
            raise PreciseError(f"no FAISS index at {folder}; run `precise publish`")
        self.meta = json.loads((folder / "meta.json").read_text())
        index = faiss.read_index(str(folder / "index.faiss"))
        tune(index, settings.recall)
        self.ids = json.loads((folder / "ids.json").read_text())
        self.row = {x: i for i, x in enumerate(self.ids)}
        files = state["versions"][model][self.version]
        if hasattr(index, "make_direct_map"):  # IVF: reconstruct() needs the id -> list map
            index.make_direct_map()
        self.index: TopK = ExactTopK(index.reconstruct_n(0, index.ntotal)) if exact else index
        users, vectors = embeddings(files["user"], "user_id")
        versions = pq.read_table(files["user"], columns=["model_version"]).column("model_version").to_pylist()
        # Only vectors of this very version live in this index's space (fallback rows do not).
        self.users = {u: vectors[i] for i, (u, v) in enumerate(zip(users, versions)) if v == files["model_version"]}
        recent_path = state.get("recent", {}).get(model)
        recent = pq.read_table(recent_path).to_pydict() if recent_path else {"user_id": [], "items": []}
        self.recent = dict(zip(recent["user_id"], recent["items"]))
        # user -> (the items its vector read, the model's offset of them): model.history_offset
        self.history: dict[str, tuple[list[str], float]] = {}
        if files.get("history"):
            t = pq.read_table(files["user"], columns=["user_id", "model_version", "window", "history_logit"]).to_pydict()
            self.history = {u: (w, float(b)) for u, v, w, b in zip(t["user_id"], t["model_version"], t["window"], t["history_logit"])
                            if v == files["model_version"] and b is not None and w}
        self.cfg, self.folder = settings.recall, folder

    @functools.cached_property
    def prior(self) -> np.ndarray:
        """(N,) U2I2I's popularity prior (`popularity_prior`; zeros for an index built before the
        counts were kept). Read on U2I2I's first use, not for U2I."""
        counts_file = self.folder / "popularity.json"
        return popularity_prior(self.ids, json.loads(counts_file.read_text()) if counts_file.is_file() else {})

    @functools.cached_property
    def by_popularity(self) -> np.ndarray:
        """(N,) rows, the most popular first (by `prior`; ties in row order)."""
        return np.argsort(-self.prior, kind="stable")

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, rows

    def u2i(self, user: str, k: int | None = None, exclude_consumed: bool | None = None) -> list[dict]:
        k = k or self.cfg.top_k
        exclude = self.cfg.exclude_consumed if exclude_consumed is None else exclude_consumed
        if user not in self.users:
            return self.popular(user, k)
        consumed = set(self.recent.get(user, [])) if exclude else set()
        window, offset = self.history.get(user, ([], 0.0))
        read = {i for i in window if i in self.row and i not in consumed}
        query = self.users[user]
        scores, rows = self._search(query[None, :], k + len(consumed) + len(read))
        best = {self.ids[r]: float(s) for s, r in zip(scores[0], rows[0]) if r >= 0 and self.ids[r] not in consumed}
        for item in read:  # the model's score of an item the vector has read: its dot product plus the offset
            best[item] = float(self.index.reconstruct(self.row[item]) @ query) + offset
        ranked = sorted(best.items(), key=lambda kv: -kv[1])[:k]
        return [{"item_id": i, "score": s} for i, s in ranked]

    def u2i2i(self, user: str, k: int | None = None, per_seed: int | None = None) -> list[dict]:
        """The user's recent task items (seeds) to similar items. Candidates: the 2k + S items
        nearest the mean seed (under `u2i2i_merge: max`, nearest each seed) and the 2k + S most
        popular; each scores its similarity to the seeds (their mean or their best) plus the
        popularity prior, weighted `u2i2i_popularity x (1 + u2i2i_shrink / S)`. The seeds
        themselves are dropped."""
        k = k or self.cfg.top_k
        seeds = [i for i in self.recent.get(user, []) if i in self.row]
        if not seeds:
            return self.popular(user, k)
        vectors = np.stack([self.index.reconstruct(self.row[i]) for i in seeds])  # (S, D)
        # The mean of the similarities is the similarity to the mean seed: one search finds the
        # best candidates exactly (on an exact index); the best of them needs each seed's own.
        queries = vectors.mean(0, keepdims=True) if self.cfg.u2i2i_merge == "mean" else vectors
        _, rows = self._search(queries, 2 * (per_seed or k) + len(seeds))
        seed_rows = {self.row[i] for i in seeds}
        popular = self.by_popularity[: 2 * k + len(seeds)]
        candidates = sorted(({int(r) for r in rows.ravel() if r >= 0} | {int(r) for r in popular}) - seed_rows)
        sims = vectors @ np.stack([self.index.reconstruct(r) for r in candidates]).T  # (S, C)
        score = u2i2i_score(sims, self.prior[candidates], self.cfg.u2i2i_merge, self.cfg.u2i2i_popularity,
                            self.cfg.u2i2i_shrink)
        order = np.argsort(-score, kind="stable")[:k]
        return [{"item_id": self.ids[candidates[j]], "score": float(score[j])} for j in order]

    def popular(self, user: str, k: int) -> list[dict]:
        seen = set(self.recent.get(user, []))
        return [{"item_id": i, "score": None, "fallback": "popular"} for i in self.meta["popular"] if i not in seen][:k]


def add_items(settings: Settings, model: str, version: str, ids: list[str], vectors, replace: bool = False) -> int:
    """Append new items to a version's index (atomic folder swap); known ids are skipped, or with
    `replace` given these vectors (the index rebuilt whole, same settings: the hourly path's items
    moved by their first clicks, `training.audience`). Returns the number of rows added or replaced."""
    folder = index_dir(settings, model, version)
    if not (folder / "meta.json").is_file():
        return 0
    known = json.loads((folder / "ids.json").read_text())
    row_of = {i: r for r, i in enumerate(known)}
    vectors = np.asarray(vectors, dtype=np.float32)
    if not replace and all(i in row_of for i in ids):  # nothing new: the index is not read
        return 0
    counts = json.loads((folder / "popularity.json").read_text()) if (folder / "popularity.json").is_file() else {}
    old = [j for j, i in enumerate(ids) if i in row_of]
    if replace and old:
        import faiss

        index = faiss.read_index(str(folder / "index.faiss"))
        if (ivf := faiss.try_extract_index_ivf(index)) is not None:
            ivf.make_direct_map()  # reconstruct by row
        every = index.reconstruct_n(0, index.ntotal)
        every[[row_of[ids[j]] for j in old]] = vectors[old]
        fresh = [j for j, i in enumerate(ids) if i not in row_of]
        every = np.vstack([every, vectors[fresh]])
        index, kind = make_index(np.ascontiguousarray(every), settings.recall)
        meta = json.loads((folder / "meta.json").read_text()) | {"kind": kind}
        write_index(folder, index, known + [ids[j] for j in fresh], meta, counts, settings.recall.top_k)
        return len(ids)
    index, all_ids, meta, n_fresh = grown(folder, list(ids), vectors)
    write_index(folder, index, all_ids, meta, counts, settings.recall.top_k)
    return n_fresh
