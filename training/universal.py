"""Universal training stage (PRECISE IV-C, IV-E): one all-scene model, retrained daily.

`precise train universal --date D`:

1. reads the all-scene sequences as of D (data/sequences) and the encoded catalog (data/text);
2. continues from the newest finished universal checkpoint before D, if any: its item and token
   tables **grow** (old rows kept, new items and token ids appended; a new item's ID row is the
   mean ID row of its `new_item_neighbours` nearest items by text, so its embedding starts from
   its text; new token rows start from their mean contextual states); it then trains on the users
   active in the last `replay_days` days, for at least `continue_min_steps` steps (it starts
   trained; `train.min_steps` sizes a run from scratch). Without a previous checkpoint it trains
   from scratch on every user;
3. holds out the last item of `valid_users` users for early stopping (full-ranking R@10);
4. writes the model to `var/checkpoints/universal/date=D/final/` (safetensors weights, JSON state
   with the model config, the trainer config, the item and token ids in index order, metrics),
   `data/metrics/train_universal.json` (with the Figure 4b summary: ID-embedding cosine of
   nearest neighbours by fused embedding vs random pairs), the learning curve
   `data/plots/train_universal.csv`, `data/plots/fig4b_universal.png`, and an MLflow run
   (experiment `precise-universal`).

A finished day is not retrained (re-running a date is idempotent; `--force` retrains). A run
killed midway resumes from `var/checkpoints/universal/date=D/run/`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core import schema
from core.atomic import atomic_path, write_json
from core.errors import PreciseError
from core.settings import ModelSpec, Settings, UniversalConfig
from training import diagnostics, distributed
from training.lifecycle import runs
from training.prep import text
from training.prep.tensors import (Index, days_since_epoch, item_token_matrix, next_item_pairs, pad_left, per_scene,
                           published_days, same_session_share, scene_codes, session_context)
from training.models.precise import ModelConfig, Precise, saved_config
from training.trainer import TrainConfig, Valid, load_checkpoint, newest_intact

log = logging.getLogger(__name__)

MODEL_KEYS = {f.name for f in dataclasses.fields(ModelSpec)}  # what a checkpoint's config shares with params


def train_config(u: UniversalConfig) -> TrainConfig:
    """The trainer's settings (typed and checked when params.yaml was loaded)."""
    return u.train


def model_spec(u: UniversalConfig) -> dict:
    """The model's variant and sizes as ModelConfig keywords (checked at load)."""
    return dataclasses.asdict(u.model)


