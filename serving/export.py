"""Export stage: embeddings of the champion models, per model version (PRECISE section VI).

`precise export --date D` writes, atomically, `data/export/date=D/`:

    universal_user.parquet        user_id, embedding, model_version, event_timestamp, created,
                                  window, history_logit (as in <task>_user below)
    universal_item.parquet        item_id, ...
    <task>_user.parquet           the task's champion; users without task history get their
                                  universal embedding (model_version = the universal version),
                                  or with `train_targeted.newcomers: targeted` and a model that
                                  reads all-scene histories, the task model's embedding;
                                  plus window (the input's last max_len items) and
                                  history_logit (the model's offset of those items, null for
                                  universal rows): what the Feast score and U2I add (`with_history`)
    <task>_item.parquet           item embeddings of the task's champion (targeted training moves them),
                                  only the items of the task's scenes: its recall and Feast views
                                  never offer another scene's items
    <task>_recent_items.parquet   user_id, items (list<string>, newest last): the U2I2I input
    manifest.json                 the versions exported, row counts, the publish time, the
                                  export settings, the universal model's `history_logit` (the
                                  learned logit offset of items a user has already read, null
                                  without `model.history_offset`; the user files carry it per
                                  row beside the items it applies to), per task its model's offset
                                  (`task_history_logit`) and the users without task history
                                  embedded by the task model or given the universal vector

Users: those active in the last `export.lookback_days` days (any universal behaviour). Unknown
users get nothing (recall falls back to popularity). `embedding` is list<float32>;
`model_version` is `<registered model>:<version>`, e.g. `precise-click_article:3`;
`event_timestamp` is the publish time, strictly increasing across exports (Feast and Redis keep
the newest write), `created` the wall clock.

`precise export --date D --new-items` is the hourly path: only items published since the last
export, embedded by each champion grown to D's catalog (text-driven ID rows), into
`data/export/date=D/new_items-<time>/`; the universal rows also hold the items the champion never
saw that D's ingested behaviours before now have reached, moved towards the users who clicked
them (`training.audience`, `train_universal.early_clicks_k`; their vectors from D's daily export).
A run with neither new items nor new clicks since the last one writes nothing.

Re-running a date whose export holds the same champion versions and export settings
(`export.lookback_days`, `export.recent_items`, `train_targeted.newcomers`) changes nothing
(`--force` re-exports with a new timestamp).

`precise export item-init --task T|universal --date D` turns D's exported item vectors of one
model into files a plain ID-based model starts from (the Elephant-style initialisation,
docs/ranking.md), in `data/export/item_init/<T|universal>/date=D/`:

    vectors.parquet       item_id, vector list<float32>       (the export's rows and order)
    vectors.safetensors   `embedding`: (N, D) float32, row i = item_ids.json[i]; metadata:
                          model_version, date, l2_normalised
    item_ids.json         the item id of each row
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from core import schema
from core.atomic import atomic_dir, write_json
from core.errors import PreciseError
from core.settings import Settings, Task
from training import targeted, universal
from training.audience import blend
from training.lifecycle import registry
from training.prep import text
from training.prep.tensors import NEW_SESSION, Index, days_since_epoch, pad_left, session_context
from training.models.recommender import SequenceRecommender
from training.trainer import history_logit, load_checkpoint

log = logging.getLogger(__name__)


def export_root(settings: Settings) -> Path:
    return settings.paths.data / "export"


def publish_time(settings: Settings) -> dt.datetime:
    """Now, or just after the last export's time if the clock is behind it (always increasing)."""
    path = settings.paths.var / "export" / "last_timestamp.json"
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    if path.is_file():
        last = dt.datetime.fromisoformat(json.loads(path.read_text())["event_timestamp"])
        now = max(now, last + dt.timedelta(seconds=1))
    write_json(path, {"event_timestamp": now.isoformat()})
    return now


