"""Today's first clicks on items the model never saw (issue 30): a never-seen item's vector moves
towards the users who clicked it earlier the same day.

The model knows *which* never-seen item a user may want from its text (the generator, the text
part), but not *how sure* to be: a new item's popularity and its audience's hidden tastes are in
nobody's ID row. A platform's click stream has both within the hour. For an item j never seen in
training, with n_j clicks today before the query's hour by users whose vectors u_c the model
serves (their histories before the day),

    a_j  = normalise(sum over those clicks of u_c)         the audience's direction
    v'_j = to_space((1 - w_j) v_j + w_j a_j),  w_j = n_j / (n_j + k)

(`train_universal.early_clicks_k`, k; 0: off). A click pulls harder the more of them there are,
and the audience's sum keeps the popularity the count carries (a popular item's audience points
where every user does). Items with no click before the hour, and every item seen in training,
keep their vectors; the user vectors do not change. Point in time: only clicks strictly before
the start of the query's hour count (what the hourly path has published by then), so a user's own
click on the target is never among them.

Used alike by the next-day evaluation (`training.evaluate.score_universal`: its `early_clicks`
figures, the `+clicks` column of `precise status`), the benchmarks' synthetic rows and the hourly
export of new items (`serving.export.new_items`; `precise publish`'s hourly step replaces their
FAISS rows). docs/notebook.md, "A new item's first clicks", has the evidence.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from training.models.precise import Precise
from training.trainer import model_ranks


def blend(items: torch.Tensor, users: torch.Tensor, clicked_items: torch.Tensor, clicked_users: torch.Tensor,
          eligible: torch.Tensor, k: float, to_space: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """items (N+1, D) scored item vectors, users (U, D) scored user vectors, clicked_items (C,) and
    clicked_users (C,) (rows of `users`) the clicks that count, eligible (N+1,) bool the items they
    may move -> (N+1, D): `items` with each eligible clicked item moved (module docstring)."""
    if k <= 0 or len(clicked_items) == 0:
        return items
    n = torch.bincount(clicked_items, minlength=len(items)).to(items.dtype)
    summed = torch.zeros_like(items).index_add_(0, clicked_items, users[clicked_users].to(items.dtype))
    w = (n / (n + k)).unsqueeze(1)
    moved = to_space((1 - w) * items + w * F.normalize(summed, dim=-1))
    return torch.where(((n > 0) & eligible).unsqueeze(1), moved, items)


@torch.no_grad()
def ranks(model: Precise, inputs: torch.Tensor, targets: torch.Tensor, context: torch.Tensor | None,
          when: torch.Tensor | None, target_times: np.ndarray, clicks: tuple[np.ndarray, np.ndarray, np.ndarray],
          eligible: torch.Tensor, k: float) -> np.ndarray:
    """(B,) the full-ranking rank of each target, as `training.trainer.model_ranks` ranks it, with
    the eligible items moved by the clicks before each target's hour. target_times (B,)
    datetime64; clicks (item indices (C,), rows of `inputs` that clicked (C,), times (C,)
    datetime64): the day's clicks by the users being ranked (their vectors are those users')."""
    model.eval()
    users = torch.cat([model.users(inputs[i : i + 512], None if context is None else context[i : i + 512])
                       for i in range(0, len(inputs), 512)])
    base = model.all_item_embeddings()
    ids = torch.arange(len(base))
    items_c, rows_c, times_c = (np.asarray(c) for c in clicks)
    hours = np.asarray(target_times, dtype="datetime64[us]").astype("datetime64[h]")
    out = np.zeros(len(targets), dtype=np.int64)
    for hour in np.unique(hours):
        sel = np.flatnonzero(hours == hour)
        early = times_c < hour.astype("datetime64[us]")
        items = blend(base, users, torch.from_numpy(items_c[early]), torch.from_numpy(rows_c[early]),
                      eligible, k, model.to_space)
        t = torch.from_numpy(sel)
        out[sel] = model_ranks(model, inputs[t], targets[t], None if context is None else context[t], None,
                               None if when is None else when[t], items=model.with_text_items(items, ids))[0]
    return out