def curriculum_pairs(tcfg: TrainConfig, seqs: list[np.ndarray], items: pd.DataFrame, item_index: Index,
                     max_len: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`fit`'s domain-specific pairs under `curriculum: cprec` (each sequence split by scene),
    None under `mixed`."""
    if tcfg.curriculum != "cprec":
        return None
    return next_item_pairs(per_scene(seqs, scene_codes(items, item_index)), max_len)


# --- building and growing models --------------------------------------------------------------------


def build(spec: dict, items: pd.DataFrame, tok_ids: np.ndarray, tok_init: np.ndarray, max_tokens: int,
          item_index: Index, token_index: Index) -> Precise:
    """A fresh model over the given indexes; token rows start from their mean LLM states."""
    init = dict(zip((str(t) for t in tok_ids), tok_init))
    token_init = torch.from_numpy(np.stack([init[t] for t in token_index.ids])) if len(token_index) else None
    cfg = ModelConfig(n_items=len(item_index), n_tokens=len(token_index), llm_dim=int(tok_init.shape[1]), **spec)
    model = Precise(cfg, item_token_matrix(items, item_index, token_index, max_tokens), token_init)
    model.set_published(published_days(items, item_index))  # `age_logit` only
    return model


def grow(meta: dict, weights: dict[str, torch.Tensor], items: pd.DataFrame, tok_ids: np.ndarray,
         tok_init: np.ndarray, max_tokens: int, neighbours: int) -> tuple[Precise, Index, Index, int]:
    """Yesterday's model over today's catalog: old rows kept, new items and tokens appended.

    Returns (model, item index, token index, number of new items).
    """
    saved = saved_config(meta["model"])
    old_cfg = ModelConfig(**saved)
    item_index, n_new = Index.grow(meta["item_ids"], items["item_id"])
    token_index, _ = Index.grow(meta["token_ids"], (str(t) for t in tok_ids))
    spec = {k: v for k, v in saved.items() if k in MODEL_KEYS}
    model = build(spec, items, tok_ids, tok_init, max_tokens, item_index, token_index)
    state = model.state_dict()
    for name, old in weights.items():
        if name in ("item_tokens", "item_published"):
            continue  # rebuilt from today's catalog
        new = state[name]
        if new.shape == old.shape:
            state[name] = old
        elif name in ("id_emb.weight", "tok_emb.weight", "id_counts"):  # grown tables: copy the old rows (new items: count 0)
            new[: old.shape[0]] = old
            state[name] = new
        else:
            raise PreciseError(f"cannot continue from the checkpoint: {name} changed shape {tuple(old.shape)} -> {tuple(new.shape)}")
    model.load_state_dict(state)
    if n_new and model.id_emb is not None and model.pool is not None:
        init_new_items(model, old_cfg.n_items, neighbours)
    return model, item_index, token_index, n_new


@torch.no_grad()
def init_new_items(model: Precise, n_old: int, k: int) -> None:
    """ID rows of items n_old+1.. = mean ID row of their k nearest old items by semantic embedding.

    The semantic part comes from the item's text alone, so a new item's embedding starts where
    the items that read like it are (cold start driven by text, PRECISE IV-E.1).
    """
    model.eval()
    old = torch.arange(1, n_old + 1)
    new = torch.arange(n_old + 1, model.cfg.n_items + 1)
    sem_old = torch.nn.functional.normalize(model.semantic(old)[0], dim=-1)  # (n_old, sem)
    sem_new = torch.nn.functional.normalize(model.semantic(new)[0], dim=-1)  # (n_new, sem)
    nearest = (sem_new @ sem_old.T).topk(min(k, n_old), dim=1).indices + 1  # (n_new, k) item indices
    model.id_emb.weight[new] = model.id_emb.weight[nearest].mean(1)
    model.train()


# --- the stage --------------------------------------------------------------------------------------


def checkpoint_root(settings: Settings) -> Path:
    return settings.paths.var / "checkpoints" / "universal"


def latest_checkpoint(settings: Settings, before: str) -> Path | None:
    """The newest finished universal checkpoint of a day before `before` that is intact (a corrupt
    one is skipped with a warning: `trainer.newest_intact`)."""
    days = [d for d in schema.list_days(checkpoint_root(settings), "final/state.json") if d < before]
    return newest_intact([schema.partition_dir(checkpoint_root(settings), d) / "final" for d in days])


def split_valid(seqs: list[np.ndarray], n_valid: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Hold out the last item of n_valid users (those with at least 3 items): returns the training
    sequences (held-out items removed) and the valid user positions."""
    eligible = np.array([i for i, s in enumerate(seqs) if len(s) >= 3])
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(eligible, size=min(n_valid, len(eligible)), replace=False)) if len(eligible) else eligible
    train = list(seqs)
    for i in chosen:
        train[i] = seqs[i][:-1]
    return train, chosen


def session_contexts(ts: pd.Series, valid_pos: np.ndarray, gap: float, max_len: int):
    """The session codes of every sequence (`session_context`; a held-out user's without its last
    behaviour, whose context is its valid target's), the valid inputs' codes (V, L), and the share
    of gaps within a session (warned about when it says nothing)."""
    contexts = [session_context(t, gap) for t in ts]
    for i in valid_pos:
        contexts[i] = contexts[i][:-1]
    share = same_session_share(contexts)
    log.info("session context: %.1f%% of the gaps within %g minutes", 100 * share, gap)
    if not 0.01 <= share <= 0.99:
        log.warning("the session context carries almost no information here (%.1f%% of the gaps within %g minutes); "
                    "if this log's times are not real behaviour times (an import that spreads histories over a "
                    "window, one timestamp per batch), set train_universal.model.session_gap_minutes: 0",
                    100 * share, gap)
    return contexts, torch.from_numpy(pad_left([contexts[i] for i in valid_pos], max_len)), share