def table(key: str, ids: list[str], vectors: np.ndarray, version: str, ts: dt.datetime) -> pa.Table:
    """One export table: key, embedding list<float32>, model_version, event_timestamp, created."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    emb = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]).cast(pa.list_(pa.float32())) if len(ids) else pa.array([], pa.list_(pa.float32()))
    n = len(ids)
    stamp = pa.array([ts] * n, type=pa.timestamp("us", tz="UTC"))
    return pa.table({key: pa.array(ids, pa.string()), "embedding": emb, "model_version": pa.array([version] * n, pa.string()),
                     "event_timestamp": stamp, "created": pa.array([dt.datetime.now(dt.timezone.utc)] * n, pa.timestamp("us", tz="UTC"))})


def with_history(users: pa.Table, windows: list, offset: float | None, max_len: int) -> pa.Table:
    """A user table plus what its score adds to the items a user has already read
    (`model.history_offset`): `window` list<string>, the last `max_len` items of the input that
    the first len(windows) rows' vectors were computed from, and `history_logit` float32, the
    model's offset (null without one); the other rows (the universal vector) get [] and null. The
    Feast score view and U2I add the offset to the window's items."""
    n = len(windows)
    window = [list(w[-max_len:]) for w in windows] + [[]] * (users.num_rows - n)
    return users.append_column("window", pa.array(window, pa.list_(pa.string()))).append_column(
        "history_logit", pa.array([offset] * n + [None] * (users.num_rows - n), pa.float32()))


@torch.no_grad()
def user_vectors(model: SequenceRecommender, index: Index, histories: list, batch: int = 512, times: list | None = None) -> np.ndarray:
    """(U, D) user embeddings from item-id histories (oldest first). times: the histories'
    timestamps, for a model that reads session context (`session_gap_minutes`, universal or
    targeted): the vectors are then computed for the user's next session, which is when they are
    served."""
    model.eval()
    seqs = torch.from_numpy(pad_left([index.lookup(h) for h in histories], model.cfg.max_len))
    gap = model.cfg.session_gap_minutes
    ctx = (torch.from_numpy(pad_left([session_context(t, gap, request=NEW_SESSION) for t in times], model.cfg.max_len))
           if gap and times is not None else None)
    # each with the text-neighbour logit's columns of its last item (`text_logit_dim`) and the age
    # offset's column (`age_logit`); neither for a task model
    out = [model.served_users(model.users(seqs[i : i + batch], None if ctx is None else ctx[i : i + batch]),
                              seqs[i : i + batch, -1]).numpy() for i in range(0, len(seqs), batch)]
    return np.concatenate(out) if out else np.zeros((0, model.served_items(0.0).shape[1]), np.float32)


@torch.no_grad()
def item_vectors(model: SequenceRecommender, day: str) -> np.ndarray:
    """(N, D') embeddings of the model's items in index order (padding row dropped), as served on
    `day` (YYYY-MM-DD): with the text-neighbour logit (`text_logit_dim`) its columns and with the
    item-age offset (`age_logit`) each item's offset that day, so that user . item is the model's score."""
    model.eval()
    return model.served_items(float(days_since_epoch([pd.Timestamp(day, tz="UTC")])[0]))[1:].numpy()


def serving_day(day: str) -> str:
    """The day a daily export of `day` serves: the next one (its users' next session)."""
    return schema.day_bounds(day)[1].strftime("%Y-%m-%d")


def in_scenes(task: Task | None, ids: list[str], items: pd.DataFrame) -> np.ndarray:
    """Rows of `ids` (int64) whose items belong to the task's scenes; every row for universal or an
    all-scene task."""
    mask = targeted.task_candidates(task, items, Index(ids)) if task is not None else None
    return np.arange(len(ids), dtype=np.int64) if mask is None else np.flatnonzero(mask[1:].numpy())


def version_label(task: str | None, version) -> str:
    return f"{registry.model_name(task)}:{version}"


def champions(settings: Settings) -> dict[str, tuple[str, Path]]:
    """{'universal' | task: (model_version, checkpoint)} of every model with a champion."""
    out = {}
    for task in [None] + [t.name for t in settings.tasks]:
        v = registry.champion(settings, task)
        if v is not None:
            out[task or "universal"] = (version_label(task, v.version), Path(v.tags["checkpoint"]))
    if "universal" not in out:
        raise PreciseError("no universal champion in the registry: train a universal model first")
    return out


