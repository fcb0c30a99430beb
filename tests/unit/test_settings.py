"""params.yaml becomes typed, frozen settings; mistakes in it are reported by name."""

import dataclasses

import pytest

from precise.errors import PreciseError
from precise.settings import Settings
from tests.conftest import REPO, write_params


def test_repo_params_load():
    s = Settings.load(REPO / "params.yaml")
    assert s.run_date == "latest"
    assert s.paths.landing == REPO / "landing"
    assert len(s.synth.scenes) >= 4
    assert [t.name for t in s.tasks] == ["click_article", "share_all"]
    assert s.task("share_all").scenes is None and s.task("share_all").keeps("game", "share")
    assert not s.task("click_article").keeps("video", "click")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.synth.seed = 1


@pytest.mark.parametrize(
    "sections, message",
    [
        ({"synth": {"seeed": 1}}, "unknown key"),
        ({"synth": {"users": "many"}}, "must be a number"),
        ({"ingest": {"dvc": "yes"}}, "true or false"),
        ({"run": {"date": "tomorrow"}}, "not a date"),
        ({"ingest": {"earliest": "long ago"}}, "ingest.earliest"),
        ({"ingest": {"null_tokens": "null"}}, "must be a list"),
        ({"tasks": [{"name": "a"}]}, "needs at least"),
        ({"tasks": [{"name": "a", "actions": ["click"]}, {"name": "a", "actions": ["share"]}]}, "unique"),
        ({"tasks": [{"name": "a b", "actions": ["click"]}]}, "letters, digits"),
    ],
)
def test_bad_params_are_named(tmp_path, sections, message):
    with pytest.raises(PreciseError, match=message):
        Settings.load(write_params(tmp_path, **sections))


def test_unknown_task_and_missing_file(tmp_path):
    s = Settings.load(write_params(tmp_path))
    with pytest.raises(PreciseError, match="unknown task 'nope'"):
        s.task("nope")
    with pytest.raises(PreciseError, match="settings file not found"):
        Settings.load(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "model, train, message",
    [
        ({"similarity": "euclid"}, {}, "similarity: 'euclid' is not one of dot, cosine"),
        ({"temperature": 0}, {}, "temperature must be > 0"),
        ({}, {"loss": "full"}, "loss: 'full' is not one of auto, softmax, sampled"),
        ({}, {"negatives": "hard"}, "negatives: 'hard' is not one of"),
    ],
)
def test_bad_training_choices_are_named(model, train, message):
    from training.universal import model_spec, train_config

    u = Settings.load(REPO / "params.yaml").universal
    u = dataclasses.replace(u, model=tuple((dict(u.model) | model).items()), train=tuple((dict(u.train) | train).items()))
    with pytest.raises(PreciseError, match=message):
        train_config(u)
        model_spec(u)


@pytest.mark.parametrize("key, value", [("negatives", "uniform"), ("logq", True), ("alternate", {"enabled": True}),
                                        ("loss", "softmax")])
def test_targeted_training_refuses_keys_it_decides_itself(key, value):
    """They used to pass the unknown-key check, then raise a TypeError (negatives) or be ignored."""
    from training.targeted import train_config

    t = Settings.load(REPO / "params.yaml").targeted
    t = dataclasses.replace(t, train=tuple((dict(t.train) | {key: value}).items()))
    with pytest.raises(PreciseError, match=f"train_targeted.train: {key} cannot be set"):
        train_config(t)
    assert train_config(Settings.load(REPO / "params.yaml").targeted).negatives == "in_batch"
