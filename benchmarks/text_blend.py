"""A probe, not a results table: how much would the raw text of the user's last item add to a
trained universal model's ranking? (docs/notebook.md, "Cold targets: what the text knows" and
"Why held-out items stay out of the top 10")

    python -m benchmarks.text_blend --dataset food-kitchen            # ~25 min on 2 cores
    python -m benchmarks.text_blend --dataset movielens --variant id
    python -m benchmarks.text_blend --dataset movielens-newitems --variant ut-gen --never-seen \\
        --betas 0 0.5 1 2 3 --lambdas 0 1 2 3 5          # ~17 min: held-out items only

Trains one row of `benchmarks.universal_results` (its defaults, validation only; `--weights F`
loads a row trained before, `--save F` keeps this one), then ranks with

    score(j) = model score / temperature (+ the history offset) + m_j (beta + lambda x cos_text(last item, j))

where cos_text is the text-neighbours baseline's centred cosine (`training.models.baselines.TextNeighbours`)
and m_j = 1 for every item, or with `--never-seen` only for the items never seen in training (a
bias and a text pull for them alone; beta 0 without either), or with `--rare N` only for the
items seen 1..N times. Each (beta, lambda) is shown on the
validation split with R@10, N@10, R@50, the cold and new buckets' R@10 (hits), the softmax mass
the scores put on never-seen items and the validation loss (the softmax's negative log-likelihood
of the target). Two choices are read on the test split, once each with (0, 0): the pair of the
best validation R@10 and the pair of the lowest validation loss (the calibrated one). With
`--never-seen` it also prints where the new targets rank among the never-seen items alone, for the
model and for the text rule (which of them knows *which* new item a user wants), on the validation
split and, as a diagnostic from which nothing is chosen, on the test split.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from benchmarks import universal_results as ur
from core.settings import Settings
from training.models.baselines import TextNeighbours
from training.prep.tensors import pad_left
from training.evaluate import breakdown, item_frequency
from training.metrics import add_history_offset
from training.trainer import history_logit


@torch.no_grad()
def blended(model, text: torch.Tensor, histories: list[np.ndarray], targets: np.ndarray,
            contexts: list[np.ndarray] | None, pairs: list[tuple[float, float]],
            only: torch.Tensor | None = None, among: torch.Tensor | None = None, when: np.ndarray | None = None) -> dict:
    """{(beta, lambda): (ranks (B,), losses (B,), mass (B,))}: each target's 0-based full-ranking
    rank, its softmax loss, and the softmax mass on the `only` items, under the blended logits.
    text (N+1, H) the centred, normalised text vectors (row 0 and items without text: zeros);
    only (N+1,) bool: the items the blend applies to (None: all); among (N+1,) bool: rank among
    these items only; when (B,) the targets' times (days since 1970), for a model with the item-age
    offset. The model's logits are its own scoring's (`training.trainer.model_ranks`: the history
    and age offsets, padding never ranked)."""
    model.eval()
    inputs = torch.from_numpy(pad_left(histories, model.cfg.max_len))
    ctx = torch.from_numpy(pad_left(contexts, model.cfg.max_len)) if contexts is not None else None
    items, tau = model.all_item_embeddings(), model.cfg.temperature
    m = torch.ones(len(text), dtype=torch.bool) if only is None else only
    offset = history_logit(model)
    out = {pair: ([], [], []) for pair in pairs}
    for i in range(0, len(inputs), 512):
        x, t = inputs[i : i + 512], torch.from_numpy(targets[i : i + 512])
        base = model.users(x, None if ctx is None else ctx[i : i + 512]) @ items.T / tau  # (b, N+1)
        if offset is not None:
            add_history_offset(base[:, 1:], x, offset)
        if when is not None and (age := model.age_logit(torch.from_numpy(when[i : i + 512]))) is not None:
            base = base + age
        cos = text[x[:, -1]] @ text.T  # (b, N+1) the text rule's cosine to the last item
        for (beta, lam), (ranks, losses, mass) in out.items():
            s = base + m * (beta + lam * cos)
            s[:, 0] = float("-inf")
            if among is not None:
                s[:, ~among] = float("-inf")
            pos = s.gather(1, t.unsqueeze(1))
            ranks.append((s >= pos).sum(1) - 1)
            losses.append(torch.logsumexp(s, 1) - pos.squeeze(1))
            mass.append(torch.softmax(s, 1)[:, m].sum(1))
    return {pair: tuple(torch.cat(v).numpy() for v in values) for pair, values in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="food-kitchen", choices=ur.datasets.DATASETS)
    parser.add_argument("--variant", default="ut", choices=list(ur.VARIANTS))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--lambdas", nargs="+", type=float, default=[0.0, 0.5, 1.0, 2.0, 4.0, 8.0])
    parser.add_argument("--betas", nargs="+", type=float, default=[0.0], help="with --never-seen: their bias")
    parser.add_argument("--never-seen", action="store_true", help="blend only the items never seen in training")
    parser.add_argument("--rare", type=int, default=0, metavar="N",
                        help="blend only the items seen 1..N times in training (with --betas: their bias)")
    parser.add_argument("--weights", type=Path, help="load this row's weights (from --save) instead of training")
    parser.add_argument("--save", type=Path, help="save the trained row's weights here")
    parser.add_argument("--sample", type=float, default=1.0, help="share of training-only users kept (a quick check)")
    args = parser.parse_args()
    if args.weights and not args.weights.is_file():
        raise SystemExit(f"error: --weights {args.weights}: no such file")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.load(ur.REPO / "params.yaml")
    data = ur.prepare(args.dataset, settings, args.sample, ur.REPO / "var" / "text_cache")
    n = len(data["item_index"])
    freq = item_frequency(data["train"], n)
    text = torch.from_numpy(TextNeighbours(ur.text_vectors(data, settings.encode.max_tokens), data["train"], n).vectors)
    if args.weights:
        model = ur.build_row(data, settings, args.variant, ({}, {}))[0]
        try:
            model.load_state_dict(torch.load(args.weights, weights_only=True))
        except (RuntimeError, KeyError) as exc:  # another variant's or dataset's weights
            raise SystemExit(f"error: --weights {args.weights} is not a {args.variant} row of {args.dataset}: "
                             f"{str(exc).splitlines()[0]}") from None
        print(f"{args.dataset} {ur.VARIANTS[args.variant][0]}: weights {args.weights}")
    else:
        row, model = ur.train_row(data, settings, args.variant, args.seed, ({}, {}), True, settings.universal.eval_ks)
        print(f"{args.dataset} {ur.VARIANTS[args.variant][0]} seed {args.seed}: {row['train_seconds']} s, "
              f"best epoch {row['best_epoch']} of {row['epochs']}")
        if args.save:
            torch.save(model.state_dict(), args.save)
    ctx = ur.contexts(data, model.cfg.session_gap_minutes)
    unseen = torch.from_numpy(freq == 0)
    unseen[0] = False
    rare = torch.from_numpy((freq >= 1) & (freq <= args.rare)) if args.rare else None
    only = unseen if args.never_seen else rare
    biased = args.never_seen or bool(args.rare)
    pairs = [(b if biased else 0.0, lam) for b in (args.betas if biased else [0.0]) for lam in args.lambdas]

    def show(split: str, result: dict) -> None:
        for (beta, lam), (r, loss, mass) in result.items():
            b = breakdown(r, data[split][1], freq, (10, 50))
            new = b.get("new", {"n": 0, "R@10": 0.0})
            print(f"  {split} beta {beta:g} lambda {lam:g}: R@10 {b['all']['R@10']:.4f} N@10 {b['all']['N@10']:.4f} "
                  f"R@50 {b['all']['R@50']:.4f} cold R@10 {b['cold']['R@10']:.4f} (n {b['cold']['n']}) "
                  f"rare {round(b['rare']['R@10'] * b['rare']['n'])} of {b['rare']['n']} "
                  f"new R@10 {new['R@10']:.4f} ({round(new['R@10'] * new['n'])} of {new['n']}) "
                  f"loss {loss.mean():.4f} mass on the blended items {mass.mean() if only is not None else float('nan'):.3f}")

    when = ur.query_days(data)
    valid = blended(model, text, *data["valid"], ctx["valid"], pairs, only, when=when["valid"])
    show("valid", valid)
    if args.never_seen:  # which new item a user wants: the new targets' rank among never-seen items only
        for split in ("valid", "test"):  # a diagnostic on test too (nothing is chosen from it)
            new_t = unseen.numpy()[data[split][1]]
            if not new_t.any():
                print(f"  {split}: no new targets")
                continue
            for label, lam in (("model", 0.0), ("text rule", 1000.0)):  # lambda 1000: the cosine decides
                r = blended(model, text, *data[split], ctx[split], [(0.0, lam)], among=unseen, when=when[split])[(0.0, lam)][0][new_t]
                print(f"  {split}, new targets among the {int(unseen.sum())} never-seen items, {label}: "
                      f"R@10 {int((r < 10).sum())} R@50 {int((r < 50).sum())} of {len(r)}, median rank {np.median(r):.0f}")
    by_r10 = max(pairs, key=lambda p: ((valid[p][0] < 10).mean(), -p[1], -p[0]))  # ties: the smaller blend
    by_loss = min(pairs, key=lambda p: valid[p][1].mean())
    print(f"chosen on validation: by R@10 {by_r10}, by loss {by_loss}")
    show("test", blended(model, text, *data["test"], ctx["test"], sorted({(0.0, 0.0), by_r10, by_loss}), only, when=when["test"]))


if __name__ == "__main__":
    main()
