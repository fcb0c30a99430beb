"""`precise status`: where the pipeline stands, on one screen (`--json` for machines).

Reads only what the stages wrote: the validation manifest (days and their gate status), the model
registry (champions), the next-day evaluations (`data/metrics/evaluate_*.json`, each model beside
the counting and popularity baselines on the same users), the publish state (what Feast and FAISS
serve), and one user and item that really exist in the serving export, for commands to try.
Nothing is recomputed; a stage that has not run yet shows as such.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from core import schema
from core.settings import Settings


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def collect(settings: Settings) -> dict:
    """Everything the summary shows, as plain data."""
    from serving.state import read_state
    from training.lifecycle import registry
    from validation import manifest

    days = schema.list_days(settings.paths.events)
    entries = manifest.read_or_empty(settings.paths.manifest)
    gate: dict[str, list[str]] = {}
    for day in days:
        gate.setdefault(entries.get(day, {}).get("status", "not validated"), []).append(day)
    models = [None] + [t.name for t in settings.tasks]
    champions = {}
    for task in models:
        v = registry.champion(settings, task)
        champions[task or "universal"] = None if v is None else {
            "version": str(v.version), "trained_through": v.tags.get("trained_through"), "kind": v.tags.get("kind")}
    metrics = settings.paths.metrics
    quality = {"universal": _json(metrics / "evaluate_universal.json")}
    for task in settings.tasks:
        quality[task.name] = _json(metrics / "evaluate_targeted" / f"{task.name}.json")
    state = read_state(settings)
    served = {"date": state.get("date"), "published_at": state.get("published_at"), "serving": state["serving"],
              "feature_service": state.get("feature_service"), "store": (_json(metrics / "publish.json") or {}).get("store")}
    return {"params": str(settings.params_path), "run_date": settings.run_date, "days": days,
            "gate": {k: {"days": len(v), "first": v[0], "last": v[-1]} for k, v in gate.items()},
            "champions": champions, "next_day": {k: _row(v) for k, v in quality.items()},
            "served": served, "examples": examples(settings, state)}


def _row(metrics: dict | None) -> dict | None:
    """The headline figures of one evaluation file (or why there are none)."""
    if metrics is None:
        return None
    if "skipped" in metrics or "all" not in metrics:
        return {"date": metrics.get("date"), "skipped": metrics.get("skipped", "no users with a history")}
    base = metrics.get("baselines", {})
    fresh = metrics.get("fresh", {})  # targets published that day or never seen in training
    return {"date": metrics["date"], "model": metrics.get("model"), "users": metrics.get("users"),
            "R@10": metrics["all"].get("R@10"), "N@10": metrics["all"].get("N@10"),
            "counting R@10": base.get("counting", {}).get("R@10"), "popularity R@10": base.get("popularity", {}).get("R@10"),
            "fresh n": fresh.get("n"), "fresh R@10": fresh.get("R@10") if fresh.get("n") else None,
            "popularity fresh R@10": base.get("popularity", {}).get("fresh", {}).get("R@10") if fresh.get("n") else None,
            # the universal model as the hourly path serves it: never-seen items moved by the day's earlier clicks
            "early fresh R@10": metrics.get("early_clicks", {}).get("fresh", {}).get("R@10") if fresh.get("n") else None}


def examples(settings: Settings, state: dict) -> dict:
    """A user with a task vector and an item of the serving export, per served model (ids that exist)."""
    out = {}
    for model, version in state.get("serving", {}).items():
        files = state["versions"][model][str(version)]
        users = pq.read_table(files["user"], columns=["user_id", "model_version"]).to_pydict()
        own = [u for u, v in zip(users["user_id"], users["model_version"]) if v == files["model_version"]]
        items = pq.read_table(files["item"], columns=["item_id"]).column("item_id").to_pylist()
        if own and items:
            out[model] = {"user_id": sorted(own)[0], "item_id": sorted(items)[0]}
    return out


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}" if isinstance(x, float) else str(x)


def render(s: dict) -> str:
    """The one-screen text summary."""
    lines = [f"precise status  ({s['params']}, run.date {s['run_date']})", ""]
    if not s["days"]:
        return "\n".join(lines + ["No day ingested yet: `precise data synth` (or an import), then `precise ingest --all`."])
    gate = ", ".join(f"{v['days']} {k}" for k, v in sorted(s["gate"].items()))
    lines.append(f"Data       {len(s['days'])} days ingested, {s['days'][0]} .. {s['days'][-1]}; gate: {gate}")
    for name, c in s["champions"].items():
        champ = "no champion yet" if c is None else f"champion v{c['version']}, trained through {c['trained_through']}"
        lines.append(f"Model      {name:<16} {champ}")
    lines += ["", "Next-day quality (full ranking; each model trained before the day predicts the day's first behaviour;",
              "baselines on the same users and targets; fresh = targets published that day or never seen in training;",
              "+clicks = the universal model with never-seen items moved by the day's earlier clicks, as the hourly path serves it):",
              f"  {'model':<16} {'day':<11} {'users':>6} {'R@10':>7} {'N@10':>7} {'counting':>9} {'popularity':>10}"
              f"  {'fresh (n)':>9} {'R@10':>7} {'+clicks':>7} {'popularity':>10}"]
    for name, r in s["next_day"].items():
        if r is None:
            lines.append(f"  {name:<16} not evaluated yet")
        elif "skipped" in r:
            lines.append(f"  {name:<16} {r['date']:<11} skipped: {r['skipped']}")
        else:
            lines.append(f"  {name:<16} {r['date']:<11} {r['users']:>6} {_fmt(r['R@10']):>7} {_fmt(r['N@10']):>7} "
                         f"{_fmt(r['counting R@10']):>9} {_fmt(r['popularity R@10']):>10}"
                         f"  {_fmt(r.get('fresh n')):>9} {_fmt(r.get('fresh R@10')):>7} {_fmt(r.get('early fresh R@10')):>7}"
                         f" {_fmt(r.get('popularity fresh R@10')):>10}")
    served = s["served"]
    lines.append("")
    if not served["serving"]:
        lines.append("Served     nothing published yet (`precise export` then `precise publish`)")
    else:
        versions = ", ".join(f"{m} v{v}" for m, v in served["serving"].items())
        lines.append(f"Served     {versions}  (data day {served['date']}, Feast {served['store'] or '-'}, "
                     f"feature service {served['feature_service']}; FAISS under var/recall/)")
    ex = s["examples"]
    task = next((m for m in ex if m != "universal"), None)
    if task:
        lines += ["", "Try", f"  precise recall u2i --task {task} --user {ex[task]['user_id']}",
                  f"  precise recall u2i2i --task {task} --user {ex[task]['user_id']}",
                  f"  Feast, from Python or HTTP: docs/ranking.md (e.g. user_id {ex[task]['user_id']}, "
                  f"item_id {ex[task]['item_id']})"]
    return "\n".join(lines)
