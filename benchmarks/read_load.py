"""The read path under load while a new version is published (issue 33).

    python -m benchmarks.read_load [--clients 16] [--seconds 60] [--users 20000] [--store sqlite|redis]

A temporary project holds two exported universal versions of random 64-float embeddings for
`--users` users and items (as `benchmarks/serving_latency.py` does): version 1 is published, then
`feast serve` starts on localhost and `--clients` threads read the FeatureService `ranking_v1`
(one user and one item per request, each client over its own kept-alive connection, opened
again when the server has closed it, as HTTP client pools do; counted as reconnects) while one more
thread answers `precise recall u2i` as the command does (a fresh `Recall` per request, reading
the serving version's FAISS index). A third of the way in, `precise publish` switches the service
to version 2. Counted per request: errors, and **mixed-version** responses (a response whose
user and item vectors, or whose recall, name different model versions, or a version that was
never published); reported: p50/p99 latency before, during and after the publish, the requests
answered by each version, and how long after the publish the last version-1 answer came (the
feature server refreshes its registry every `--registry-ttl` seconds).
Writes benchmarks/out/read_load.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from benchmarks.common import RedisServer, free_port, project, wait_for  # noqa: E402
from benchmarks.serving_latency import fake_export  # noqa: E402
from core.settings import Settings  # noqa: E402
from serving import publish  # noqa: E402

LABELS = {"precise-universal:1", "precise-universal:2"}


def export_version(root: Path, users: int, day: str, version: int) -> None:
    """fake_export's files for `day`, relabelled as universal version `version` (other vectors)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fake_export(root, users, users, 64, day)
    folder = root / "data" / "export" / f"date={day}"
    label = f"precise-universal:{version}"
    rng = np.random.default_rng(version)
    for name in ("universal_user.parquet", "universal_item.parquet"):
        t = pq.read_table(folder / name)
        vectors = rng.normal(size=(t.num_rows, 64)).astype(np.float32)
        t = t.set_column(t.schema.get_field_index("model_version"), "model_version", pa.array([label] * t.num_rows))
        t = t.set_column(t.schema.get_field_index("embedding"), "embedding",
                         pa.array(list(vectors), pa.list_(pa.float32())))
        pq.write_table(t, folder / name)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["versions"] = {"universal": label}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--store", choices=["sqlite", "redis"], default="sqlite")
    parser.add_argument("--registry-ttl", type=int, default=2, help="feast serve --registry_ttl_sec")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="precise-load-"))
    redis = None
    try:
        project(tmp, features=True, tasks=[])
        d1, d2 = "2026-01-13", "2026-01-14"
        export_version(tmp, args.users, d1, 1)
        settings = Settings.load(tmp / "params.yaml")
        if args.store == "redis":
            redis = RedisServer(tmp / "redis").start()
            os.environ[publish.ENV_STORE] = redis.url
        publish.main(settings, d1)
        export_version(tmp, args.users, d2, 2)  # ready before the load starts: only the publish is timed
        http_port = free_port()
        server = subprocess.Popen([str(Path(sys.executable).with_name("feast")), "--chdir",
                                   str(publish.feast_dir(settings, args.store)), "serve", "--host", "127.0.0.1",
                                   "--port", str(http_port), "--no-access-log", "--registry_ttl_sec", str(args.registry_ttl)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(http_port, 120)
            result = load(settings, http_port, args, d2)
        finally:
            server.terminate()
            server.wait(10)
    finally:
        os.environ.pop(publish.ENV_STORE, None)
        if redis is not None:
            redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=1))
    (REPO / "benchmarks" / "out").mkdir(parents=True, exist_ok=True)
    (REPO / "benchmarks" / "out" / "read_load.json").write_text(json.dumps(result, indent=1))


