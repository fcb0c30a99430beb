"""Item initialisation for a downstream ID model (the Elephant paper, ../shared/papers/): does an
ID-only SASRec trained on one scene learn better when its item table starts from our item vectors?

    python -m benchmarks.item_init [--seeds 7] [--sample F] [--tag item_init] [--inits PRECISE ...]

food-kitchen, the universal results' split (benchmarks/datasets.py). The downstream model is the
in-repo SASRec peer (id-only, exact softmax, dot; the `sasrec` variant of universal_results.py)
trained on the kitchen scene only: its catalog is the kitchen items, its sequences each user's
kitchen items, valid and test the users whose held-out item is a kitchen item, full ranking over
the kitchen items. Its item table starts from

  random       the peer's own initialisation (normal, std 0.02)
  vanilla LLM  each item's mean token state (the cached language-model states), PCA to the width
  PRECISE      PRECISE-UT (params.yaml defaults) trained on every training sequence of both scenes:
               its scored kitchen item vectors, what `precise export item-init` writes

each rescaled to the random rows' mean norm, then trainable or frozen. Rows (kitchen test R@10,
N@10, cold-target R@10, valid R@10) go to benchmarks/out/<tag>.json and, through
universal_results.py's renderer, to a section of docs/results.md. Goal (issue 14): PRECISE beats
random by >= 10% R@10 and beats vanilla LLM.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks import universal_results as ur
from core.atomic import write_text
from core.settings import Settings
from training.models.baselines import Transitions
from training.prep.tensors import Index, next_item_pairs, pad_left
from training.evaluate import breakdown, item_frequency, rank_targets
from training.trainer import fit
from training.universal import build

REPO = Path(__file__).resolve().parents[1]
SCENE = "kitchen"
INITS = (("random", True), ("vanilla LLM", True), ("vanilla LLM", False), ("PRECISE", True), ("PRECISE", False))
INIT_NAMES = sorted({name for name, _ in INITS})


def kitchen_split(data: dict) -> dict:
    """The prepared food-kitchen data restricted to the kitchen scene, re-indexed over its items."""
    items = data["items"]
    keep = items[items["scene"] == SCENE].reset_index(drop=True)
    index = Index(list(keep["item_id"]))
    remap = np.zeros(len(data["item_index"]) + 1, dtype=np.int64)
    remap[data["item_index"].lookup(keep["item_id"])] = np.arange(1, len(keep) + 1)

    def only(seq: np.ndarray) -> np.ndarray:
        return remap[seq][remap[seq] > 0]

    def held_out(split: tuple) -> tuple[list, np.ndarray]:
        rows = [(only(h), remap[t]) for h, t in zip(*split) if remap[t] > 0]
        return [h for h, _ in rows], np.array([t for _, t in rows], dtype=np.int64)

    return {"items": keep, "index": index, "full_rows": data["item_index"].lookup(keep["item_id"]),
            "train": [s for s in (only(s) for s in data["train"]) if len(s)], "valid": held_out(data["valid"]),
            "test": held_out(data["test"])}


def llm_vectors(data: dict, rows: np.ndarray, width: int, max_tokens: int) -> np.ndarray:
    """(K, width): each item's mean cached LLM token state (the HLLM-style model's frozen item
    vectors, `item_embedding: llm`), PCA to `width`."""
    states = ur.text_vectors(data, max_tokens)[rows]
    centred = states - states.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:width].T


def precise_vectors(data: dict, settings: Settings, rows: np.ndarray, seed: int, sets: tuple) -> tuple[np.ndarray, dict]:
    """(K, D) scored item vectors of PRECISE-UT trained on both scenes, and that model's row."""
    row, model = ur.train_row(data, settings, "ut", seed, sets, False, settings.universal.eval_ks)
    with torch.no_grad():
        vectors = model.all_item_embeddings()[torch.from_numpy(rows)].numpy()
    return vectors, {k: row[k] for k in ("valid", "test", "train_seconds", "epochs", "best_epoch", "switch_step")}


