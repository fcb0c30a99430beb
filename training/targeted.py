"""Targeted training stage (PRECISE IV-D, IV-E.1): the universal model adapted to one task.

`precise train targeted --task T --date D [--force-warmup]`:

* **Model** (`training.models.task.Targeted`): the universal model's item embeddings and transformer, run with the
  causal mask off (padding still masked, padded outputs zeroed). Sequences are left-padded so the
  latest item always sits in the last slot; the user embedding h'_u is an MLP over the
  concatenation of all L final-layer positions, of the item embedding's width D, plus a skip
  from the latest slot (the MLP's output layer starts at zero, so a warm start begins at the
  universal model's user embedding; see `Targeted.users`).
* **Loss** (`loss`, `negatives`): BPR, `-log sigma(s(u, e) - s(u', e'))`, with e the embedding of
  u's next task item and, as negatives, every item of the catalog (`negatives: catalog`, e' over
  all items but e: the default, see docs/quality.md), or u' every other user of the batch with
  e' = e (`user`, the paper's eq. 6: it ranks users for an item, which never pushes the user's
  own ranking of items, and loses to popularity on our worlds), or e' the other targets of the
  batch (`item`). `loss: softmax` is the cross-entropy over the whole catalog instead of BPR.
  Scores are the universal model's (its similarity and temperature), as in evaluation and recall,
  and with `model.history_offset` the catalog losses add the base's learned offset to every item
  of the input (the target too when it is one), as evaluation does; a warm start begins at the
  universal model's offset and trains it on the task (`Targeted.history_logit`).
  `catalog` and `softmax` score every item each step (B x N, like the universal exact softmax).
* **Input**: the task sequence S'_u (default) or, with `input: all_scene`, the user's all-scene
  clicks before the target's time.
* **Warm start and periodic warm-up**: the first model of a task, and every run on which
  `warmup_every_days` have passed since the last warm-up (or `--force-warmup`), starts from the
  universal champion of D (every encoder and embedding parameter, grown to D's catalog) and trains
  on the task behaviours of the last `replay_days` days. The MLP head is **reset** at warm-up
  (`reset_head_at_warmup`): it was fitted to an encoder that the warm-up replaces, and a fresh head
  is relearnt within the first epoch. Other days continue from yesterday's targeted model on D's
  task behaviours; new items get the text-driven ID rows of `universal.init_new_items`, never the
  universal model's rows (that is what warm-up is for).
* **Selection**: the epoch with the best valid R@10 (the last task example of `valid_users`
  users). The starting weights are not a candidate: the universal model (and yesterday's
  targeted one) trained on those very examples, so their valid R@10 is inflated (on the quality
  test's world, seeds 7-11, the start scored 0.25-0.34 valid and 0.13-0.15 test against the
  trained models' 0.36-0.45 and 0.22-0.25) and, on a 200-user validation set, once won by noise.
  The registry gate, scored on a day no model trained on, is what keeps a worse run from serving.
* **Champion**: the `champion` alias of `precise-universal` in the registry (training/lifecycle/registry.py);
  without one, the newest finished universal model of a day <= D.
* **State** (`var/targeted/<task>/state.json`): last warm-up date, the universal version it used
  (its day and MLflow run), one line per trained day. Models in
  `var/checkpoints/targeted/<task>/date=D/final/`, metrics in
  `data/metrics/train_targeted/<task>.json`, an MLflow run in experiment `precise-<task>` tagged
  with its parent universal run.
* **Coverage** (Figure 4a): the share of the items the task's users interacted with on D that the
  universal checkpoint of the last warm-up trained on (items with a universal behaviour on a good
  day up to that checkpoint's day).

Users without task history have no targeted embedding: downstream they fall back to their
universal user embedding (with the universal item embeddings; vectors of different models are
never mixed). On real platforms most users of a narrow task are in that case.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core import schema
from core.atomic import write_json
from core.errors import PreciseError
from core.settings import Settings, TargetedConfig, Task, parse_date
from training import universal
from training.lifecycle import registry, runs
from training.prep import text
from training.prep.tensors import Index, pad_left, target_contexts
from training.models.precise import ModelConfig, Precise, saved_config
from training.models.task import Targeted
from training.trainer import AlternateConfig, TrainConfig, load_checkpoint, newest_intact

log = logging.getLogger(__name__)


# --- data -------------------------------------------------------------------------------------------


def task_candidates(task: Task, items: pd.DataFrame, index: Index) -> torch.Tensor | None:
    """(N+1,) bool: which of the index's items belong to the task's scenes (row 0, padding: False),
    the items its export serves; None for a task over every scene."""
    if task.scenes is None:
        return None
    scene = dict(zip(items["item_id"], items["scene"]))
    wanted = set(task.scenes)
    return torch.tensor([False] + [scene.get(i) in wanted for i in index.ids])


def samples(task_seqs: pd.DataFrame, since: str, until: str, per_user: int,
            all_scene: pd.DataFrame | None = None) -> pd.DataFrame:
    """Training examples: each user's most recent `per_user` task behaviours with a time in
    [since, until] (days, inclusive) as targets, the input being what came before.

    Returns user_id, history (item ids, oldest first), target (item id), day, history_ts (the
    history's times) and target_ts (the target's): what the session context is computed from.
    With `all_scene`, the history is the user's all-scene sequence before the target's time.
    """
    lo = pd.Timestamp(since, tz="UTC")
    hi = pd.Timestamp(until, tz="UTC") + pd.Timedelta(days=1)
    context = dict(zip(all_scene["user_id"], zip(all_scene["item_ids"], all_scene["ts"]))) if all_scene is not None else {}
    rows = []
    for user, items, ts in zip(task_seqs["user_id"], task_seqs["item_ids"], task_seqs["ts"]):
        ts = pd.to_datetime(ts, utc=True)
        hits = np.flatnonzero((ts >= lo) & (ts < hi))[-per_user:]
        for k in hits:
            if all_scene is not None:
                ctx_items, ctx_ts = context.get(user, ([], []))
                ctx_ts = pd.to_datetime(ctx_ts, utc=True)
                cut = int(np.searchsorted(ctx_ts, ts[k], side="left"))
                history, history_ts = list(ctx_items[:cut]), ctx_ts[:cut]
            else:
                history, history_ts = list(items[:k]), ts[:k]
            if history:
                rows.append((user, history, items[k], ts[k].strftime("%Y-%m-%d"), history_ts.tz_convert(None).to_numpy(), ts[k]))
    return pd.DataFrame(rows, columns=["user_id", "history", "target", "day", "history_ts", "target_ts"])


def to_tensors(examples: pd.DataFrame, index: Index, max_len: int, gap_minutes: float = 0) -> tuple[torch.Tensor, ...]:
    """(inputs (S, L) left-padded item indices, targets (S,)), and with `gap_minutes` > 0 (the
    model's `session_gap_minutes`) the inputs' session contexts (S, L), the last one the
    target's (`target_contexts`); unknown targets dropped, unknown history items dropped with
    their codes."""
    targets = index.lookup(examples["target"])
    histories = [index.lookup(h) for h in examples["history"]]
    keep = targets > 0
    inputs = pad_left([h[h > 0] for h, k in zip(histories, keep) if k], max_len)
    out = (torch.from_numpy(inputs), torch.from_numpy(targets[keep]))
    if not gap_minutes:
        return out
    contexts = target_contexts(examples["history_ts"], examples["target_ts"], gap_minutes)
    return out + (torch.from_numpy(pad_left([c[h > 0] for h, c, k in zip(histories, contexts, keep) if k], max_len)),)


def split_valid(examples: pd.DataFrame, n_users: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out the last example of n_users users with at least 2 examples (earlier prefixes of
    theirs stay in training: they never contain the held-out item)."""
    counts = examples.groupby("user_id").size()
    eligible = counts.index[counts >= 2].to_numpy()
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(eligible, size=min(n_users, len(eligible)), replace=False).tolist()) if len(eligible) else set()
    last = ~examples.duplicated("user_id", keep="last")
    held = last & examples["user_id"].isin(chosen)
    return examples[~held], examples[held]


