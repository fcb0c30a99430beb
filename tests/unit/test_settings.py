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
        ({"train_targeted": {"candidates": "scene"}}, "train_targeted.candidates must be one of 'catalog' or 'task'"),
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
        ({"similarity": "euclid"}, {}, "train_universal.model.similarity must be one of 'dot' or 'cosine', got 'euclid'"),
        ({"temperature": 0}, {}, "train_universal.model.temperature must be greater than 0.0, got 0"),
        ({"item_embedding": "bert"}, {}, "train_universal.model.item_embedding must be one of"),
        ({"width": 3}, {}, "train_universal.model.width unknown key"),
        ({}, {"loss": "full"}, "train_universal.train.loss must be one of 'auto', 'softmax' or 'sampled', got 'full'"),
        ({}, {"negatives": "hard"}, "train_universal.train.negatives must be one of"),
        ({}, {"lr": "fast"}, "train_universal.train.lr must be a number, got 'fast'"),
        ({}, {"alternate": {"enabled": "yes"}}, "train_universal.train.alternate.enabled must be true or false"),
        ({}, {"alternate": {"criterion": "loss"}}, "train_universal.train.alternate.criterion must be one of"),
        ({}, {"curriculum": "cprec", "schedule": "cosine"}, "curriculum cprec switches data at the annealing of schedule: wsd"),
        ({}, {"curriculum": "domains"}, "train_universal.train.curriculum must be one of 'mixed' or 'cprec'"),
    ],
)
def test_bad_training_choices_are_named_when_params_load(tmp_path, model, train, message):
    """The model and train sections are typed and checked once, when params.yaml is loaded (so
    every command and every DAG task refuses them before any work), each error naming its key."""
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())["train_universal"]
    raw["model"] |= model
    raw["train"] |= train
    with pytest.raises(PreciseError, match=message):
        Settings.load(write_params(tmp_path, train_universal=raw))


@pytest.mark.parametrize("key, value", [("negatives", "uniform"), ("logq", True), ("alternate", {"enabled": True}),
                                        ("loss", "softmax")])
def test_targeted_training_refuses_keys_it_decides_itself(tmp_path, key, value):
    """They used to pass the unknown-key check, then raise a TypeError (negatives) or be ignored."""
    import yaml

    from training.targeted import train_config

    raw = yaml.safe_load((REPO / "params.yaml").read_text())["train_targeted"]
    raw["train"] |= {key: value}
    with pytest.raises(PreciseError, match=f"train_targeted.train: {key} cannot be set"):
        Settings.load(write_params(tmp_path, train_targeted=raw))
    cfg = train_config(Settings.load(REPO / "params.yaml").targeted)
    assert cfg.negatives == "in_batch" and cfg.loss == "sampled" and not cfg.alternate.enabled and cfg.lr == 0.0002


def test_params_yaml_and_the_schema_defaults_agree():
    """One set of defaults: every value in params.yaml equals its dataclass default, so a key left
    out of someone's params means what the shipped file says."""
    import yaml

    from core import settings as S
    from core.settings import TrainConfig

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
    nested = {"train_universal.train": (raw["train_universal"]["train"], TrainConfig()),
              "train_universal.train.alternate": (raw["train_universal"]["train"]["alternate"], S.AlternateConfig()),
              "train_universal.model": (raw["train_universal"]["model"], S.ModelSpec())}
    for name, (values, schema) in nested.items():
        for key, value in values.items():
            if not isinstance(value, dict) and value != getattr(schema, key):
                differ.append(f"{name}.{key}: params {value!r}, schema {getattr(schema, key)!r}")
    # Old checkpoints load through training/models/precise.py saved_config (LEGACY_DEFAULTS: what they were
    # trained with); ModelSpec's defaults are the only defaults, and a params file that leaves a
    # key out takes them, the shipped values.
    assert not differ, "\n".join(differ)
