"""The training loop of universal training (PRECISE IV-C, IV-E.2), shared by every caller.

`fit` trains a model (`training.models.recommender.SequenceRecommender`: the universal `Precise` or the
task model) on next-item pairs with sampled negatives and:

* AdamW, gradient clipping, a seed; LR schedules `constant`, `cosine`, `wsd` (CPRec's
  warmup-stable-annealing, eq. 2-3: linear warm-up to lr, stable, cosine annealing to min_lr);
* CPRec's data curriculum (`curriculum: cprec`, sections 4.3-4.4): domain-specific (per-scene)
  sequences through the warm-up and stable phases, the mixed all-scene ones in the annealing;
* the loss: the **exact softmax** over the whole catalog (`loss: softmax`), or a **sampled
  softmax** (`loss: sampled`) with negatives from a registry: `in_batch` (the paper: the other
  targets of the batch), `uniform` (catalog items) or `mixed` (both), with the logQ correction
  computed from the items' global training frequency; `loss: auto` takes the exact softmax up to
  `softmax_max_items` items and the sampled one above; accidental hits masked;
* length-grouped batches (`batch_order`): random, but each batch holds histories of similar
  length, so short histories do not pay for padding;
* the run's length in epochs, raised so that it lasts at least `min_steps` optimizer steps (a
  small or sparse log gives few steps per epoch);
* **alternate training**: phase 1 freezes the token embeddings so that the ID embeddings learn;
  phase 2 unfreezes them once the ID side has converged (validation-loss plateau or small
  ID-embedding change, with a step cap); the switch is logged and the phase is part of the
  checkpointed state; `alternate.enabled: false` is joint training from the start;
* evaluation every epoch on held-out next items (full ranking), early stopping on R@10 (in the
  last phase only, after `min_steps`), the best state kept; before `min_steps`, a validation loss
  that has not improved for `loss_patience` evaluations (overfitting a small log) stops the run;
* checkpoints every `checkpoint_every` steps (model, optimizer, RNG, position in the epoch) and
  resume after a kill: the data order is a function of (seed, epoch), so a resumed run replays
  exactly the batches an uninterrupted run would;
* data parallel under `torchrun` (DistributedDataParallel; gloo on CPU, nccl on GPU): rank r takes
  batches r, r + W, r + 2W... of the shared order (an epoch's last incomplete round is dropped so
  every rank steps together); all ranks evaluate the same weights and so take the same decisions;
  rank 0 alone writes checkpoints. The DDP wrapper is rebuilt when alternate training unfreezes
  the tokens (DDP fixes its parameter set when it is built).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel

from core.atomic import atomic_dir, atomic_path
from core.errors import PreciseError
from core.hashing import sha256_file
from core.settings import AlternateConfig, TrainConfig  # noqa: F401 (the trainer's config, typed at load)
from training.metrics import from_ranks, target_ranks
from training.models.recommender import SequenceRecommender

log = logging.getLogger(__name__)


# --- negatives ------------------------------------------------------------------------------------


# A sampler returns (negatives (M,), item_logq (N+1,)): the items and the log of every item's
# expected count among them (the logQ correction; -inf for items that cannot be drawn). `freq`
# (N+1,) is each item's share of the training targets: in-batch negatives are drawn from it.


def in_batch_negatives(targets: torch.Tensor, freq: torch.Tensor, cfg: TrainConfig, gen: torch.Generator):
    """The distinct targets of the batch; q = (targets in the batch) x global frequency."""
    t = targets[targets > 0]
    items = torch.unique(t)
    return items, torch.log(len(t) * freq)


def uniform_negatives(targets: torch.Tensor, freq: torch.Tensor, cfg: TrainConfig, gen: torch.Generator):
    """Items drawn uniformly from the catalog; q = M / N (the correction is then a constant)."""
    n_items = len(freq) - 1
    items = torch.randint(1, n_items + 1, (cfg.num_negatives,), generator=gen)
    logq = torch.full((n_items + 1,), math.log(cfg.num_negatives / n_items))
    logq[0] = float("-inf")
    return items, logq


def mixed_negatives(targets: torch.Tensor, freq: torch.Tensor, cfg: TrainConfig, gen: torch.Generator):
    """In-batch targets (popular items, hard) plus uniform draws (the long tail);
    q = B_t x freq + M / N, the expected count of each item among both."""
    batch, logq_batch = in_batch_negatives(targets, freq, cfg, gen)
    extra, logq_extra = uniform_negatives(targets, freq, cfg, gen)
    return torch.unique(torch.cat([batch, extra])), torch.logaddexp(logq_batch, logq_extra)


NEGATIVES: dict[str, Callable] = {"in_batch": in_batch_negatives, "uniform": uniform_negatives,
                                  "mixed": mixed_negatives}


def uses_softmax(cfg: TrainConfig, n_items: int) -> bool:
    """Whether the run trains with the exact softmax (else the sampled one)."""
    return cfg.loss == "softmax" or (cfg.loss == "auto" and n_items <= cfg.softmax_max_items)


def target_counts(targets: torch.Tensor, n_items: int) -> torch.Tensor:
    """(N+1,) float: how often each item is a non-padding target; row 0 = 0."""
    return torch.bincount(targets[targets > 0].reshape(-1), minlength=n_items + 1).float()


def target_frequency(counts: torch.Tensor) -> torch.Tensor:
    """counts (N+1,) from `target_counts` -> each item's share of the targets, add-one smoothed (an
    item never seen as a target can still be drawn by the uniform sampler); row 0 = 0."""
    smoothed = counts.double() + 1.0
    smoothed[0] = 0.0
    return (smoothed / smoothed.sum()).float()


# --- batches --------------------------------------------------------------------------------------


def batch_order(lengths: torch.Tensor, batch_size: int, gen: torch.Generator, pool: int = 50) -> torch.Tensor:
    """A random order of the rows in which each batch holds rows of similar length.

    Shuffle, sort each pool of `pool` batches by length, cut it into batches, shuffle the batches
    (the usual length-grouped sampler): batches stay random, but a batch of short histories no
    longer pays for the longest one, since `Precise.encode` cuts all-padding columns.
    lengths (n,) -> permutation (n,).
    """
    order = torch.randperm(len(lengths), generator=gen)
    if batch_size <= 1 or len(lengths) <= batch_size:
        return order
    span = batch_size * pool
    chunks = []
    for start in range(0, len(order), span):
        part = order[start : start + span]
        part = part[torch.argsort(lengths[part], stable=True)]
        chunks.extend(part.split(batch_size))
    full = [c for c in chunks if len(c) == batch_size]
    rest = [c for c in chunks if len(c) < batch_size]
    shuffled = [full[i] for i in torch.randperm(len(full), generator=gen).tolist()]
    return torch.cat(shuffled + rest)  # incomplete batches last: every full batch stays whole


# --- schedules ------------------------------------------------------------------------------------


def lr_factor(cfg: TrainConfig, step: int, total: int) -> float:
    """Multiplier of cfg.lr at `step` of `total` (never below min_lr / lr)."""
    floor = cfg.min_lr / cfg.lr
    if step < cfg.warmup_steps:
        return floor + (1 - floor) * step / max(cfg.warmup_steps, 1)
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "cosine":
        progress = (step - cfg.warmup_steps) / max(total - cfg.warmup_steps, 1)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    if cfg.schedule == "wsd":
        stable_end = int(total * (1 - cfg.anneal_fraction))
        if step <= stable_end:
            return 1.0
        progress = (step - stable_end) / max(total - stable_end, 1)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    raise ValueError(f"unknown schedule {cfg.schedule!r} (constant, cosine, wsd)")


# --- state ----------------------------------------------------------------------------------------


class Valid(NamedTuple):
    """The validation data `fit` selects epochs on (a plain tuple of 2 to 4 tensors is read as one)."""

    inputs: torch.Tensor  # (V, L) item ids, left-padded
    targets: torch.Tensor  # (V,) the next item of each row
    context: torch.Tensor | None = None  # (V, L) session codes (training.prep.tensors.session_context)
    when: torch.Tensor | None = None  # (V,) query times in days since 1970 (the item-age offset)


@dataclass
class State:
    """What a resumed run needs besides the weights."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    phase: int = 1
    best_r10: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0
    best_val_loss: float = float("inf")  # phase 1's, for the alternate switch
    plateau: int = 0
    lowest_val_loss: float = float("inf")  # any phase's, for loss_patience
    loss_bad_epochs: int = 0
    switched_at: int | None = None
    done: bool = False
    history: list = field(default_factory=list)