# --- checkpoints and state ----------------------------------------------------------------------------


def train_config(cfg: TargetedConfig) -> TrainConfig:
    """The trainer's settings of targeted training: `train_targeted.train` (checked at load, where
    the keys below are refused) with the loss plumbing fixed: the model computes its own loss
    (Targeted.loss); the trainer's sampler only hands it the batch's other targets (used by
    negatives: item). No logQ correction, no alternate training."""
    return dataclasses.replace(cfg.train, loss="sampled", negatives="in_batch", logq=False,
                               alternate=AlternateConfig(enabled=False))


def checkpoint_root(settings: Settings, task: str) -> Path:
    return settings.paths.var / "checkpoints" / "targeted" / task


def state_path(settings: Settings, task: str) -> Path:
    return settings.paths.var / "targeted" / task / "state.json"


def read_state(settings: Settings, task: str) -> dict:
    path = state_path(settings, task)
    return json.loads(path.read_text()) if path.is_file() else {"last_warmup": None, "universal": None, "days": {}}


def latest_checkpoint(settings: Settings, task: str, before: str) -> Path | None:
    root = checkpoint_root(settings, task)
    days = [d for d in schema.list_days(root, "final/state.json") if d < before]
    return newest_intact([schema.partition_dir(root, d) / "final" for d in days])  # a corrupt one is skipped