def export_task(tmp: Path, settings: Settings, task: Task, champion: tuple, catalog: tuple, active: pd.DataFrame,
                recent: pd.DataFrame, universal_users: tuple, ts, day: str, manifest_out: dict) -> None:
    """A task model's user and item files: its user vectors (every active user when it reads
    all-scene histories and `train_targeted.newcomers: targeted`, else the users with task
    history; the rest get the universal vector), with their windows and offset, and the vectors
    of its scenes' items. champion: (version label, checkpoint); catalog: `text.read`'s; recent:
    the active users' task sequences; universal_users: (version label, vectors, user -> row)."""
    (t_version, t_ckpt), (items, tok_ids, tok_init) = champion, catalog
    u_version, u_users, universal_by_user = universal_users
    meta, weights = load_checkpoint(t_ckpt)
    t_model, t_index, _, _ = targeted.grow(meta, weights, items, tok_ids, tok_init, settings.universal.new_item_neighbours)
    t_offset = history_logit(t_model)  # the task model's own (trained on from the universal model's)
    manifest_out.setdefault("task_history_logit", {})[task.name] = None if t_offset is None else round(t_offset, 4)
    has_task = set(recent["user_id"])
    if meta.get("input") == "all_scene":  # the model reads all-scene histories: it can embed every active user
        mine = active if settings.targeted.newcomers == "targeted" else active[active["user_id"].isin(has_task)]
    else:
        mine = recent
    t_users = user_vectors(t_model, t_index, list(mine["item_ids"]), times=list(mine["ts"]))
    embedded = set(mine["user_id"])
    fallback = [u for u in active["user_id"] if u not in embedded]
    # users without task history: how many the task model embedded, how many got the universal vector
    manifest_out.setdefault("without_task_history", {})[task.name] = {
        "task_model": len(embedded - has_task), "universal": len(fallback)}
    users = with_history(pa.concat_tables([
        table("user_id", list(mine["user_id"]), t_users, t_version, ts),
        table("user_id", fallback, u_users[np.array([universal_by_user[u] for u in fallback], dtype=np.int64)], u_version, ts),
    ]), list(mine["item_ids"]), t_offset, t_model.cfg.max_len)
    _write(tmp, f"{task.name}_user", users, manifest_out)
    rows = in_scenes(task, t_index.ids, items)
    _write(tmp, f"{task.name}_item", table("item_id", [t_index.ids[i] for i in rows], item_vectors(t_model, serving_day(day))[rows],
                                           t_version, ts), manifest_out)


def main(settings: Settings, date: str | None = None, force: bool = False) -> dict:
    from validation import manifest

    day = manifest.resolve_day(settings, date)
    out = schema.partition_dir(export_root(settings), day)
    models = champions(settings)
    wanted = {k: v for k, (v, _) in models.items()}
    cfg = settings.export
    # what else decides the files: a changed setting re-exports the day (a DVC stage re-run applies it)
    shape = {"lookback_days": cfg.lookback_days, "recent_items": cfg.recent_items, "newcomers": settings.targeted.newcomers}
    if (out / "manifest.json").is_file() and not force:
        done = json.loads((out / "manifest.json").read_text())
        if done["versions"] == wanted and done.get("settings") == shape:
            log.info("export of %s with the same champions and settings exists; nothing to do (--force re-exports)", day)
            return done
    items, tok_ids, tok_init = text.read(settings.paths.text)
    all_scene = schema.read_sequences(settings.paths.sequences)
    since = (pd.Timestamp(day) - pd.Timedelta(days=cfg.lookback_days - 1)).strftime("%Y-%m-%d")
    active = all_scene[all_scene["last_day"] >= since]
    ts = publish_time(settings)
    manifest_out = {"date": day, "event_timestamp": ts.isoformat(), "lookback_since": since, "versions": wanted,
                    "settings": shape, "files": {}}
    neighbours = settings.universal.new_item_neighbours
    with atomic_dir(out) as tmp:
        u_version, u_ckpt = models["universal"]
        meta, weights = load_checkpoint(u_ckpt)
        u_model, u_index, _, _ = universal.grow(meta, weights, items, tok_ids, tok_init, meta["max_tokens"], neighbours)
        u_users = user_vectors(u_model, u_index, list(active["item_ids"]), times=list(active["ts"]))
        universal_by_user = dict(zip(active["user_id"], range(len(active))))
        # the universal model's learned logit offset of items the user has already read (model.history_offset)
        u_offset = history_logit(u_model)
        manifest_out["history_logit"] = None if u_offset is None else round(u_offset, 4)
        _write(tmp, "universal_user", with_history(table("user_id", list(active["user_id"]), u_users, u_version, ts),
                                                   list(active["item_ids"]), u_offset, u_model.cfg.max_len),
               manifest_out)
        _write(tmp, "universal_item", table("item_id", u_index.ids, item_vectors(u_model, serving_day(day)), u_version, ts),
               manifest_out)
        for task in settings.tasks:
            task_seqs = schema.read_sequences(settings.paths.sequences, f"task={task.name}")
            recent = task_seqs[task_seqs["user_id"].isin(set(active["user_id"]))]
            _write(tmp, f"{task.name}_recent_items", pa.table({
                "user_id": pa.array(list(recent["user_id"]), pa.string()),
                "items": pa.array([list(s[-cfg.recent_items:]) for s in recent["item_ids"]], pa.list_(pa.string())),
                "event_timestamp": pa.array([ts] * len(recent), pa.timestamp("us", tz="UTC")),
                "created": pa.array([dt.datetime.now(dt.timezone.utc)] * len(recent), pa.timestamp("us", tz="UTC"))}),
                manifest_out)
            if task.name not in models:
                continue
            export_task(Path(tmp), settings, task, models[task.name], (items, tok_ids, tok_init), active, recent,
                        (u_version, u_users, universal_by_user), ts, day, manifest_out)
        (Path(tmp) / "manifest.json").write_text(json.dumps(manifest_out, indent=1))
    log.info("exported %s: %s", day, ", ".join(f"{k} {v} rows" for k, v in manifest_out["files"].items()))
    for task_name, n in manifest_out.get("without_task_history", {}).items():
        log.info("%s: %d users without task history embedded by the task model, %d given the universal vector",
                 task_name, n["task_model"], n["universal"])
    return manifest_out


