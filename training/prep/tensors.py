"""From sequences and encoded items to tensors: item and token indexes, padded sequences.

Indexes are **append-only**: a checkpoint stores its item ids and token ids in index order, and
the next day's index keeps them and appends what is new, so yesterday's table rows stay valid
(the item table grows; PRECISE's daily training continues from yesterday).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch


@dataclass
class Index:
    """Ids in index order; index i + 1 is the row of ids[i] (row 0 is padding)."""

    ids: list[str]

    def __post_init__(self):
        self.pos = {x: i + 1 for i, x in enumerate(self.ids)}

    @classmethod
    def grow(cls, old: list[str], current) -> tuple["Index", int]:
        """Keep `old` in order, append unseen ids of `current` (sorted). Returns (index, n_new)."""
        known = set(old)
        new = sorted({x for x in current if x not in known})
        return cls(list(old) + new), len(new)

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, values) -> np.ndarray:
        """Ids -> indices (0 for unknown ids)."""
        return np.array([self.pos.get(v, 0) for v in values], dtype=np.int64)


def item_token_matrix(items: pd.DataFrame, item_index: Index, token_index: Index, max_tokens: int) -> torch.Tensor:
    """(N+1, T) int64 local token indices of each indexed item, right-padded with 0.

    `items`: item_id, token_ids (LLM ids) as written by the encode stage. Items of the index that
    are missing from `items` (dropped from the catalog) keep an all-padding row.
    """
    out = np.zeros((len(item_index) + 1, max_tokens), dtype=np.int64)
    rows = item_index.lookup(items["item_id"])
    for row, toks in zip(rows, items["token_ids"]):
        if row == 0:
            continue
        local = token_index.lookup([str(t) for t in toks[:max_tokens]])
        out[row, : len(local)] = local
    return torch.from_numpy(out)


def pad_left(seqs: list[np.ndarray], length: int) -> np.ndarray:
    """Keep the `length` most recent of each sequence and left-pad with 0 -> (B, length)."""
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for i, s in enumerate(seqs):
        s = s[-length:]
        if len(s):
            out[i, length - len(s) :] = s
    return out


# Session context of a position (Precise.encode): how the next behaviour relates to this one in time.
UNKNOWN, SAME_SESSION, NEW_SESSION = 0, 1, 2


def session_context(ts, gap_minutes: float, request: int = UNKNOWN) -> np.ndarray:
    """ts (n,) the times of one user's behaviours, oldest first (datetime64, naive = UTC, or
    Timestamps) -> (n,) int64 context codes: SAME_SESSION where the next behaviour follows within
    `gap_minutes`, NEW_SESSION where it comes later; the last position gets `request`, the
    context of the behaviour being predicted (NEW_SESSION for embeddings served the next day)."""
    t = pd.to_datetime(np.asarray(ts), utc=True).as_unit("us").asi8
    out = np.where(np.diff(t) <= gap_minutes * 60e6, SAME_SESSION, NEW_SESSION).astype(np.int64)
    return np.append(out, np.int64(request)) if len(t) else out


def same_session_share(contexts: list[np.ndarray]) -> float:
    """Share of the known codes of `session_context` arrays that read SAME_SESSION (nan if none
    is known). Near 0 or 1, the codes say almost nothing: times that are made up (an importer's
    evenly spread positions) or one timestamp per batch."""
    codes = np.concatenate(contexts) if contexts else np.zeros(0, np.int64)
    known = codes[codes != UNKNOWN]
    return float((known == SAME_SESSION).mean()) if len(known) else float("nan")


def target_contexts(history_times: list, target_times, gap_minutes: float) -> list[np.ndarray]:
    """The session contexts of held-out histories: one `session_context` array per history, its
    last position's code relating the history's last behaviour to the target's time."""
    return [session_context(pd.to_datetime(np.asarray(h), utc=True).append(pd.to_datetime([t], utc=True)), gap_minutes)[:-1]
            for h, t in zip(history_times, target_times)]


