"""Serving figures: Feast online reads (SQLite, Redis; SDK, feature server), materialization,
FAISS U2I (Flat vs HNSW at 100k and 1M items).

    python -m benchmarks.serving_latency [--users 20000] [--sizes 100000 1000000] [--reads 2000]

Feast part: a universal "version" of random 64-float embeddings for `--users` users and items is
exported into a temporary project and published with `precise publish` (real Feast, real Redis:
a redis-server is started on a free port). Reads: one user (one 64-float vector, the issue's
reference) and 100 users, p50/p99 over `--reads` requests, through the SDK
(`get_online_features`) and through `feast serve` (HTTP, kept-alive connection); a raw Redis GET
of the same 256 bytes is the floor the Redis reads are compared with.

FAISS part: clustered 64-dim item embeddings (norms vary: inner product, not cosine), exact
inner-product (Flat) vs HNSW (M=32, efConstruction=200, efSearch=256) vs ivfpq (params.yaml's
recall settings: IVF lists, 4-bit PQ fast scan, exact re-ranking): build time, single-thread
single-query p50/p99 latency, batch QPS, and recall@100 against exact search. `recall.index:
auto` picks ivfpq above `exact_max_items`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import http.client
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]

from benchmarks.common import RedisServer, free_port, project, wait_for  # noqa: E402
from core.settings import RecallConfig, Settings  # noqa: E402
from recall.index import make_index  # noqa: E402
from serving import publish  # noqa: E402
from serving.export import table  # noqa: E402


def percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def timed(fn, n: int) -> dict:
    for _ in range(min(50, n)):
        fn()  # warm
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return percentiles(out)


def fake_export(root: Path, users: int, items: int, dim: int, day: str) -> None:
    rng = np.random.default_rng(0)
    ts = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    folder = root / "data" / "export" / f"date={day}"
    folder.mkdir(parents=True)
    label = "precise-universal:1"
    pq.write_table(table("user_id", [f"u{i}" for i in range(users)], rng.normal(size=(users, dim)), label, ts),
                   folder / "universal_user.parquet")
    pq.write_table(table("item_id", [f"i{i}" for i in range(items)], rng.normal(size=(items, dim)), label, ts),
                   folder / "universal_item.parquet")
    (folder / "manifest.json").write_text(json.dumps({"date": day, "event_timestamp": ts.isoformat(),
                                                      "versions": {"universal": label}}))


def feast_part(args) -> dict:
    results = {}
    tmp = Path(tempfile.mkdtemp(prefix="precise-serving-"))
    project(tmp, features=True, tasks=[])
    day = "2026-01-14"
    fake_export(tmp, args.users, args.users, 64, day)
    settings = Settings.load(tmp / "params.yaml")
    redis = RedisServer(tmp / "redis").start()
    port = redis.port
    try:
        for store in ("sqlite", redis.url):
            os.environ[publish.ENV_STORE] = store
            t = time.perf_counter()
            publish.main(settings, day)
            seconds = time.perf_counter() - t
            name = store.split(":")[0]
            rows = 2 * args.users
            results[f"{name} publish"] = {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds)}
            fs = publish.feature_store(settings)
            ref = ["universal_user_v1:universal_user_embedding"]
            one = [{"user_id": "u17"}]
            hundred = [{"user_id": f"u{i}"} for i in range(100)]
            results[f"{name} SDK 1 user"] = timed(lambda: fs.get_online_features(features=ref, entity_rows=one).to_dict(), args.reads)
            results[f"{name} SDK 100 users"] = timed(lambda: fs.get_online_features(features=ref, entity_rows=hundred).to_dict(),
                                                     max(args.reads // 10, 50))
            http_port = free_port()
            server = subprocess.Popen([str(Path(sys.executable).with_name("feast")), "--chdir", str(publish.feast_dir(settings, name)),
                                       "serve", "--host", "127.0.0.1", "--port", str(http_port), "--no-access-log"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_for(http_port)
                conn = [http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)]
                reconnects = [0]

                def post(users: list[str]) -> None:
                    body = json.dumps({"features": ref, "entities": {"user_id": users}})
                    for attempt in (0, 1):  # the server may close an idle keep-alive connection
                        try:
                            conn[0].request("POST", "/get-online-features", body, {"Content-Type": "application/json"})
                            reply = conn[0].getresponse().read()
                            break
                        except (BrokenPipeError, ConnectionError, http.client.HTTPException):
                            if attempt:
                                raise
                            reconnects[0] += 1
                            conn[0].close()
                            conn[0] = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
                    assert b"universal_user_embedding" in reply

                results[f"{name} feature server 1 user"] = timed(lambda: post(["u17"]), args.reads)
                results[f"{name} feature server 100 users"] = timed(lambda: post([f"u{i}" for i in range(100)]),
                                                                    max(args.reads // 10, 50))
                results[f"{name} feature server reconnects"] = reconnects[0]
            finally:
                server.terminate()
                server.wait(10)
        import redis as redis_py

        r = redis_py.Redis(host="127.0.0.1", port=port)
        r.set("raw-vector", np.random.default_rng(0).normal(size=64).astype(np.float32).tobytes())
        results["raw Redis GET (256 bytes)"] = timed(lambda: r.get("raw-vector"), args.reads)
    finally:
        os.environ.pop(publish.ENV_STORE, None)
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    raw = results["raw Redis GET (256 bytes)"]["p99_ms"]
    for key in ("redis SDK 1 user", "redis feature server 1 user"):
        results[key]["ratio_to_raw_redis_p99"] = round(results[key]["p99_ms"] / raw, 1)
    return results


def clustered(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(max(n // 100, 10), d)).astype(np.float32)
    x = centers[rng.integers(0, len(centers), n)] + 0.35 * rng.normal(size=(n, d)).astype(np.float32)
    return x * rng.uniform(0.5, 1.5, size=(n, 1)).astype(np.float32)


def faiss_part(args) -> dict:
    import faiss

    results = {}
    defaults = Settings.load(REPO / "params.yaml").recall
    threads = faiss.omp_get_max_threads()
    for n in args.sizes:
        items = clustered(n, 64, 0)
        rng = np.random.default_rng(1)
        queries = items[rng.integers(0, n, 500)] + 0.1 * rng.normal(size=(500, 64)).astype(np.float32)
        exact = None
        for kind in ("flat", "hnsw", "ivfpq"):
            t = time.perf_counter()
            index, _ = make_index(items, dataclasses.replace(defaults, index=kind))
            build = time.perf_counter() - t
            faiss.omp_set_num_threads(1)  # single-query latency: one thread, as a serving worker
            one = itertools.cycle(range(len(queries)))  # a different query each time, not a cached one
            single = timed(lambda: index.search(queries[next(one)][None], 100), min(args.reads, 500))
            faiss.omp_set_num_threads(threads)
            t = time.perf_counter()
            _, found = index.search(queries, 100)
            qps = len(queries) / (time.perf_counter() - t)
            if kind == "flat":
                exact = found
            rec = float(np.mean([len(set(f) & set(e)) / 100 for f, e in zip(found, exact)]))
            results[f"{kind} {n:,} items"] = {"build_s": round(build, 1), **single, "batch_qps": round(qps),
                                             "recall_at_100_vs_exact": round(rec, 4)}
            print(kind, n, results[f"{kind} {n:,} items"], flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--skip-faiss", action="store_true")
    args = parser.parse_args()
    out = {"feast": feast_part(args)}
    print(json.dumps(out, indent=1), flush=True)
    if not args.skip_faiss:
        out["faiss"] = faiss_part(args)
    print(json.dumps(out, indent=1))
    (REPO / "benchmarks" / "out").mkdir(parents=True, exist_ok=True)
    (REPO / "benchmarks" / "out" / "serving_latency.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
