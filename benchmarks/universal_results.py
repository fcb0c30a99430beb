"""The universal-model results table: PRECISE-UT and its ablations against a counting baseline.

    python benchmarks/universal_results.py [--datasets synthetic food-kitchen] [--epochs 4]

Writes `docs/results.md` (and benchmarks/out/universal_results.json). Variants, all of width
id_dim + sem_dim: fused with alternate training (PRECISE-UT), fused with joint training, id-only,
text-only, mean-pool, and the counting baseline (items that followed the user's last 3 items).

Protocols (full ranking over every item):
* synthetic (the embedded default world of params.yaml): train on days 1..N-1; select (early
  stopping) on the last training item of 1,000 users; test on each user's first click of day N.
* food-kitchen: train on every train sequence and the valid/test users' histories; select on the
  valid users' last items; report on the 937 test users' last items (the issue's protocol).
Cold = targets among the 80% least frequent items seen in training.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingest import synth  # noqa: E402
from precise.settings import Settings  # noqa: E402
from training import text  # noqa: E402
from training import diagnostics  # noqa: E402
from training.baselines import Transitions  # noqa: E402
from training.data import Index, next_item_pairs, pad_left  # noqa: E402
from training.evaluate import breakdown, item_frequency, rank_targets  # noqa: E402
from training.trainer import fit  # noqa: E402
from training.universal import build, model_spec, train_config  # noqa: E402

OUT = REPO / "benchmarks" / "out"
VARIANTS = {
    "PRECISE-UT (fused, alternate)": ("fused", True),
    "fused, joint training": ("fused", False),
    "id-only": ("id", False),
    "text-only": ("text", True),
    "mean-pool": ("meanpool", True),
}


def synthetic(settings: Settings):
    world = synth.build_world(settings.synth)
    events = pd.concat([synth.simulate_day(world, d).assign(day=d) for d in range(settings.synth.days)])
    clicks = events[events["action"] == "click"].sort_values(["user_id", "ts"], kind="stable")
    catalog = world.items[["item_id", "scene", "title", "text", "published_at"]]
    last = settings.synth.days - 1
    train = clicks[clicks["day"] < last].groupby("user_id")["item_id"].agg(list)
    test_rows = clicks[clicks["day"] == last].groupby("user_id")["item_id"].first()
    test_users = [u for u in test_rows.index if u in train.index]
    return catalog, train, None, (test_users, test_rows.loc[test_users].tolist())


def food_kitchen(folder: Path):
    seqs = pd.read_csv(folder / "sequences.csv")
    items = pd.read_csv(folder / "items.csv")
    catalog = items.assign(text=None, published_at=pd.Timestamp("2026-01-01", tz="UTC"))
    tokens = seqs["items"].str.split()
    held = seqs["split"].isin(["valid", "test"])
    train = pd.Series([t[:-1] if h else t for t, h in zip(tokens, held)], index=seqs["user_id"])
    pick = lambda split: (seqs.loc[seqs["split"] == split, "user_id"].tolist(), tokens[seqs["split"] == split].str[-1].tolist())  # noqa: E731
    return catalog, train, pick("valid"), pick("test")


def run_dataset(name: str, settings: Settings, epochs: int, cache: Path) -> dict:
    t0 = time.perf_counter()
    catalog, train_lists, valid_split, test_split = (
        synthetic(settings) if name == "synthetic" else food_kitchen(REPO.parent / "shared" / "datasets" / "food-kitchen"))
    enc_out = OUT / f"text-{name}"
    enc = text.run(settings.encode, catalog, REPO, cache, enc_out, OUT / f"encode-{name}.json")
    items, tok_ids, tok_init = text.read(enc_out)
    item_index = Index(list(items["item_id"]))
    token_index = Index(sorted(str(t) for t in tok_ids))
    train = [item_index.lookup(s) for s in train_lists]
    if valid_split is None:  # hold out the last training item of 1,000 users
        rng = np.random.default_rng(0)
        chosen = set(rng.choice([i for i, s in enumerate(train) if len(s) >= 3], 1000, replace=False).tolist())
        valid = ([s[:-1] for i, s in enumerate(train) if i in chosen], np.array([s[-1] for i, s in enumerate(train) if i in chosen]))
        train = [s[:-1] if i in chosen else s for i, s in enumerate(train)]
    else:
        hist = dict(zip(train_lists.index, train))
        valid = ([hist[u] for u in valid_split[0]], item_index.lookup(valid_split[1]))
    hist = dict(zip(train_lists.index, train))
    test = ([hist[u] for u in test_split[0]], item_index.lookup(test_split[1]))
    freq = item_frequency(train, len(item_index))
    ks = settings.universal.eval_ks
    rows = {}

    counting = Transitions(train, len(item_index))
    rows["counting (last 3 items)"] = {"test": breakdown(counting.ranks(*test), test[1], freq, ks),
                                      "valid": breakdown(counting.ranks(*valid), valid[1], freq, ks)["all"]}
    spec, tcfg = model_spec(settings.universal), train_config(settings.universal)
    tcfg = dataclasses.replace(tcfg, epochs=epochs, checkpoint_every=0)
    fig4b = {}
    pairs = next_item_pairs(train, spec.get("max_len", 50))
    valid_t = (torch.from_numpy(pad_left(valid[0], spec.get("max_len", 50))), torch.from_numpy(valid[1]))
    for label, (kind, alternate) in VARIANTS.items():
        torch.manual_seed(tcfg.seed)
        model = build(spec | {"item_embedding": kind}, items, tok_ids, tok_init, settings.encode.max_tokens,
                      item_index, token_index)
        cfg = dataclasses.replace(tcfg, alternate=dataclasses.replace(tcfg.alternate, enabled=alternate))
        t1 = time.perf_counter()
        state = fit(model, pairs, valid_t, cfg)
        if kind == "fused":  # Figure 4b: ID similarity of fused-embedding neighbours
            fig4b[label] = diagnostics.neighbour_id_similarity(model)
        rows[label] = {"test": breakdown(rank_targets(model, *test), test[1], freq, ks),
                       "valid": {"R@10": state.best_r10}, "epochs": len(state.history),
                       "best_epoch": state.best_epoch, "switch_step": state.switched_at,
                       "train_seconds": round(time.perf_counter() - t1, 1)}
        print(f"{name} {label}: test R@10 {rows[label]['test']['all']['R@10']:.4f} "
              f"cold {rows[label]['test']['cold']['R@10']:.4f} ({rows[label]['train_seconds']} s)", flush=True)
    curves = {f"neighbours, {k.split(',')[-1].strip(' )')}": v["neighbours"] for k, v in fig4b.items()}
    curves["random pairs"] = next(iter(fig4b.values()))["random"]
    diagnostics.plot(curves, REPO / "docs" / f"fig4b-{name}.png",
                     f"{name}: ID similarity of nearest neighbours by fused embedding")
    return {"rows": rows, "fig4b": {k: diagnostics.summary(v) for k, v in fig4b.items()}, "items": len(item_index), "train_sequences": len(train), "test_users": len(test[1]),
            "encode": enc, "seconds": round(time.perf_counter() - t0, 1)}


def markdown(results: dict, epochs: int) -> str:
    lines = ["# Universal model results", "",
             "Generated by `python benchmarks/universal_results.py` (full ranking over all items; "
             f"epochs capped at {epochs}, early stopping on the validation split). Cold = targets among the "
             "80% least frequent items seen in training.", ""]
    for name, r in results.items():
        lines += [f"## {name}", "", f"{r['items']:,} items, {r['train_sequences']:,} training sequences, "
                  f"{r['test_users']:,} test users; built in {r['seconds']:.0f} s.", "",
                  "| variant | test R@10 | test N@10 | test R@50 | cold R@10 | cold N@10 | valid R@10 | epochs (best) | tokens unfrozen at step |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for label, row in r["rows"].items():
            t, c = row["test"]["all"], row["test"]["cold"]
            epochs = f"{row['epochs']} ({row['best_epoch']})" if "epochs" in row else "-"
            unfrozen = "-" if "epochs" not in row else (row["switch_step"] if row.get("switch_step") is not None else "never")
            lines.append(f"| {label} | {t['R@10']:.4f} | {t['N@10']:.4f} | {t['R@50']:.4f} | {c['R@10']:.4f} | "
                         f"{c['N@10']:.4f} | {row['valid']['R@10']:.4f} | {epochs} | {unfrozen} |")
        lines += ["", f"Figure 4b diagnostic (`docs/fig4b-{name}.png`): ID-embedding cosine of item pairs that are "
                  "nearest neighbours by fused embedding, against random pairs.", "",
                  "| model | neighbours mean | neighbours median | random mean |", "| --- | --- | --- | --- |"]
        for label, f in r["fig4b"].items():
            lines.append(f"| {label} | {f['neighbours_mean']:.3f} | {f['neighbours_median']:.3f} | {f['random_mean']:.3f} |")
        lines += ["", f"![Figure 4b, {name}](fig4b-{name}.png)", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["synthetic", "food-kitchen"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--render", action="store_true", help="only re-render docs/results.md from the last JSON")
    args = parser.parse_args()
    if args.render:
        results = json.loads((OUT / "universal_results.json").read_text())
        (REPO / "docs" / "results.md").write_text(markdown(results, args.epochs))
        return
    settings = Settings.load(REPO / "params.yaml")
    OUT.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.datasets:
        results[name] = run_dataset(name, settings, args.epochs, REPO / "var" / "text_cache")
        (OUT / "universal_results.json").write_text(json.dumps(results, indent=1, default=str))
        (REPO / "docs").mkdir(exist_ok=True)
        (REPO / "docs" / "results.md").write_text(markdown(results, args.epochs))
    print(markdown(results, args.epochs))


if __name__ == "__main__":
    main()
