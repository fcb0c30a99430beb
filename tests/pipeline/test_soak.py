"""The short soak (benchmarks/soak.py): 8 days of a small synthetic world through the DAGs' calls,
on a real Redis server, with every kind of fault the full month injects. Each day's invariants
must hold: no event lost or doubled, landing files unchanged, the served version is the gate's
champion, Feast and FAISS serve it. Next-day quality is recorded but not asserted here: tiny
models on a tiny world (the full run's table is docs/reliability.md)."""

from __future__ import annotations

import shutil

import pytest

from benchmarks import soak
from tests.conftest import need, tiny_qwen2

TINY = {
    "synth": {"users": 300, "items_per_scene": 100},
    "encode": {"max_tokens": 8, "batch_size": 128},
    "train_universal": {"model": {"id_dim": 16, "sem_dim": 16, "experts": 2, "top_k": 1, "layers": 1, "heads": 2,
                                  "max_len": 12},
                        "train": {"epochs": 2, "min_steps": 0, "batch_size": 64, "warmup_steps": 2,
                                  "checkpoint_every": 2}},
    "train_targeted": {"train": {"epochs": 1, "min_steps": 0, "batch_size": 64, "checkpoint_every": 5},
                       "head_hidden": 32},
}


@pytest.mark.slow(seconds=150)
def test_eight_days_with_every_kind_of_fault(tmp_path, monkeypatch):
    need(shutil.which("redis-server") is not None, "redis-server is not installed (apt-get install redis-server)")
    monkeypatch.setenv("PRECISE_PARAMS", "")  # set by the soak; monkeypatch restores the environment
    monkeypatch.setenv("PRECISE_ONLINE_STORE", "")
    sizes = TINY | {"encode": TINY["encode"] | {"model": str(tiny_qwen2(tmp_path / "tiny-qwen2"))}}
    record = soak.run(tmp_path / "soak", days=8, sizes=sizes, backlog=2)
    summary, rows = record["summary"], record["rows"]
    assert summary["days_run"] == 8
    assert summary["faults"] == sorted(soak.FAULTS)
    assert summary["events_lost"] == 0 and summary["event_problems"] == 0, [r["events"] for r in rows]
    assert summary["version_problems"] == 0, [r["versions"] for r in rows]
    by_fault = {r["fault"]: r for r in rows if r["fault"]}
    notes = {fault: " | ".join(r["notes"]) for fault, r in by_fault.items()}
    malformed = by_fault["malformed_drop"]["day"]
    assert f"{malformed} quarantined" in notes["malformed_drop"] and by_fault["malformed_drop"]["ran"] == []
    late = by_fault["late_drop"]
    assert late["ran"] == [] and rows[late["n"]]["ran"] == [late["day"], rows[late["n"]]["day"]]  # both, in order
    assert "resumed at step" in notes["killed_worker"], notes["killed_worker"]
    assert "publish (Redis down) failed" in notes["store_down"] and "publish (Redis down) retried: ok" in notes["store_down"]
    assert "export failed" in notes["export_disk_full"] and "publish refused the day" in notes["export_disk_full"]
    after_damage = rows[by_fault["corrupt_checkpoint"]["n"]]  # the next day's gate
    assert any("rejected" in n and "precise-universal" in n for n in after_damage["notes"]), after_damage["notes"]
    # every day after the first publish serves every model
    assert all(set(r["versions"]["serving"]) == {"universal", "click_article", "share_all"} for r in rows[1:])
    assert all(r["quality"] for r in rows if r["ran"] and r["n"] > 1), [r["quality"] for r in rows]
