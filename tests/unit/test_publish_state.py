"""Version retention of the published state (serving/publish.py) and the Feast objects built
from it (features/definitions.py)."""

from __future__ import annotations

from serving import publish


def state(versions: list[str], serving: str) -> dict:
    return {"versions": {"click_article": {v: {"user": f"/x/u{v}.parquet", "item": f"/x/i{v}.parquet",
                                               "model_version": f"precise-click_article:{v}"} for v in versions}},
            "recent": {"click_article": "/x/recent.parquet"}, "serving": {"click_article": serving}}


def test_prune_keeps_the_newest_versions_and_always_the_serving_one():
    s = state(["1", "2", "3", "10"], serving="10")
    pruned = publish.prune(s, keep=2)
    assert sorted(s["versions"]["click_article"], key=int) == ["3", "10"] and sorted(pruned["click_article"]) == ["1", "2"]
    rolled_back = state(["1", "2", "3"], serving="1")  # a rollback serves an old version: it stays
    assert publish.prune(rolled_back, keep=2) == {}
    assert sorted(rolled_back["versions"]["click_article"], key=int) == ["1", "2", "3"]


def test_definitions_serve_only_the_current_version_under_stable_field_names():
    from tests.conftest import REPO

    s = state(["1", "2"], serving="2")
    objects = publish.definitions(type("S", (), {"paths": type("P", (), {"root": REPO})})()).build(s | {"feature_service": "ranking_v1"})
    names = {o.name for o in objects}
    assert {"click_article_user_v1", "click_article_user_v2", "click_article_score_v2", "click_article_recent_items"} <= names
    [service] = [o for o in objects if o.__class__.__name__ == "FeatureService"]
    served = {p.name for p in service.feature_view_projections}
    assert served == {"click_article_user_v2", "click_article_item_v2", "click_article_score_v2", "click_article_recent_items"}
    fields = {f.name for p in service.feature_view_projections for f in p.features}
    assert {"click_article_user_embedding", "click_article_item_embedding", "click_article_score"} <= fields
