"""params.yaml becomes typed, frozen settings; mistakes in it are reported by name."""

import dataclasses

import pytest

from core.errors import PreciseError
from core.settings import Settings
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
        ({"train_targeted": {"input": "tasks"}}, "train_targeted.input must be one of 'task' or 'all_scene'"),
        ({"train_targeted": {"loss": "softmax", "negatives": "user"}}, "train_targeted.loss softmax needs train_targeted.negatives: catalog"),
        ({"recall": {"index": "brute"}}, "recall.index must be one of"),
        ({"sequences": {"engine": "dask"}}, "sequences.engine must be one of 'local' or 'spark'"),
        ({"spark": {"shuffle_partitions": "8"}}, "spark.shuffle_partitions must be a number"),
        ({"sequences": {"batch_events": 0}}, "sequences.batch_events must be greater than 0, got 0"),
        ({"synth": {"users": "300"}}, "synth.users must be a number, got '300'"),
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
        ({}, {"curriculum": "cprec", "schedule": "cosine"}, "curriculum cprec switches data at the annealing of schedule: wsd"),
        ({}, {"curriculum": "domains"}, "curriculum: 'domains' is not one of mixed, cprec"),
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


def test_params_yaml_and_the_schema_defaults_agree():
    """One set of defaults: every value in params.yaml equals its dataclass default, so a key left
    out of someone's params means what the shipped file says."""
    import yaml

    from core import settings as S
    from training.trainer import TrainConfig

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    sections = {"synth": S.SynthConfig, "ingest": S.IngestConfig, "sequences": S.SequencesConfig,
                "encode": S.EncodeConfig, "registry": S.RegistryConfig, "export": S.ExportConfig,
                "publish": S.PublishConfig, "recall": S.RecallConfig}
    differ = []
    for name, cls in sections.items():
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        for key, value in (raw.get(name) or {}).items():
            if (tuple(value) if isinstance(value, list) else value) != defaults[key]:
                differ.append(f"{name}.{key}: params {value!r}, schema {defaults[key]!r}")
    train = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for key, value in raw["train_universal"]["train"].items():
        if key != "alternate" and value != train[key]:
            differ.append(f"train_universal.train.{key}: params {value!r}, schema {train[key]!r}")
    # ModelConfig keeps similarity=dot / temperature=1 as its defaults on purpose: checkpoints
    # written before those fields existed were dot-product models and load as such.
    assert not differ, "\n".join(differ)