def peer(k: dict, settings: Settings, data: dict, init: np.ndarray | None, trainable: bool, seed: int,
         sets: tuple) -> dict:
    """The SASRec peer on the kitchen scene, its item table from `init` (or its own), trained."""
    _, model_over, train_over = ur.VARIANTS["sasrec"]
    spec, tcfg = ur.configure(settings, model_over | sets[0], train_over | sets[1])
    tcfg = dataclasses.replace(tcfg, seed=seed)
    torch.manual_seed(seed)
    model = build(spec, k["items"], data["tok_ids"], data["tok_init"], settings.encode.max_tokens, k["index"],
                  data["token_index"])
    if init is not None:
        with torch.no_grad():
            own = model.id_emb.weight[1:]
            scale = own.norm(dim=1).mean() / torch.from_numpy(init).float().norm(dim=1).mean().clamp(min=1e-12)
            own.copy_(torch.from_numpy(init).float() * scale)
    model.id_emb.weight.requires_grad_(trainable)
    max_len = model.cfg.max_len
    valid = (torch.from_numpy(pad_left(k["valid"][0], max_len)), torch.from_numpy(k["valid"][1]))
    t0 = time.perf_counter()
    state = fit(model, next_item_pairs(k["train"], max_len), valid, tcfg)
    freq = item_frequency(k["train"], len(k["index"]))
    ks = settings.universal.eval_ks
    return {"valid": breakdown(rank_targets(model, *k["valid"]), k["valid"][1], freq, ks),
            "test": breakdown(rank_targets(model, *k["test"]), k["test"][1], freq, ks),
            "train_seconds": round(time.perf_counter() - t0, 1), "epochs": len(state.history),
            "best_epoch": state.best_epoch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[7])
    parser.add_argument("--sample", type=float, default=1.0, help="share of training-only users kept (proxy runs)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a train_universal model/train setting for every learned row")
    parser.add_argument("--tag", default="item_init", help="name of the JSON in benchmarks/results/ (the default tag is the study docs/results.md shows)")
    parser.add_argument("--inits", nargs="+", default=INIT_NAMES, choices=INIT_NAMES,
                        help="item tables to start from (each trainable and frozen where both exist)")
    args = parser.parse_args()
    sets = ur.parse_sets(args.set)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.load(REPO / "params.yaml")
    data = ur.prepare("food-kitchen", settings, args.sample, REPO / "var" / "text_cache")
    k = kitchen_split(data)
    out = ur.RESULTS / f"{args.tag}.json"
    freq = item_frequency(k["train"], len(k["index"]))
    ks = settings.universal.eval_ks
    counting = Transitions(k["train"], len(k["index"]))
    result = {"scene": SCENE, "items": len(k["index"]), "train_sequences": len(k["train"]),
              "valid_users": len(k["valid"][1]), "test_users": len(k["test"][1]), "sample": args.sample,
              "rows": {"counting (last 3 items)": {s: breakdown(counting.ranks(*k[s]), k[s][1], freq, ks)
                                                   for s in ("valid", "test")}}}
    for seed in args.seeds:
        spec = ur.configure(settings, ur.VARIANTS["sasrec"][1] | sets[0], {})[0]
        width = spec.get("id_dim", 64) + spec.get("sem_dim", 64)  # an id-only table is the model's full width
        vectors = {"random": None}
        if "vanilla LLM" in args.inits:
            vectors["vanilla LLM"] = llm_vectors(data, k["full_rows"], width, settings.encode.max_tokens)
        if "PRECISE" in args.inits:
            vectors["PRECISE"], result["precise_ut"] = precise_vectors(data, settings, k["full_rows"], seed, sets)
        for name, trainable in (init for init in INITS if init[0] in args.inits):
            label = f"SASRec peer, {name} init, {'trainable' if trainable else 'frozen'} (seed {seed})"
            result["rows"][label] = peer(k, settings, data, vectors[name], trainable, seed, sets)
            shown = result["rows"][label]["test"]["all"]
            print(f"{label}: test R@10 {shown['R@10']:.4f} N@10 {shown['N@10']:.4f}", flush=True)
            write_text(out, json.dumps(result, indent=1, default=str))
    print(pd.DataFrame({label: {"test R@10": r["test"]["all"]["R@10"], "cold R@10": r["test"]["cold"]["R@10"]}
                        for label, r in result["rows"].items()}).T.to_string())


if __name__ == "__main__":
    main()
