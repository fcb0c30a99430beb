"""The PRECISE model: Embedding Fusion (IV-B) and the sequence transformer (IV-C, IV-D).

Read top-down: building blocks (attention-pooling experts, the MoE fusion), the config, the
item-embedding variants (one `ItemEmbedding` class per `item_embedding` name, in a registry), then
the model. The model does no I/O and holds no device globals; its verbs are `item_embeddings`,
`encode`, `loss` and `score`.

Scores are **dot products of the scored vectors** (`to_space`: L2-normalised under
`similarity: cosine`, raw under `dot`) in training, evaluation, export and recall alike; the
losses divide them by `temperature`.

Shapes: B batch, L sequence length, T tokens per item, D = id_dim + sem_dim item/model width,
H the language model's width, K experts, N items (row 0 of every item table is padding).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from core.settings import SIMILARITIES, ModelSpec
from training.metrics import add_history_offset

# --- building blocks ------------------------------------------------------------------------------


class Bags:
    """The items' token ids as flat bags for `embedding_bag`: only real tokens, no padding (about
    half the work of the padded (M, T) form on short titles). tokens (M, T) int64, 0 = pad."""

    def __init__(self, tokens: torch.Tensor):
        self.mask = tokens > 0  # (M, T)
        self.tokens = tokens
        self.flat = tokens[self.mask]  # (nnz,) row-major: item by item, in token order
        counts = self.mask.sum(-1)
        self.offsets = torch.cumsum(counts, 0) - counts  # (M,)
        self.has_text = (counts > 0).unsqueeze(-1)  # (M, 1)

    def weighted_sum(self, table: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """table (V+1, d), weights (M, T) (zero on padding) -> sum_t w_t table[token_t] (M, d)."""
        return F.embedding_bag(self.flat, table, offsets=self.offsets, per_sample_weights=weights[self.mask], mode="sum")

    def mean(self, table: torch.Tensor) -> torch.Tensor:
        """Mean of each item's real token vectors (M, d); 0 for an item without tokens."""
        weights = self.mask.float() / self.mask.sum(-1, keepdim=True).clamp(min=1)
        return self.weighted_sum(table, weights)