def _write(folder: Path, name: str, data: pa.Table, manifest_out: dict) -> None:
    pq.write_table(data, Path(folder) / f"{name}.parquet")
    manifest_out["files"][name] = data.num_rows


def new_items(settings: Settings, date: str | None = None) -> dict:
    """The hourly path: embeddings of items published since the last export, and of the items
    the universal champion never saw that the day's clicks have reached since (see module docstring)."""
    from validation import manifest

    day = manifest.resolve_day(settings, date)
    state_path = settings.paths.var / "export" / "new_items.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    last = state.get("published_until")
    items, tok_ids, tok_init = text.read(settings.paths.text)
    published = pd.to_datetime(items["published_at"], utc=True)
    fresh = items[published > pd.Timestamp(last)] if last else items[published >= pd.Timestamp(day, tz="UTC")]
    ts = publish_time(settings)
    # early_clicks_k 0 (off): no click is read, so new clicks alone never start a run
    clicks = ingested_clicks(settings, day, ts) if settings.universal.early_clicks_k > 0 else no_clicks()
    clicks_until = state.get("clicks_until") if state.get("clicks_day") == day else None
    new_clicks = clicks if clicks_until is None else clicks[clicks["ts"] > pd.Timestamp(clicks_until)]
    out = schema.partition_dir(export_root(settings), day) / f"new_items-{ts.strftime('%H%M%S')}"
    summary = {"date": day, "event_timestamp": ts.isoformat(), "items": len(fresh), "moved": 0, "files": {}, "versions": {}}
    if fresh.empty and new_clicks.empty:
        return summary
    ids = set(fresh["item_id"])
    neighbours = settings.universal.new_item_neighbours
    tasks = {t.name: t for t in settings.tasks}
    with atomic_dir(out) as tmp:
        for name, (version, ckpt) in champions(settings).items():
            meta, weights = load_checkpoint(ckpt)
            grow = (lambda m, w: universal.grow(m, w, items, tok_ids, tok_init, m["max_tokens"], neighbours)) if name == "universal" \
                else (lambda m, w: targeted.grow(m, w, items, tok_ids, tok_init, neighbours))
            model, index, _, _ = grow(meta, weights)
            rows = [i for i in in_scenes(tasks.get(name), index.ids, items).tolist() if index.ids[i] in ids]
            vectors = item_vectors(model, day)  # served from today, the day they were published
            if name == "universal" and len(clicks):
                moved, vectors = early_clicks(settings, day, model, index, len(meta["item_ids"]), vectors, clicks, version)
                rows = sorted(set(rows) | set(moved))
                summary["moved"] = len(moved)
            _write(tmp, f"{name}_item", table("item_id", [index.ids[i] for i in rows], vectors[rows], version, ts), summary)
            summary["versions"][name] = version
        (Path(tmp) / "manifest.json").write_text(json.dumps(summary, indent=1))
    write_json(state_path, {"published_until": published.max().isoformat(), "clicks_day": day, "clicks_until": ts.isoformat()})
    summary["folder"] = str(out)
    return summary


def no_clicks() -> pd.DataFrame:
    return pd.DataFrame({"user_id": [], "item_id": [], "ts": pd.to_datetime([], utc=True)})


