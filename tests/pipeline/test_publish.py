"""Export -> Feast (SQLite and a real Redis) -> FAISS recall, on a tiny synthetic world with real
models: per-version views, the service switch after materialization, a failure mid-publish,
rollback, the feature server over HTTP, and recall from the command line."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from core import schema
from core.settings import Settings
from recall import index as recall_index
from recall.index import Recall
from serving import publish
from benchmarks.common import RedisServer, train_day
from tests.conftest import TINY_MODEL, TINY_TRAIN, free_port, ingested_world, need, run_cli, wait_for
from serving import export
from training import targeted
from training.lifecycle import registry
from training.prep import text
from training.trainer import load_checkpoint

# new items' vectors from their text through export, Feast and FAISS (the cold gate, off by default)
TINY_MODEL = TINY_MODEL | {"cold_gate": True}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Settings:
    s = ingested_world(
        tmp_path_factory.mktemp("publish"),
        before_ingest=lambda s: shutil.copytree(Path(__file__).resolve().parents[2] / "features", s.paths.root / "features"),
        train_universal={"model": TINY_MODEL, "train": TINY_TRAIN, "valid_users": 30, "replay_days": 2,
                         "new_item_neighbours": 3},
        train_targeted={"train": TINY_TRAIN, "valid_users": 20, "head_hidden": 32},
        registry={"tolerance": 1.0, "warmup_tolerance": 1.0},
        recall={"top_k": 10},
    )
    d1, d2 = schema.list_days(s.paths.events)[-2:]
    for day in (d1, d2):
        train_day(s, day)
    return s


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory):
    need(shutil.which("redis-server") is not None, "redis-server is not installed (apt-get install redis-server)")
    with RedisServer(tmp_path_factory.mktemp("redis")) as redis:
        yield redis.port


def versions_of(row: dict, i: int = 0) -> dict:
    return {k: v[i] for k, v in row.items() if k.endswith("model_version")}


def test_export_publish_read_score_and_recall(world, redis_port, monkeypatch):
    d2 = schema.list_days(world.paths.events)[-1]
    # Champions: every first version (the d2 versions wait for a later day's gate).
    out = export.main(world, d2)
    assert out["versions"] == {"universal": "precise-universal:1", "click_article": "precise-click_article:1",
                               "share_all": "precise-share_all:1"}
    assert export.main(world, d2) == out, "same champions: the day's export is left as it is"
    assert out["history_logit"] is not None and out["history_logit"] != 0.0, \
        "the manifest records the universal model's learned offset of items already read (model.history_offset)"
    assert set(out["task_history_logit"]) == {"click_article", "share_all"} and all(
        v is not None for v in out["task_history_logit"].values()), "and each task model's"
    folder = schema.partition_dir(world.paths.data / "export", d2)
    users = pq.read_table(folder / "click_article_user.parquet").to_pandas()
    assert set(users["model_version"]) == {"precise-click_article:1"}, "newcomers too (train_targeted.newcomers: targeted)"
    assert users["embedding"].map(len).eq(32).all() and str(pq.read_schema(folder / "click_article_user.parquet")
                                                            .field("embedding").type) == "list<element: float>"

    summary = publish.main(world, d2)
    assert summary["store"] == "sqlite" and summary["serving"]["click_article"] == "1"
    targeted_user = users[users["model_version"] == "precise-click_article:1"].iloc[0]
    items = pq.read_table(folder / "click_article_item.parquet").to_pandas()
    catalog, _, _ = text.read(world.paths.text)
    scene = dict(zip(catalog["item_id"], catalog["scene"]))
    assert {scene[i] for i in items["item_id"]} == {"article"}, "a one-scene task exports its scene's items only"
    every = pq.read_table(folder / "share_all_item.parquet").to_pandas()
    assert {scene[i] for i in every["item_id"]} == {"article", "video", "music", "game"}
    # The score is the model's: the dot product, plus the learned offset for an item the vector has read.
    window, logit = list(targeted_user["window"]), float(targeted_user["history_logit"])
    assert window and logit != 0.0 and not np.isnan(logit), "the task user rows carry their window and offset"
    item = items[~items["item_id"].isin(window)].iloc[3]
    read = items[items["item_id"].isin(window)].iloc[0]
    rows = [{"user_id": targeted_user["user_id"], "item_id": item["item_id"]}, {"user_id": "nobody", "item_id": "nothing"},
            {"user_id": targeted_user["user_id"], "item_id": read["item_id"]}]
    got = publish.read_online(world, rows)
    np.testing.assert_allclose(got["click_article_user_embedding"][0], targeted_user["embedding"], rtol=1e-6)
    assert got["click_article_score"][0] == pytest.approx(float(np.dot(targeted_user["embedding"], item["embedding"])), rel=1e-5)
    assert got["click_article_score"][2] == pytest.approx(float(np.dot(targeted_user["embedding"], read["embedding"])) + logit,
                                                          rel=1e-5), "an item already read: the offset added"
    assert versions_of(got)["click_article_user_model_version"] == "precise-click_article:1"
    assert got["click_article_recent_items"][0], "the U2I2I input is online"
    assert got["click_article_user_embedding"][1] is None and got["click_article_score"][1] is None, "unknown: nulls"

    # Redis returns what SQLite returns.
    monkeypatch.setenv(publish.ENV_STORE, f"redis://127.0.0.1:{redis_port}")
    assert publish.main(world, d2)["store"] == "redis"
    from_redis = publish.read_online(world, rows)
    for key, value in got.items():
        if key.endswith("embedding") and value[0] is not None:
            np.testing.assert_allclose(from_redis[key][0], value[0], rtol=1e-6)
        else:
            assert from_redis[key] == value or (key.endswith("score") and from_redis[key][0] == pytest.approx(value[0])), key
    monkeypatch.delenv(publish.ENV_STORE)

    # Recall from the command line: U2I excludes consumed items; U2I2I from the recent items;
    # an unknown user gets the popular items.
    u = targeted_user["user_id"]
    recent = set(got["click_article_recent_items"][0])
    u2i = json.loads(run_cli("--params", str(world.params_path), "recall", "u2i", "--task", "click_article", "--user", u,
                             cwd=world.paths.root).stdout)
    assert u2i["model_version"] == "precise-click_article:1" and len(u2i["items"]) == 10
    assert {scene[x["item_id"]] for x in u2i["items"]} == {"article"}, "task recall stays in the task's scenes"
    assert not recent & {x["item_id"] for x in u2i["items"]}
    scores = [x["score"] for x in u2i["items"]]
    assert scores == sorted(scores, reverse=True)
    top = item_ids_by_score(items, targeted_user["embedding"], exclude=recent, read=(set(window), logit))[:10]
    assert [x["item_id"] for x in u2i["items"]] == top, "flat index = the model's exact ranking"
    assert [x["item_id"] for x in Recall(world, "click_article", exact=True).u2i(u)] == top, "the exact top-k, as served"
    u2i2i = json.loads(run_cli("--params", str(world.params_path), "recall", "u2i2i", "--task", "click_article", "--user", u,
                               cwd=world.paths.root).stdout)
    assert u2i2i["items"] and not recent & {x["item_id"] for x in u2i2i["items"]}
    assert {scene[x["item_id"]] for x in u2i2i["items"]} == {"article"}
    universal_u2i = json.loads(run_cli("--params", str(world.params_path), "recall", "u2i", "--task", "universal",
                                       "--user", u, "--k", "200", cwd=world.paths.root).stdout)
    assert len({scene[x["item_id"]] for x in universal_u2i["items"]}) > 1, "universal recall spans the scenes"
    u_users = pq.read_table(folder / "universal_user.parquet").to_pandas().set_index("user_id")
    u_items = pq.read_table(folder / "universal_item.parquet").to_pandas()
    u_read = (set(u_users.loc[u, "window"]), float(u_users.loc[u, "history_logit"]))
    assert u_read[0] and u_read[1] != 0.0
    assert [x["item_id"] for x in universal_u2i["items"]][:20] == item_ids_by_score(
        u_items, u_users.loc[u, "embedding"], exclude=set(), read=u_read)[:20], "universal U2I: the model's ranking too"
    nobody = json.loads(run_cli("--params", str(world.params_path), "recall", "u2i", "--task", "click_article", "--user",
                                "nobody", cwd=world.paths.root).stdout)
    assert nobody["items"] and all(x["fallback"] == "popular" for x in nobody["items"])


def item_ids_by_score(items, user_vector, exclude, read=(set(), 0.0)) -> list[str]:
    """The model's ranking: dot products, plus the offset `read[1]` for the items in `read[0]`."""
    scores = np.stack(items["embedding"].to_numpy()) @ np.asarray(user_vector)
    scores = scores + read[1] * items["item_id"].isin(read[0]).to_numpy()
    order = np.argsort(-scores, kind="stable")
    return [items["item_id"].iloc[i] for i in order if items["item_id"].iloc[i] not in exclude]


