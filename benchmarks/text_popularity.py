"""A probe, not a results table: does an item's text say how popular it will be? (issue 30; docs/notebook.md,
"Does the text say which held-out items will be popular?")

    python -m benchmarks.text_popularity --dataset movielens-newitems       # a few seconds
    python -m benchmarks.text_popularity --dataset food-kitchen-newitems --encoder var/models/all-mpnet-base-v2

On a new-item split (`benchmarks/datasets.py`: 20% of the items held out of every training input),
a ridge regression from each warm item's text vector (the mean of its tokens' language-model
states, the text-neighbours row's vectors) and its log token count to its log training count is
fitted on the warm items and applied to the held-out ones. It prints, per ridge strength, the
Spearman correlation between the predicted and the held-out items' true counts (their behaviours
in the full training histories, before the split removed them), and for the strength read on
validation, where the split's new targets rank among the held-out items alone (the same list for
every user) by predicted popularity and by true popularity (the oracle a model with a perfect
popularity signal would have). Nothing is trained; the test targets are shown as a diagnostic.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import spearmanr

from benchmarks import datasets
from benchmarks import universal_results as ur
from core.settings import Settings
from training.evaluate import item_frequency

STRENGTHS = (10.0, 100.0, 1000.0, 10000.0)


def ridge_predict(features: np.ndarray, target: np.ndarray, fit_on: np.ndarray, strength: float) -> np.ndarray:
    """(N,) predictions of a ridge regression of `target` on standardised `features` (N, F), fitted
    on the rows where `fit_on` (N,) bool."""
    mu, sd = features[fit_on].mean(0), features[fit_on].std(0) + 1e-6
    z = (features - mu) / sd
    y0 = target[fit_on].mean()
    w = np.linalg.solve(z[fit_on].T @ z[fit_on] + strength * np.eye(z.shape[1]), z[fit_on].T @ (target[fit_on] - y0))
    return z @ w + y0


def ranks_among(scores: np.ndarray, pool: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target (in `pool`) among the `pool` items (N,) bool, by descending score."""
    ids = np.flatnonzero(pool)[np.argsort(-scores[pool], kind="stable")]
    where = np.empty(len(scores), dtype=np.int64)
    where[ids] = np.arange(len(ids))
    return where[targets]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens-newitems", choices=["movielens-newitems", "food-kitchen-newitems"])
    parser.add_argument("--encoder", default=None, metavar="MODEL", help="encode.model (default: params.yaml's)")
    args = parser.parse_args()
    settings = ur.with_encoder(Settings.load(ur.REPO / "params.yaml"), args.encoder)
    data = ur.prepare(args.dataset, settings, 1.0, ur.REPO / "var" / "text_cache")
    n = len(data["item_index"])
    freq = item_frequency(data["train"], n).astype(float)
    # behaviours per item in the training histories before the split removed any
    unsplit = datasets.load(args.dataset.removesuffix("-newitems"), settings.synth)[1]
    full = item_frequency([data["item_index"].lookup(s) for s in unsplit], n)
    held, warm = freq == 0, freq > 0
    held[0] = warm[0] = False
    tokens = np.array([0] + [len(t) for t in data["items"]["token_ids"]], dtype=float)
    features = np.hstack([ur.text_vectors(data, settings.encode.max_tokens), np.log1p(tokens)[:, None]])
    print(f"{args.dataset}: {warm.sum():,} warm items, {held.sum():,} held out; text by {settings.encode.model}")
    best = None
    for strength in STRENGTHS:
        predicted = ridge_predict(features, np.log1p(freq), warm, strength)
        rho = spearmanr(predicted[held], full[held]).correlation
        t = np.asarray(data["valid"][1])
        r = ranks_among(predicted, held, t[held[t]])
        print(f"ridge {strength:g}: Spearman(predicted, true count) on held-out items {rho:.3f}; "
              f"valid new targets in the held-out top 50 by predicted popularity {(r < 50).sum()}")
        best = best if best is not None and best[1] >= (r < 50).sum() else (strength, (r < 50).sum(), predicted)
    strength, _, predicted = best
    print(f"chosen on validation: ridge {strength:g}")
    print("| split | new targets | predicted popularity: top 10 / top 50 / median rank | true popularity (oracle): top 10 / top 50 / median rank |")
    print("| --- | --- | --- | --- |")
    for split in ("valid", "test"):
        t = np.asarray(data[split][1])
        t = t[held[t]]
        p, o = ranks_among(predicted, held, t), ranks_among(full, held, t)
        print(f"| {split} | {len(t)} | {(p < 10).sum()} / {(p < 50).sum()} / {np.median(p):.0f} of {held.sum():,} | "
              f"{(o < 10).sum()} / {(o < 50).sum()} / {np.median(o):.0f} |")


if __name__ == "__main__":
    main()