def post(conn: http.client.HTTPConnection, port: int, body: str, reconnects: list, lock: threading.Lock) -> tuple:
    """One online read: (HTTP status, body bytes, the connection to use next). A kept-alive
    connection the server closed is replaced once, as HTTP client pools do (counted)."""
    try:
        conn.request("POST", "/get-online-features", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read(), conn
    except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
        with lock:
            reconnects[0] += 1
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/get-online-features", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read(), conn


def read_versions(status: int, raw: bytes) -> tuple[str, str]:
    """A feature-server reply -> (the one model version it served, the problem: "" or the mixed
    versions); an error reply raises."""
    reply = json.loads(raw)
    if not isinstance(reply, dict) or not isinstance(reply.get("metadata"), dict):  # an error reply
        raise RuntimeError(f"HTTP {status}: {raw[:200]!r}")
    values = {n: r["values"][0] for n, r in zip(reply["metadata"]["feature_names"], reply["results"])}
    versions = {values.get("universal_user_model_version"), values.get("universal_item_model_version")}
    if len(versions) == 1 and versions <= LABELS:
        return next(iter(versions)), ""
    return "", f"mixed {sorted(map(str, versions))}"


def summarize(rows: list[tuple], p0: float, p1: float) -> dict:
    """Records (kind, start, seconds, version, problem) of one kind -> counts by version and
    problem, and latency before, during and after the publish (which ran from p0 to p1)."""
    phases = {"before": [r for r in rows if r[1] < p0], "during": [r for r in rows if p0 <= r[1] < p1],
              "after": [r for r in rows if r[1] >= p1]}
    stats = {}
    for phase, rs in phases.items():
        ms = np.array([r[2] for r in rs]) * 1000
        stats[phase] = {"requests": len(rs), "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(rs) else None,
                        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(rs) else None}
    old = [r[1] for r in rows if r[3] == "precise-universal:1" and r[1] >= p1]
    return {"requests": len(rows), "errors": sum(r[4].startswith("error") for r in rows),
            "mixed_or_incomplete": sum(bool(r[4]) and not r[4].startswith("error") for r in rows),
            "by_version": {v: sum(r[3] == v for r in rows) for v in sorted(LABELS)},
            "v1_answers_after_publish_s": round(max(old) - p1, 2) if old else 0.0, "reconnects": 0,
            "phases": stats, "problems": sorted({r[4] for r in rows if r[4]})[:5]}


def load(settings: Settings, port: int, args, d2: str) -> dict:
    from recall.index import Recall

    stop = threading.Event()
    records: list[tuple[str, float, float, str, str]] = []  # (kind, start, seconds, version, problem)
    lock = threading.Lock()
    rng_seed = iter(range(10_000))
    reconnects = [0]

    def note(kind: str, start: float, seconds: float, version: str, problem: str = "") -> None:
        with lock:
            records.append((kind, start, seconds, version, problem))

    def client() -> None:
        rng = np.random.default_rng(next(rng_seed))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not stop.is_set():
            user, item = f"u{rng.integers(args.users)}", f"i{rng.integers(args.users)}"
            body = json.dumps({"feature_service": "ranking_v1", "entities": {"user_id": [user], "item_id": [item]}})
            t = time.perf_counter()
            try:
                status, raw, conn = post(conn, port, body, reconnects, lock)
                version, problem = read_versions(status, raw)
                note("feature server", t, time.perf_counter() - t, version, problem)
            except Exception as exc:  # counted, never fatal: the figure is how many
                note("feature server", t, time.perf_counter() - t, "", f"error {type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def recaller() -> None:
        rng = np.random.default_rng(99)
        while not stop.is_set():
            user = f"u{rng.integers(args.users)}"
            t = time.perf_counter()
            try:
                r = Recall(settings, "universal")
                found = r.u2i(user, 50)
                problem = "" if r.meta["model_version"] in LABELS and len(found) == 50 else "incomplete"
                note("recall", t, time.perf_counter() - t, r.meta["model_version"], problem)
            except Exception as exc:
                note("recall", t, time.perf_counter() - t, "", f"error {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
    threads.append(threading.Thread(target=recaller, daemon=True))
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    time.sleep(args.seconds / 3)
    p0 = time.perf_counter()
    publish.main(settings, d2)
    p1 = time.perf_counter()
    time.sleep(max(args.seconds - (p1 - t0), 1.0))
    stop.set()
    for th in threads:
        th.join(60)
    out = {"clients": args.clients, "seconds": round(time.perf_counter() - t0, 1), "store": args.store,
           "publish_started_s": round(p0 - t0, 1), "publish_seconds": round(p1 - p0, 1)}
    for kind in ("feature server", "recall"):
        out[kind] = summarize([r for r in records if r[0] == kind], p0, p1)
    out["feature server"]["reconnects"] = reconnects[0]
    return out


if __name__ == "__main__":
    main()
