"""The universal-model results table: PRECISE-UT, its ablations, an in-repo SASRec peer and two
non-learned baselines, on every evaluation dataset (benchmarks/datasets.py).

    python -m benchmarks.universal_results                       # every table -> docs/results.md
    python -m benchmarks.universal_results --datasets food-kitchen --variants ut sasrec
    python -m benchmarks.universal_results --datasets food-kitchen --tune --sample 0.3 \\
        --set model.dropout=0.3 --set train.lr=0.002 --tag sweep-a   # a validation-only proxy run
    python -m benchmarks.universal_results --datasets synthetic-dev --variants ut id --seeds 7 \\
        --tag dev   # tuning on a split shaped like synthetic's test (day N-1; day N never read)

Every learned row trains with the defaults of params.yaml (`train_universal`) plus the
overrides its variant names (shown in the table), through the pipeline's own data preparation
(`training.prep.tensors.next_item_pairs`, `pad_left`) and trainer (`training.trainer.fit`): early
stopping on the validation split, the test split read once at the end. `--tune` never reads the
test split (sweeps); `--sample F` keeps a share F of the training-only users (proxy sweeps;
valid and test users are always kept). Headline rows (PRECISE-UT, the SASRec peer) run on
`--seeds` (two by default) and the table shows their mean.

Rows: counting (items that followed the user's last 3 items, no learning), popularity, text
neighbours (the items whose text is nearest the last item's: the mean of their tokens'
language-model states, centred, cosine; no learning: what the text alone knows), the SASRec peer
(id-only, exact softmax, dot product: SASRec's objective at every position in one pass),
PRECISE-UT (fused, alternate), fused with joint training, id-only, text-only (token table + MoE),
mean-pool, and the HLLM-style baseline (a frozen per-item LLM vector through a trained map, no ID
and no token table).
Cold = targets among the 80% least frequent items seen in training; new = never seen in training.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]

from benchmarks import datasets  # noqa: E402
from benchmarks.common import bucket_cell  # noqa: E402
from core.atomic import write_text  # noqa: E402
from core.settings import EncodeConfig, Settings  # noqa: E402
from training import audience, diagnostics  # noqa: E402
from training.prep import text  # noqa: E402
from training.models.baselines import Popularity, TextNeighbours, Transitions  # noqa: E402
from training.prep.tensors import Index, days_since_epoch, next_item_pairs, pad_left, session_context, target_contexts  # noqa: E402
from training.evaluate import BUCKETS, breakdown, item_frequency, rank_targets  # noqa: E402
from training.trainer import fit  # noqa: E402
from training.universal import build, curriculum_pairs, model_spec, train_config  # noqa: E402

OUT = REPO / "benchmarks" / "out"  # caches and scratch of the runs (ignored)
RESULTS = REPO / "benchmarks" / "results"  # each results document's JSON (tracked): what --render reads
HEADER = (
    "Full ranking over every item; ties count against the target; early stopping on the validation split, the "
    "test split read once per row. Learned rows train with `params.yaml`'s `train_universal` defaults plus the "
    "overrides shown; rows marked with seeds show the mean over those seeds. Cold = targets among the 80% least "
    "frequent items seen in training; buckets by the target's number of behaviours in training: new (0: never "
    "seen), rare (1-4), tail (5-19), head (20+), each with its number of test targets (n); '-' where a row "
    "predates buckets. The `-newitems` tables are the item cold-start protocol (benchmarks/datasets.py): 20% of "
    "the items removed from every input, their test targets the new bucket. The text-neighbours row (no "
    "learning: the items whose text is nearest the user's last item, by the cosine of their centred mean token "
    "states) says what the text alone knows. On synthetic, rows ending 'moved by the day's earlier clicks (k=...)' "
    "are the trained model of the row without that ending, scored with the test day's click stream: a never-seen "
    "item moves towards the users who clicked it before the target's hour (training/audience.py); 'today's clicks "
    "before the hour' is a rule on the same stream. How each row was produced (command, commit, machine, seconds): "
    "`{json}` (each table's `runs`, `imported` and per-row fields). How the defaults were chosen and where the "
    "quality goals stand: `docs/quality.md`.")
# key: (label, model overrides, train overrides); {} = the params.yaml defaults.
VARIANTS = {
    "sasrec": ("SASRec peer (id-only, exact softmax, dot)",
               {"item_embedding": "id", "similarity": "dot", "temperature": 1.0, "session_gap_minutes": 0,
                "history_offset": False},
               {"loss": "softmax", "alternate.enabled": False, "epochs": 40, "patience": 3}),
    "ut": ("PRECISE-UT (fused, alternate)", {}, {}),
    "ut-nogate": ("PRECISE-UT without the cold gate", {"cold_gate": False}, {}),
    "ut-gen": ("PRECISE-UT, generator for never-seen items only (detached loss)",
               {"cold_gate": True, "cold_half_count": 0.0, "id_dropout_loss": "generator", "id_dropout": 0.2}, {}),
    "ut-gen-age": ("PRECISE-UT, generator, item-age offset, items on their publish day scored from text",
                   {"cold_gate": True, "cold_half_count": 0.0, "id_dropout_loss": "generator", "id_dropout": 0.2,
                    "age_logit": True, "fresh_from_text": True}, {}),
    "ut-gen-age-id": ("PRECISE-UT, generator for never-seen items and the item-age offset",
                      {"cold_gate": True, "cold_half_count": 0.0, "id_dropout_loss": "generator", "id_dropout": 0.2,
                       "age_logit": True, "fresh_from_text": False}, {}),
    "ut-age": ("PRECISE-UT with the item-age offset", {"age_logit": True}, {}),
    "id-age": ("id-only with the item-age offset", {"item_embedding": "id", "age_logit": True}, {}),
    "ut-gen-text": ("PRECISE-UT, generator for never-seen items and the text-neighbour logit",
                    {"cold_gate": True, "cold_half_count": 0.0, "id_dropout_loss": "generator", "id_dropout": 0.2,
                     "text_logit_dim": 64}, {}),
    "joint": ("fused, joint training", {}, {"alternate.enabled": False}),
    "id": ("id-only", {"item_embedding": "id"}, {}),
    "text": ("text-only", {"item_embedding": "text"}, {}),
    "meanpool": ("mean-pool", {"item_embedding": "meanpool"}, {}),
    "hllm": ("HLLM-style (frozen item LLM)", {"item_embedding": "llm"}, {}),
    "cprec": ("PRECISE-UT, CPRec curriculum", {}, {"curriculum": "cprec"}),
}
HEADLINE = ("ut", "sasrec")
# Rows that read the test day's click stream (synthetic; `training.audience`): the same trained
# model scored again with never-seen items moved by the day's earlier clicks, and a rule.
EARLY = "never-seen items moved by the day's earlier clicks (k={k:g})"
TRENDING = "today's clicks before the hour (rule)"


def parse_sets(pairs: list[str]) -> tuple[dict, dict]:
    """['model.dropout=0.3', 'train.alternate.patience=2'] -> (model overrides, train overrides)."""
    model, train = {}, {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        section, _, name = key.partition(".")
        if section not in ("model", "train") or not name:
            raise SystemExit(f"error: --set {pair}: expected model.KEY=VALUE or train.KEY=VALUE")
        (model if section == "model" else train)[name] = yaml.safe_load(value)
    return model, train


def configure(settings: Settings, model_over: dict, train_over: dict):
    """(model spec, TrainConfig) = params.yaml defaults + overrides (`alternate.x` keys nest)."""
    spec = model_spec(settings.universal) | model_over
    tcfg = train_config(settings.universal)
    alternate = {k.split(".", 1)[1]: v for k, v in train_over.items() if k.startswith("alternate.")}
    plain = {k: v for k, v in train_over.items() if not k.startswith("alternate.")}
    tcfg = dataclasses.replace(tcfg, **plain, checkpoint_every=0,
                               alternate=dataclasses.replace(tcfg.alternate, **alternate))
    return spec, tcfg


def with_encoder(settings: Settings, model: str | None) -> Settings:
    """`settings` with `encode.model` = `model` (a `--encoder` value; None: unchanged)."""
    return dataclasses.replace(settings, encode=dataclasses.replace(settings.encode, model=model)) if model else settings


def encoder_suffix(settings: Settings, slug: bool = False) -> str:
    """'' for the default language model (`encode.model` of params.yaml's dataclass default), else
    ', text by NAME' (row labels) or '-NAME' (slug: scratch folder names), NAME the model folder's name."""
    if settings.encode.model == EncodeConfig().model:
        return ""
    name = Path(settings.encode.model).name
    return f"-{name}" if slug else f", text by {name}"


def prepare(name: str, settings: Settings, sample: float, cache: Path) -> dict:
    """Load, encode (cached) and index a dataset: everything the rows share."""
    catalog, train_lists, valid_split, test_split, times = datasets.load(name, settings.synth)
    if sample < 1.0:
        keep_users = set(test_split[0]) | set(valid_split[0] if valid_split else [])
        rng = np.random.default_rng(0)
        keep = np.array([u in keep_users or r < sample for u, r in zip(train_lists.index, rng.random(len(train_lists)))])
        train_lists = train_lists[keep]
    train_us = [np.asarray(times["train"][u], dtype="datetime64[us]") for u in train_lists.index] if times else None
    scratch = f"{name}{encoder_suffix(settings, slug=True)}"  # one output folder per language model
    enc_out = OUT / f"text-{scratch}"
    enc = text.run(settings.encode, catalog, REPO, cache, enc_out, OUT / f"encode-{scratch}.json")
    items, tok_ids, tok_init = text.read(enc_out)
    item_index = Index(list(items["item_id"]))
    train = [item_index.lookup(s) for s in train_lists]
    chosen = None
    if valid_split is None:  # hold out the last training item of 1,000 users
        rng = np.random.default_rng(0)
        chosen = set(rng.choice([i for i, s in enumerate(train) if len(s) >= 3], 1000, replace=False).tolist())

    def split(per_user: list, valid_targets) -> tuple[list, tuple, list]:
        """The protocol on one list aligned with train_lists (item indices, or their times):
        (training lists, (valid histories, valid targets), test histories)."""
        if chosen is not None:
            valid = ([s[:-1] for i, s in enumerate(per_user) if i in chosen], np.array([s[-1] for i, s in enumerate(per_user) if i in chosen]))
            per_user = [s[:-1] if i in chosen else s for i, s in enumerate(per_user)]
        by_user = dict(zip(train_lists.index, per_user))
        if chosen is None:
            valid = ([by_user[u] for u in valid_split[0]], valid_targets)
        test = [by_user[u] for u in test_split[0]]
        if datasets.test_includes_valid_item(name):
            extra = dict(zip(valid_split[0], valid_targets))
            test = [h if u in held else np.append(h, extra[u]) for h, u in zip(test, test_split[0])]
        return per_user, valid, test

    # new-item splits: MovieLens's valid item is not appended to a test history where it is held out
    held = ({u for u, i in zip(*valid_split) if i in datasets.held_out_items(catalog)}
            if name.endswith("-newitems") and valid_split else set())
    train, valid, test_hist = split(train, item_index.lookup(valid_split[1]) if valid_split else None)
    if train_us is not None:
        train_us, valid_us, test_us = split(train_us, np.array(times["valid"], dtype="datetime64[us]") if valid_split else None)
        times = {"train": train_us, "valid": valid_us, "test": (test_us, times["test"])}
    return {"items": items, "tok_ids": tok_ids, "tok_init": tok_init, "item_index": item_index,
            "stream": test_day_clicks(name, settings, item_index, list(test_split[0])),
            "token_index": Index(sorted(str(t) for t in tok_ids)), "train": train, "valid": valid,
            "test": (test_hist, item_index.lookup(test_split[1])), "test_users": list(test_split[0]),
            "encode": enc, "times": times,
            "no_text": float(np.mean([len(t) == 0 for t in items["token_ids"]]))}


def test_day_clicks(name: str, settings: Settings, item_index: Index, test_users: list) -> tuple | None:
    """synthetic's (and synthetic-dev's) click stream of the test day, by the test users (the
    users whose vectors the model serves that day): (item indices (C,), test rows (C,), times (C,)
    datetime64[us]), what `training.audience` reads; None for datasets without a stream."""
    if name not in ("synthetic", "synthetic-dev"):
        return None
    cfg = settings.synth if name == "synthetic" else dataclasses.replace(settings.synth, days=settings.synth.days - 1)
    stream = datasets.synthetic_stream(cfg)
    row_of = {u: i for i, u in enumerate(test_users)}
    rows = stream["user_id"].map(row_of)
    stream, rows = stream[rows.notna()], rows[rows.notna()].astype(np.int64).to_numpy()
    return item_index.lookup(list(stream["item_id"])), rows, stream["us"].to_numpy()


def early_click_ranks(model, data: dict, freq: np.ndarray, k: float) -> np.ndarray:
    """The test targets' ranks with never-seen items (training count `freq` 0) moved by the test
    day's earlier clicks (`training.audience`)."""
    hist, targets = data["test"]
    ctx = contexts(data, model.cfg.session_gap_minutes)["test"]
    when = query_days(data)["test"] if model.cfg.age_logit else None
    eligible = torch.from_numpy(freq == 0)
    eligible[0] = False
    return audience.ranks(model, torch.from_numpy(pad_left(hist, model.cfg.max_len)), torch.from_numpy(targets),
                          None if ctx is None else torch.from_numpy(pad_left(ctx, model.cfg.max_len)),
                          None if when is None else torch.from_numpy(when), data["times"]["test"][1],
                          data["stream"], eligible, k)


def trending_ranks(data: dict, freq: np.ndarray) -> np.ndarray:
    """The test targets' ranks by a rule that reads the same stream: today's clicks before the
    target's hour, ties broken by training popularity (the item's share of the training clicks)."""
    items_c, _, times_c = data["stream"]
    hours = np.asarray(data["times"]["test"][1], dtype="datetime64[us]").astype("datetime64[h]")
    targets, out = data["test"][1], np.zeros(len(data["test"][1]), dtype=np.int64)
    for hour in np.unique(hours):
        sel = np.flatnonzero(hours == hour)
        score = np.log1p(np.bincount(items_c[times_c < hour.astype("datetime64[us]")], minlength=len(freq)))
        score = score + freq / (freq.max() + 1.0)
        score[0] = -np.inf
        out[sel] = (score[None, :] >= score[targets[sel], None]).sum(1) - 1
    return out


def build_row(data: dict, settings: Settings, key: str, sets: tuple[dict, dict]):
    """The untrained model of one row (variant `key` with the --set overrides), its spec and TrainConfig."""
    _, model_over, train_over = VARIANTS[key]
    spec, tcfg = configure(settings, model_over | sets[0], train_over | sets[1])
    model = build(spec, data["items"], data["tok_ids"], data["tok_init"], settings.encode.max_tokens,
                  data["item_index"], data["token_index"])
    return model, spec, tcfg


def train_row(data: dict, settings: Settings, key: str, seed: int, sets: tuple[dict, dict], tune: bool, ks) -> tuple[dict, object]:
    label, model_over, train_over = VARIANTS[key]
    torch.manual_seed(seed)
    model, spec, tcfg = build_row(data, settings, key, sets)
    tcfg = dataclasses.replace(tcfg, seed=seed)
    max_len = spec.get("max_len", 50)
    ctx = contexts(data, spec.get("session_gap_minutes", 0))
    when = query_days(data) if spec.get("age_logit") else {"train": None, "valid": None, "test": None}
    pairs = next_item_pairs(data["train"], max_len, ctx["train"], when["train"])
    domain = curriculum_pairs(tcfg, data["train"], data["items"], data["item_index"], max_len)
    valid_t = (torch.from_numpy(pad_left(data["valid"][0], max_len)), torch.from_numpy(data["valid"][1]))
    if ctx["valid"] is not None or when["valid"] is not None:
        valid_t += (torch.from_numpy(pad_left(ctx["valid"], max_len)) if ctx["valid"] is not None else None,)
    if when["valid"] is not None:
        valid_t += (torch.from_numpy(when["valid"]),)
    t0 = time.perf_counter()
    state = fit(model, pairs, valid_t, tcfg, domain=domain)
    seconds = time.perf_counter() - t0
    freq = item_frequency(data["train"], len(data["item_index"]))
    row = {"valid": breakdown(rank_targets(model, *data["valid"], ctx["valid"], when=when["valid"]), data["valid"][1], freq, ks),
           "epochs": len(state.history), "best_epoch": state.best_epoch, "switch_step": state.switched_at,
           "steps": state.step, "train_seconds": round(seconds, 1), "seed": seed,
           "overrides": {**{f"model.{k}": v for k, v in (model_over | sets[0]).items()},
                         **{f"train.{k}": v for k, v in (train_over | sets[1]).items()}},
           "history": [{k: v for k, v in h.items() if k in ("epoch", "step", "phase", "loss", "val_loss", "R@10", "N@10", "seconds")}
                       for h in state.history]}
    if not tune:
        row["test"] = breakdown(rank_targets(model, *data["test"], ctx["test"], when=when["test"]), data["test"][1], freq, ks)
    return row, model


def text_vectors(data: dict, max_tokens: int) -> np.ndarray:
    """(N+1, H) each item's text vector for the text-neighbours row: the mean of its first
    `max_tokens` tokens' language-model states, as the HLLM-style model's frozen item vectors
    (`item_embedding: llm`, `Precise.item_llm`) define it; zeros for an item without text."""
    frozen = build({"item_embedding": "llm"}, data["items"], data["tok_ids"], data["tok_init"], max_tokens,
                   data["item_index"], data["token_index"])
    return frozen.item_llm.numpy()


def contexts(data: dict, gap_minutes: float) -> dict:
    """Session contexts (training.prep.tensors.session_context) of the training sequences and of the valid
    and test histories (each history's last position: its target's context), or None for each
    where the dataset has no timestamps or the model does not read them."""
    times = data["times"]
    if not times or not gap_minutes:
        return {"train": None, "valid": None, "test": None}

    return {"train": [session_context(t, gap_minutes) for t in times["train"]],
            "valid": target_contexts(*times["valid"], gap_minutes), "test": target_contexts(*times["test"], gap_minutes)}


def query_days(data: dict) -> dict:
    """`age_logit`'s query times in days since 1970: each training sequence's behaviour times, and
    the valid and test targets' times (None each where the dataset has no timestamps)."""
    times = data["times"]
    if not times:
        return {"train": None, "valid": None, "test": None}
    return {"train": [days_since_epoch(t) for t in times["train"]], "valid": days_since_epoch(times["valid"][1]),
            "test": days_since_epoch(times["test"][1])}


def mean_rows(rows: list[dict]) -> dict:
    """Mean of the metrics of several seeds (nested dicts of numbers), seconds and epochs too."""
    def avg(values):
        if isinstance(values[0], dict):
            return {k: avg([v[k] for v in values]) for k in values[0]}
        if isinstance(values[0], (int, float)) and not isinstance(values[0], bool):
            return float(np.mean(values))
        return values[0]

    out = {k: avg([r[k] for r in rows]) for k in ("valid", "test", "train_seconds") if k in rows[0]}
    out |= {k: [r[k] for r in rows] for k in ("epochs", "best_epoch", "switch_step", "seed", "steps")}
    out["overrides"], out["seeds"] = rows[0]["overrides"], rows
    return out


def run_dataset(name: str, settings: Settings, args, save=lambda result: None) -> dict:
    """Every row of one dataset's table; `save(result so far)` after the baselines and each row,
    so that a long run stopped midway keeps the rows it finished."""
    t0 = time.perf_counter()
    data = prepare(name, settings, args.sample, REPO / "var" / "text_cache")
    ks = settings.universal.eval_ks
    freq = item_frequency(data["train"], len(data["item_index"]))
    splits = ("valid",) if args.tune else ("valid", "test")
    rows = {}
    n, vectors = len(data["item_index"]), text_vectors(data, settings.encode.max_tokens)
    by = encoder_suffix(settings)  # rows that read the text name another language model than the default
    baselines = [("text neighbours (last item)" + by, TextNeighbours(vectors, data["train"], n))]
    if not by:
        baselines = [("counting (last 3 items)", Transitions(data["train"], n)),
                     ("popularity", Popularity(data["train"], n))] + baselines
    for label, model in baselines:
        rows[label] = {s: breakdown(model.ranks(*data[s]), data[s][1], freq, ks) for s in splits}
    rows["text neighbours (last item)" + by]["encode"] = data["encode"]
    early_ks = args.early_k or [settings.universal.early_clicks_k]
    if data["stream"] is not None and not args.tune:
        rows[TRENDING] = {"test": breakdown(trending_ranks(data, freq), data["test"][1], freq, ks)}
    fig4b = {}

    def snapshot() -> dict:
        return {"rows": dict(rows), "fig4b": {k: diagnostics.summary(v) for k, v in fig4b.items()},
                "items": len(data["item_index"]), "train_sequences": len(data["train"]), "test_users": len(data["test"][1]),
                "valid_users": len(data["valid"][1]), "no_text_share": data["no_text"], "encode": data["encode"],
                "sample": args.sample, "sets": args.set, "seconds": round(time.perf_counter() - t0, 1)}

    save(snapshot())
    sets = parse_sets(args.set)
    for key in args.variants:
        label = VARIANTS[key][0] + by
        runs, early_runs = [], {}
        for seed in (args.seeds if key in HEADLINE else args.seeds[:1]):
            row, model = train_row(data, settings, key, seed, sets, args.tune, ks)
            runs.append(row)
            shown = row["test" if "test" in row else "valid"]["all"]
            print(f"{name} {label} seed {seed}: {'test' if 'test' in row else 'valid'} R@10 {shown['R@10']:.4f} "
                  f"N@10 {shown['N@10']:.4f} valid R@10 {row['valid']['all']['R@10']:.4f} "
                  f"({row['train_seconds']} s, {row['epochs']} epochs, best {row['best_epoch']}, "
                  f"unfrozen at {row['switch_step']})", flush=True)
            if model.cfg.item_embedding == "fused" and seed == args.seeds[0]:
                fig4b[label] = diagnostics.neighbour_id_similarity(model)
                if not args.tune and args.tag == "universal_results":  # now, so that a run stopped later keeps it; docs/ holds the default tag's plots only
                    plot_fig4b(name, fig4b)
            for early_k in early_ks if data["stream"] is not None and not args.tune else []:  # id-only too: the control
                early = breakdown(early_click_ranks(model, data, freq, early_k), data["test"][1], freq, ks)
                early_runs.setdefault(early_k, []).append(row | {"test": early})
                print(f"{name} {label} seed {seed}, {EARLY.format(k=early_k)}: test R@10 {early['all']['R@10']:.4f} "
                      f"new R@10 {early['new']['R@10']:.4f} (n {early['new']['n']})", flush=True)
        rows[label] = mean_rows(runs)
        for early_k, early in early_runs.items():
            rows[f"{label}, {EARLY.format(k=early_k)}"] = mean_rows(early)
        save(snapshot())
    return snapshot()


def plot_fig4b(name: str, fig4b: dict) -> None:
    curves = {f"neighbours, {k.split(',')[-1].strip(' )')}": v["neighbours"] for k, v in fig4b.items()}
    curves["random pairs"] = next(iter(fig4b.values()))["random"]
    diagnostics.plot(curves, REPO / "docs" / f"fig4b-{name}.png", f"{name}: ID similarity of nearest neighbours by fused embedding")


def fmt_overrides(over: dict) -> str:
    return ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in over.items()) or "defaults"