def next_item_pairs(seqs: list[np.ndarray], max_len: int, contexts: list[np.ndarray] | None = None,
                    times: list[np.ndarray] | None = None) -> tuple[torch.Tensor, ...]:
    """Inputs and next-item targets for every position of each sequence: (B, L), (B, L), and
    with `contexts` (one `session_context` array per sequence) the inputs' contexts (B, L); with
    `times` (one array of behaviour times per sequence, days since 1970: `days_since_epoch`) also
    the contexts or None, then each position's target time (B, L) float64 (0 where padded).

    Each sequence s (indices, oldest first) gives input s[:-1] and target s[1:], left-padded. A
    sequence longer than max_len + 1 is cut, from its end, into windows of max_len + 1 items that
    overlap by one, so every behaviour is a target exactly once (a long history is training data,
    not only its last max_len items); a window sees only the items inside it. Unknown items
    (index 0) are dropped first (their neighbours keep their own contexts).
    """
    windows, ctx_windows, time_windows = [], [], []
    for i, s in enumerate(seqs):
        known = s > 0
        s = s[known]
        c = contexts[i][known] if contexts is not None else None
        t = np.asarray(times[i], dtype=np.float64)[known] if times is not None else None
        for end in range(len(s), 1, -max_len):
            windows.append(s[max(end - max_len - 1, 0) : end])
            if c is not None:
                ctx_windows.append(c[max(end - max_len - 1, 0) : end - 1])
            if t is not None:
                time_windows.append(t[max(end - max_len, 1) : end])  # the targets' times
    inputs = pad_left([w[:-1] for w in windows], max_len)
    targets = pad_left([w[1:] for w in windows], max_len)
    out = (torch.from_numpy(inputs), torch.from_numpy(targets))
    ctx = torch.from_numpy(pad_left(ctx_windows, max_len)) if contexts is not None else None
    if times is None:
        return out if ctx is None else (*out, ctx)
    when = np.zeros(targets.shape, dtype=np.float64)
    for row, tw in enumerate(time_windows):
        if len(tw):
            when[row, -len(tw):] = tw
    return (*out, ctx, torch.from_numpy(when))


def days_since_epoch(ts) -> np.ndarray:
    """Times (datetime64, pandas timestamps or their arrays) -> float64 days since 1970-01-01 UTC."""
    values = pd.to_datetime(np.atleast_1d(np.asarray(ts)), utc=True)
    return np.asarray((values - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(days=1), dtype=np.float64)


def per_scene(seqs: list[np.ndarray], scene_of: np.ndarray) -> list[np.ndarray]:
    """Each sequence split by the scene of its items, order kept (CPRec's domain-specific
    sequences). scene_of (N+1,) int: the scene code of each item index."""
    out = []
    for s in seqs:
        codes = scene_of[s]
        out += [s[codes == c] for c in np.unique(codes)]
    return out


def scene_codes(items: pd.DataFrame, item_index: Index) -> np.ndarray:
    """(N+1,) int64 scene code of each item index (0 for padding and unknown items)."""
    scenes = {s: i + 1 for i, s in enumerate(sorted(items["scene"].astype(str).unique()))}
    by_id = dict(zip(items["item_id"], items["scene"].astype(str)))
    return np.array([0] + [scenes.get(by_id.get(i), 0) for i in item_index.ids], dtype=np.int64)


def published_days(items: pd.DataFrame, item_index: "Index") -> torch.Tensor:
    """(N+1,) float32: each item's catalog `published_at` in days since 1970 (`age_logit`); -inf for
    padding and for items without one (the oldest age bucket)."""
    out = np.full(len(item_index) + 1, -np.inf)
    if "published_at" in items.columns:
        known = items[items["published_at"].notna()]
        out[item_index.lookup(list(known["item_id"]))] = days_since_epoch(known["published_at"])
        out[0] = -np.inf  # (unknown ids look up as 0)
    return torch.from_numpy(out).float()