class CorruptCheckpoint(PreciseError):
    """A checkpoint whose weights do not match the SHA-256 saved beside them, or cannot be read."""


def save_model(folder: Path, model: SequenceRecommender, meta: dict, opt: torch.optim.Optimizer | None = None) -> None:
    """Atomically, one folder: weights (safetensors), metadata (JSON, with the weights' SHA-256 that
    `load_checkpoint` checks) and, for a resumable checkpoint, the optimizer and RNG states
    (tensors only; loaded with weights_only=True)."""
    with atomic_dir(Path(folder)) as tmp:
        weights = Path(tmp) / "model.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
        meta = {**meta, "weights_sha256": sha256_file(weights)}
        (Path(tmp) / "state.json").write_text(json.dumps(meta, indent=1, default=str))
        if opt is not None:
            torch.save({"optimizer": opt.state_dict(), "rng": torch.get_rng_state()}, Path(tmp) / "optimizer.pt")


def save_checkpoint(folder: Path, model: SequenceRecommender, opt: torch.optim.Optimizer, state: State) -> None:
    save_model(folder, model, {"state": asdict(state)}, opt)


def verify_checkpoint(folder: Path) -> dict:
    """state.json of a checkpoint whose weights are intact, without loading them: their SHA-256
    against the one saved with them, or, for checkpoints older than the hash, their length against
    their header (`_check_length`).
    A checkpoint that fails is refused: CorruptCheckpoint names it."""
    folder = Path(folder)
    weights = folder / "model.safetensors"
    try:
        meta = json.loads((folder / "state.json").read_text())
        expected = meta.get("weights_sha256")
        if expected is None:
            _check_length(weights)
        elif sha256_file(weights) != expected:
            raise CorruptCheckpoint(f"checkpoint {folder} is corrupt: model.safetensors does not match the SHA-256 "
                                    "saved with it; it is refused")
        return meta
    except CorruptCheckpoint:
        raise
    except Exception as exc:  # unreadable JSON, a missing or truncated weights file (safetensors' own errors)
        raise CorruptCheckpoint(f"checkpoint {folder} cannot be read ({type(exc).__name__}: {exc}); it is refused") from exc


