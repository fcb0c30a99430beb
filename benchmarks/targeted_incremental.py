"""Daily targeted run: incremental day against a full retrain (warm-up) of the same day.

    python -m benchmarks.targeted_incremental [--task click_article] [--universal-epochs 2]

On the embedded default world (params.yaml, in a temporary folder): ingest, validate, sequences,
encode and universal training for the last two days D-1 and D; then, timed:

* targeted D-1 (warm-up from the universal model; the state an incremental day continues from),
* targeted D, incremental (yesterday's targeted model, D's task behaviours),
* targeted D, full retrain (`--force-warmup`: re-initialised from the universal model of D and
  trained on the task behaviours of the replay window).

Prints wall times, the ratio incremental / full (goal: at most 0.3) and the training throughput
(examples per second of the full retrain).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

from benchmarks.common import project  # noqa: E402

from ingest import ingest, synth  # noqa: E402
from core import schema  # noqa: E402
from training import targeted, universal  # noqa: E402
from training.prep import sequences, text  # noqa: E402
from validation import validate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="click_article")
    parser.add_argument("--universal-epochs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = yaml.safe_load((REPO / "params.yaml").read_text())
        s = project(Path(tmp),
                    train_universal={"train": base["train_universal"]["train"] | {"epochs": args.universal_epochs,
                                                                                  "checkpoint_every": 0}},
                    train_targeted={"train": base["train_targeted"]["train"] | {"checkpoint_every": 0}},
                    paths=base["paths"] | {"var": str(REPO / "var" / "bench-targeted")})  # keeps the text cache
        for sub in ("checkpoints", "targeted", "mlflow"):
            import shutil

            shutil.rmtree(s.paths.var / sub, ignore_errors=True)
        synth.run(s.synth, s.paths.landing)
        ingest.run(s)
        validate.run_all(s)
        d_prev, d = schema.list_days(s.paths.events)[-2:]
        for day in (d_prev, d):
            sequences.main(s, day)
            text.main(s, day)
            universal.main(s, day)
        sequences.main(s, d_prev)
        t0 = time.perf_counter()
        targeted.main(s, args.task, d_prev)
        first = time.perf_counter() - t0
        sequences.main(s, d)
        t0 = time.perf_counter()
        inc = targeted.main(s, args.task, d)
        incremental = time.perf_counter() - t0
        t0 = time.perf_counter()
        full = targeted.main(s, args.task, d, force_warmup=True)
        retrain = time.perf_counter() - t0
        out = {
            "task": args.task, "day": d,
            "warmup_previous_day_s": round(first, 1),
            "incremental_s": round(incremental, 1), "incremental_examples": inc["examples"], "incremental_epochs": inc["epochs"],
            "full_retrain_s": round(retrain, 1), "full_examples": full["examples"], "full_epochs": full["epochs"],
            "ratio_incremental_to_full": round(incremental / retrain, 3),
            "full_throughput_examples_per_s": round(full["examples"] * full["epochs"] / retrain, 1),
            "valid_R@10": {"incremental": inc["valid"]["R@10"], "full": full["valid"]["R@10"]},
            "coverage": {"incremental": inc["coverage"]["share"], "full": full["coverage"]["share"]},
        }
        print(json.dumps(out, indent=1))
        (REPO / "benchmarks" / "out").mkdir(parents=True, exist_ok=True)
        (REPO / "benchmarks" / "out" / "targeted_incremental.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