class AttentionPool(nn.Module):
    """One expert: attention pooling of an item's tokens with a learned query (padding masked).

    It works on the token *table* and the items' token ids, never on an (M, T, d) gather: the
    query scores are one product with the table, and because the value map is affine and the
    weights sum to 1, sum_t w_t value(x_t) = value(sum_t w_t x_t), so the pooled token is an
    `embedding_bag` (weighted sum of table rows) followed by one (M, d) linear map. The same
    result as the textbook form (tested against a naive loop) at ~T times less work, which is
    what lets the exact softmax embed the whole catalog at every step.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Parameter(torch.randn(dim) / math.sqrt(dim))
        self.value = nn.Linear(dim, dim)

    def forward(self, table: torch.Tensor, bags: Bags) -> torch.Tensor:
        """table (V+1, d) token vectors (row 0 = padding), bags of M items -> (M, d)."""
        scores = (table @ self.query)[bags.tokens] / math.sqrt(table.shape[-1])  # (M, T)
        scores = scores.masked_fill(~bags.mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # an item without tokens pools to 0
        return self.value(bags.weighted_sum(table, weights)) * bags.has_text


class MoEFusion(nn.Module):
    """Mixture of attention experts over token embeddings, top-k gated (PRECISE eq. 3-4).

    The gate scores the K experts from the mean-pooled tokens, keeps the top k, softmaxes over
    them and mixes their outputs; each expert runs only on the items routed to it. `balance_loss` is the Switch-Transformer load-balancing term
    K * sum_k f_k * P_k (f_k: share of items routed to k, P_k: mean gate probability of k).
    """

    def __init__(self, dim: int, experts: int, top_k: int):
        super().__init__()
        self.experts = nn.ModuleList(AttentionPool(dim) for _ in range(experts))
        self.gate = nn.Linear(dim, experts)
        self.top_k = top_k

    def forward(self, table: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """table (V+1, d), tokens (M, T) -> fused (M, d), stats {usage (K,), balance_loss ()}."""
        bags = Bags(tokens)
        logits = self.gate(bags.mean(table))  # (M, K)
        top, idx = logits.topk(self.top_k, dim=-1)  # (M, k)
        weights = torch.softmax(top, dim=-1)
        # Sparse dispatch: each expert pools only the items routed to it (k of K experts per item).
        fused = torch.zeros(len(tokens), table.shape[-1], dtype=table.dtype, device=table.device)
        for k, expert in enumerate(self.experts):
            rows, slot = (idx == k).nonzero(as_tuple=True)  # items routed to k, and in which top-k slot
            if len(rows):
                out = expert(table, Bags(tokens[rows]))  # (m_k, d)
                fused = fused.index_add(0, rows, weights[rows, slot].unsqueeze(-1) * out)
        routed = F.one_hot(idx, len(self.experts)).float().sum(1)  # (M, K)
        usage = routed.mean(0) / self.top_k
        probs = torch.softmax(logits, dim=-1).mean(0)
        return fused, {"usage": usage.detach(), "balance_loss": len(self.experts) * (usage * probs).sum()}


class MeanPool(nn.Module):
    """Ablation (PRECISE-Pool): average of the token embeddings instead of the MoE."""

    def forward(self, table: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return Bags(tokens).mean(table), {}


# --- config ---------------------------------------------------------------------------------------

# What a checkpoint written before a key existed was trained with: a saved config without the key
# takes this value, not ModelSpec's shipped default (the first checkpoints were dot-product models
# without the ID-side loss, session context, history offset, text logit, cold gate or age offset).
LEGACY_DEFAULTS: dict[str, object] = {
    "similarity": "dot", "temperature": 1.0, "id_aux_weight": 0.0, "session_gap_minutes": 0.0,
    "session_context_dropout": 0.0, "history_offset": False, "text_logit_dim": 0, "cold_gate": False,
    "id_dropout_loss": "main", "age_logit": False, "fresh_from_text": False,
}


def saved_config(saved: dict) -> dict:
    """The one migration of old checkpoints: a saved model config (a checkpoint's meta["model"])
    with every key added since it was written set to what it was trained with (LEGACY_DEFAULTS).
    A key added to ModelSpec later gets its entry there when its default changes behaviour."""
    return LEGACY_DEFAULTS | saved


@dataclass(frozen=True, kw_only=True)
class ModelConfig(ModelSpec):
    """Everything needed to rebuild the model from a checkpoint (saved inside it): the settable
    variant and sizes (core.settings.ModelSpec, `train_universal.model`, whose defaults are the
    only defaults) and the catalog's sizes. A saved config goes through `saved_config` first."""

    n_items: int  # real items; tables have n_items + 1 rows (row 0 = padding)
    n_tokens: int  # token ids in use; the token table has n_tokens + 1 rows (row 0 = padding)
    llm_dim: int  # H, width of the language model's states

    @property
    def dim(self) -> int:
        return self.id_dim + self.sem_dim

    def to_dict(self) -> dict:
        return asdict(self)


def distinct_items(rows: torch.Tensor) -> torch.Tensor:
    """rows (P, L) item ids (0 = none) -> (P, L) each row's distinct items in ascending order, 0 for
    none and for a repeat (so that `add_history_offset` adds the offset once per item)."""
    ordered, _ = rows.sort(1)
    return ordered.masked_fill(F.pad(ordered[:, 1:] == ordered[:, :-1], (1, 0)), 0)


def history_items(seq: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """seq (B, L) inputs, valid (B, L) bool the positions with a target -> (P, L): for each of the
    P valid positions the distinct items it has read (itself and the positions before it)
    (`distinct_items`)."""
    L = seq.shape[1]
    return distinct_items((seq.unsqueeze(1) * torch.ones(L, L, dtype=seq.dtype, device=seq.device).tril())[valid])


def softmax_cross_entropy(h: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, scale: float,
                          max_elements: int = 2**27, history: torch.Tensor | None = None,
                          offset: torch.Tensor | None = None, exclude: torch.Tensor | None = None,
                          queries: torch.Tensor | None = None, item_bias=None, fresh=None) -> torch.Tensor:
    """Exact softmax over the whole catalog: mean over P positions of
    logsumexp_j(h.e_j * scale) - h.e_t * scale, item 0 (padding) excluded.

    h (P, D), items (N+1, D), targets (P,) in 1..N. The (P, N) logits are built in row chunks of
    at most `max_elements` entries, each recomputed in the backward pass (activation
    checkpointing), so memory stays bounded whatever the catalog size. The (P, N) matrix is the
    step's largest tensor, so nothing touches it but the product and the loss: the scale is applied
    to h (P, D), and padding is left out by slicing the item rows instead of masking a column
    (forward + backward of this loss at P 1,500, N 36k, one thread: 1.11 s instead of 1.44 s).

    history (P, L) with offset (a scalar tensor): each row's history items (`history_items`) score
    their logit plus the offset (`model.history_offset`), the row's target too when it is one.

    exclude (N+1,) bool: items left out of the softmax (no target is one of them).

    queries (P,) with item_bias (a function of a chunk's queries (c,) -> (c, N+1) logit offsets):
    each row's items gain that offset (`age_logit`). fresh (ids (K,), delta (K, D), days (K,)): a
    row whose query is on item ids[k]'s publish day scores it with its vector + delta[k] (its
    generated vector: `fresh_from_text`).
    """
    candidates, targets = items[1:], targets - 1  # (N, D), (P,) in 0..N-1
    left_out = exclude[1:] if exclude is not None else None  # (N,)

    def chunk_loss(hc: torch.Tensor, tc: torch.Tensor, it: torch.Tensor, hist: torch.Tensor | None = None,
                   off: torch.Tensor | None = None, qc: torch.Tensor | None = None) -> torch.Tensor:
        logits = (hc * scale) @ it.T  # (c, N)
        if hist is not None:
            logits = add_history_offset(logits, hist, off)
        if qc is not None:
            logits = logits + item_bias(qc)[:, 1:]
        if qc is not None and fresh is not None:
            ids, delta, days = fresh
            same = (torch.floor(qc).unsqueeze(1) == days.unsqueeze(0)).to(logits.dtype)  # (c, K)
            logits = logits.index_add(1, ids - 1, same * ((hc * scale) @ delta.T))
        if left_out is not None:
            logits = logits.masked_fill(left_out, float("-inf"))
        return F.cross_entropy(logits, tc, reduction="sum")

    rows = max(max_elements // max(candidates.shape[0], 1), 1)
    if len(h) <= rows:
        return chunk_loss(h, targets, candidates, history, offset, queries) / max(len(h), 1)
    total = sum(torch.utils.checkpoint.checkpoint(chunk_loss, h[i : i + rows], targets[i : i + rows], candidates,
                                                  None if history is None else history[i : i + rows], offset,
                                                  None if queries is None else queries[i : i + rows],
                                                  use_reentrant=False) for i in range(0, len(h), rows))
    return total / len(h)


def text_neighbour_vectors(item_tokens: torch.Tensor, token_init: torch.Tensor | None, dim: int) -> torch.Tensor:
    """item_tokens (N+1, T), token_init (V, H) or None -> (N+1, dim) frozen text vectors of the
    text-neighbour logit (`text_logit_dim`): each item's mean token state, centred (language-model
    states share a large common direction), projected on the `dim` leading principal components
    and L2-normalised; zeros for padding and items without text. T[a].T[b] is the text
    neighbours' cosine (`training.models.baselines.TextNeighbours`) in `dim` dimensions."""
    out = torch.zeros(item_tokens.shape[0], dim)
    if token_init is None:
        return out
    table = torch.cat([torch.zeros(1, token_init.shape[1]), token_init.float()])
    v = Bags(item_tokens.long()).mean(table)  # (N+1, H)
    has = v.norm(dim=1) > 0
    has[0] = False
    if int(has.sum()) < 2:
        return out
    x = v[has] - v[has].mean(0)
    basis = torch.linalg.svd(x, full_matrices=False).Vh[:dim]  # (<=dim, H)
    out[has, : basis.shape[0]] = F.normalize(x @ basis.T, dim=1)
    return out


# `history_offset`'s scalar parameter times this: AdamW moves the offset by ~0.01 a step, so that
# it reaches -2 within MovieLens's 300 steps (10x more reached -6 there, with the same ranking).
HISTORY_OFFSET_SCALE = 10.0
# `age_logit`'s buckets of an item's age at the query in whole UTC days (the query's day minus the
# publish day): < 0 (not yet published), 0 (published that day), 1, 2-3, 4-7, >= 8 (and items
# without a publish time); the offsets' parameters times the scale.
AGE_EDGES = (0.0, 1.0, 2.0, 4.0, 8.0)
AGE_SCALE = 10.0
TEXT_LOGIT_SCALE = 10.0  # the text-neighbour weight's parameter times this, for the same reason


# --- item-embedding variants ---------------------------------------------------------------------
#
# One class per `item_embedding` value, registered by name: `build` puts the tables the variant owns
# on the model (as attributes: their names are the checkpoints' keys, and only what is built is
# saved), `embed` joins them into one vector of width D = id_dim + sem_dim per item, so that
# ablations compare at equal size. A new variant is one subclass with `@variant("name")` and its
# name in core/settings.py `ItemEmbedding` (tests/model/test_model.py checks both lists agree and
# builds every variant).


class ItemEmbedding:
    """The contract of an item-embedding variant (stateless: the tables live on the model)."""

    fuses_id_and_text = False  # an ID part then a trained text part: text dropout, the ID-side loss, the export's item-init

    def build(self, m: Precise, item_tokens: torch.Tensor, token_init: torch.Tensor | None) -> None:
        """Set the variant's tables on m (m.cfg is set; everything else is None until set here)."""
        raise NotImplementedError

    def embed(self, m: Precise, items: torch.Tensor) -> torch.Tensor:
        """items (M,) distinct int64 indices -> (M, D) (the model zeroes padding)."""
        raise NotImplementedError


ITEM_EMBEDDING_VARIANTS: dict[str, type[ItemEmbedding]] = {}


def variant(name: str):
    """Class decorator: register an ItemEmbedding under its `item_embedding` name."""
    def register(cls: type[ItemEmbedding]) -> type[ItemEmbedding]:
        ITEM_EMBEDDING_VARIANTS[name] = cls
        return cls
    return register


def build_id_table(m: Precise, width: int) -> None:
    """m.id_emb: an (N+1, width) ID table, N(0, 0.02) with a zero padding row."""
    m.id_emb = nn.Embedding(m.cfg.n_items + 1, width, padding_idx=0)
    nn.init.normal_(m.id_emb.weight, std=0.02)
    with torch.no_grad():
        m.id_emb.weight[0].zero_()


def build_token_table(m: Precise, token_init: torch.Tensor | None, width: int, pool: Callable[[], nn.Module]) -> None:
    """m.tok_emb (V+1, H) trained token table (from the language model's states), m.tok_proj H ->
    width, m.pool = pool() the pooling of an item's projected tokens (MoE or mean; built last, so
    that the random stream, and so a seeded model, is the same whatever the variant)."""
    cfg = m.cfg
    m.tok_emb = nn.Embedding(cfg.n_tokens + 1, cfg.llm_dim, padding_idx=0)
    if token_init is not None:
        with torch.no_grad():
            m.tok_emb.weight[1:] = token_init
            m.tok_emb.weight[0].zero_()
    m.tok_proj = nn.Linear(cfg.llm_dim, width)
    m.pool = pool()


@variant("fused")
class Fused(ItemEmbedding):
    """PRECISE's Embedding Fusion: ID(id_dim) concat MoE(tokens)(sem_dim).

    With `cold_gate`, the ID part of item i is a_i ID(i) + (1 - a_i) G(text_i), a_i =
    sigmoid(w log n_i - b) from its training count n_i (0 for an item never seen: its untrained ID
    row is never used), G a small MLP from the item's trained text part to the ID width (a
    content-to-ID generator, trained by the main loss through the items whose ID `id_dropout`
    hides). w, b are learned; they start at a_i = n_i / (n_i + cold_half_count).
    """

    fuses_id_and_text = True

    def pool(self, cfg: ModelConfig) -> nn.Module:
        """The pooling of the projected tokens into the text part (sem_dim)."""
        return MoEFusion(cfg.sem_dim, cfg.experts, cfg.top_k)

    def build(self, m, item_tokens, token_init):
        cfg = m.cfg
        build_id_table(m, cfg.id_dim)
        build_token_table(m, token_init, cfg.sem_dim, lambda: self.pool(cfg))
        if cfg.cold_gate:
            m.id_gen = nn.Sequential(nn.Linear(cfg.sem_dim, 2 * cfg.id_dim), nn.GELU(), nn.Linear(2 * cfg.id_dim, cfg.id_dim))
            m.gate_w = nn.Parameter(torch.ones(()))
            m.gate_b = nn.Parameter(torch.tensor(math.log(max(cfg.cold_half_count, 1e-6))))
            # (N+1,) how often each item was a training target in what this model trained on (a
            # running maximum over days; saved with the weights, grown with the catalog)
            m.register_buffer("id_counts", torch.zeros(cfg.n_items + 1), persistent=True)

    def embed(self, m, items):
        sem, m.last_stats = m.semantic(items)  # (M, sem)
        rows = m.id_emb(items)  # (M, id)
        if m.id_gen is not None:  # cold_gate: rarely seen items lean on their text
            a = m.id_share(items)
            rows = a * rows + (1 - a) * m.id_gen(sem)
        return torch.cat([rows, sem], dim=-1)


@variant("meanpool")
class MeanPooled(Fused):
    """Ablation (PRECISE-Pool): ID concat the mean of the projected tokens instead of the MoE."""

    def pool(self, cfg: ModelConfig) -> nn.Module:
        return MeanPool()


@variant("id")
class IdOnly(ItemEmbedding):
    """PRECISE-ID: an ID table of width D, no text."""

    def build(self, m, item_tokens, token_init):
        build_id_table(m, m.cfg.dim)

    def embed(self, m, items):
        return m.id_emb(items)


@variant("text")
class TextOnly(ItemEmbedding):
    """PRECISE-LLM: MoE(tokens) of width D, no ID table."""

    def build(self, m, item_tokens, token_init):
        build_token_table(m, token_init, m.cfg.dim, lambda: MoEFusion(m.cfg.dim, m.cfg.experts, m.cfg.top_k))

    def embed(self, m, items):
        sem, m.last_stats = m.semantic(items)
        return sem


@variant("llm")
class FrozenLlm(ItemEmbedding):
    """The HLLM-style baseline: a frozen per-item language-model vector (the mean of its tokens'
    cached LLM states, never trained) through a trained linear map to D; no ID table and no token
    table (items without text share one vector)."""

    def build(self, m, item_tokens, token_init):
        cfg = m.cfg
        table = torch.zeros(cfg.n_tokens + 1, cfg.llm_dim)
        if token_init is not None:
            table[1:] = token_init
        # frozen (N+1, H) item vectors, rebuilt from the catalog at load (not saved)
        m.register_buffer("item_llm", Bags(item_tokens.long()).mean(table), persistent=False)
        m.llm_proj = nn.Linear(cfg.llm_dim, cfg.dim)

    def embed(self, m, items):
        return m.llm_proj(m.item_llm[items])


# --- the model ------------------------------------------------------------------------------------


class Precise(nn.Module):
    """Item embeddings (ID and/or text: the `item_embedding` variant, ITEM_EMBEDDING_VARIANTS) + a
    transformer over item sequences."""

    candidates = None  # a universal model ranks every item (a task model: its scenes', `Targeted.candidates`)

    def __init__(self, cfg: ModelConfig, item_tokens: torch.Tensor, token_init: torch.Tensor | None = None):
        """item_tokens (N+1, T) int64 local token indices, 0 = pad; token_init (V, H) float."""
        super().__init__()
        if cfg.item_embedding not in ITEM_EMBEDDING_VARIANTS:
            raise ValueError(f"item_embedding must be one of {tuple(ITEM_EMBEDDING_VARIANTS)}")
        if cfg.similarity not in SIMILARITIES or cfg.temperature <= 0:
            raise ValueError(f"similarity must be one of {SIMILARITIES} and temperature > 0")
        self.cfg = cfg
        self.variant = ITEM_EMBEDDING_VARIANTS[cfg.item_embedding]()
        # Every variant's tables as attributes of the model (their names are the checkpoints' keys);
        # the variant sets the ones it owns, in this order (the optimizer's parameter order).
        self.id_emb = self.tok_emb = self.tok_proj = self.pool = self.llm_proj = self.id_gen = None
        for name in ("item_llm", "id_counts"):
            self.register_buffer(name, None)
        for name in ("gate_w", "gate_b"):
            self.register_parameter(name, None)
        self.register_buffer("item_tokens", item_tokens.long(), persistent=True)
        self.variant.build(self, item_tokens, token_init)
        self.text_dropout = cfg.text_dropout  # universal training's; targeted training sets 0
        # (N+1,) times each item is a training target (set_item_counts; text_dropout_half_count)
        self.register_buffer("item_counts", torch.zeros(cfg.n_items + 1), persistent=False)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim)
        nn.init.normal_(self.pos_emb.weight, std=0.02)  # the scale of the ID rows: positions must not drown items
        # Session context (training.prep.tensors.session_context): row 0 = unknown adds nothing. Zeros to
        # start, drawn from no random stream, so a log without timestamps trains exactly as without.
        self.ctx_emb = (nn.Embedding(3, cfg.dim, padding_idx=0, _weight=torch.zeros(3, cfg.dim))
                        if cfg.session_gap_minutes > 0 else None)
        layer = nn.TransformerEncoderLayer(
            cfg.dim, cfg.heads, dim_feedforward=4 * cfg.dim, dropout=cfg.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)
        # The learned logit offset of the items a position has already read (`history_offset`).
        self.history_bias = nn.Parameter(torch.zeros(())) if cfg.history_offset else None
        # The text-neighbour logit (`text_logit_dim`): frozen vectors (rebuilt from the catalog at
        # load, like item_llm) and the learned weight of their cosine.
        if cfg.text_logit_dim > 0:
            self.register_buffer("item_text", text_neighbour_vectors(item_tokens, token_init, cfg.text_logit_dim),
                                 persistent=False)
            self.text_weight = nn.Parameter(torch.zeros(()))
        else:
            self.item_text = self.text_weight = None
        # The learned offset per bucket of an item's age at the query (`age_logit`); the items'
        # publish times in days since 1970 (-inf: unknown, the oldest bucket), saved with the weights.
        if cfg.age_logit:
            self.age_bias = nn.Parameter(torch.zeros(len(AGE_EDGES) + 1))
            self.register_buffer("item_published", torch.full((cfg.n_items + 1,), float("-inf")), persistent=True)
            self.register_buffer("age_edges", torch.tensor(AGE_EDGES), persistent=False)
        else:
            self.age_bias = self.item_published = self.age_edges = None
        self.last_stats: dict = {}

    # -- items --

    def age_offsets(self) -> list[float] | None:
        """The learned offset of each age bucket (`AGE_EDGES`; None without `age_logit`), for the logs."""
        return None if self.age_bias is None else [round(float(b), 2) for b in self.age_bias.detach() * AGE_SCALE]

    def set_published(self, days: torch.Tensor) -> None:
        """days (N+1,) each item's publish time in days since 1970 (-inf: unknown); `age_logit` only.
        Kept as the whole UTC day."""
        if self.item_published is not None:
            self.item_published = torch.floor(days).to(self.item_published)

    def age_logit(self, when: torch.Tensor, items: torch.Tensor | None = None, pairs: bool = False) -> torch.Tensor | None:
        """when (P,) query times in days since 1970 -> (P, C) the age offset of items (C,) (None:
        every item, C = N+1) at each query's UTC day; with pairs, items (P,) -> (P,) each query's
        own item. None without `age_logit`. The offsets are computed once per distinct query day
        (a batch spans a few days) and gathered for the rows."""
        if self.age_bias is None or when is None:
            return None
        # floor before any cast: float32 holds whole days exactly, not times (minutes before midnight
        # would round to the next day)
        bias, day = self.age_bias * AGE_SCALE, torch.floor(when).to(self.item_published.dtype)
        if pairs:
            return bias[torch.bucketize(day - self.item_published[items], self.age_edges, right=True)]
        published = self.item_published if items is None else self.item_published[items]
        days, row = torch.unique(day, return_inverse=True)  # (k,), (P,)
        return bias[torch.bucketize(days.unsqueeze(1) - published.unsqueeze(0), self.age_edges, right=True)][row]

    def semantic(self, items: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """items (M,) int64 -> the text side (M, sem) and the MoE stats."""
        # Project the token table once (V+1, sem), then gather: the same as projecting each
        # item's tokens, at a fraction of the cost (V << M x T).
        table = self.tok_proj(self.tok_emb.weight)  # (V+1, sem)
        return self.pool(table, self.item_tokens[items])

    def id_share(self, items: torch.Tensor) -> torch.Tensor:
        """items (M,) -> (M, 1) the weight a_i of the ID row in the ID part (`cold_gate`): 0 for
        an item never seen in training; in training, 0 too for a share `id_dropout` of the items
        (one draw per item and step, the same for inputs and scored items), so that the generated
        part learns to stand in for an ID row (DropoutNet)."""
        n = self.id_counts[items].unsqueeze(-1)  # (M, 1)
        if self.cfg.cold_half_count == 0:  # the ID row of every seen item, G for the never-seen
            a = (n > 0).to(n.dtype)
        else:
            a = torch.sigmoid(self.gate_w * torch.log(n.clamp(min=1.0)) - self.gate_b) * (n > 0)
        if self.training and self.cfg.id_dropout > 0 and self.cfg.id_dropout_loss == "main":
            a = a * (torch.rand_like(a) >= self.cfg.id_dropout)
        return a

    def _embed(self, items: torch.Tensor) -> torch.Tensor:
        """items (M,) distinct int64 indices -> (M, D), padding zeroed."""
        return self.variant.embed(self, items) * (items > 0).unsqueeze(-1)

    @property
    def fuses_id_and_text(self) -> bool:
        """Whether item vectors are an ID part then a trained text part (fused, meanpool)."""
        return self.variant.fuses_id_and_text

    def text_columns(self, emb: torch.Tensor) -> torch.Tensor:
        """emb (M, D) of a model that fuses_id_and_text -> (D,) bool, True on the text part."""
        return torch.arange(emb.shape[1], device=emb.device) >= self.id_emb.embedding_dim

    def drop_text(self, emb: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Text dropout (ModelSpec.text_dropout; training only): emb (M, D) of items (M,) ->
        (vectors for the sequence inputs, vectors for the scored side), each item's text columns
        zeroed with probability p on the side(s) `text_dropout_side` names (one draw per item, so
        an item dropped on both sides is dropped alike)."""
        if not (self.training and self.fuses_id_and_text and self.text_dropout > 0):
            return emb, emb
        p = torch.full((len(items), 1), self.text_dropout, device=emb.device)
        if self.cfg.text_dropout_half_count > 0:
            n = self.item_counts[items].unsqueeze(-1)
            p = p * n / (n + self.cfg.text_dropout_half_count)
        drop = torch.rand(len(items), 1, device=emb.device) < p  # (M, 1)
        dropped = emb.masked_fill(drop & self.text_columns(emb), 0.0)
        side = self.cfg.text_dropout_side
        return (dropped if side in ("both", "inputs") else emb), (dropped if side in ("both", "scored") else emb)

    def set_item_counts(self, counts: torch.Tensor) -> None:
        """counts (N+1,): how often each item is a target in the training data (the trainer sets it).
        The cold gate's saved counts keep the larger of theirs and these (a model continued on a
        replay window has seen the earlier days' behaviours too)."""
        self.item_counts = counts.to(self.item_counts)
        if self.id_counts is not None:
            self.id_counts = torch.maximum(self.id_counts, counts.to(self.id_counts))

    def untrained_items(self) -> torch.Tensor | None:
        """(N+1,) bool: under the cold gate, the items never seen in training (count 0), which the
        training losses leave out of their softmax: absent from the training data, they are no
        evidence against a new or held-out item (which the gate scores from its text); None
        without the gate, or before the trainer set the counts."""
        if self.id_counts is None or not bool((self.id_counts > 0).any()):
            return None
        return self.id_counts == 0

    def input_embeddings(self, items: torch.Tensor) -> torch.Tensor:
        """items (...,) int64 item indices -> (..., D), the transformer's input vectors; each
        distinct item is embedded once. Index 0 (padding) maps to zeros."""
        uniq, inverse = torch.unique(items.reshape(-1), return_inverse=True)
        return self._embed(uniq)[inverse].reshape(*items.shape, self.cfg.dim)

    def to_space(self, v: torch.Tensor) -> torch.Tensor:
        """(..., D) -> the scoring space: L2-normalised under cosine similarity, as is under dot.
        Every vector that is scored, exported, published or indexed goes through here."""
        return F.normalize(v, dim=-1) if self.cfg.similarity == "cosine" else v

    def item_embeddings(self, items: torch.Tensor) -> torch.Tensor:
        """items (...,) -> (..., D) item vectors as scored (padding: zeros)."""
        return self.to_space(self.input_embeddings(items))

    def all_item_embeddings(self, chunk: int = 8192) -> torch.Tensor:
        """(N+1, D) scored vectors of every item (row 0 = zeros), in chunks to bound memory."""
        ids = torch.arange(self.cfg.n_items + 1, device=self.item_tokens.device)
        return self.to_space(torch.cat([self._embed(ids[i : i + chunk]) for i in range(0, len(ids), chunk)]))

    # -- sequences --

    def encode(self, seq: torch.Tensor, causal: bool = True, seq_emb: torch.Tensor | None = None,
               context: torch.Tensor | None = None) -> torch.Tensor:
        """seq (B, L) int64 item indices, left-padded with 0 -> hidden states (B, L, D).

        causal=True: each position sees only itself and earlier items (universal training);
        causal=False: bidirectional (targeted training). Padding is masked in both; every
        position may see itself, so no attention row is empty (no NaN), and padded positions
        are zeroed at the output. seq_emb (B, L, D): item embeddings already computed. context
        (B, L) int64 session codes (training.prep.tensors): whether the behaviour after each position
        continues its session (1) or starts a new one (2), 0 = unknown; added to the inputs.

        Columns that are padding in every row are cut before the transformer and restored as
        zeros after it (positions count from the right, so this changes nothing but the cost:
        a batch of short histories does not pay for max_len).
        """
        full = seq.shape[1]
        used = (seq > 0).any(0)  # (L,) columns holding an item in some row
        keep = full - int(used.int().argmax()) if bool(used.any()) else 1
        if keep < full:
            seq = seq[:, -keep:]
            seq_emb = seq_emb[:, -keep:] if seq_emb is not None else None
            context = context[:, -keep:] if context is not None else None
        B, L = seq.shape
        pad = seq == 0  # (B, L)
        x = self.input_embeddings(seq) if seq_emb is None else seq_emb
        x = x + self.pos_emb(torch.arange(L, device=seq.device) + self.cfg.max_len - L)
        if context is not None and self.ctx_emb is not None:
            x = x + self.ctx_emb(context)
        x = self.dropout(x)
        eye = torch.eye(L, dtype=torch.bool, device=seq.device)
        hidden = pad.unsqueeze(1) & ~eye  # (B, L, L): key j hidden from query i, True = hidden
        if causal:
            hidden = hidden | torch.triu(torch.ones(L, L, dtype=torch.bool, device=seq.device), diagonal=1)
        mask = hidden.repeat_interleave(self.cfg.heads, dim=0)  # (B * heads, L, L)
        h = self.norm(self.encoder(x, mask=mask)) * (~pad).unsqueeze(-1)
        return F.pad(h, (0, 0, full - L, 0)) if full > L else h

    def users(self, seq: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """seq (B, L), context (B, L) or None -> user embeddings (B, D): the causal encoder's
        state at the latest slot (its context: the session of the behaviour to predict)."""
        return self.to_space(self.encode(seq, context=context)[:, -1])

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users (B, D), items (M, D), both from this model -> scores (B, M): the dot product of
        the scored vectors (cosine under `similarity: cosine`), as in evaluation and recall."""
        return users @ items.T

    def history_logit(self) -> torch.Tensor | None:
        """The logit offset of an item the user has already read (None: not this model's)."""
        return None if self.history_bias is None else self.history_bias * HISTORY_OFFSET_SCALE

    def text_logit(self) -> torch.Tensor | None:
        """The learned weight w of the text neighbours' cosine in every logit (None: off)."""
        return None if self.text_weight is None else self.text_weight * TEXT_LOGIT_SCALE

    def with_text_users(self, users: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """users (..., D) scored user vectors, last (...,) each one's last read item (0 = none) ->
        (..., D + dim) with the columns temperature x w x T[last], so that their dot product with
        `with_text_items` is the model's logit x temperature (the text term included); unchanged
        without the text-neighbour logit."""
        if self.item_text is None:
            return users
        return torch.cat([users, self.text_logit() * self.cfg.temperature * self.item_text[last]], -1)

    def with_text_items(self, vectors: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """vectors (..., D) scored vectors of items (...,) -> (..., D + dim) with T[item] appended
        (`with_text_users`); unchanged without the text-neighbour logit."""
        return vectors if self.item_text is None else torch.cat([vectors, self.item_text[items]], -1)

    def served_users(self, users: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """users (U, D) scored user vectors, last (U,) their last read items -> the exported user
        vectors: `with_text_users`, then a column of ones under `age_logit` (its item column holds
        temperature x the item's age offset on the serving day: `served_items`)."""
        users = self.with_text_users(users, last)
        return users if self.age_bias is None else torch.cat([users, torch.ones(len(users), 1)], 1)

    def served_items(self, day: float) -> torch.Tensor:
        """(N+1, D') every item as exported for queries on `day` (days since 1970): `scoring_items`
        and, under `age_logit`, a column of temperature x its age offset that day, so that the
        dot product with `served_users` is the model's logit x temperature."""
        items = self.scoring_items()
        if self.age_bias is None:
            return items
        age = self.age_logit(torch.tensor([float(day)]))[0]  # (N+1,)
        return torch.cat([items, (self.cfg.temperature * age).unsqueeze(1)], 1)

    def scoring_items(self) -> torch.Tensor:
        """(N+1, D [+ dim]) every item as ranked: `all_item_embeddings`, plus the text columns."""
        ids = torch.arange(self.cfg.n_items + 1, device=self.item_tokens.device)
        return self.with_text_items(self.all_item_embeddings(), ids)

    def forward(self, seq, target, negatives=None, item_logq=None, context=None, when=None):
        """The training objective (so that DistributedDataParallel can wrap the model)."""
        return self.loss(seq, target, negatives, item_logq, context, when)

    def drop_context(self, context: torch.Tensor | None) -> torch.Tensor | None:
        """In training, a share `session_context_dropout` of the sequences (whole rows of context
        (B, L)) reads code 0 (unknown), so that inputs without timestamps stay familiar."""
        if not self.training or context is None or self.cfg.session_context_dropout <= 0:
            return context
        return context * (torch.rand(len(context), 1, device=context.device) >= self.cfg.session_context_dropout)

    def loss(
        self,
        seq: torch.Tensor,
        target: torch.Tensor,
        negatives: torch.Tensor | None = None,
        item_logq: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        when: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """Next-item prediction (PRECISE eq. 5) at every position of the batch's sequences.

        seq (B, L) inputs, target (B, L) the next item at each position (0 = none), context (B, L)
        the session codes of the inputs or None (`encode`); in training, a share
        `session_context_dropout` of the sequences reads code 0 (unknown) throughout.

        negatives None: the **exact softmax** over every item of the catalog (the whole item
        table is embedded once per step; chunked, `softmax_cross_entropy`).

        negatives (M,): **sampled softmax** over the positive and these items, shared by the
        batch; item_logq (N+1,) the log of each item's expected count among the negatives, or
        None. With it, every logit, the positive's included, is corrected by subtracting log q
        (Yi et al. 2019), so the sampled softmax estimates the full softmax instead of penalising
        popular items. A negative equal to the position's target is masked.

        Logits are similarities (dot or cosine) divided by the temperature, plus the learned
        `history_logit` for every item the position has already read (itself and the positions
        before it; the target too, when it is a repeat) under `history_offset`, plus each item's
        `age_logit` at the position's target time when (B, L) (days since 1970) under `age_logit`. Under `cold_gate`
        the items never seen in training are left out of the softmax (`untrained_items`). In training with
        `id_aux_weight` > 0 (fused, meanpool) the loss adds that weight x the same loss with every
        item's text columns zeroed on both sides (a second encoder pass): the ID side alone must
        predict the next item.
        """
        if negatives is None:
            items = torch.arange(self.cfg.n_items + 1, device=seq.device)  # embed the catalog, rows = ids
            seq_rows, scored_rows = seq, None
        else:  # embed every distinct item of the step once: inputs, targets and negatives
            B, L = seq.shape
            items, inverse = torch.unique(torch.cat([seq.reshape(-1), target.reshape(-1), negatives]), return_inverse=True)
            seq_rows, scored_rows = inverse[: B * L].reshape(B, L), inverse[B * L :]
        emb = self._embed(items)  # (U, D)
        stats = dict(self.last_stats)
        context = self.drop_context(context)
        inputs, scored = self.drop_text(emb, items)
        h = self._positions(seq, inputs[seq_rows], context)
        loss = self._scored_loss(h, seq, target, negatives, item_logq, scored, items, scored_rows, when=when,
                                 fresh=self._fresh(emb, items, when))
        if self.training and self.id_gen is not None and self.cfg.id_dropout_loss == "generator" and self.cfg.id_dropout > 0:
            gen = self._generator_loss(h, seq, target, negatives, item_logq, emb, items, scored_rows, when)
            stats["generator_loss"] = float(gen.detach())
            loss = loss + gen
        if self.training and self.cfg.id_aux_weight > 0 and self.fuses_id_and_text:
            id_only = emb.masked_fill(self.text_columns(emb), 0.0)
            aux = self._next_item_loss(seq, target, negatives, item_logq, id_only[seq_rows], id_only, items, scored_rows,
                                       context, when)
            stats["id_aux_loss"] = float(aux.detach())
            loss = loss + self.cfg.id_aux_weight * aux
        return loss, stats

    def _next_item_loss(self, seq, target, negatives, item_logq, seq_emb, scored, items, scored_rows,
                        context=None, when=None) -> torch.Tensor:
        """`loss` for given vectors: seq_emb (B, L, D) the inputs' vectors; scored (U, D) the
        embedded items `items` (U,), where scored_rows is None (exact: U = N+1, row = item id) or
        (B L + M,) the rows of the targets then of the negatives (sampled)."""
        h = self._positions(seq, seq_emb, context)
        return self._scored_loss(h, seq, target, negatives, item_logq, scored, items, scored_rows, when=when)

    def _positions(self, seq, seq_emb, context=None) -> torch.Tensor:
        """seq (B, L), seq_emb (B, L, D) -> (B, L, D [+ dim]) each position's user vector as scored."""
        h = self.to_space(self.encode(seq, causal=True, seq_emb=seq_emb, context=context))  # (B, L, D)
        return self.with_text_users(h, seq)  # + the text-neighbour columns of each position's item

    def _fresh(self, emb: torch.Tensor, items: torch.Tensor, when: torch.Tensor | None):
        """`fresh_from_text` (with `age_logit` and the cold gate): of the step's embedded items
        (U,) with vectors emb (U, D), those published on one of the batch's query days: (their rows
        in items (K,), their generated vectors [G(text part); text part] (K, D), their publish
        days (K,)), or None. A row whose query falls on such an item's publish day scores it from
        its text, as serving scores an item published today (its ID row untrained yet)."""
        if not (self.cfg.fresh_from_text and self.id_gen is not None and self.age_bias is not None) or when is None:
            return None
        published = self.item_published[items]
        rows = torch.isin(published, torch.unique(torch.floor(when[when > 0]))).nonzero().squeeze(1)
        if not len(rows):
            return None
        sem = emb[rows, self.id_emb.embedding_dim :]
        return rows, torch.cat([self.id_gen(sem), sem], dim=-1), published[rows]

    def _generator_loss(self, h, seq, target, negatives, item_logq, emb, items, scored_rows, when=None) -> torch.Tensor:
        """`id_dropout_loss: generator`: the next-item loss once more, with the user vectors h and
        every item vector detached, except that a share `id_dropout` of the embedded items (one
        draw per item and step), and every never-seen one, is scored as never seen: [G(text part);
        text part], G's output the only thing with a gradient. So G learns to place an item among
        the trained ID rows from its text alone, as evaluation and serving score a new item, and
        the main loss is not asked to change. emb (U, D) the step's embedded items `items` (U,)."""
        sem = emb[:, self.id_emb.embedding_dim :].detach()  # (U, sem)
        generated = torch.cat([self.id_gen(sem), sem], dim=-1) * (items > 0).unsqueeze(-1)
        hidden = (torch.rand(len(items), 1, device=emb.device) < self.cfg.id_dropout) | (self.id_share(items) == 0)
        mixed = torch.where(hidden, generated, emb.detach())
        return self._scored_loss(h.detach(), seq, target, negatives, item_logq, mixed, items, scored_rows,
                                 detached=True, when=when)

    def _scored_loss(self, h, seq, target, negatives, item_logq, scored, items, scored_rows,
                     detached: bool = False, when: torch.Tensor | None = None, fresh=None) -> torch.Tensor:
        """The softmax of `_next_item_loss` given the positions' vectors h (B, L, D'); detached:
        the history and age offsets too (`_generator_loss`); when (B, L): each position's target
        time (`age_logit`); fresh: `_fresh`'s items, scored from their generated vectors by the
        rows on their publish day."""
        B, L = seq.shape
        scale = 1.0 / self.cfg.temperature
        valid = target > 0
        scored = self.with_text_items(self.to_space(scored), items)  # (U, D [+ dim])
        offset = self.history_logit()
        if offset is not None and detached:
            offset = offset.detach()
        hist = history_items(seq, valid) if offset is not None else None  # (P, L)
        unseen = self.untrained_items()  # (N+1,) or None: left out of the softmax (cold gate) ...
        if unseen is not None:
            unseen[target] = False  # ... never a target of this batch
        queries = when[valid] if when is not None and self.age_bias is not None else None  # float64: `age_logit` floors

        def age(q, which=None, pairs=False):  # the age offsets, detached in the generator's scoring
            out = self.age_logit(q, which, pairs)
            return out.detach() if detached else out

        if fresh is not None and queries is not None:  # (rows in items, generated minus embedded vectors, days)
            rows, generated, days = fresh
            fresh = (rows, self.with_text_items(self.to_space(generated), items[rows]) - scored[rows], days)
        else:
            fresh = None
        if scored_rows is None:
            return softmax_cross_entropy(h[valid], scored, target[valid], scale, history=hist, offset=offset,
                                         exclude=unseen, queries=queries, item_bias=age, fresh=fresh)
        tgt_emb, neg_e = scored[scored_rows[: B * L]], scored[scored_rows[B * L :]]
        h, pos_items = h[valid], target[valid]  # (P, D), (P,)
        pos = (h * tgt_emb.reshape(B, L, -1)[valid]).sum(-1, keepdim=True) * scale  # (P, 1)
        neg = (h @ neg_e.T) * scale  # (P, M), neg_e (M, D)
        if item_logq is not None:
            pos = pos - item_logq[pos_items].unsqueeze(1)
            neg = neg - item_logq[negatives]
        if queries is not None:
            pos = pos + age(queries, pos_items, pairs=True).unsqueeze(1)
            neg = neg + age(queries, negatives)
        if fresh is not None:  # the rows of the fresh items among the step's items, -1 elsewhere
            rows, delta, days = fresh
            k = torch.full((len(items),), -1, dtype=torch.long, device=seq.device)
            k[rows] = torch.arange(len(rows), device=seq.device)
            kt = k[scored_rows[: B * L].reshape(B, L)[valid]]  # (P,) each target's
            on_day = (kt >= 0) & (torch.floor(queries) == days[kt.clamp(min=0)])
            pos = pos + (on_day * (h * delta[kt.clamp(min=0)]).sum(-1) * scale).unsqueeze(1)
            kn = k[scored_rows[B * L :]]  # (M,) each negative's
            cols = (kn >= 0).nonzero().squeeze(1)
            same = (torch.floor(queries).unsqueeze(1) == days[kn[cols]].unsqueeze(0)).to(neg.dtype)  # (P, J)
            neg = neg.index_add(1, cols, same * ((h @ delta[kn[cols]].T) * scale))
        neg = neg.masked_fill(pos_items.unsqueeze(1) == negatives.unsqueeze(0), float("-inf"))
        if unseen is not None:  # uniform draws stay uniform over the rest: the logQ correction holds
            neg = neg.masked_fill(unseen[negatives], float("-inf"))
        logits = torch.cat([pos, neg], dim=1)
        if hist is not None:  # column 0 is each row's own target
            columns = torch.cat([torch.zeros(1, dtype=negatives.dtype, device=negatives.device), negatives])
            is_target = hist == pos_items.unsqueeze(1)  # (P, L)
            logits = add_history_offset(logits, hist.masked_fill(is_target, 0), offset, columns)
            logits[:, 0] = logits[:, 0] + is_target.any(1) * offset  # the target was read before
        return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=seq.device))