def ingested_clicks(settings: Settings, day: str, until: dt.datetime) -> pd.DataFrame:
    """The ingested behaviours of `day` before `until` (user_id, item_id, ts): the stream the
    hourly path folds into never-seen items (`training.audience`); empty before the day is ingested."""
    if day not in schema.list_days(settings.paths.events):
        return no_clicks()
    events = schema.read_events(settings.paths.data, [day])[["user_id", "item_id", "ts"]]
    return events[events["ts"] < pd.Timestamp(until)].sort_values("ts", kind="stable").reset_index(drop=True)


def early_clicks(settings: Settings, day: str, model, index: Index, n_trained: int, vectors: np.ndarray,
                 clicks: pd.DataFrame, version: str) -> tuple[list[int], np.ndarray]:
    """(rows moved, vectors (N, D') with them moved): the items the champion never saw (index
    rows past its `n_trained` items) that `clicks` reached, moved towards the universal vectors
    that `day`'s export serves for the users who clicked them (`training.audience.blend`, on the
    scored columns; an extra column, the age offset, kept). Clickers without such a vector (no
    daily export of the day yet, another version, a user it does not hold) are not counted."""
    path = schema.partition_dir(export_root(settings), day) / "universal_user.parquet"
    if not path.is_file():
        return [], vectors
    users = pq.read_table(path, columns=["user_id", "embedding", "model_version"]).to_pandas()
    users = users[users["model_version"] == version].reset_index(drop=True)
    row_of = {u: i for i, u in enumerate(users["user_id"])}
    known = clicks[clicks["user_id"].isin(row_of)]
    d = model.cfg.dim  # the scored width (the age offset's column follows it)
    base = torch.from_numpy(np.vstack([np.zeros((1, vectors.shape[1]), np.float32), vectors]))  # row 0: padding
    eligible = torch.zeros(len(base), dtype=torch.bool)
    eligible[n_trained + 1 :] = True
    clicked = torch.from_numpy(index.lookup(list(known["item_id"])))
    user_vecs = torch.from_numpy(np.stack(users["embedding"]).astype(np.float32)[:, :d]) if len(users) else torch.zeros(0, d)
    moved = blend(base[:, :d], user_vecs, clicked, torch.tensor([row_of[u] for u in known["user_id"]], dtype=torch.long),
                  eligible, settings.universal.early_clicks_k, model.to_space)
    rows = sorted(set((torch.unique(clicked[eligible[clicked]]) - 1).tolist()))
    out = vectors.copy()
    out[:, :d] = moved[1:].numpy()
    return rows, out


def item_init(settings: Settings, name: str, date: str | None = None) -> dict:
    """D's exported item vectors of `name` (a task, or `universal`) as initialisation files for an
    ID-based model (module docstring). The vectors are the export's, in the model's scoring space."""
    from safetensors.torch import save_file

    from validation import manifest

    if name != "universal":
        settings.task(name)  # an unknown task is a readable error
    day = manifest.resolve_day(settings, date)
    source = schema.partition_dir(export_root(settings), day) / f"{name}_item.parquet"
    if not source.is_file():
        raise PreciseError(f"no exported items of {name} for {day} at {source}: run `precise export --date {day}` first")
    data = pq.read_table(source, columns=["item_id", "embedding", "model_version"])
    if data.num_rows == 0:
        raise PreciseError(f"the export of {name} for {day} holds no items")
    ids = data["item_id"].to_pylist()
    vectors = np.stack(data["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
    version = data["model_version"][0].as_py()
    normalised = bool(np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3))
    out = schema.partition_dir(export_root(settings) / "item_init" / name, day)
    with atomic_dir(out) as tmp:
        pq.write_table(pa.table({"item_id": data["item_id"], "vector": data["embedding"]}), Path(tmp) / "vectors.parquet")
        save_file({"embedding": torch.from_numpy(vectors)}, str(Path(tmp) / "vectors.safetensors"),
                  metadata={"model_version": version, "date": day, "l2_normalised": str(normalised).lower()})
        (Path(tmp) / "item_ids.json").write_text(json.dumps(ids))
    log.info("item init of %s (%s): %d items x %d", name, version, len(ids), vectors.shape[1])
    return {"model": name, "model_version": version, "date": day, "items": len(ids), "dim": int(vectors.shape[1]),
            "l2_normalised": normalised, "folder": str(out)}

