"""A probe, not a results table: how much would the raw text of the user's last item add to a
trained universal model's ranking? (docs/notebook.md, "Cold targets: what the text knows")

    python -m benchmarks.text_blend --dataset food-kitchen            # ~25 min on 2 cores
    python -m benchmarks.text_blend --dataset movielens --variant id

Trains one row of `benchmarks.universal_results` (its defaults, validation only), then ranks with

    score(j) = model score / temperature (+ the history offset) + lambda x cos_text(last item, j)

where cos_text is the text-neighbours baseline's centred cosine (`training.baselines.TextNeighbours`).
lambda is chosen on the validation split (R@10) from `--lambdas`; the test split is read once, for
lambda 0 and the chosen lambda. Prints overall and cold (80% least frequent items) figures.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import torch

from benchmarks import universal_results as ur
from core.settings import Settings
from training.baselines import TextNeighbours
from training.data import pad_left
from training.evaluate import breakdown, item_frequency
from training.metrics import target_ranks
from training.trainer import history_logit


@torch.no_grad()
def blended_ranks(model, text: torch.Tensor, histories: list[np.ndarray], targets: np.ndarray,
                  contexts: list[np.ndarray] | None, lambdas: list[float]) -> dict[float, np.ndarray]:
    """0-based full-ranking rank of each target for each lambda. text (N+1, H) the centred,
    normalised text vectors (row 0 and items without text: zeros).

    The blend is a dot product of longer vectors: user [u ; lambda tau T[last]] against item
    [e ; T[j]] gives u.e + lambda tau cos_text, i.e. tau x (the model's logit + lambda cos_text), so
    `target_ranks` ranks it as the model's own scoring does (history offset, ties, padding)."""
    model.eval()
    inputs = torch.from_numpy(pad_left(histories, model.cfg.max_len))
    ctx = torch.from_numpy(pad_left(contexts, model.cfg.max_len)) if contexts is not None else None
    users = torch.cat([model.users(inputs[i : i + 512], None if ctx is None else ctx[i : i + 512])
                       for i in range(0, len(inputs), 512)])
    items = torch.cat([model.all_item_embeddings(), text], 1)  # (N+1, D + H)
    tau, last = model.cfg.temperature, text[inputs[:, -1]]  # last: (B, H) the last item's text
    return {lam: target_ranks(torch.cat([users, lam * tau * last], 1), items, torch.from_numpy(targets),
                              scale=1.0 / tau, history=inputs, history_logit=history_logit(model))[0]
            for lam in lambdas}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="food-kitchen", choices=ur.datasets.DATASETS)
    parser.add_argument("--variant", default="ut", choices=list(ur.VARIANTS))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--lambdas", nargs="+", type=float, default=[0.0, 0.5, 1.0, 2.0, 4.0, 8.0])
    parser.add_argument("--sample", type=float, default=1.0, help="share of training-only users kept (a quick check)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.load(ur.REPO / "params.yaml")
    data = ur.prepare(args.dataset, settings, args.sample, ur.REPO / "var" / "text_cache")
    n = len(data["item_index"])
    freq = item_frequency(data["train"], n)
    text = torch.from_numpy(TextNeighbours(ur.text_vectors(data, settings.encode.max_tokens), data["train"], n).vectors)
    row, model = ur.train_row(data, settings, args.variant, args.seed, ({}, {}), True, settings.universal.eval_ks)
    ctx = ur.contexts(data, model.cfg.session_gap_minutes)
    print(f"{args.dataset} {ur.VARIANTS[args.variant][0]} seed {args.seed}: {row['train_seconds']} s, "
          f"best epoch {row['best_epoch']} of {row['epochs']}")

    def show(split: str, ranks: dict[float, np.ndarray]) -> None:
        for lam, r in ranks.items():
            b = breakdown(r, data[split][1], freq, (10, 50))
            print(f"  {split} lambda {lam:g}: R@10 {b['all']['R@10']:.4f} N@10 {b['all']['N@10']:.4f} "
                  f"R@50 {b['all']['R@50']:.4f} cold R@10 {b['cold']['R@10']:.4f} (n {b['cold']['n']})")

    valid = blended_ranks(model, text, *data["valid"], ctx["valid"], args.lambdas)
    show("valid", valid)
    best = max(args.lambdas, key=lambda lam: ((valid[lam] < 10).mean(), -lam))  # ties: the smaller lambda
    show("test", blended_ranks(model, text, *data["test"], ctx["test"], sorted({0.0, best})))


if __name__ == "__main__":
    main()
