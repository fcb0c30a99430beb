"""Feast definitions of precise: entities, per-version embedding views, the ranking service.

Declarative only. The entities are fixed; which model versions exist is decided by `precise
publish` (serving/publish.py), which records them in a JSON state file (`$PRECISE_FEAST_STATE`,
default `../var/feast/sqlite/published.json` from this folder; `redis/` for the Redis store). Every
other object is `build(state)`, a pure function of it, bound at import to a module attribute of
its Feast name (`PUBLISHED` holds them all), so `feast apply` by hand and `precise publish` always
agree. Every field carries a description, except the on-demand score (Feast compares a declared
on-demand field with the one it infers by running the function, description included; the view's
description says what the score is).

* Entities `user` (join key user_id) and `item` (item_id).
* Per model version (model = `universal` or a task), two views over the exported Parquet files:
  `<model>_user_v<N>` with fields `<model>_user_embedding` Array(Float32) and
  `<model>_user_model_version` String, and `<model>_item_v<N>` likewise. Field names carry the
  model but not the version, so a reader's column names never change when a version goes live.
  A new version is written into its own views, so readers never see a half-written version.
* Per task version, an on-demand view `<task>_score_v<N>` with field `<task>_score`: the user.item
  dot product of the exported vectors, the training score (PRECISE's ranking feature; a cosine under
  `similarity: cosine`, whose exported vectors are L2-normalised), plus the model's learned offset
  when the item is one the user's vector has read (`model.history_offset`: the task user view's
  fields `<task>_user_window` and `<task>_user_history_logit`, in versions exported with them), null when the two vectors come from different model
  versions (a user without task history carries the universal vector under
  `train_targeted.newcomers: universal`, or with a task model that reads only task sequences).
* Per task, view `<task>_recent_items`, field `<task>_recent_items` (Array(String)): the user's
  recent task items, the online input of U2I2I.
* The FeatureService (`ranking_v1`) serves the *current* version of each model: publishing
  switches it only after the new version is materialized.
* The offline history, for point-in-time training sets (serving/historical.py): per model, views
  `<model>_user_history` and `<model>_item_history` (offline only) over a folder of one Parquet
  file per published day, each row stamped with the start of the day after its data day (when
  those vectors began to serve); the same field names as the version views, and a TTL
  (`publish.history_ttl_days`). Per model, the on-demand `<model>_score_history` (the score above,
  the universal model's too) over them.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Array, Float32, Float64, String

STATE = Path(os.environ.get("PRECISE_FEAST_STATE",
                            Path(__file__).resolve().parent.parent / "var" / "feast" / "sqlite" / "published.json"))

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING, description="a platform user")
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING, description="a catalog item")


def _embedding_view(name: str, prefix: str, entity: Entity, path: str, tags: dict, history: bool = False,
                    ttl_days: float | None = None) -> FeatureView:
    """A version's view (online, no TTL) or, with ttl_days, a model's offline history view."""
    fields = {"embedding": Array(Float32), "model_version": String}
    if history:  # a user view: the items a score adds the model's offset to, and the offset
        fields |= {"window": Array(String), "history_logit": Float32}
    what = "user" if entity is user else "item"
    descriptions = {
        "embedding": f"the {what}'s embedding in the model's scoring space (L2-normalised under cosine similarity)",
        "model_version": "<registered model>:<version> the vector comes from; never combine vectors of two versions",
        "window": "the items the user vector read (the model's input window, newest last)",
        "history_logit": "the model's learned logit offset of items in window (model.history_offset)",
    }
    return FeatureView(
        name=name,
        entities=[entity],
        ttl=None if ttl_days is None else timedelta(days=ttl_days),
        schema=[Field(name=f"{prefix}_{column}", dtype=dtype, description=descriptions[column])
                for column, dtype in fields.items()],
        # a history row's `created` is the export's wall clock, not a time of the data: left out
        source=FileSource(name=f"{name}_source", path=path, timestamp_field="event_timestamp",
                          created_timestamp_column="created" if ttl_days is None else "",
                          field_mapping={column: f"{prefix}_{column}" for column in fields}),
        online=ttl_days is None,
        tags=tags,
    )


def _score_view(name: str, task: str, users: FeatureView, items: FeatureView):
    @on_demand_feature_view(
        sources=[users, items],
        # no Field description here: Feast checks the declared field against the one it infers by
        # running the function, description included, and an inferred field has none
        schema=[Field(name=f"{task}_score", dtype=Float64)],
        mode="python",
        name=name,
        description="user.item dot product of the exported vectors (the training score; cosine when the model uses it); null across model versions",
    )
    def score(inputs: dict) -> dict:
        # Feast rebuilds this function from its source text: no closure variables; the task name
        # is read back from the input field names (<task>_user_embedding).
        key = next(k for k in inputs if k.endswith("_user_embedding") and "__" not in k)
        prefix = key[: -len("_user_embedding")]
        n = len(inputs[key])
        windows = inputs.get(f"{prefix}_user_window") or [None] * n  # versions exported with the offset
        logits = inputs.get(f"{prefix}_user_history_logit") or [None] * n
        out = []
        for u, i, uv, iv, item, window, logit in zip(
                inputs[key], inputs[f"{prefix}_item_embedding"], inputs[f"{prefix}_user_model_version"],
                inputs[f"{prefix}_item_model_version"], inputs.get("item_id") or [None] * n, windows, logits):
            if u is None or i is None or uv != iv:
                out.append(None)
                continue
            read = logit is not None and window is not None and item in window  # model.history_offset
            out.append(float(sum(a * b for a, b in zip(u, i))) + (float(logit) if read else 0.0))
        return {f"{prefix}_score": out}

    return score


def _recent_view(task: str, path: str) -> FeatureView:
    name = f"{task}_recent_items"
    return FeatureView(
        name=name,
        entities=[user],
        ttl=None,
        schema=[Field(name=name, dtype=Array(String), description="the user's most recent task items, newest last (U2I2I input)")],
        source=FileSource(name=f"{name}_source", path=path, timestamp_field="event_timestamp",
                          created_timestamp_column="created", field_mapping={"items": name}),
        online=True,
    )


def build(state: dict) -> list:
    """Every Feast object for a published state (see module docstring)."""
    objects: list = [user, item]
    views: dict[tuple[str, str], tuple[FeatureView, FeatureView]] = {}
    for model, published in sorted(state.get("versions", {}).items()):
        for version, files in sorted(published.items()):
            tags = {"model": model, "version": str(version), "model_version": files["model_version"]}
            pair = (_embedding_view(f"{model}_user_v{version}", f"{model}_user", user, files["user"], tags,
                                    history=files.get("history", False)),
                    _embedding_view(f"{model}_item_v{version}", f"{model}_item", item, files["item"], tags))
            views[(model, str(version))] = pair
            objects += list(pair)
            if model != "universal":
                objects.append(_score_view(f"{model}_score_v{version}", model, *pair))
    for model, files in sorted(state.get("history", {}).items()):  # the offline history per model
        tags = {"model": model, "history": "true"}
        pair = (_embedding_view(f"{model}_user_history", f"{model}_user", user, files["user"], tags,
                                history=files.get("history", False), ttl_days=files["ttl_days"]),
                _embedding_view(f"{model}_item_history", f"{model}_item", item, files["item"], tags,
                                ttl_days=files["ttl_days"]))
        objects += list(pair) + [_score_view(f"{model}_score_history", model, *pair)]
    recent = {task: _recent_view(task, path) for task, path in sorted(state.get("recent", {}).items())}
    objects += list(recent.values())
    serving = state.get("serving", {})
    if serving:
        features = []
        for model, version in sorted(serving.items()):
            features += list(views[(model, str(version))])
            if model != "universal":
                features.append(next(o for o in objects if getattr(o, "name", None) == f"{model}_score_v{version}"))
        features += list(recent.values())
        objects.append(FeatureService(name=state.get("feature_service", "ranking_v1"), features=features,
                                      description="precise embeddings for ranking: the serving version of each model",
                                      tags={"serving": json.dumps(serving, sort_keys=True)}))
    return objects


def read_state(path: Path = STATE) -> dict:
    """The published state (`precise publish` writes it); empty before the first publish."""
    return json.loads(path.read_text()) if path.is_file() else {}


# --- what exists ------------------------------------------------------------------------------------
# The fixed objects are the entities above; the published versions' views, the score views, the
# recent-items views and the FeatureService follow from the state, read once when Feast (or
# serving/store.py, which loads this file afresh for each publish) imports the module. `feast apply`
# finds a repository's objects among its module attributes: each is an attribute named as in Feast.
PUBLISHED: list = build(read_state())
globals().update({o.name: o for o in PUBLISHED})  # the entities rebind to themselves

_ = pd  # pandas is imported for Feast's on-demand transformations