def test_failure_mid_publish_keeps_the_previous_version_then_rollback(world, redis_port, monkeypatch):
    d2 = schema.list_days(world.paths.events)[-1]
    for task in world.tasks:  # as if the d2 versions had passed the next day's gate
        registry.promote(world, task.name, "2")
    for store in ("sqlite", f"redis://127.0.0.1:{redis_port}"):
        monkeypatch.setenv(publish.ENV_STORE, store)
        out = export.main(world, d2, force=True)
        assert out["versions"]["click_article"] == "precise-click_article:2"
        folder = schema.partition_dir(world.paths.data / "export", d2)
        user = pq.read_table(folder / "click_article_user.parquet").to_pandas()
        u = user[user["model_version"] == "precise-click_article:2"]["user_id"].iloc[0]
        before = publish.read_online(world, [{"user_id": u, "item_id": "x"}])
        assert before["click_article_user_model_version"] == ["precise-click_article:1"]
        # A broken file mid-publish: the user view of v2 materializes, then the item view fails.
        (folder / "click_article_item.parquet").write_bytes(b"not parquet")
        with pytest.raises(Exception):
            publish.main(world, d2)
        during = publish.read_online(world, [{"user_id": u, "item_id": "x"}])
        assert during["click_article_user_model_version"] == ["precise-click_article:1"], store
        np.testing.assert_allclose(during["click_article_user_embedding"][0], before["click_article_user_embedding"][0])
        # Fixed export: v2 goes live as a whole.
        export.main(world, d2, force=True)
        assert publish.main(world, d2)["serving"]["click_article"] == "2"
        after = publish.read_online(world, [{"user_id": u, "item_id": "x"}])
        assert after["click_article_user_model_version"] == ["precise-click_article:2"]
        # Rollback: promote v1 again, re-export (new, later timestamp), publish: v1 is served.
        registry.promote(world, "click_article", "1")
        export.main(world, d2, force=True)
        publish.main(world, d2)
        back = publish.read_online(world, [{"user_id": u, "item_id": "x"}])
        assert back["click_article_user_model_version"] == ["precise-click_article:1"], store
        registry.promote(world, "click_article", "2")  # leave the registry as the next store expects
    monkeypatch.delenv(publish.ENV_STORE)


