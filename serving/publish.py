"""Publish stage: exported embeddings -> Feast (offline Parquet, online store) and FAISS indexes.

`precise publish --date D` (after `precise export --date D`):

1. copies each exported model version's files to `var/feast/offline/<model>/v<N>/` (outside DVC,
   so older versions stay readable for rollback) and the recent-items files;
2. **applies the new versions' views next to the serving ones** and materializes them into the
   online store; the FeatureService still points at the previous versions, so readers keep
   getting a complete version whatever happens here;
3. only then **switches the FeatureService** to the new versions (one registry write) and records
   the state (`var/feast/<store>/published.json`, atomic);
4. prunes versions beyond `publish.keep_versions` per model (their views and online rows);
5. the FAISS index of every serving (task, version) (recall/index.py) is built before steps 3-4,
   so that the state never names a version whose index is not there yet.

Once the new versions are materialized, the day's export is also kept in the append-only offline
history that point-in-time training sets read (serving/historical.py); pruning never touches it.

Rollback: `precise registry promote --task T --version V`, then `precise export --date D --force`
and `precise publish --date D`: the older version is re-materialized with a new, later event
timestamp (Redis keeps a row only if its timestamp is newer) and the service switches back.

Online store: SQLite (`var/feast/sqlite/online.db`) by default, Redis in production:
`publish.online_store: redis` or the environment variable `PRECISE_ONLINE_STORE=redis`
(`redis://host:port` also sets the address). Each store has its own Feast registry and state under
`var/feast/<store>/`, and `var/feast/<store>/feature_store.yaml` (absolute paths) for
`feast serve`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from core import schema
from core.atomic import atomic_path, write_json
from core.errors import PreciseError
from core.settings import Settings
from serving import historical
from serving.state import ENV_STORE, feast_dir, online_store, read_state, state_path  # noqa: F401 (re-exported)
from serving.store import definitions, feature_store, repo_config  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)


def _copy(src: Path, dst: Path) -> str:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return str(dst)


def main(settings: Settings, date: str | None = None) -> dict:
    from validation import manifest

    day = manifest.resolve_day(settings, date)
    export_dir = schema.partition_dir(settings.paths.data / "export", day)
    if not (export_dir / "manifest.json").is_file():
        raise PreciseError(f"no export for {day}: run `precise export --date {day}` first")
    exported = json.loads((export_dir / "manifest.json").read_text())
    ts = dt.datetime.fromisoformat(exported["event_timestamp"])
    offline = settings.paths.var / "feast" / "offline"
    state = read_state(settings)
    candidate = json.loads(json.dumps(state))  # deep copy: the serving state changes only at the end
    new_views, serving = [], {}
    for model, label in exported["versions"].items():
        version = label.rsplit(":", 1)[1]
        files = {kind: _copy(export_dir / f"{model}_{kind}.parquet", offline / model / f"v{version}" / f"{kind}.parquet")
                 for kind in ("user", "item")}
        # a user file with `window` and `history_logit` (serving/export.py `with_history`): a task's
        # Feast score and every U2I add the model's offset of items already read
        history = "history_logit" in pq.read_schema(files["user"]).names
        candidate["versions"].setdefault(model, {})[version] = files | {"model_version": label} | (
            {"history": True} if history else {})
        new_views += [f"{model}_user_v{version}", f"{model}_item_v{version}"]
        serving[model] = version
    for task in settings.tasks:
        src = export_dir / f"{task.name}_recent_items.parquet"
        if src.is_file():
            candidate["recent"][task.name] = _copy(src, offline / "recent" / task.name / f"date={day}.parquet")
            new_views.append(f"{task.name}_recent_items")
    store = feature_store(settings)
    defs = definitions(settings)
    # 1. the new versions' views beside the serving ones (the FeatureService unchanged) ...
    store.apply(defs.build(candidate | {"serving": state["serving"]}))
    # 2. ... filled completely ...
    store.materialize(ts - dt.timedelta(seconds=1), ts + dt.timedelta(seconds=1), feature_views=new_views)
    # 3. ... before the service switches to them.
    candidate["serving"] = serving
    candidate["feature_service"] = settings.publish.feature_service
    candidate["published_at"] = ts.isoformat()
    candidate["date"] = day
    candidate.setdefault("history", {}).update(historical.record_day(settings, export_dir, day, list(exported["versions"])))
    from recall import index as recall_index

    # the new versions' FAISS indexes exist before anything points at them: a `precise recall`
    # that reads the new state always finds its index (benchmarks/read_load.py)
    indexes = recall_index.build_serving(settings, candidate)
    pruned = prune(candidate, settings.publish.keep_versions)
    stale = [o for o in defs.build({"versions": pruned}) if o.__class__.__name__ != "Entity"]
    store.apply(defs.build(candidate), objects_to_delete=stale, partial=False)
    write_json(state_path(settings), candidate)
    summary = {"date": day, "store": online_store(settings)[0], "serving": serving, "event_timestamp": ts.isoformat(),
               "materialized_views": new_views, "pruned": {m: sorted(v) for m, v in pruned.items()}, "indexes": indexes}
    write_json(settings.paths.metrics / "publish.json", summary)
    log.info("published %s: %s", day, ", ".join(f"{m} v{v}" for m, v in serving.items()))
    return summary


def prune(state: dict, keep: int) -> dict[str, dict]:
    """Drop all but the `keep` newest versions of each model (never the serving one); returns them."""
    pruned = {}
    for model, published in state["versions"].items():
        order = sorted(published, key=int)
        old = [v for v in order[:-keep] if v != str(state["serving"].get(model))] if keep > 0 else []
        if old:
            pruned[model] = {v: published.pop(v) for v in old}
    return pruned


def read_online(settings: Settings, rows: list[dict], features: list[str] | None = None) -> dict:
    """Online features of the serving FeatureService (or the given feature references)."""
    store = feature_store(settings)
    what = features if features is not None else store.get_feature_service(settings.publish.feature_service)
    return store.get_online_features(features=what, entity_rows=rows).to_dict()


def new_items(settings: Settings, folder: Path) -> dict:
    """The hourly path: new items' embeddings (serving/export.py new_items) into the serving item
    views of their model version (online write) and into that version's FAISS index. Rows of a
    version that is no longer serving are skipped (the next daily export covers them)."""
    from recall import index as recall_index

    state = read_state(settings)
    store = feature_store(settings)
    done = {}
    for path in sorted(Path(folder).glob("*_item.parquet")):
        model = path.name[: -len("_item.parquet")]
        version = state["serving"].get(model)
        if version is None:
            continue
        frame = pq.read_table(path).to_pandas()
        label = state["versions"][model][str(version)]["model_version"]
        frame = frame[frame["model_version"] == label]
        if frame.empty:
            continue
        online = frame.rename(columns={"embedding": f"{model}_item_embedding", "model_version": f"{model}_item_model_version"})
        store.write_to_online_store(f"{model}_item_v{version}", online)
        # the universal rows may move items already indexed (their first clicks, training.audience)
        recall_index.add_items(settings, model, str(version), list(frame["item_id"]), frame["embedding"].tolist(),
                               replace=model == "universal")
        done[model] = len(frame)
    return done