def start_model(settings: Settings, day: str, previous: Path | None, catalog: tuple, seqs: pd.DataFrame,
                tcfg: TrainConfig) -> tuple:
    """The model day D trains: the previous day's checkpoint grown to D's catalog (trained on the
    users active in the last `replay_days`, at least `continue_min_steps` steps), or a fresh one.
    catalog: (items, token ids, token init vectors) of `text.read`. Returns (model, item index,
    token index, number of new items, the sequences it trains on, the train config)."""
    u, (items, tok_ids, tok_init), max_tokens = settings.universal, catalog, settings.encode.max_tokens
    if previous is None:
        item_index = Index(list(items["item_id"]))
        token_index = Index(sorted(str(t) for t in tok_ids))
        model = build(model_spec(u), items, tok_ids, tok_init, max_tokens, item_index, token_index)
        return model, item_index, token_index, len(item_index), seqs, tcfg
    meta, weights = load_checkpoint(previous)
    model, item_index, token_index, n_new = grow(meta, weights, items, tok_ids, tok_init, max_tokens, u.new_item_neighbours)
    since = (pd.Timestamp(day) - pd.Timedelta(days=u.replay_days - 1)).strftime("%Y-%m-%d")
    seqs = seqs[seqs["last_day"] >= since]
    log.info("continuing from %s: %d new items, %d users active since %s", previous.parent.name, n_new, len(seqs), since)
    return model, item_index, token_index, n_new, seqs, dataclasses.replace(tcfg, min_steps=min(tcfg.min_steps, u.continue_min_steps))


def training_data(model: Precise, seqs: pd.DataFrame, item_index: Index, valid_users: int, seed: int) -> tuple:
    """The sequences as the trainer reads them: the last item of `valid_users` drawn users held out
    (`split_valid`), next-item pairs of the rest, with the session context and the target times
    where the model reads them. Returns (train pairs, Valid, same-session share, training sequences)."""
    idx = [item_index.lookup(s) for s in seqs["item_ids"]]
    train_seqs, valid_pos = split_valid(idx, valid_users, seed)
    max_len = model.cfg.max_len
    inputs = torch.from_numpy(pad_left([train_seqs[i] for i in valid_pos], max_len))
    targets = torch.from_numpy(np.array([idx[i][-1] for i in valid_pos], dtype=np.int64))
    contexts = valid_ctx = session_share = times = when = None
    if model.cfg.session_gap_minutes > 0:
        contexts, valid_ctx, session_share = session_contexts(seqs["ts"], valid_pos, model.cfg.session_gap_minutes, max_len)
    if model.cfg.age_logit:  # each position's target time; a held-out user's last one is its valid target's
        times = [days_since_epoch(t) for t in seqs["ts"]]
        when = torch.from_numpy(np.array([times[i][-1] for i in valid_pos]))
        for i in valid_pos:
            times[i] = times[i][:-1]
    train = next_item_pairs(train_seqs, max_len, contexts, times)
    return train, Valid(inputs, targets, valid_ctx, when), session_share, train_seqs


