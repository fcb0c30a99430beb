"""The contract between a sequence model and what trains, evaluates and exports it.

`SequenceRecommender` is everything `training.trainer`, `training.evaluate` and `serving.export`
read of a model; the universal model (`training.models.precise.Precise`) and the task model
(`training.models.task.Targeted`) both implement it, and `tests/model/test_model.py` checks that
they do. A new kind of model implements these members and is trained, evaluated and exported as
is; nothing downstream asks a model what it is (no `hasattr` probing).

Shapes: B users, L sequence length, D the scored width, N items (row 0 = padding).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from training.models.precise import ModelConfig


@runtime_checkable
class SequenceRecommender(Protocol):
    """A model that embeds users from item sequences and scores every item of the catalog."""

    cfg: ModelConfig  # sizes, similarity, temperature and options (a task model: its base's)
    candidates: torch.Tensor | None  # (N+1,) bool the items it ranks; None: every item
    tok_emb: nn.Embedding | None  # the token table alternate training freezes first (None: no text table)
    id_emb: nn.Embedding | None  # the ID table whose change the trainer logs (None: no ID table)

    def loss(self, seq: torch.Tensor, target: torch.Tensor, negatives: torch.Tensor | None, *args,
             **kwargs) -> tuple[torch.Tensor, dict]:
        """The training loss of a batch and its statistics (`forward` calls it)."""
        ...

    def users(self, seq: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """seq (B, L) left-padded item ids, context (B, L) session codes or None -> (B, D)."""
        ...

    def scoring_items(self) -> torch.Tensor:
        """(N+1, D') every item as ranked in evaluation (D' >= D: extra columns of extra logits)."""
        ...

    def with_text_users(self, users: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """users (B, D), last (B,) each one's last read item -> (B, D') to score `scoring_items`."""
        ...

    def served_users(self, users: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """users (U, D), last (U,) -> the exported user vectors (to score `served_items`)."""
        ...

    def served_items(self, day: float) -> torch.Tensor:
        """(N+1, D'') every item as exported for queries on `day` (days since 1970)."""
        ...

    def all_item_embeddings(self) -> torch.Tensor:
        """(N+1, D) every item's scored vector (row 0 = zeros)."""
        ...

    def history_logit(self) -> torch.Tensor | None:
        """The learned logit offset of items the user has already read (None: none)."""
        ...

    def text_logit(self) -> torch.Tensor | None:
        """The learned weight of the text-neighbour logit (None: none), for the logs."""
        ...

    def age_logit(self, when: torch.Tensor | None, items: torch.Tensor | None = None,
                  pairs: bool = False) -> torch.Tensor | None:
        """when (P,) query times -> (P, N+1) each item's age offset (None: none)."""
        ...

    def age_offsets(self) -> list[float] | None:
        """The learned offset per item-age bucket (None: none), for the logs."""
        ...

    def set_item_counts(self, counts: torch.Tensor) -> None:
        """counts (N+1,): how often each item is a target in the training data."""
        ...
