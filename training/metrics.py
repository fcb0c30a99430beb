"""Full-ranking metrics: every item is a candidate, nothing is sampled.

R@K (recall, hit rate with one target) and N@K (NDCG with one relevant item: 1 / log2(rank + 2)
when the 0-based rank is below K). Scores are dot products (training/models/precise.py). Ties count
against the target (a target tied with another item ranks below it), so a model that scores
everything equally gets no credit.
"""

from __future__ import annotations

import numpy as np
import torch

KS = (10, 30, 50)


def add_history_offset(logits: torch.Tensor, history: torch.Tensor, offset: torch.Tensor | float,
                       columns: torch.Tensor | None = None) -> torch.Tensor:
    """Add `offset` in place to the logits (P, C) of each row's history items.

    history (P, L) item ids per row (0 = none), distinct where gradients flow (`model.distinct_items`;
    outside autograd a repeat writes the same value twice); columns None: column c is item c + 1
    (the catalog without padding); else columns (C,) the item of each column, which may repeat
    (sampled negatives): every column of a history item gets the offset. The training losses
    (`training/models/precise.py`) and `target_ranks` score the history with it."""
    rows, slot = (history > 0).nonzero(as_tuple=True)
    items = history[rows, slot]
    if columns is None:
        cols = items - 1
        logits.index_put_((rows, cols), logits[rows, cols] + offset)
        return logits
    sorted_items, order = columns.sort()
    lo = torch.searchsorted(sorted_items, items)
    hi = torch.searchsorted(sorted_items, items, right=True)
    for k in range(int((hi - lo).max()) if len(items) else 0):
        hit = lo + k < hi
        r, c = rows[hit], order[(lo + k)[hit]]
        logits.index_put_((r, c), logits[r, c] + offset)
    return logits


@torch.no_grad()
def target_ranks(users: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, chunk: int = 1024,
                 scale: float = 1.0, candidates: torch.Tensor | None = None, history: torch.Tensor | None = None,
                 history_logit: float | None = None, item_bias=None) -> tuple[np.ndarray, np.ndarray]:
    """users (B, D), items (N+1, D) with row 0 = padding, targets (B,) in 1..N.

    Returns the 0-based rank of each target among all N items (B,) and the full-softmax
    cross-entropy of each target (B,), the scores multiplied by `scale` (1 / the model's
    temperature) as in training. candidates (N+1,) bool: rank among these items only (a task's
    items, as its export serves them); the targets must be among them. history (B, L) the items
    each user has read (0 = none) with history_logit: the model's offset of those items' logits
    (`Precise.history_logit`), added to their scores. item_bias: a function of rows i, j -> (j - i,
    N+1) logit offsets of every item for those users (`Precise.age_logit`), added likewise.
    """
    ranks, losses = [], []
    for i in range(0, len(users), chunk):
        s = users[i : i + chunk] @ items.T  # (b, N+1)
        if history is not None and history_logit is not None:
            add_history_offset(s[:, 1:], history[i : i + chunk], history_logit / scale)  # a view: writes into s
        if item_bias is not None:
            s = s + item_bias(i, i + len(s)) / scale
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
