"""PRECISE Figure 4a on the embedded default world: pre-trained coverage per day, warm-up every
`train_targeted.warmup_every_days` days against never (warm start on day 1 only).

    python -m benchmarks.coverage_curve

Computed from item sets, no training: on day d, the share of the items the task's users
interacted with that the universal model of the last warm-up had trained on (items with a
universal behaviour on a day up to the warm-up day). Writes docs/fig4a-<task>.png and prints the
curves (the `evaluate_targeted` stage records the same numbers for a pipeline's own days).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from ingest import synth  # noqa: E402
from core.settings import Settings  # noqa: E402
from training import diagnostics, targeted  # noqa: E402


def main() -> None:
    s = Settings.load(REPO / "params.yaml")
    world = synth.build_world(s.synth)
    days = [synth.simulate_day(world, d) for d in range(s.synth.days)]
    start = np.datetime64(s.synth.start_date)
    labels = [str(start + np.timedelta64(d, "D")) for d in range(s.synth.days)]
    universal_items = [set(ev.loc[ev["action"].isin(s.sequences.universal_actions), "item_id"]) for ev in days]
    every = s.targeted.warmup_every_days
    out = {}
    for task in s.tasks:
        task_items = [targeted.task_items(ev, task) for ev in days]
        curves = {f"warm-up every {every} days": targeted.coverage_curve(task_items, universal_items, every),
                  "never (first day only)": targeted.coverage_curve(task_items, universal_items, None)}
        diagnostics.plot_coverage(labels, curves, REPO / "docs" / f"fig4a-{task.name}.png",
                                  f"{task.name}: items trained by the universal model of the last warm-up")
        with_w, never = curves.values()
        out[task.name] = {"with_warmup": [round(x, 3) for x in with_w], "never": [round(x, 3) for x in never],
                          "mean_with_warmup": round(float(np.mean(with_w)), 3), "mean_never": round(float(np.mean(never)), 3),
                          "last_day_with_warmup": round(with_w[-1], 3), "last_day_never": round(never[-1], 3)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
