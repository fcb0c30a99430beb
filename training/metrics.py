"""Full-ranking metrics: every item is a candidate, nothing is sampled.

R@K (recall, hit rate with one target) and N@K (NDCG with one relevant item: 1 / log2(rank + 2)
when the 0-based rank is below K). Scores are dot products (training/model.py). Ties count
against the target (a target tied with another item ranks below it), so a model that scores
everything equally gets no credit.
"""

from __future__ import annotations

import numpy as np
import torch

KS = (10, 30, 50)


@torch.no_grad()
def target_ranks(users: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, chunk: int = 1024,
                 scale: float = 1.0, candidates: torch.Tensor | None = None, history: torch.Tensor | None = None,
                 history_logit: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """users (B, D), items (N+1, D) with row 0 = padding, targets (B,) in 1..N.

    Returns the 0-based rank of each target among all N items (B,) and the full-softmax
    cross-entropy of each target (B,), the scores multiplied by `scale` (1 / the model's
    temperature) as in training. candidates (N+1,) bool: rank among these items only (a task's
    items, as its export serves them); the targets must be among them. history (B, L) the items
    each user has read (0 = none) with history_logit: the model's offset of those items' logits
    (`Precise.history_logit`), added to their scores.
    """
    ranks, losses = [], []
    for i in range(0, len(users), chunk):
        s = users[i : i + chunk] @ items.T  # (b, N+1)
        if history is not None and history_logit is not None:
            rows, slot = (history[i : i + chunk] > 0).nonzero(as_tuple=True)
            cols = history[i : i + chunk][rows, slot]
            s[rows, cols] += history_logit / scale  # repeats of an item write the same value
        s[:, 0] = float("-inf")
        if candidates is not None:
            s[:, ~candidates] = float("-inf")
        t = targets[i : i + chunk]
        pos = s.gather(1, t.unsqueeze(1))  # (b, 1)
        ranks.append((s >= pos).sum(1) - 1)  # items scoring at least as high, minus the target
        losses.append(torch.logsumexp(s * scale, dim=1) - pos.squeeze(1) * scale)
    return torch.cat(ranks).cpu().numpy(), torch.cat(losses).cpu().numpy()


def from_ranks(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    out: dict[str, float] = {"n": int(len(ranks))}
    for k in ks:
        hit = ranks < k
        out[f"R@{k}"] = float(hit.mean()) if len(ranks) else 0.0
        out[f"N@{k}"] = float((hit / np.log2(ranks + 2.0)).mean()) if len(ranks) else 0.0
    return out
