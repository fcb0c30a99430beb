"""The registry gate: which trained version serves (MLflow aliases `champion` / `challenger`).

**Progressive validation.** A version is judged on the first validated day it did not train on:
the newest validated day after `trained_through`. The daily gate of day D (`precise registry gate
--date D`) takes every pending version trained before D and scores it and the current champion on
D with the next-day protocol (R@10 of each user's first behaviour on D; both models grown to D's
catalog). The version becomes `champion` if

    R@10(version) >= R@10(champion) * (1 - tolerance)

(the metric is `registry.metric`, R@10 by default) with `registry.tolerance`, or `registry.warmup_tolerance` for a targeted warm-up version (it
restores coverage of new items and may score a little lower on its first day); otherwise it
becomes `challenger` and the champion keeps serving. The first version of a model has nothing to
be compared with and becomes champion at once (gate tag `first`). A pending version of which a
newer version was already gated is skipped (`superseded`). A version whose checkpoint is corrupt
(its weights no longer match the SHA-256 saved with them) is `rejected` and never serves.

So a model trained on D serves from D+1's gate on, after being checked on D+1: one day of lag,
the price of judging every model on data it has not seen. `precise registry promote` moves `champion` by hand
(training/lifecycle/registry.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

from core.atomic import write_json
from core.errors import PreciseError
from core.settings import Settings
from training import evaluate
from training.lifecycle.registry import CHALLENGER, CHAMPION, champion, client, model_name, versions
from training.trainer import CorruptCheckpoint

REJECTED = "rejected"  # the gate tag of a version whose checkpoint is corrupt (never served)

log = logging.getLogger(__name__)


def score(settings: Settings, task: str | None, checkpoint: Path, day: str) -> float | None:
    """Next-day `registry.metric` (R@10 by default) of a checkpoint on `day` (None: no user to score)."""
    try:
        if task in (None, "universal"):
            metrics = evaluate.score_universal(settings, checkpoint, day)
        else:
            metrics = evaluate.score_targeted(settings, settings.task(task), checkpoint, day)
    except CorruptCheckpoint:
        raise
    except PreciseError as exc:
        log.warning("cannot score %s on %s: %s", checkpoint, day, exc)
        return None
    return metrics["all"][settings.registry.metric] if "all" in metrics else None


def gate(settings: Settings, task: str | None, day: str) -> list[dict]:
    """Judge the pending versions trained before `day` on `day` (see module docstring)."""
    c = client(settings)
    name = model_name(task)
    pending = [v for v in versions(settings, task) if v.tags.get("gate") == "pending" and v.tags["trained_through"] < day]
    decisions = []
    for i, v in enumerate(pending):
        if i < len(pending) - 1:  # a newer pending version will be judged instead
            c.set_model_version_tag(name, v.version, "gate", "superseded")
            decisions.append({"model": name, "version": str(v.version), "decision": "superseded"})
            continue
        current = champion(settings, task)
        try:
            cand = score(settings, task, Path(v.tags["checkpoint"]), day)
        except CorruptCheckpoint as exc:  # never served: the champion keeps serving
            log.error("%s version %s: %s", name, v.version, exc)
            for key, value in {"gate": REJECTED, "gate_day": day, "gate_reason": str(exc)}.items():
                c.set_model_version_tag(name, v.version, key, value)
            decisions.append({"model": name, "version": str(v.version), "decision": REJECTED, "reason": str(exc)})
            continue
        try:
            champ = score(settings, task, Path(current.tags["checkpoint"]), day) if current is not None else None
        except CorruptCheckpoint as exc:  # a champion that cannot be read cannot serve: the candidate is judged alone
            log.error("%s champion %s: %s", name, current.version, exc)
            champ = None
        tol = settings.registry.warmup_tolerance if v.tags.get("kind") == "warmup" else settings.registry.tolerance
        if cand is None:
            decisions.append({"model": name, "version": str(v.version), "decision": "pending", "reason": f"no users to score on {day}"})
            continue
        promote = champ is None or cand >= champ * (1 - tol)
        decision = CHAMPION if promote else CHALLENGER
        c.set_registered_model_alias(name, decision, v.version)
        metric = settings.registry.metric
        for key, value in {"gate": decision, "gate_day": day, "gate_metric": metric, "gate_value": f"{cand:.6f}",
                           "gate_champion_value": "" if champ is None else f"{champ:.6f}",
                           "gate_champion_version": "" if current is None else str(current.version),
                           "gate_tolerance": str(tol)}.items():
            c.set_model_version_tag(name, v.version, key, value)
        log.info("%s version %s on %s: %s %.4f vs champion %s -> %s", name, v.version, day, metric, cand,
                 "none" if champ is None else f"{champ:.4f}", decision)
        decisions.append({"model": name, "version": str(v.version), "decision": decision, "metric": metric,
                          "value": cand, "champion_value": champ, "tolerance": tol})
    return decisions


def run_day(settings: Settings, date: str | None = None) -> dict:
    """The daily gate of every model (universal first, then each task) on D; writes `gate.json`."""
    from validation import manifest

    day = manifest.resolve_day(settings, date)
    tasks = [None] + [t.name for t in settings.tasks]
    decisions = [d for task in tasks for d in gate(settings, task, day)]
    champions = {model_name(t): getattr(champion(settings, t), "version", None) for t in tasks}
    report = {"date": day, "decisions": decisions,
              "champions": {k: None if v is None else str(v) for k, v in champions.items()}}
    write_json(settings.paths.metrics / "gate.json", report)
    return report