def markdown(results: dict, command: str, json_path: str, plots: bool = True) -> str:
    """The results document: a fixed header, then per dataset one line and its tables, all from the
    tag's JSON (`command` regenerates it; run details stay in the JSON). plots: link the Figure 4b
    plots of docs/ (the default tag's; another tag's runs do not write them there)."""
    lines = ["# Universal model results", "", f"Generated by `{command}`. {HEADER.format(json=json_path)}", ""]
    for name, r in results.items():
        lines += [f"## {name}", "", f"{r['items']:,} items ({r['no_text_share']:.0%} without text), "
                  f"{r['train_sequences']:,} training sequences, {r['valid_users']:,} valid and "
                  f"{r['test_users']:,} test users.", "",
                  "| row | test R@10 | test N@10 | test R@50 | cold R@10 | new R@10 (n) | rare R@10 (n) | tail R@10 (n) | head R@10 (n) | valid R@10 | seconds | epochs (best) | tokens unfrozen at step | settings beyond the defaults |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for label, row in r["rows"].items():
            if "test" not in row:
                continue
            t, c = row["test"]["all"], row["test"]["cold"]
            learned = "epochs" in row
            seeds = f" (seeds {', '.join(str(s) for s in row['seed'])})" if learned and len(row["seed"]) > 1 else ""
            epochs = ", ".join(f"{e} ({b})" for e, b in zip(row["epochs"], row["best_epoch"])) if learned else "-"
            unfrozen = ", ".join("never" if s is None else str(s) for s in row["switch_step"]) if learned else "-"
            buckets = " | ".join(bucket_cell(row["test"].get(b)) for b, _ in BUCKETS)
            valid = f"{row['valid']['all']['R@10']:.4f}" if "valid" in row else "-"  # a rule of the test day's stream has none
            lines.append(f"| {label}{seeds} | {t['R@10']:.4f} | {t['N@10']:.4f} | {t['R@50']:.4f} | {c['R@10']:.4f} | "
                         f"{buckets} | {valid} | {row.get('train_seconds', 0):.0f} | {epochs} | "
                         f"{unfrozen} | {fmt_overrides(row['overrides']) if learned else '-'} |")
        if r["fig4b"]:
            png = plots and (REPO / "docs" / f"fig4b-{name}.png").is_file()
            lines += ["", f"Figure 4b diagnostic{f' (`docs/fig4b-{name}.png`)' if png else ''}: ID-embedding cosine "
                      "of item pairs that are nearest neighbours by fused embedding, against random pairs.", "",
                      "| model | neighbours mean | neighbours median | random mean |", "| --- | --- | --- | --- |"]
            for label, f in r["fig4b"].items():
                lines.append(f"| {label} | {f['neighbours_mean']:.3f} | {f['neighbours_median']:.3f} | {f['random_mean']:.3f} |")
            if plots:
                lines += ["", f"![Figure 4b, {name}](fig4b-{name}.png)" if png else "(no plot: the run stopped before writing it)"]
        lines.append("")
    if plots:  # the default tag's document carries the item-initialisation study
        lines += item_init_section(RESULTS / "item_init.json")
    return "\n".join(lines)


def item_init_section(path: Path) -> list[str]:
    """The item-initialisation study's table (benchmarks/item_init.py), when it has run."""
    if not path.is_file():
        return []
    r = json.loads(path.read_text())
    lines = ["## Item initialisation for an ID model (food-kitchen, kitchen scene)", "",
             f"Generated by `python -m benchmarks.item_init`: the SASRec peer trained on the {r['scene']} scene only "
             f"({r['items']:,} items, {r['train_sequences']:,} sequences, {r['test_users']:,} test users, full ranking "
             "over the scene's items), its item table starting at random, from the vanilla LLM (mean token state, "
             "PCA) or from PRECISE-UT trained on both scenes (its scored item vectors), trainable or frozen.", "",
             "| row | test R@10 | test N@10 | cold R@10 | valid R@10 | seconds | epochs (best) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, row in r["rows"].items():
        t = row["test"]
        epochs = f"{row['epochs']} ({row['best_epoch']})" if "epochs" in row else "-"
        lines.append(f"| {label} | {t['all']['R@10']:.4f} | {t['all']['N@10']:.4f} | {t['cold']['R@10']:.4f} | "
                     f"{row['valid']['all']['R@10']:.4f} | {row.get('train_seconds', 0):.0f} | {epochs} |")
    return lines + (["", f"Note: {r['note']}."] if r.get("note") else []) + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(datasets.DATASETS), choices=datasets.DATASETS + datasets.DEV_DATASETS,
                        help="default: every results table; synthetic-dev is a tuning split (day N-1 as the test)")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS),
                        help="learned rows (none given: the non-learned baselines only)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[7, 8], help="headline rows run on each; others on the first")
    parser.add_argument("--early-k", nargs="*", type=float, default=[],
                        help="synthetic: also score each learned row with never-seen items moved by the test day's "
                             "earlier clicks at these k (training/audience.py; default: train_universal.early_clicks_k)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a train_universal model/train setting for every learned row")
    parser.add_argument("--encoder", default=None, metavar="MODEL",
                        help="another language model for every row that reads the text (encode.model: a HF model "
                             "folder); its rows are labelled ', text by <folder name>'")
    parser.add_argument("--tune", action="store_true", help="validation split only (never reads the test split)")
    parser.add_argument("--sample", type=float, default=1.0, help="share of training-only users kept (proxy runs)")
    parser.add_argument("--tag", default="universal_results", help="name of the JSON in benchmarks/results/")
    parser.add_argument("--render", action="store_true", help="only re-render the tag's document from its JSON")
    parser.add_argument("--doc", type=Path, default=None,
                        help="render the tag's results to this markdown (the default tag: docs/results.md)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    OUT.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{args.tag}.json"
    doc = args.doc or REPO / "docs" / ("results.md" if args.tag == "universal_results" else f"{args.tag}.md")
    if args.render:
        write_text(doc, render(args.tag, doc))
        return
    if args.tag == parser.get_default("tag") and set(args.datasets) & set(datasets.DEV_DATASETS):
        parser.error(f"{', '.join(datasets.DEV_DATASETS)} is a tuning split, not a results table: give it a --tag")
    settings = with_encoder(Settings.load(REPO / "params.yaml"), args.encoder)
    results = json.loads(out.read_text()) if out.is_file() else {}
    for name in args.datasets:
        before = results.get(name) if args.sample == results.get(name, {}).get("sample", 1.0) else None

        def save(new: dict, name=name, before=before) -> None:
            if before is not None:  # another run's rows (and the table's notes) stay
                new = before | new | {"rows": before["rows"] | new["rows"], "fig4b": before.get("fig4b", {}) | new["fig4b"],
                                      "seconds": round((before.get("seconds") or 0) + new["seconds"], 1)}
            results[name] = new
            write_text(out, json.dumps(results, indent=1, default=str))  # atomic; dict order kept (row order)

        run_dataset(name, settings, args, save)
    if not args.tune and (args.tag == "universal_results" or args.doc):
        text = render(args.tag, doc)
        write_text(doc, text)
        print(text)


def render(tag: str, doc: Path) -> str:
    """The document of a tag, from its JSON in benchmarks/results/ (what --render writes; a test
    keeps the committed documents equal to it)."""
    shown = doc.relative_to(REPO) if doc.is_relative_to(REPO) else doc
    command = "python -m benchmarks.universal_results" + ("" if tag == "universal_results" else f" --tag {tag} --doc {shown}")
    path = RESULTS / f"{tag}.json"
    return markdown(json.loads(path.read_text()), command + " --render", str(path.relative_to(REPO)),
                    plots=tag == "universal_results")


if __name__ == "__main__":
    main()
