"""The task model (PRECISE IV-D): the universal model's encoder run bidirectionally, with an MLP
over all positions, trained with BPR (or a softmax) on one task. `training.targeted` is the stage
that warm-starts, trains and records it; the model's loss and negatives are documented there.

It implements `training.models.recommender.SequenceRecommender` like the universal model: the trainer,
the evaluation and the export use it through that contract.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.settings import TARGETED_LOSSES, TARGETED_NEGATIVES
from training.metrics import add_history_offset
from training.models.precise import Precise, distinct_items, softmax_cross_entropy


class Targeted(nn.Module):
    """The universal encoder, bidirectional, with an MLP over all positions (PRECISE IV-D)."""

    def __init__(self, base: Precise, hidden: int, negatives: str = "catalog", loss: str = "bpr",
                 candidates: torch.Tensor | None = None):
        super().__init__()
        if negatives not in TARGETED_NEGATIVES or loss not in TARGETED_LOSSES:
            raise ValueError(f"negatives must be one of {', '.join(TARGETED_NEGATIVES)}; "
                             f"loss one of {', '.join(TARGETED_LOSSES)}")
        if loss == "softmax" and negatives != "catalog":
            raise ValueError("loss softmax needs negatives: catalog (it normalises over the whole catalog)")
        self.base, self.negatives, self.loss_kind, self.hidden = base, negatives, loss, hidden
        base.text_dropout = 0.0  # a regulariser of universal training (ModelSpec): a task fine-tunes as is
        L, D = base.cfg.max_len, base.cfg.dim
        self.head = nn.Sequential(nn.Linear(L * D, hidden), nn.GELU(), nn.Linear(hidden, D))
        nn.init.zeros_(self.head[-1].weight)  # starts as the latest slot's state: see users()
        nn.init.zeros_(self.head[-1].bias)
        # (N+1,) bool: the items this task ranks (its scenes', `task_candidates`), or None: every item.
        # Not saved: each day's catalog gives it again.
        self.register_buffer("candidates", candidates, persistent=False)

    # The trainer reads these from the model it trains.
    @property
    def cfg(self):
        return self.base.cfg

    @property
    def tok_emb(self):
        return self.base.tok_emb

    @property
    def id_emb(self):
        return self.base.id_emb

    def all_item_embeddings(self) -> torch.Tensor:
        return self.base.all_item_embeddings()

    # A task model scores with its vectors alone: the base's text-neighbour logit
    # (`text_logit_dim`) is a universal-model option that targeted training does not carry.
    def scoring_items(self) -> torch.Tensor:
        return self.base.all_item_embeddings()

    def with_text_users(self, users: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        return users

    def served_users(self, users: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        return users

    def served_items(self, day: float) -> torch.Tensor:
        return self.base.all_item_embeddings()

    def text_logit(self) -> None:
        return None

    def age_offsets(self) -> None:
        return None

    def age_logit(self, when, items=None, pairs=False) -> None:
        return None  # a task model scores items whatever their age (the base's `age_logit` is universal training's)

    def set_item_counts(self, counts: torch.Tensor) -> None:
        """Nothing: the base keeps its universal training's counts (the cold gate's among them);
        a task's targets are one scene's, not evidence of how well the ID rows are trained."""

    def history_logit(self) -> torch.Tensor | None:
        """The base's learned offset of items already read (`model.history_offset`; a warm start
        begins at the universal model's), which the catalog losses train and evaluation adds to
        the items of the input; None without one or with `user`/`item` negatives (those losses
        never score the catalog, so they could not learn it)."""
        return self.base.history_logit() if self.negatives == "catalog" else None

    def users(self, seq: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """seq (B, L) left-padded task sequences (context (B, L): their session codes, as the
        universal model's `encode` reads them, the last one the predicted behaviour's) -> h'_u (B, D).

        h'_u = h_L + MLP(h_1 ... h_L): the MLP over all positions plus a skip from the latest slot,
        the MLP's output layer initialised to zero. A warm-started model thus begins where the
        universal model's user embedding is (its latest-slot state) instead of at a random
        projection that the first steps would have to undo at the cost of the pre-trained weights.
        """
        h = self.base.encode(seq, causal=False, context=context)  # (B, L, D), padded positions zeroed
        return self.base.to_space(h[:, -1] + self.head(h.flatten(1)))  # (B, D), the base's scoring space

    def scored_items(self, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The catalog losses' items and targets: (N+1, D) every item's embedding and target (B,),
        or with `candidates` only theirs: (C+1, D) (row 0 padding) and the targets renumbered.
        The third value maps an item id to its row (None: the identity; 0: not a candidate)."""
        items = self.base.all_item_embeddings()
        if self.candidates is None:
            return items, target, None
        rows = torch.cat([torch.zeros(1, dtype=torch.long, device=items.device), self.candidates.nonzero().squeeze(1)])
        renumber = torch.zeros(len(items), dtype=torch.long, device=items.device)
        renumber[rows] = torch.arange(len(rows), device=items.device)
        return items[rows], renumber[target], renumber

    def forward(self, seq, target, negatives, item_logq=None, context=None, when=None):
        return self.loss(seq, target, negatives, context)  # (a task model has no age offset: `when` unread)

    def left_out(self, target: torch.Tensor) -> torch.Tensor | None:
        """(C+1,) bool over the rows of `scored_items`: the items the universal model never saw in
        training (`Precise.untrained_items`, under its cold gate), which the catalog losses leave out
        as it does; never a target of the batch (target: rows). None without the gate."""
        unseen = self.base.untrained_items()
        if unseen is None:
            return None
        if self.candidates is not None:
            unseen = torch.cat([unseen[:1], unseen[self.candidates]])
        unseen[target] = False
        return unseen

    def loss(self, seq: torch.Tensor, target: torch.Tensor, negatives: torch.Tensor | None,
             context: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """seq (B, L), target (B,) next task item, negatives (M,) other targets for `item` mode,
        context (B, L) session codes or None (`users`; in training some rows read code 0 as in
        universal training, `Precise.drop_context`)."""
        context = self.base.drop_context(context)
        scale = 1.0 / self.base.cfg.temperature  # scores as the universal loss sees them
        offset = self.history_logit()
        if self.negatives == "catalog":
            items, target, renumber = self.scored_items(target)
            if offset is not None:  # (B, L) each input's distinct items, as rows of `items` (0: none)
                history = distinct_items(seq) if renumber is None else distinct_items(renumber[seq])
            left_out = self.left_out(target)  # rows of `items` never seen in training (cold gate), or None
        if self.negatives == "catalog" and self.loss_kind == "softmax":  # the universal model's exact softmax
            loss = softmax_cross_entropy(self.users(seq, context), items, target, scale,
                                         history=None if offset is None else history, offset=offset, exclude=left_out)
            return loss, dict(self.base.last_stats)
        u = self.users(seq, context) * scale  # (B, D)
        if self.negatives == "catalog":
            s = u @ items.T  # (B, C+1), column 0 = padding
            if offset is not None:  # the items already read score their logit plus the offset
                add_history_offset(s[:, 1:], history, offset)  # a view: writes into s
            pos = s.gather(1, target.unsqueeze(1))  # (B, 1)
            keep = torch.ones_like(s, dtype=torch.bool)
            keep[:, 0] = False  # padding
            keep[torch.arange(len(target)), target] = False
            if left_out is not None:
                keep[:, left_out] = False
            return -F.logsigmoid(pos - s)[keep].mean(), dict(self.base.last_stats)
        e = self.base.item_embeddings(target)  # (B, D)
        pos = (u * e).sum(-1)  # (B,)
        if self.negatives == "user":
            s = u @ e.T  # s[i, j] = user i scored on user j's target
            diff = pos.unsqueeze(0) - s  # diff[i, j] = h'_j.e_j - h'_i.e_j
            keep = target.unsqueeze(1) != target.unsqueeze(0)  # i != j and not the same target
        else:
            neg = u @ self.base.item_embeddings(negatives).T  # (B, M)
            diff = pos.unsqueeze(1) - neg
            keep = target.unsqueeze(1) != negatives.unsqueeze(0)
        if not keep.any():
            return (u.sum() + e.sum()) * 0.0, dict(self.base.last_stats)
        return -F.logsigmoid(diff[keep]).mean(), dict(self.base.last_stats)