def universal_champion(settings: Settings, day: str) -> Path | None:
    """The universal model a warm-up starts from: the registry's champion, or (no registry yet)
    the newest finished universal model of a day <= `day`."""
    champ = registry.champion(settings, None)
    # Dates compared as dates (the registry's tag), not as folder names.
    if champ is not None and parse_date(champ.tags["trained_through"]) <= parse_date(day):
        return Path(champ.tags["checkpoint"])
    return universal.latest_checkpoint(settings, before=(pd.Timestamp(day) + pd.Timedelta(days=1)).strftime("%Y-%m-%d"))


def split_weights(weights: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    base = {k[len("base."):]: v for k, v in weights.items() if k.startswith("base.")}
    head = {k[len("head."):]: v for k, v in weights.items() if k.startswith("head.")}
    return base, head


def grow(meta: dict, weights: dict[str, torch.Tensor], items: pd.DataFrame, tok_ids: np.ndarray,
         tok_init: np.ndarray, neighbours: int, cfg: TargetedConfig | None = None) -> tuple[Targeted, Index, Index, int]:
    """A targeted checkpoint over today's catalog; new items get text-driven ID rows. With `cfg`
    (a day that trains on), the loss is today's settings', else the checkpoint's."""
    base_w, head_w = split_weights(weights)
    base, index, token_index, n_new = universal.grow(meta, base_w, items, tok_ids, tok_init, meta["max_tokens"], neighbours)
    negatives, loss = (cfg.negatives, cfg.loss) if cfg else (meta["negatives"], meta.get("loss", "bpr"))
    model = Targeted(base, meta["head_hidden"], negatives, loss)
    model.head.load_state_dict(head_w)
    return model, index, token_index, n_new


def load(folder: Path) -> tuple[Targeted, dict]:
    """A finished targeted checkpoint as trained: model in eval mode and its metadata."""
    meta, weights = load_checkpoint(folder)
    base_w, _ = split_weights(weights)
    base = Precise(ModelConfig(**saved_config(meta["model"])), base_w["item_tokens"])
    model = Targeted(base, meta["head_hidden"], meta["negatives"], meta.get("loss", "bpr"))
    model.load_state_dict(weights)
    return model.eval(), meta


# --- the stage --------------------------------------------------------------------------------------


def start_model(settings: Settings, day: str, champion: Path, previous: tuple, warmup: bool, catalog: tuple):
    """The model a day's run trains, grown to the day's catalog (items, token ids, token init): a
    warm-up starts from the universal champion (keeping the previous task head unless
    `reset_head_at_warmup`), an incremental day continues the previous task checkpoint (meta,
    weights). Returns (model, item index, token index, new items, the first day of the training
    examples, the universal model it descends from: {universal, universal_run_id})."""
    cfg, (p_meta, p_weights), (items, tok_ids, tok_init) = settings.targeted, previous, catalog
    if not warmup:
        model, index, token_index, n_new = grow(p_meta, p_weights, items, tok_ids, tok_init,
                                                settings.universal.new_item_neighbours, cfg)
        return model, index, token_index, n_new, day, {k: p_meta["metrics"][k] for k in ("universal", "universal_run_id")}
    u_meta, u_weights = load_checkpoint(champion)
    base, index, token_index, n_new = universal.grow(u_meta, u_weights, items, tok_ids, tok_init, settings.encode.max_tokens,
                                                     settings.universal.new_item_neighbours)
    model = Targeted(base, cfg.head_hidden, cfg.negatives, cfg.loss)
    if p_meta is not None and not cfg.reset_head_at_warmup:
        model.head.load_state_dict(split_weights(p_weights)[1])
    since = (pd.Timestamp(day) - pd.Timedelta(days=cfg.replay_days - 1)).strftime("%Y-%m-%d")
    return model, index, token_index, n_new, since, {"universal": champion.parent.name,
                                                     "universal_run_id": u_meta["metrics"].get("mlflow_run_id")}


def training_examples(settings: Settings, task: Task, since: str, day: str, index: Index, model_cfg,
                      seed: int) -> tuple:
    """The task's examples from `since` to `day` (`samples`: the task sequences, or with `input:
    all_scene` every click before each target), `valid_users` users held out, as tensors. Returns
    (train, valid, the training examples' frame); a thin day selects on the training examples' last
    rows."""
    cfg = settings.targeted
    task_seqs = schema.read_sequences(settings.paths.sequences, f"task={task.name}")
    context = schema.read_sequences(settings.paths.sequences) if cfg.input == "all_scene" else None
    train_ex, valid_ex = split_valid(samples(task_seqs, since, day, cfg.samples_per_user, context), cfg.valid_users, seed)
    max_len, gap = model_cfg.max_len, model_cfg.session_gap_minutes
    train, valid = to_tensors(train_ex, index, max_len, gap), to_tensors(valid_ex, index, max_len, gap)
    if len(train[1]) < 2:
        raise PreciseError(f"task {task.name}: fewer than 2 training examples between {since} and {day}")
    if len(valid[1]) == 0:  # a thin day: select on the training examples' last items
        valid = tuple(x[-cfg.valid_users:] for x in train)
    return train, valid, train_ex


def main(settings: Settings, task: str, date: str | None = None, force_warmup: bool = False,
         force: bool = False) -> dict:
    from validation import manifest

    task = settings.task(task)
    cfg = settings.targeted
    tcfg = train_config(cfg)
    day = manifest.resolve_day(settings, date)
    days = manifest.good_days(settings, up_to=day)
    out = schema.partition_dir(checkpoint_root(settings, task.name), day)
    done = None if (force or force_warmup) else runs.finished(out / "final")
    if done is not None:
        m = done["metrics"]
        runs.repair_registration(settings, runs.RunSpec(
            out, day, f"precise-{task.name}", f"{task.name}-{day}", task.name, m["mode"], params={},
            register_tags={"parent_universal": m["universal"], "parent_universal_run_id": m["universal_run_id"]}), m)
        log.info("targeted model %s for %s exists; not retraining (use --force)", task.name, day)
        write_json(metrics_path(settings, task.name), m)
        return m

    champion = universal_champion(settings, day)
    if champion is None:
        raise PreciseError(f"no universal model of a day <= {day}: run `precise train universal --date {day}` first")
    previous = latest_checkpoint(settings, task.name, before=day)
    p_meta, p_weights = load_checkpoint(previous) if previous is not None else (None, None)
    last_warmup = p_meta["metrics"]["last_warmup"] if p_meta else None
    warmup = force_warmup or last_warmup is None or (pd.Timestamp(day) - pd.Timestamp(last_warmup)).days >= cfg.warmup_every_days

    items, tok_ids, tok_init = text.read(settings.paths.text)
    max_tokens = settings.encode.max_tokens
    model, index, token_index, n_new, since, source = start_model(settings, day, champion, (p_meta, p_weights), warmup,
                                                                  (items, tok_ids, tok_init))
    last_warmup = day if warmup else last_warmup
    model.candidates = task_candidates(task, items, index) if cfg.candidates == "task" else None
    mode = "warmup" if warmup else "incremental"
    log.info("targeted %s %s: %s (universal %s), %d new items", task.name, day, mode, source["universal"], n_new)

    train, valid, train_ex = training_examples(settings, task, since, day, index, model.cfg, tcfg.seed)

    torch.manual_seed(tcfg.seed)
    run = runs.RunSpec(
        out, day, f"precise-{task.name}", f"{task.name}-{day}", task.name, mode,
        params={"date": day, "task": dataclasses.asdict(task), "mode": mode, "since": since,
                "targeted": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "train"},
                "train": tcfg.to_dict(), **source},
        tags={"stage": "train_targeted", "task": task.name, "mode": mode, "parent_universal": str(source["universal"]),
              "parent_universal_run_id": str(source["universal_run_id"])},
        register_tags={"parent_universal": source["universal"], "parent_universal_run_id": source["universal_run_id"]})

    def summarize(state, mlflow) -> dict:
        best = max(state.history, key=lambda m: m["R@10"])
        coverage = coverage_on(settings, task, day, _universal_day(source["universal"]), days)
        mlflow.log_metrics({"coverage": coverage["share"]})
        return {
            "date": day, "task": task.name, "mode": mode, "last_warmup": last_warmup, **source,
            "examples": len(train[1]), "valid_examples": len(valid[1]), "users": int(train_ex["user_id"].nunique()),
            "items": len(index), "new_items": n_new, "epochs": len(state.history), "best_epoch": state.best_epoch,
            "valid": {k: best[k] for k in best if k.startswith(("R@", "N@"))}, "coverage": coverage,
        }

    metrics, _ = runs.train_and_register(
        settings, run, model, train, valid, tcfg, days, summarize,
        {"model": model.cfg.to_dict(), "head_hidden": cfg.head_hidden, "negatives": cfg.negatives, "loss": cfg.loss, "input": cfg.input,
         "candidates": cfg.candidates,
         "task": task.name, "item_ids": index.ids, "token_ids": token_index.ids, "max_tokens": max_tokens})
    record_day(settings, task.name, day, {"mode": mode, "universal": source["universal"], "last_warmup": last_warmup})
    write_json(metrics_path(settings, task.name), metrics)
    return metrics