def _check_length(path: Path) -> None:
    """A safetensors file is an 8-byte header length, a JSON header and the tensors it lists: the
    file must be exactly as long as the header says (a write cut short is caught without loading)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if Path(path).stat().st_size != 8 + n + end:
        raise ValueError(f"{path.name} holds {Path(path).stat().st_size} bytes, its header says {8 + n + end}")


def load_checkpoint(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(state.json contents, weights) of an intact checkpoint (`verify_checkpoint`). Nothing is unpickled."""
    meta = verify_checkpoint(folder)
    try:
        return meta, load_file(str(Path(folder) / "model.safetensors"))
    except Exception as exc:  # safetensors' own errors, named like every other unreadable checkpoint
        raise CorruptCheckpoint(f"checkpoint {folder} cannot be read ({type(exc).__name__}: {exc}); it is refused") from exc


def newest_intact(folders: list[Path]) -> Path | None:
    """The last of `folders` (oldest first) that `verify_checkpoint` accepts; a corrupt one is
    skipped with a warning naming it, so a day continues from the newest model it can trust."""
    for folder in reversed(folders):
        try:
            verify_checkpoint(folder)
            return folder
        except CorruptCheckpoint as exc:
            log.warning("%s; using an older checkpoint", exc)
    return None


# --- the loop -------------------------------------------------------------------------------------


def set_token_training(model: SequenceRecommender, trainable: bool) -> None:
    if model.tok_emb is not None:
        model.tok_emb.weight.requires_grad_(trainable)


def history_logit(model) -> float | None:
    """The model's learned offset of items already read (`model.history_offset`, `Precise` and
    `Targeted` alike), or None (off)."""
    offset = model.history_logit()
    return None if offset is None else offset.item()


