"""Importers turn foreign logs into daily drops that ingest accepts, reporting every rejected row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ingest import importers, ingest
from core import schema
from core.errors import PreciseError
from training.prep import sequences
from core.settings import Settings
from tests.conftest import write_params
from validation import manifest, validate

# An event log in someone else's shape: other names, epoch milliseconds, an extra column,
# a local-time offset, and some broken rows.
FOREIGN = (
    "when;who;what;where;kind;weight\n"
    "1767607200000;alice;A-1;news;view;1\n"
    "1767610800000;alice;A-2;clips;view;1\n"
    "2026-01-05T23:30:00-02:00;bob;A-1;news;like;3\n"       # 01:30Z on the 6th
    "1767700000000;bob;A-3;news;view;1\n"
    "soon;carol;A-1;news;view;1\n"                          # unparsable time
    "1767700000000;;A-1;news;view;1\n"                      # no user
)


@pytest.fixture
def foreign_log(tmp_path: Path) -> Path:
    path = tmp_path / "export.csv"
    path.write_text(FOREIGN.replace(";", ","))
    return path


def test_csv_with_a_column_mapping_becomes_valid_partitions(settings, foreign_log, tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("id,name,section\nA-1,First,news\nA-2,Second,clips\nA-3,Third,news\n")
    report = importers.import_csv(
        settings.paths.landing,
        foreign_log,
        importers.parse_mapping(["ts=when,user_id=who", "item_id=what,scene=where,action=kind"]),
        catalog_path=items,
        catalog_mapping=importers.parse_mapping(["item_id=id,title=name,scene=section"]),
    )
    assert report["days"] == ["2026-01-05", "2026-01-06"]
    assert report["rejected"] == {"export.csv": 2, "items.csv": 0}
    rejects = pd.read_parquet(settings.paths.landing / "_rejects" / "export.parquet")
    assert sorted(rejects["reason"]) == ["missing user_id", "unparsable ts"]

    reports = ingest.run(settings)
    assert [r.events for r in reports] == [2, 2]
    assert all(r.rejected_events == 0 for r in reports)
    events = schema.read_events(settings.paths.data, ["2026-01-05", "2026-01-06"])
    assert set(events.columns) == set(schema.EVENT_COLUMNS) | {"date"}
    assert sorted(events["action"].unique()) == ["like", "view"]
    bob = events[events["user_id"] == "bob"].sort_values("ts")
    assert bob["ts"].iloc[0] == pd.Timestamp("2026-01-06T01:30:00Z")
    # Items without a publication time appear on their first event's day.
    catalog = schema.read_catalog(settings.paths.data, "2026-01-06")
    assert set(catalog["item_id"]) == {"A-1", "A-2", "A-3"}
    assert schema.read_catalog(settings.paths.data, "2026-01-05")["item_id"].tolist() == ["A-1", "A-2"]


def test_csv_mapping_errors_are_readable(settings, foreign_log):
    with pytest.raises(PreciseError, match="not in the file"):
        importers.import_csv(settings.paths.landing, foreign_log, {"user_id": "nobody"})
    with pytest.raises(PreciseError, match="contract names"):
        importers.import_csv(settings.paths.landing, foreign_log, {"userid": "who"})
    with pytest.raises(PreciseError, match="pass --scene"):
        importers.import_csv(settings.paths.landing, foreign_log,
                             {"user_id": "who", "item_id": "what", "ts": "when"}, action="view")
    with pytest.raises(PreciseError, match="CONTRACT_NAME=SOURCE_COLUMN"):
        importers.parse_mapping(["user_id:who"])


def test_existing_drops_are_kept_unless_replaced(settings, foreign_log):
    mapping = importers.parse_mapping(["ts=when,user_id=who,item_id=what,scene=where,action=kind"])
    first = importers.import_csv(settings.paths.landing, foreign_log, mapping)
    again = importers.import_csv(settings.paths.landing, foreign_log, mapping)
    assert len(first["written"]) == 2 and again["written"] == [] and len(again["kept"]) == 2
    replaced = importers.import_csv(settings.paths.landing, foreign_log, mapping, replace=True)
    assert len(replaced["written"]) == 2


def _tiny_movielens(folder: Path) -> Path:
    folder.mkdir()
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,10,4.0,1514800000\n1,20,3.5,1514900000\n2,10,5.0,1514990000\n"
    )
    (folder / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,10,funny,1514800000\n")
    (folder / "movies.csv").write_text(
        'movieId,title,genres\n10,"Heat, Part One (1995)",Action|Crime\n20,Toy Story (1995)|x,Animation\n30,Unseen (1990),Drama\n'
    )
    return folder


def test_movielens_fixture(settings, tmp_path):
    folder = _tiny_movielens(tmp_path / "ml")
    report = importers.import_movielens(settings.paths.landing, folder)
    assert report["events"] == 4 and report["items"] == 3
    ingest.run(settings)
    days = schema.list_days(settings.paths.events)
    events = schema.read_events(settings.paths.data, days)
    first = events[(events["user_id"] == "1") & (events["item_id"] == "10")]
    assert list(first["action"]) == ["click", "share"], "a rating precedes its tag in the same second"
    catalog = schema.read_catalog(settings.paths.data, days[-1])
    heat = catalog.set_index("item_id").loc["10"]
    assert heat["title"] == "Heat, Part One (1995)" and heat["text"] == "Action, Crime"
    assert "30" in set(catalog["item_id"]), "movies nobody rated are still in the catalog"


def test_movielens_real_window(tmp_path, shared_datasets):
    settings = Settings.load(write_params(tmp_path, validate={"profile": "movielens"}))
    report = importers.import_movielens(
        settings.paths.landing, shared_datasets / "ml-latest-small", since="2018-06-01", until="2018-06-30"
    )
    assert report["days"][0] >= "2018-06-01" and report["days"][-1] <= "2018-06-30"
    assert report["rejected"] == {"ratings.csv": 0, "tags.csv": 0, "movies.csv": 0}
    assert report["items"] == 9742
    reports = ingest.run(settings)
    assert sum(r.events for r in reports) == report["events"]
    assert all(r.rejected_events == 0 for r in reports)
    results, metrics, _ = validate.run_all(settings)
    assert metrics["quarantined"] == 0, [validate.summary(r) for r in results if r.status == "quarantined"]


def _tiny_food_kitchen(folder: Path) -> Path:
    folder.mkdir()
    (folder / "items.csv").write_text("item_id,scene,title\nF1,food,Tea\nF2,food,Rice\nK1,kitchen,Pan\nK2,kitchen,Pot\n")
    (folder / "sequences.csv").write_text(
        "user_id,split,items\nfood-1,train,F1 F2\nmixed-1,train,F1 K1 F2 K2\n"
        "valid-1,valid,F2 K1 K2\ntest-1,test,K1 F1 K2\n"
    )
    return folder


def test_food_kitchen_fixture_orders_times_and_holds_out_targets(tmp_path):
    settings = Settings.load(write_params(tmp_path, validate={"profile": "food_kitchen"}))
    folder = _tiny_food_kitchen(tmp_path / "fk")
    report = importers.import_food_kitchen(settings.paths.landing, folder, days=4, end_date="2026-01-04")
    assert report["events"] == 2 + 4 + 2 + 2
    splits = pd.read_parquet(settings.paths.landing / "_splits" / "food-kitchen.parquet")
    assert splits.set_index("user_id")["target_item_id"].to_dict() == {"valid-1": "K2", "test-1": "K2"}
    assert list(splits["target_scene"]) == ["kitchen", "kitchen"]
    ingest.run(settings)
    validate.run_all(settings)
    sequences.main(settings)
    seqs = schema.read_sequences(settings.paths.sequences).set_index("user_id")
    assert list(seqs.loc["mixed-1", "item_ids"]) == ["F1", "K1", "F2", "K2"], "order is kept"
    assert list(seqs.loc["test-1", "item_ids"]) == ["K1", "F1"], "the held-out target is not an event"
    ts = seqs.loc["mixed-1", "ts"]
    assert all(a < b for a, b in zip(ts[:-1], ts[1:]))
    assert str(pd.Timestamp(ts[0]).date()) >= "2026-01-01" and str(pd.Timestamp(ts[-1]).date()) <= "2026-01-04"


def test_food_kitchen_real(tmp_path, shared_datasets):
    settings = Settings.load(write_params(tmp_path, validate={"profile": "food_kitchen"}))
    report = importers.import_food_kitchen(settings.paths.landing, shared_datasets / "food-kitchen", days=10)
    assert report["items"] == 36298
    assert report["rejected"] == {"sequences.csv": 0, "items.csv": 0}
    assert report["splits"] == {"valid": 960, "test": 937}
    splits = pd.read_parquet(settings.paths.landing / "_splits" / "food-kitchen.parquet")
    kitchen = splits[splits["target_scene"] == "kitchen"].groupby("split").size().to_dict()
    assert kitchen == {"test": 637, "valid": 597}
    n_raw = pd.read_csv(shared_datasets / "food-kitchen" / "sequences.csv")["items"].str.split().str.len().sum()
    assert report["events"] == n_raw - 960 - 937
    reports = ingest.run(settings)
    assert sum(r.events for r in reports) == report["events"]
    results, metrics, _ = validate.run_all(settings)
    assert metrics["quarantined"] == 0, [validate.summary(r) for r in results if r.status != "passed"]
    assert manifest.good_days(settings) == report["days"]