def test_feature_server_over_http(world):
    if not publish.read_state(world)["serving"]:  # run alone (or without redis-server): publish the day first
        d2 = schema.list_days(world.paths.events)[-1]
        export.main(world, d2)
        publish.main(world, d2)
    state = publish.read_state(world)
    port = free_port()
    repo = publish.feast_dir(world, "sqlite")
    feast = Path(sys.executable).with_name("feast")
    proc = subprocess.Popen([str(feast), "--chdir", str(repo), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--no-access-log"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=os.environ | {"FEAST_USAGE": "False"})
    try:
        wait_for(port, 60)
        users = pq.read_table(state["versions"]["universal"][state["serving"]["universal"]]["user"]).to_pandas()
        body = json.dumps({"feature_service": world.publish.feature_service,
                           "entities": {"user_id": [users["user_id"].iloc[0], "nobody"], "item_id": ["x", "x"]}}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/get-online-features", data=body,
                                         headers={"Content-Type": "application/json"})
        reply = json.loads(urllib.request.urlopen(request, timeout=30).read())
        names = reply["metadata"]["feature_names"]
        col = names.index("universal_user_embedding")
        values = reply["results"][col]["values"]
        np.testing.assert_allclose(values[0], users["embedding"].iloc[0], rtol=1e-6)
        assert values[1] is None, "unknown user: null"

        # The guide's own HTTP example, its payload as written, returns real values.
        payload = re.search(r"-d '(\{.*\})'", RANKING_GUIDE.read_text()).group(1)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/get-online-features", data=payload.encode(),
                                         headers={"Content-Type": "application/json"})
        reply = json.loads(urllib.request.urlopen(request, timeout=30).read())
        names = reply["metadata"]["feature_names"]
        for feature in ("click_article_user_embedding", "click_article_item_embedding", "click_article_score"):
            assert reply["results"][names.index(feature)]["values"][0] is not None, feature
    finally:
        proc.terminate()
        proc.wait(10)


RANKING_GUIDE = Path(__file__).resolve().parents[2] / "docs" / "ranking.md"


def test_feast_finds_the_published_objects_among_the_module_attributes(world, monkeypatch):
    """`feast apply` by hand sees what `precise publish` applied: dir() + getattr() of the module."""
    if not publish.read_state(world)["serving"]:
        d2 = schema.list_days(world.paths.events)[-1]
        export.main(world, d2)
        publish.main(world, d2)
    monkeypatch.setenv("PRECISE_FEAST_STATE", str(publish.state_path(world)))
    module = publish.definitions(world)
    names = {getattr(getattr(module, a), "name", None) for a in dir(module)}
    assert {"ranking_v1", "user", "item"} <= names and any(str(n).startswith("click_article_user_v") for n in names)
    for obj in module.PUBLISHED:  # each object is the attribute of its own name, and every field is described
        assert getattr(module, obj.name) is obj
        fields = [] if obj.__class__.__name__ in ("Entity", "FeatureService", "OnDemandFeatureView") else obj.schema
        assert all(f.description for f in fields), obj.name


def test_the_ranking_guide_examples_return_real_values(world, monkeypatch):
    """docs/ranking.md's Python block and recall commands, run as written against this world."""
    if not publish.read_state(world)["serving"]:  # run alone: publish the day first
        d2 = schema.list_days(world.paths.events)[-1]
        export.main(world, d2)
        publish.main(world, d2)
    text = RANKING_GUIDE.read_text()
    monkeypatch.chdir(world.paths.root)  # the guide runs from the project folder
    scope: dict = {}
    exec(compile(re.search(r"```python\n(.*?)```", text, re.S).group(1), "docs/ranking.md", "exec"), scope)
    features = scope["features"]
    assert features["click_article_score"][0] is not None and features["click_article_user_embedding"][0] is not None
    assert features["click_article_user_model_version"][0].startswith("precise-click_article:")
    commands = re.findall(r"`(precise recall [^`]*--user \S+)`", text)
    assert commands, "the guide shows a recall command"
    for command in commands:
        out = json.loads(run_cli("--params", str(world.params_path), *command.split()[1:], cwd=world.paths.root).stdout)
        assert out["items"] and not any(x.get("fallback") for x in out["items"]), command


def test_new_items_hourly_path(world):
    """Items published on d2 were never seen by the served models (trained through d1): their
    vectors come from their text (model.cold_gate, on in this world), the hourly path publishes them to Feast and
    FAISS, and recall returns one for the user the model scores it highest for."""
    d2 = schema.list_days(world.paths.events)[-1]
    daily = export.main(world, d2, force=True)  # champions served as they are now (earlier tests promote)
    publish.main(world, d2)
    out = export.new_items(world, d2)
    assert out["items"] > 0 and set(out["versions"]) >= {"universal", "click_article"}
    table = pq.read_table(Path(out["folder"]) / "click_article_item.parquet").to_pandas()
    items, _, _ = text.read(world.paths.text)
    fresh = items[pd.to_datetime(items["published_at"], utc=True) >= pd.Timestamp(d2, tz="UTC")]
    assert set(table["item_id"]) == set(fresh.loc[fresh["scene"] == "article", "item_id"])
    every = pq.read_table(Path(out["folder"]) / "universal_item.parquet").to_pandas().set_index("item_id")
    assert set(every.index) >= set(fresh["item_id"])
    again = export.new_items(world, d2)
    assert again["items"] == 0 and again["moved"] == 0 and "folder" not in again, "nothing new since the last run"
    # The same vectors as the daily export of the same model version (what evaluation scores).
    folder = schema.partition_dir(world.paths.data / "export", d2)
    day_items = pq.read_table(folder / "click_article_item.parquet").to_pandas().set_index("item_id")
    assert set(table["model_version"]) == {daily["versions"]["click_article"]}
    for _, row in table.iterrows():
        np.testing.assert_allclose(row["embedding"], day_items.loc[row["item_id"], "embedding"], rtol=1e-5, atol=1e-6)
    assert publish.new_items(world, Path(out["folder"])).get("click_article") == len(table)
    # Feast scores a new item, and U2I through FAISS returns it where exact scoring ranks it: the
    # user and new item with the best rank (this world's tiny random language model and one epoch
    # carry little topic; tests/model/test_quality.py measures how well new items rank).
    users = pq.read_table(folder / "click_article_user.parquet").to_pandas()
    users = users[users["model_version"] == daily["versions"]["click_article"]].reset_index(drop=True)
    scores = np.stack(users["embedding"]) @ np.stack(day_items["embedding"]).T  # (users, items)
    new_cols = [day_items.index.get_loc(i) for i in table["item_id"]]
    ranks = (scores[:, None, :] > scores[:, new_cols][:, :, None]).sum(-1)  # (users, new items)
    u, j = np.unravel_index(ranks.argmin(), ranks.shape)
    user, item = users.loc[u, "user_id"], table["item_id"].iloc[j]
    got = publish.read_online(world, [{"user_id": user, "item_id": item}])
    assert got["click_article_score"][0] is not None, "Feast scores the new item"
    u2i = json.loads(run_cli("--params", str(world.params_path), "recall", "u2i", "--task", "click_article", "--user", user,
                             "--k", str(int(ranks[u, j]) + 13), "--keep-consumed", cwd=world.paths.root).stdout)  # + a window that the offset may lift
    assert item in {x["item_id"] for x in u2i["items"]}, "recall through FAISS returns the new item"

    # The universal rows: the items the champion never saw that d2's clicks reached moved towards
    # the served vectors of the users who clicked them (training.audience); Feast and FAISS hold them.
    universal_day = pq.read_table(folder / "universal_item.parquet").to_pandas().set_index("item_id")
    served = pq.read_table(folder / "universal_user.parquet").to_pandas()
    served = served[served["model_version"] == daily["versions"]["universal"]].set_index("user_id")
    events = schema.read_events(world.paths.data, [d2])
    trained = set(load_checkpoint(Path(registry.champion(world, None).tags["checkpoint"]))[0]["item_ids"])
    reached = events[~events["item_id"].isin(trained) & events["user_id"].isin(served.index)]
    assert out["moved"] == reached["item_id"].nunique() > 0
    d = len(every["embedding"].iloc[0]) - int(world.universal.model.age_logit)  # the scored columns
    for item, clickers in reached.groupby("item_id")["user_id"]:
        audience = np.stack(served.loc[clickers, "embedding"])[:, :d].sum(0)
        moved, before = np.asarray(every.loc[item, "embedding"])[:d], np.asarray(universal_day.loc[item, "embedding"])[:d]
        assert moved @ audience > before @ audience, f"{item} moved towards its {len(clickers)} clickers"
    index_folder = recall_index.index_dir(world, "universal", daily["versions"]["universal"].rsplit(":", 1)[1])
    faiss_index, ids = faiss.read_index(str(index_folder / "index.faiss")), json.loads((index_folder / "ids.json").read_text())
    item = reached["item_id"].iloc[0]
    np.testing.assert_allclose(faiss_index.reconstruct(ids.index(item)), every.loc[item, "embedding"], rtol=1e-5, atol=1e-6)


def test_item_init_export_loads_into_an_id_embedding(world):
    """`precise export item-init`: the exported item vectors of a model as an ID model's
    initialisation: a fresh nn.Embedding built from the safetensors file gives, for every item id
    (through item_ids.json), the export's vector; other ids are absent."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    d2 = schema.list_days(world.paths.events)[-1]
    export.main(world, d2)
    folder = schema.partition_dir(world.paths.data / "export", d2)
    for name in ("click_article", "universal"):
        out = export.item_init(world, name, d2)
        init = Path(out["folder"])
        exported = pq.read_table(folder / f"{name}_item.parquet").to_pandas()
        expected = dict(zip(exported["item_id"], exported["embedding"]))
        ids = json.loads((init / "item_ids.json").read_text())
        embedding = torch.nn.Embedding.from_pretrained(load_file(init / "vectors.safetensors")["embedding"], freeze=False)
        assert embedding.weight.shape == (len(expected), 32) and sorted(ids) == sorted(expected)
        rows = {item: i for i, item in enumerate(ids)}
        for item, vector in expected.items():
            got = embedding(torch.tensor([rows[item]]))[0].detach().numpy()
            np.testing.assert_allclose(got, np.asarray(vector, dtype=np.float32), rtol=0, atol=0)
        parquet = pq.read_table(init / "vectors.parquet").to_pandas()
        assert list(parquet["item_id"]) == ids
        np.testing.assert_array_equal(np.stack(parquet["vector"]), embedding.weight.detach().numpy())
        assert "ghost-item" not in rows
        with safe_open(init / "vectors.safetensors", "pt") as f:
            meta = f.metadata()
        assert meta["model_version"] == out["model_version"] == exported["model_version"].iloc[0]
        assert meta["date"] == d2 and meta["l2_normalised"] == str(out["l2_normalised"]).lower()
    scene = dict(zip(*(text.read(world.paths.text)[0][c] for c in ("item_id", "scene"))))
    assert {scene[i] for i in json.loads((Path(export.item_init(world, "click_article", d2)["folder"]) /
                                          "item_ids.json").read_text())} == {"article"}
    bad = run_cli("--params", str(world.params_path), "export", "item-init", "--task", "nope", "--date", d2,
                  cwd=world.paths.root, check=False)
    assert bad.returncode == 2 and "unknown task 'nope'" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli("--params", str(world.params_path), "export", "item-init", "--date", d2,
                      cwd=world.paths.root, check=False)
    assert missing.returncode == 2 and "needs --task" in missing.stderr


def test_newcomers_get_the_task_models_vector_when_it_reads_all_scene_histories(world):
    """train_targeted.newcomers: with `targeted` (the default) a task model that reads all-scene
    histories embeds the active users without task history too, so the Feast score is a number for
    them; with `universal` they carry the universal vector and version, and the score is null
    (vectors of different versions are never combined). Users with task history get the same
    vectors either way. Runs last: it re-exports and re-publishes the module's day."""
    import dataclasses

    d2 = schema.list_days(world.paths.events)[-1]
    folder = schema.partition_dir(world.paths.data / "export", d2)
    assert world.targeted.input == "all_scene" and world.targeted.newcomers == "targeted"
    task_version, ckpt = export.champions(world)["click_article"]  # earlier tests moved the champion
    old = dataclasses.replace(world, targeted=dataclasses.replace(world.targeted, newcomers="universal"))
    first = export.main(old, d2, force=True)
    before = pq.read_table(folder / "click_article_user.parquet").to_pandas()
    kept = before[before["model_version"] == task_version]  # users with task history
    newcomer = before.loc[before["model_version"] != task_version, "user_id"].iloc[0]
    assert set(before["model_version"]) == {task_version, export.champions(world)["universal"][0]}
    n_new = len(before) - len(kept)
    assert first["without_task_history"]["click_article"] == {"task_model": 0, "universal": n_new}
    item = pq.read_table(folder / "click_article_item.parquet").to_pandas().iloc[0]
    publish.main(old, d2)
    mixed = publish.read_online(old, [{"user_id": newcomer, "item_id": item["item_id"]}])
    assert mixed["click_article_user_embedding"][0] is not None and mixed["click_article_score"][0] is None, \
        "vectors of different versions are never combined"

    done = export.main(world, d2)
    assert done["settings"]["newcomers"] == "targeted", "a changed setting re-exports the day"
    assert done["without_task_history"]["click_article"] == {"task_model": n_new, "universal": 0}
    after = pq.read_table(folder / "click_article_user.parquet").to_pandas()
    assert set(after["user_id"]) == set(before["user_id"]) and set(after["model_version"]) == {task_version}
    mine = dict(zip(after["user_id"], after["embedding"]))
    for user, vector in zip(kept["user_id"], kept["embedding"]):
        np.testing.assert_allclose(mine[user], vector, rtol=1e-6)
    meta, weights = load_checkpoint(ckpt)
    items, tok_ids, tok_init = text.read(world.paths.text)
    model, index, _, _ = targeted.grow(meta, weights, items, tok_ids, tok_init, world.universal.new_item_neighbours)
    seqs = schema.read_sequences(world.paths.sequences)
    row = seqs[seqs["user_id"] == newcomer].iloc[0]
    expected = export.user_vectors(model, index, [row["item_ids"]], times=[row["ts"]])[0]
    np.testing.assert_allclose(mine[newcomer], expected, rtol=1e-5, atol=1e-6)
    publish.main(world, d2)
    scored = publish.read_online(world, [{"user_id": newcomer, "item_id": item["item_id"]}])
    assert scored["click_article_score"][0] == pytest.approx(float(np.dot(expected, item["embedding"])), rel=1e-4)


def test_point_in_time_training_set_from_the_offline_history(world, tmp_path):
    """issue 31: an event on day E gets the export of the last published day before E (its model
    versions say which), never E's own; nulls before the first publish and past the TTL."""
    from serving import historical

    d1, d2 = schema.list_days(world.paths.events)[-2:]
    before = registry.champion(world, None)
    published = {}
    for day, version in ((d1, "1"), (d2, "2")):  # a different universal version served after each day
        registry.promote(world, None, version)
        export.main(world, day, force=True)
        publish.main(world, day)
        folder = historical.history_dir(world)
        published[day] = {kind: pq.read_table(folder / "universal" / kind / f"{day}.parquet").to_pandas()
                          for kind in ("user", "item")}
    first_day_file = (historical.history_dir(world) / "universal" / "user" / f"{d1}.parquet").read_bytes()
    u_users, u_items = published[d2]["user"], published[d2]["item"]
    user, item, other = u_users["user_id"].iloc[0], u_items["item_id"].iloc[0], u_items["item_id"].iloc[1]
    assert user in set(published[d1]["user"]["user_id"]) and item in set(published[d1]["item"]["item_id"])
    day = pd.Timestamp
    d3 = (day(d2) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    rows = pd.DataFrame({
        "user_id": [user] * 6 + ["nobody", user],
        "item_id": [item] * 7 + [other],
        "event_timestamp": [day(f"{d1} 12:00", tz="UTC"),             # before the first publish served: null
                            day(f"{d2} 00:00", tz="UTC"),             # d1's export serves from d2 00:00
                            day(f"{d2} 23:59", tz="UTC"),             # ... all day d2, never d2's own export
                            day(f"{d3} 08:00", tz="UTC"),             # d2's export
                            day(f"{d3} 00:00", tz="UTC") + pd.Timedelta(days=6, hours=23),  # within the 7-day TTL
                            day(f"{d3} 00:00", tz="UTC") + pd.Timedelta(days=7, hours=1),   # past it: null
                            day(f"{d3} 08:00", tz="UTC"),             # an unknown user: null user features
                            day(f"{d3} 08:00", tz="UTC")],            # a slate: the same user and time, another item
        "label": [1, 0, 1, 0, 1, 0, 1, 0],
    })
    out = historical.historical(world, rows, ["universal"])
    assert list(out["label"]) == list(rows["label"]), "rows and their other columns keep their order"
    expected = [None, d1, d1, d2, d2, None, d2, d2]
    for i, source in enumerate(expected):
        version = out["universal_user_model_version"][i]
        if source is None:
            assert pd.isna(version) and pd.isna(out["universal_score"][i]), i
            continue
        users = published[source]["user"].set_index("user_id")
        items = published[source]["item"].set_index("item_id")
        item = out["item_id"][i]
        assert out["universal_item_model_version"][i] == items.loc[item, "model_version"], i
        if out["user_id"][i] == "nobody":
            assert pd.isna(version) and pd.isna(out["universal_score"][i])
            continue
        assert version == users.loc[user, "model_version"] == f"precise-universal:{1 if source == d1 else 2}", i
        u, v = np.asarray(users.loc[user, "embedding"]), np.asarray(items.loc[item, "embedding"])
        np.testing.assert_allclose(out["universal_user_embedding"][i], u, rtol=1e-6)
        offset = users.loc[user, "history_logit"] if item in set(users.loc[user, "window"]) else 0.0
        assert out["universal_score"][i] == pytest.approx(float(u @ v) + offset, rel=1e-5), i
    # publishing a later day never rewrites an earlier day's history
    assert (historical.history_dir(world) / "universal" / "user" / f"{d1}.parquet").read_bytes() == first_day_file
    # the same through the command line, for a team that does not write Python; a bad frame is one error line
    rows.drop(columns="label").to_csv(tmp_path / "log.csv", index=False)
    params = ("--params", str(world.paths.root / "params.yaml"))
    proc = run_cli(*params, "features", "historical", "--entities", str(tmp_path / "log.csv"), "--out",
                   str(tmp_path / "set.parquet"), "--models", "universal", "click_article", cwd=world.paths.root)
    summary = json.loads(proc.stdout)
    assert summary["rows"] == 8 and summary["non_null"]["universal_score"] == 5
    cli = pd.read_parquet(tmp_path / "set.parquet")
    assert list(cli["universal_user_model_version"].fillna("-")) == list(out["universal_user_model_version"].fillna("-"))
    assert "click_article_score" in cli.columns
    pd.DataFrame({"user_id": ["u"], "when": ["2026-01-01"]}).to_csv(tmp_path / "bad.csv", index=False)
    bad = run_cli(*params, "features", "historical", "--entities", str(tmp_path / "bad.csv"), "--out",
                  str(tmp_path / "x.parquet"), cwd=world.paths.root, check=False)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error:") and "item_id" in bad.stderr
    assert not (tmp_path / "x.parquet").exists()
    if before is not None:
        registry.promote(world, None, str(before.version))


def test_a_failed_index_build_switches_nothing(world, monkeypatch):
    """issue 33: publish builds the new versions' FAISS indexes before it names them anywhere; a
    failure there leaves the published state and the served FeatureService as they were."""
    from recall import index as recall_index

    d2 = schema.list_days(world.paths.events)[-1]
    export.main(world, d2, force=True)  # a new publish time: a switched state would differ
    publish.main(world, d2)
    state_file = publish.state_path(world)
    before = state_file.read_bytes()
    served = publish.read_state(world)["serving"]
    for model, version in served.items():  # an index to rebuild
        shutil.rmtree(recall_index.index_dir(world, model, str(version)))
    export.main(world, d2, force=True)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(recall_index, "build_serving", broken)
    with pytest.raises(OSError):
        publish.main(world, d2)
    assert state_file.read_bytes() == before, "the state still names what served before"
    monkeypatch.undo()
    assert publish.main(world, d2)["serving"] == served  # the retry succeeds and rebuilds the indexes
    for model, version in served.items():
        assert (recall_index.index_dir(world, model, str(version)) / "meta.json").is_file()