def main(settings: Settings, date: str | None = None, force: bool = False) -> dict:
    from validation import manifest

    day = manifest.resolve_day(settings, date)
    days = manifest.good_days(settings, up_to=day)
    u = settings.universal
    tcfg = train_config(u)
    out = schema.partition_dir(checkpoint_root(settings), day)
    run = runs.RunSpec(out, day, "precise-universal", f"universal-{day}", None, "universal", params={},
                       tags={"stage": "train_universal"})
    done = None if force else runs.finished(run.final)
    if done is not None:
        runs.repair_registration(settings, run, done["metrics"])
        if distributed.rank() == 0:
            log.info("universal model for %s exists; not retraining (use --force)", day)
            write_reports(settings, done["metrics"], done["state"]["history"])  # DVC may have removed them
            write_fig4b(settings, load(run.final)[0], day)
        return done["metrics"]

    items, tok_ids, tok_init = text.read(settings.paths.text)
    previous = latest_checkpoint(settings, day)
    model, item_index, token_index, n_new, seqs, tcfg = start_model(
        settings, day, previous, (items, tok_ids, tok_init), schema.read_sequences(settings.paths.sequences), tcfg)
    torch.manual_seed(tcfg.seed)
    train, valid, session_share, train_seqs = training_data(model, seqs, item_index, u.valid_users, tcfg.seed)
    if len(train[0]) == 0 or len(valid.targets) == 0:
        raise PreciseError(f"not enough sequences to train on as of {day}")
    max_tokens, max_len = settings.encode.max_tokens, model.cfg.max_len
    domain = curriculum_pairs(tcfg, train_seqs, items, item_index, max_len)

    run.params = {"date": day, "model": model.cfg.to_dict(), "train": tcfg.to_dict(),
                  "replay_days": u.replay_days, "continued_from": previous.parent.name if previous else "scratch"}

    def summarize(state, _mlflow) -> dict:
        best = max(state.history, key=lambda m: m["R@10"])
        return {
            "date": day, "users": len(seqs), "train_sequences": int(len(train[0])), "valid_users": int(len(valid.targets)),
            "items": len(item_index), "new_items": n_new, "tokens": len(token_index),
            "epochs": len(state.history), "best_epoch": state.best_epoch, "phase_switch_step": state.switched_at,
            "same_session_share": session_share,
            "valid": {k: best[k] for k in best if k.startswith(("R@", "N@"))} | {"val_loss": best["val_loss"]},
            "fig4b": write_fig4b(settings, model, day),
        }

    metrics, state = runs.train_and_register(
        settings, run, model, train, valid, tcfg, days, summarize,
        {"model": model.cfg.to_dict(), "item_ids": item_index.ids, "token_ids": token_index.ids, "max_tokens": max_tokens},
        domain=domain)
    if metrics:  # rank 0 (or a single process) writes the reports
        write_reports(settings, metrics, state.history)
    return metrics


def write_fig4b(settings: Settings, model: Precise, day: str) -> dict | None:
    """Figure 4b diagnostic of a fused model: summary numbers, and the PNG in data/plots."""
    title = f"universal {day}: ID similarity of nearest neighbours by fused embedding"
    fused = model.id_emb is not None and model.pool is not None
    values = diagnostics.neighbour_id_similarity(model) if fused else {}
    with atomic_path(settings.paths.data / "plots" / "fig4b_universal.png") as tmp:
        diagnostics.plot(values, tmp, title if fused else f"{title}: needs ID and text ({model.cfg.item_embedding} has not)")
    return diagnostics.summary(values) if fused else None


def write_reports(settings: Settings, metrics: dict, history: list[dict]) -> None:
    """DVC metrics and the learning curve (DVC plots) of a training run."""
    write_json(settings.paths.metrics / "train_universal.json", metrics)
    curve = pd.DataFrame([{k: v for k, v in m.items() if not isinstance(v, list)} for m in history])
    with atomic_path(settings.paths.data / "plots" / "train_universal.csv") as tmp:
        curve.to_csv(tmp, index=False)


def load(folder: Path) -> tuple[Precise, dict]:
    """A finished checkpoint as it was trained (no growth): model in eval mode and its metadata."""
    meta, weights = load_checkpoint(folder)
    cfg = ModelConfig(**saved_config(meta["model"]))
    model = Precise(cfg, weights["item_tokens"])
    model.load_state_dict(weights)
    return model.eval(), meta