@torch.no_grad()
def model_ranks(model: SequenceRecommender, inputs: torch.Tensor, targets: torch.Tensor, context: torch.Tensor | None = None,
                candidates: torch.Tensor | None = None, when: torch.Tensor | None = None,
                items: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The model's full-ranking rank and softmax loss of each target (B,) given its inputs (B, L)
    (and their session context (B, L), `Precise.encode`): among `candidates` ((N+1,) bool) if given,
    else among a task model's own `candidates` if it has them; the items of each input window get
    the model's learned history offset if it has one (`model.history_offset`), and every item its
    age offset at the query times when (B,) (days since 1970) if it has one (`model.age_logit`).
    items: the items as scored (`model.scoring_items()` unless given: `training.audience` moves
    some). The one scoring of evaluation, benchmarks and the gate."""
    model.eval()
    items = model.scoring_items() if items is None else items
    users = torch.cat([model.users(inputs[i : i + 512], None if context is None else context[i : i + 512])
                       for i in range(0, len(inputs), 512)])
    users = model.with_text_users(users, inputs[:, -1])  # the text-neighbour logit's columns (`text_logit_dim`)
    return target_ranks(users, items, targets, scale=1.0 / model.cfg.temperature,
                        candidates=candidates if candidates is not None else model.candidates,
                        history=inputs[:, -model.cfg.max_len :], history_logit=history_logit(model),
                        item_bias=age_bias(model, when))


def age_bias(model, when: torch.Tensor | None):
    """For target_ranks: rows i:j -> (j - i, N+1) the items' age offsets at those queries (None: the
    model has none, or no query times)."""
    if when is None or model.age_offsets() is None:
        return None
    return lambda i, j: model.age_logit(when[i:j])


@torch.no_grad()
def evaluate(model: SequenceRecommender, inputs: torch.Tensor, targets: torch.Tensor,
             context: torch.Tensor | None = None, candidates: torch.Tensor | None = None,
             when: torch.Tensor | None = None) -> tuple[dict, np.ndarray]:
    """Full-ranking metrics of predicting `targets` (B,) from `inputs` (B, L) (`model_ranks`), plus
    the ranks."""
    ranks, losses = model_ranks(model, inputs, targets, context, candidates, when)
    out = from_ranks(ranks)
    out["val_loss"] = float(losses.mean()) if len(losses) else float("nan")
    model.train()
    return out, ranks


def fit(
    model: SequenceRecommender,
    train: tuple[torch.Tensor, ...],
    valid: Valid | tuple[torch.Tensor, ...],
    cfg: TrainConfig,
    run_dir: Path | None = None,
    on_eval: Callable[[dict], None] | None = None,
    stop_after_steps: int | None = None,
    domain: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> State:
    """Train in place; returns the final state (model left at its best weights).

    train: inputs (B, L), targets (B, L)[, session context (B, L)]; valid: `Valid` (inputs,
    targets[, context, query times]) (training.prep.tensors.next_item_pairs, session_context).
    domain: with `curriculum: cprec` (CPRec's data curriculum), pairs of domain-specific sequences
    (each user's per-scene sequences): the warm-up and stable phases of the WSD schedule draw
    their batches from them, the annealing phase from `train` (the all-scene mixed sequences);
    the run is not stopped early before the annealing has begun. Epochs count `train`'s batches.
    run_dir: where step checkpoints go; an existing checkpoint there is resumed.
    stop_after_steps: stop (as if killed) after this many steps, for tests.
    """
    inputs, targets, valid = train[0], train[1], Valid(*valid)
    lengths = (inputs > 0).sum(1) if inputs.dim() == 2 else torch.ones(len(inputs), dtype=torch.long)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    plan = Schedule.of(len(inputs), cfg, world, domain)
    opt = torch.optim.AdamW([p for p in model.parameters()], lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = _resume(model, opt, run_dir, State(phase=1 if cfg.alternate.enabled and model.tok_emb is not None else 2))
    if state.done:
        return state
    set_token_training(model, state.phase == 2)

    def wrap() -> torch.nn.Module:  # DDP registers the parameters that require grad when built
        return DistributedDataParallel(model, find_unused_parameters=True) if world > 1 else model

    counts = target_counts(targets, model.cfg.n_items)
    freq = target_frequency(counts)
    model.set_item_counts(counts)  # before the best weights are first kept: the cold gate's counts are saved with them
    runner, phase = wrap(), state.phase
    best = Best(model, run_dir, rank)
    loss, stats = torch.tensor(float("nan")), {}
    softmax = uses_softmax(cfg, model.cfg.n_items)
    sampler = NEGATIVES[cfg.negatives]
    log.info("%s, %d epochs of %d steps, phase 1 at most %d steps", "exact softmax" if softmax else
             f"sampled softmax ({cfg.negatives} negatives)", plan.epochs, plan.steps_per_epoch, plan.phase1_cap)
    id_before = model.id_emb.weight.detach().clone() if model.id_emb is not None else None
    model.train()
    t0 = time.perf_counter()
    while state.epoch < plan.epochs and not state.done:
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + state.epoch)
        for b, seq, tgt, ctx, when in _epoch_batches(state, plan, cfg, gen, (rank, world), train, lengths, domain):
            negatives, logq = (None, None) if softmax else sampler(tgt, freq, cfg, gen)
            for g in opt.param_groups:
                g["lr"] = cfg.lr * lr_factor(cfg, state.step, plan.total)
            if state.phase != phase:  # alternate training unfroze the tokens
                runner, phase = wrap(), state.phase
            loss, stats = _step(runner, model, opt, cfg, (seq, tgt, negatives, logq if cfg.logq else None, ctx, when))
            state.step += 1
            state.batch_in_epoch = b + 1
            if state.phase == 1 and state.step >= plan.phase1_cap:
                _switch(model, state, f"step cap {plan.phase1_cap}")
            if rank == 0 and run_dir is not None and cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
                save_checkpoint(run_dir, model, opt, state)
            if stop_after_steps is not None and state.step >= stop_after_steps:
                return state
        # end of epoch: evaluate, maybe switch phase, maybe stop early
        metrics, id_before = _epoch_metrics(model, valid, state, loss, stats, time.perf_counter() - t0, id_before)
        if on_eval:
            on_eval(metrics)
        _after_eval(model, state, metrics, cfg)
        if _track(state, metrics, cfg, plan.anneal_at):
            best.keep(model)
        state.epoch += 1
        state.batch_in_epoch = 0
        if run_dir is not None and rank == 0:
            save_checkpoint(run_dir, model, opt, state)
    if state.best_epoch >= 0:
        model.load_state_dict(best.weights)
    state.done = True
    return state


@dataclass
class Schedule:
    """A run's length in steps (epochs sized by `min_steps` too), alternate training's phase-1 cap
    and, under `curriculum: cprec` with domain sequences, the step the annealing starts at."""

    steps_per_epoch: int
    epochs: int
    total: int
    phase1_cap: int
    anneal_at: int = 0
    domain_batches: int = 1

    @classmethod
    def of(cls, n: int, cfg: TrainConfig, world: int, domain) -> "Schedule":
        batches = max(math.ceil(n / cfg.batch_size), 1)
        steps_per_epoch = max(batches // world, 1) if world > 1 else batches  # rounds of `world` batches
        epochs = max(cfg.epochs, math.ceil(cfg.min_steps / steps_per_epoch))  # size by steps, not only epochs
        total = steps_per_epoch * epochs
        # Without a cap relative to the run, a short run whose loss keeps falling never unfreezes.
        phase1_cap = min(cfg.alternate.max_phase1_steps, max(int(total * cfg.alternate.max_phase1_fraction), 1))
        anneal_at = int(total * (1 - cfg.anneal_fraction)) if cfg.curriculum == "cprec" and domain is not None else 0
        domain_batches = max(math.ceil(len(domain[0]) / cfg.batch_size), 1) if anneal_at else 1
        return cls(steps_per_epoch, epochs, total, phase1_cap, anneal_at, domain_batches)


class Best:
    """The best weights so far (by valid R@10), in memory and, with a run folder, on disk beside it,
    so that a resumed run restores them, not its mid-run weights."""

    def __init__(self, model: SequenceRecommender, run_dir: Path | None, rank: int):
        self.file = Path(run_dir).with_name(Path(run_dir).name + "-best.safetensors") if run_dir is not None else None
        self.rank = rank
        self.weights = (load_file(str(self.file)) if self.file is not None and self.file.is_file()
                        else {k: v.detach().clone() for k, v in model.state_dict().items()})

    def keep(self, model: SequenceRecommender) -> None:
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if self.file is not None and self.rank == 0:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.file) as tmp:
                save_file({k: v.contiguous() for k, v in self.weights.items()}, str(tmp))


def _epoch_batches(state: State, plan: Schedule, cfg: TrainConfig, gen: torch.Generator, where: tuple[int, int],
                   train: tuple[torch.Tensor, ...], lengths: torch.Tensor, domain):
    """This process's batches (b, seq, target, context, target times) of epoch state.epoch, from
    batch state.batch_in_epoch on (a resumed run goes on where it stopped); `where` = (rank, world);
    train = (inputs, targets[, context or None[, target times]]).
    Under CPRec (plan.anneal_at) the steps before the annealing read the domain sequences, in
    their own order from their own generator, so the mixed order is the same with or without it."""
    (rank, world), (inputs, targets) = where, train[:2]
    context = train[2] if len(train) > 2 else None
    when = train[3] if len(train) > 3 else None
    order = batch_order(lengths, cfg.batch_size, gen)
    if plan.anneal_at:
        domain_order = batch_order((domain[0] > 0).sum(1), cfg.batch_size,
                                   torch.Generator().manual_seed(cfg.seed * 1000 + state.epoch + 500))
    for b in range(state.batch_in_epoch, plan.steps_per_epoch):
        global_b = b * world + rank
        if state.step < plan.anneal_at:  # CPRec: per-scene sequences until the annealing
            d = global_b % plan.domain_batches
            idx = domain_order[d * cfg.batch_size : (d + 1) * cfg.batch_size]
            yield b, domain[0][idx], domain[1][idx], None, None
        else:
            idx = order[global_b * cfg.batch_size : (global_b + 1) * cfg.batch_size]
            yield (b, inputs[idx], targets[idx], None if context is None else context[idx],
                   None if when is None else when[idx])


def _resume(model: SequenceRecommender, opt: torch.optim.Optimizer, run_dir: Path | None, fresh: State) -> State:
    """The state of the resumable checkpoint in run_dir, its weights, optimizer and RNG restored;
    `fresh` when there is none, or when it is damaged (the run starts over)."""
    if run_dir is None or not (Path(run_dir) / "state.json").is_file():
        return fresh
    try:
        meta, weights = load_checkpoint(run_dir)
    except CorruptCheckpoint as exc:
        log.warning("%s; starting the run from the beginning", exc)
        return fresh
    model.load_state_dict(weights)
    extra = torch.load(Path(run_dir) / "optimizer.pt", weights_only=True)
    opt.load_state_dict(extra["optimizer"])
    torch.set_rng_state(extra["rng"])
    known = State.__dataclass_fields__  # a checkpoint of an older version may hold retired fields
    state = State(**{k: v for k, v in meta["state"].items() if k in known})
    log.info("resumed at step %d (epoch %d, phase %d)", state.step, state.epoch, state.phase)
    return state


def _step(runner: torch.nn.Module, model: SequenceRecommender, opt: torch.optim.Optimizer, cfg: TrainConfig,
          batch: tuple) -> tuple[torch.Tensor, dict]:
    """One optimisation step on batch (seq, target, negatives, logq, context); its loss and stats."""
    loss, stats = runner(*batch)
    if "balance_loss" in stats and cfg.balance_weight:
        loss = loss + cfg.balance_weight * stats["balance_loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.clip_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
    opt.step()
    return loss, stats


def _epoch_metrics(model: SequenceRecommender, valid: Valid, state: State, loss: torch.Tensor, stats: dict, seconds: float,
                   id_before: torch.Tensor | None) -> tuple[dict, torch.Tensor | None]:
    """An epoch's evaluation (valid metrics, the training loss and what the model's options learnt),
    appended to the state's history and logged; and the ID table now, for the next epoch's change."""
    metrics, _ = evaluate(model, valid.inputs, valid.targets, valid.context, when=valid.when)
    metrics |= {"epoch": state.epoch, "step": state.step, "phase": state.phase,
                "loss": float(loss.detach()), "seconds": round(seconds, 1)}
    if "usage" in stats:
        metrics["expert_usage"] = [round(float(u), 3) for u in stats["usage"]]
    if "id_aux_loss" in stats:  # the ID-side term inside "loss" (model.id_aux_weight), for reading the two apart
        metrics["id_aux_loss"] = stats["id_aux_loss"]
    if id_before is not None:
        metrics["id_change"] = float((model.id_emb.weight.detach() - id_before).norm() / id_before.norm().clamp(min=1e-12))
        id_before = model.id_emb.weight.detach().clone()
    if (offset := history_logit(model)) is not None:
        metrics["history_logit"] = offset
    if (weight := model.text_logit()) is not None:
        metrics["text_logit"] = float(weight.detach())
    if (ages := model.age_offsets()) is not None:
        metrics["age_logit"] = ages
    state.history.append(metrics)
    aux = f" (ID-side loss {metrics['id_aux_loss']:.4f})" if "id_aux_loss" in metrics else ""
    aux += f", history offset {metrics['history_logit']:.2f}" if "history_logit" in metrics else ""
    aux += f", text logit {metrics['text_logit']:.2f}" if "text_logit" in metrics else ""
    aux += f", age offsets {metrics['age_logit']}" if "age_logit" in metrics else ""
    log.info("epoch %d step %d phase %d: loss %.4f%s val_loss %.4f R@10 %.4f", state.epoch, state.step,
             state.phase, metrics["loss"], aux, metrics["val_loss"], metrics["R@10"])
    return metrics, id_before


def _track(state: State, metrics: dict, cfg: TrainConfig, anneal_at: int) -> bool:
    """Update the state's best epoch and early stopping from an epoch's metrics; True when valid
    R@10 improved (the caller keeps those weights). Early stopping counts in the last phase only."""
    improved = metrics["R@10"] > state.best_r10
    if improved:
        state.best_r10, state.best_epoch, state.bad_epochs = metrics["R@10"], state.epoch, 0
    elif state.phase == 2:
        state.bad_epochs += 1
        if state.bad_epochs >= cfg.patience and state.step >= max(cfg.min_steps, anneal_at + 1):
            state.done = True
    # min_steps keeps a noisy R@10 from ending a short log's run early; a validation loss that
    # has stopped falling for loss_patience evaluations is overfitting, and ends it (before
    # min_steps only: after it, R@10's patience above decides, as for every long run).
    if metrics["val_loss"] < state.lowest_val_loss:
        state.lowest_val_loss, state.loss_bad_epochs = metrics["val_loss"], 0
    elif state.phase == 2:
        state.loss_bad_epochs += 1
        if cfg.loss_patience and state.loss_bad_epochs >= cfg.loss_patience and anneal_at < state.step < cfg.min_steps:
            log.info("stopping: val_loss has not improved for %d evaluations (loss_patience)", state.loss_bad_epochs)
            state.done = True
    return improved


def _switch(model: SequenceRecommender, state: State, reason: str) -> None:
    state.phase, state.switched_at = 2, state.step
    set_token_training(model, True)
    log.info("alternate training: token embeddings unfrozen at step %d (%s)", state.step, reason)


def _after_eval(model: SequenceRecommender, state: State, metrics: dict, cfg: TrainConfig) -> None:
    """Phase 1 -> 2 when the ID side has converged."""
    if state.phase != 1:
        return
    a = cfg.alternate
    if a.criterion == "id_change":
        if metrics.get("id_change", 1.0) < a.min_delta:
            _switch(model, state, f"ID change {metrics['id_change']:.4f} < {a.min_delta}")
        return
    if metrics["val_loss"] < state.best_val_loss * (1 - a.min_delta):
        state.best_val_loss, state.plateau = metrics["val_loss"], 0
    else:
        state.plateau += 1
        if state.plateau >= a.patience:
            _switch(model, state, f"val_loss plateau for {state.plateau} evaluation(s)")
