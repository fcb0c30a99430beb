"""The benchmarks that compare language models (issue 30, item 3): a model other than the default
gets its own rows, labels and scratch folders, and the encode-cost probe encodes every text afresh."""

from __future__ import annotations

import dataclasses

import pandas as pd

from benchmarks import text_models
from benchmarks import universal_results as ur
from core.settings import Settings
from tests.conftest import tiny_qwen2


def test_rows_of_another_language_model_are_labelled_with_it():
    settings = Settings.load(ur.REPO / "params.yaml")
    assert ur.encoder_suffix(settings) == "" and ur.encoder_suffix(settings, slug=True) == ""
    other = dataclasses.replace(settings, encode=dataclasses.replace(settings.encode, model="var/models/all-mpnet-base-v2"))
    assert ur.encoder_suffix(other) == ", text by all-mpnet-base-v2"
    assert ur.encoder_suffix(other, slug=True) == "-all-mpnet-base-v2"


def test_encode_cost_runs_every_text_through_the_model(tmp_path):
    model = tiny_qwen2(tmp_path / "tiny-qwen2")
    catalog = pd.DataFrame({"item_id": ["a", "b", "c"], "scene": "s", "title": ["red apple", "green apple", "red"],
                            "text": ["", "sweet", None], "published_at": pd.Timestamp("2026-01-01")})
    out = text_models.encode_cost(Settings.load(ur.REPO / "params.yaml"), str(model), catalog, tmp_path / "scratch")
    assert out["model"].startswith("tiny-qwen2-") and out["hidden_size"] == 32
    assert out["items"] == 3 and out["encoded_now"] == 3 and out["cache_hit_rate"] == 0.0
    again = text_models.encode_cost(Settings.load(ur.REPO / "params.yaml"), str(model), catalog, tmp_path / "scratch")  # the same scratch cache
    assert again["encoded_now"] == 0