def record_day(settings: Settings, task: str, day: str, entry: dict) -> None:
    """The task's state file (for operators and the DAGs; the checkpoint chain holds the truth):
    the day's entry (mode, universal, last_warmup), and the latest day's warm-up and universal."""
    state = read_state(settings, task)
    state["days"][day] = entry
    latest = max(state["days"])
    state.update(last_warmup=state["days"][latest]["last_warmup"], universal=state["days"][latest]["universal"])
    write_json(state_path(settings, task), state)


def _universal_day(version: str | None) -> str | None:
    return version.split("=", 1)[1] if version and "=" in version else None


def metrics_path(settings: Settings, task: str) -> Path:
    return settings.paths.metrics / "train_targeted" / f"{task}.json"


# --- pre-trained coverage (Figure 4a) ----------------------------------------------------------------


def task_items(events: pd.DataFrame, task: Task) -> set[str]:
    keep = events["action"].isin(task.actions)
    if task.scenes is not None:
        keep &= events["scene"].isin(task.scenes)
    return set(events.loc[keep, "item_id"])


def coverage_on(settings: Settings, task: Task, day: str, universal_day: str | None, days: list[str]) -> dict:
    """Share of the items of D's task behaviours that universal training saw up to universal_day."""
    today = task_items(schema.read_events(settings.paths.data, [day]), task)
    seen = [d for d in days if universal_day is not None and d <= universal_day]
    ev = schema.read_events(settings.paths.data, seen)
    trained = set(ev.loc[ev["action"].isin(settings.sequences.universal_actions), "item_id"])
    share = len(today & trained) / len(today) if today else float("nan")
    return {"share": share, "items": len(today), "universal_day": universal_day}


def coverage_curve(daily_task_items: list[set], daily_universal_items: list[set], warmup_every: int | None) -> list[float]:
    """Figure 4a from item sets: coverage on each day when the targeted model is warm-started on
    day 0 and re-warm-started every `warmup_every` days (None: never again)."""
    trained: list[set] = []
    seen: set = set()
    for s in daily_universal_items:
        seen = seen | s
        trained.append(seen)
    out = []
    for d, items in enumerate(daily_task_items):
        w = d - d % warmup_every if warmup_every else 0
        out.append(len(items & trained[w]) / len(items) if items else float("nan"))
    return out
