"""The model's parts against plain references: MoE fusion, masks, losses, samplers, metrics."""

import math

import numpy as np
import pytest
import torch

from core.settings import ITEM_EMBEDDINGS
from training.metrics import from_ranks, target_ranks
from training.models.precise import ITEM_EMBEDDING_VARIANTS, LEGACY_DEFAULTS, ItemEmbedding, ModelConfig, MoEFusion, Precise
from training.trainer import TrainConfig, in_batch_negatives, lr_factor, mixed_negatives, uniform_negatives


def tiny(kind="fused", n_items=30, n_tokens=12, T=5, seed=0, **kw) -> Precise:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, n_tokens + 1, (n_items + 1, T), generator=g)
    tokens[:, 3:] *= torch.randint(0, 2, (n_items + 1, T - 3), generator=g)  # some padding
    tokens[0] = 0
    cfg = ModelConfig(n_items=n_items, n_tokens=n_tokens, llm_dim=16, item_embedding=kind, id_dim=8, sem_dim=8,
                      experts=3, top_k=2, layers=1, heads=2, dropout=0.0, max_len=6,
                      **(LEGACY_DEFAULTS | kw))  # the plain model (dot product, no extras); tests turn on what they test
    torch.manual_seed(seed)
    return Precise(cfg, tokens, torch.randn(n_tokens, 16)).eval()


def test_moe_matches_a_naive_loop():
    torch.manual_seed(0)
    moe = MoEFusion(dim=6, experts=4, top_k=2)
    table = torch.randn(9, 6)  # (V+1, d), row 0 = padding
    tokens = torch.randint(1, 9, (5, 7)) * (torch.rand(5, 7) > 0.3)
    tokens[:, 0] = torch.randint(1, 9, (5,))
    tokens[4] = 0  # an item without text
    fused, stats = moe(table, tokens)
    for m in range(4):
        t = table[tokens[m][tokens[m] > 0]]  # (T_m, d), padding dropped
        outs = []
        for e in moe.experts:
            w = torch.softmax(t @ e.query / math.sqrt(6), dim=0)
            outs.append((w.unsqueeze(1) * e.value(t)).sum(0))
        gate = moe.gate(t.mean(0))
        top = gate.topk(2)
        mix = torch.softmax(top.values, dim=0)
        expected = sum(mix[j] * outs[top.indices[j]] for j in range(2))
        torch.testing.assert_close(fused[m], expected, atol=1e-5, rtol=1e-5)
    assert torch.all(fused[4] == 0), "no tokens pool to zeros"
    assert torch.isclose(stats["usage"].sum(), torch.tensor(1.0))
    assert stats["balance_loss"] > 0
    # Gradients reach the table and the experts through the fast path.
    fused.sum().backward()
    assert moe.experts[0].query.grad is not None and moe.experts[0].value.weight.grad.abs().sum() > 0


def test_every_settable_variant_has_one_registered_class():
    """core/settings.py `ItemEmbedding` (what params.yaml may name) and the registry of
    training/models/precise.py (what builds) name the same variants."""
    assert sorted(ITEM_EMBEDDING_VARIANTS) == sorted(ITEM_EMBEDDINGS)
    assert all(issubclass(cls, ItemEmbedding) for cls in ITEM_EMBEDDING_VARIANTS.values())


def test_the_universal_and_the_task_model_implement_the_recommender_contract():
    """What the trainer, the evaluation and the export read of a model (training/models/recommender.py)
    is there on both models, for the variants without a token or an ID table too."""
    from training.models.recommender import SequenceRecommender
    from training.models.task import Targeted

    for kind in ("fused", "llm", "id"):
        base = tiny(kind)
        task = Targeted(base, hidden=8)
        for model in (base, task):
            assert isinstance(model, SequenceRecommender), (kind, type(model).__name__)
            seq = torch.tensor([[0, 1, 2, 3, 4, 5]])
            users = model.with_text_users(model.users(seq), seq[:, -1])
            assert (users @ model.scoring_items().T).shape == (1, 31)
            assert model.served_items(20_000.0).shape[0] == 31


@pytest.mark.parametrize("kind", ITEM_EMBEDDINGS)  # every variant, a new one included
def test_variants_have_equal_width_and_the_right_parts(kind):
    m = tiny(kind)
    e = m.item_embeddings(torch.tensor([[0, 1, 2]]))
    assert e.shape == (1, 3, 16)
    assert torch.all(e[0, 0] == 0), "padding embeds to zeros"
    assert (m.id_emb is None) == (kind in ("text", "llm"))
    assert (m.tok_emb is None) == (kind in ("id", "llm"))


def test_hllm_style_items_are_a_trained_map_of_frozen_llm_vectors_and_no_id_table():
    """`llm` (the HLLM-style baseline): item = Linear(mean of its tokens' LLM states); nothing
    per item is trained, no ID or token table exists, and training moves only the map and the
    transformer."""
    m = tiny("llm").train()
    names = [n for n, _ in m.named_parameters()]
    assert not any(n.startswith(("id_emb", "tok_emb", "pool", "tok_proj")) for n in names), names
    assert not any(k.startswith("item_llm") or k.startswith("id_emb") for k in m.state_dict()), "the frozen vectors are rebuilt, not saved"
    tokens = m.item_tokens
    torch.manual_seed(0)
    expected_init = torch.randn(12, 16)  # tiny()'s token_init: its first draw after seeding 0
    table = torch.cat([torch.zeros(1, 16), expected_init])
    for item in (1, 2, 7):
        real = tokens[item][tokens[item] > 0]
        torch.testing.assert_close(m.item_llm[item], table[real].mean(0))
        torch.testing.assert_close(m.input_embeddings(torch.tensor([item]))[0], m.llm_proj(table[real].mean(0)))
    before = m.item_llm.clone()
    seq = torch.tensor([[0, 1, 2, 3, 4, 5]])
    loss, _ = m.loss(seq[:, :-1], seq[:, 1:])
    loss.backward()
    assert m.llm_proj.weight.grad is not None and m.llm_proj.weight.grad.abs().sum() > 0
    assert torch.equal(m.item_llm, before) and not m.item_llm.requires_grad


def test_causal_mask_and_padding():
    m = tiny()
    seq = torch.tensor([[0, 0, 3, 4, 5, 6]])
    changed = torch.tensor([[0, 0, 3, 4, 5, 9]])
    h1, h2 = m.encode(seq), m.encode(changed)
    torch.testing.assert_close(h1[0, :5], h2[0, :5])  # earlier positions cannot see the future
    assert torch.all(h1[0, :2] == 0) and not torch.isnan(h1).any()
    b1, b2 = m.encode(seq, causal=False), m.encode(changed, causal=False)
    assert not torch.allclose(b1[0, 2], b2[0, 2]), "bidirectional positions see the whole sequence"
    empty = m.encode(torch.zeros(1, 6, dtype=torch.long))
    assert torch.all(empty == 0)


def test_loss_masks_accidental_hits_and_applies_logq():
    m = tiny()
    seq = torch.tensor([[0, 1, 2, 3, 4, 5]])
    target = torch.tensor([[0, 2, 3, 4, 5, 6]])
    negs = torch.tensor([6, 7, 8])  # 6 is the last position's own target
    loss, _ = m.loss(seq, target, negs)
    # Reference: cross-entropy per position over [positive, negatives != positive].
    h = m.encode(seq)[0, 1:]
    e = m.item_embeddings(torch.arange(0, 31))
    ref = []
    for p, t in zip(h, target[0, 1:]):
        negs_p = [n for n in negs.tolist() if n != t]
        logits = torch.stack([p @ e[t]] + [p @ e[n] for n in negs_p])
        ref.append(-torch.log_softmax(logits, 0)[0])
    torch.testing.assert_close(loss, torch.stack(ref).mean(), atol=1e-5, rtol=1e-5)
    # logQ: every logit, the positive's included, minus the log sampling probability of its item.
    logq = torch.log(torch.rand(31) * 0.9 + 0.05)
    ref = []
    for p, t in zip(h, target[0, 1:]):
        negs_p = [n for n in negs.tolist() if n != t]
        logits = torch.stack([p @ e[t] - logq[t]] + [p @ e[n] - logq[n] for n in negs_p])
        ref.append(-torch.log_softmax(logits, 0)[0])
    corrected = m.loss(seq, target, negs, logq)[0]
    torch.testing.assert_close(corrected, torch.stack(ref).mean(), atol=1e-5, rtol=1e-5)
    assert not torch.isclose(corrected, loss)
    # A uniform q shifts every logit alike: no change.
    torch.testing.assert_close(m.loss(seq, target, negs, torch.full((31,), -3.0))[0], loss)


def test_samplers():
    cfg = TrainConfig(num_negatives=50)
    freq = torch.tensor([0.0] + [0.1] * 10)  # 10 items, uniform frequency
    targets = torch.tensor([[0, 3, 3], [5, 3, 0]])
    items, logq = in_batch_negatives(targets, freq, cfg, torch.Generator())
    assert items.tolist() == [3, 5] and logq.shape == (11,)
    torch.testing.assert_close(logq[1:].exp(), torch.full((10,), 0.4)), "expected count: 4 targets x 0.1"
    items, logq = uniform_negatives(targets, freq, cfg, torch.Generator().manual_seed(0))
    assert len(items) == 50 and items.min() >= 1 and items.max() <= 10
    assert torch.allclose(logq[1:], torch.tensor(math.log(5.0)))
    items, logq = mixed_negatives(targets, freq, cfg, torch.Generator().manual_seed(0))
    assert {3, 5} <= set(items.tolist()) and len(items) == len(set(items.tolist()))
    torch.testing.assert_close(logq[1:].exp(), torch.full((10,), 0.4 + 5.0))


def test_schedules():
    cfg = TrainConfig(lr=1.0, min_lr=0.01, warmup_steps=10, anneal_fraction=0.2, schedule="wsd")
    f = [lr_factor(cfg, s, 100) for s in range(101)]
    assert f[0] == pytest.approx(0.01) and f[10] == 1.0 and f[80] == 1.0
    assert f[90] < 1.0 and f[100] == pytest.approx(0.01)
    cos = [lr_factor(TrainConfig(lr=1.0, min_lr=0.0, warmup_steps=0, schedule="cosine"), s, 100) for s in (0, 50, 100)]
    assert cos == pytest.approx([1.0, 0.5, 0.0])
    assert lr_factor(TrainConfig(schedule="constant", warmup_steps=0), 77, 100) == 1.0


def test_ranks_and_metrics():
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    items = torch.tensor([[0.0, 0.0], [3.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    ranks, losses = target_ranks(users, items, torch.tensor([2, 3]))
    assert ranks.tolist() == [1, 1], "item 1 beats the first target; the tie counts against the second"
    among = torch.tensor([False, False, True, True, False])  # a task's items: 2 and 3
    assert target_ranks(users, items, torch.tensor([2, 3]), candidates=among)[0].tolist() == [0, 0]
    m = from_ranks(np.array([0, 1, 20, 60]), ks=(10, 50))
    assert m["R@10"] == 0.5 and m["R@50"] == 0.75
    assert m["N@10"] == pytest.approx((1 + 1 / math.log2(3)) / 4)


def test_baselines_rank_among_candidates_when_given():
    from training.models.baselines import Popularity, Transitions

    train = [np.array([1, 2]), np.array([1, 2]), np.array([1, 3]), np.array([4, 4])]  # counts 1: 3, 2: 2, 3: 1, 4: 2
    among = np.array([False, False, True, True, False])  # a task's items: 2 and 3
    counting = Transitions(train, 4)
    assert counting.ranks([np.array([1])], np.array([3])).tolist() == [1], "1 -> 2 counts more than 1 -> 3"
    assert counting.ranks([np.array([1])], np.array([3]), among).tolist() == [1], "2 is a candidate"
    assert counting.ranks([np.array([4])], np.array([3])).tolist() == [3], "4 follows 4; then popularity: 1, 2"
    assert counting.ranks([np.array([4])], np.array([3]), among).tolist() == [1], "4 and 1 are no candidates"
    popular = Popularity(train, 4)
    assert popular.ranks([], np.array([2])).tolist() == [2] and popular.ranks([], np.array([2]), among).tolist() == [0]


def test_text_neighbours_rank_by_centred_text_cosine_with_the_last_item():
    from training.models.baselines import TextNeighbours

    # Items 1-4 share a large common direction (column 0), as language-model states do; what tells
    # them apart is columns 1-2. Item 5 has no text. Counts: 1: 1, 2: 1, 3: 3, 4: 1, 5: 4.
    vectors = np.array([[0, 0, 0], [10, 1, 0], [10, 0.9, 0.1], [10, 0, 1], [10, -1, 0], [0, 0, 0]], dtype=float)
    train = [np.array([1, 2, 3, 3, 3, 4]), np.array([5, 5, 5, 5])]
    text = TextNeighbours(vectors, train, 5)
    # Last item 1: item 2 is nearest once the common direction is removed (raw cosines are all ~0.99).
    assert text.ranks([np.array([4, 1])], np.array([2])).tolist() == [0]
    # Centred, 3 and 4 point away from 1 (cos -0.60, -0.85): below 5, whose cos is 0 (no text).
    assert text.ranks([np.array([4, 1])], np.array([4])).tolist() == [3], "below 2, 5 and 3"
    assert text.ranks([np.array([2, 1])], np.array([1])).tolist() == [5], "the last item itself is never offered"
    among = np.array([False, False, False, True, True, True])
    assert text.ranks([np.array([1])], np.array([3]), among).tolist() == [1], "among 3, 4, 5: 5, 3, 4"
    # A last item without text scores every item 0: popularity decides (5, then 3).
    assert text.ranks([np.array([5])], np.array([3])).tolist() == [0], "5 itself is not offered; 3 is the most popular"
    assert text.ranks([np.array([0, 0])], np.array([5])).tolist() == [0], "no history: popularity"


def test_exact_softmax_matches_a_plain_cross_entropy_chunked_or_not():
    m = tiny()
    seq = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 0, 0, 7, 8, 9]])
    target = torch.tensor([[0, 2, 3, 4, 5, 6], [0, 0, 0, 8, 9, 10]])
    loss, _ = m.loss(seq, target)
    h = m.encode(seq)[target > 0]  # (P, D)
    e = m.all_item_embeddings()  # (N+1, D)
    logits = h @ e[1:].T  # padding is no candidate
    ref = torch.nn.functional.cross_entropy(logits, target[target > 0] - 1)
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)
    # Chunked (activation checkpointing) gives the same value and the same gradients.
    from training.models.precise import softmax_cross_entropy
    items = m.all_item_embeddings().detach().requires_grad_(True)
    hh = h.detach().requires_grad_(True)
    whole = softmax_cross_entropy(hh, items, target[target > 0], 1.0)
    whole.backward()
    g_h, g_i = hh.grad.clone(), items.grad.clone()
    hh.grad = items.grad = None
    chunked = softmax_cross_entropy(hh, items, target[target > 0], 1.0, max_elements=2 * 31)
    chunked.backward()
    torch.testing.assert_close(whole, chunked)
    torch.testing.assert_close(g_h, hh.grad)
    torch.testing.assert_close(g_i, items.grad)


def test_cosine_similarity_scores_normalised_vectors_with_a_temperature():
    m = tiny(similarity="cosine", temperature=0.1)
    seq = torch.tensor([[0, 1, 2, 3, 4, 5]])
    target = torch.tensor([[0, 2, 3, 4, 5, 6]])
    u, e = m.users(seq), m.all_item_embeddings()
    assert torch.allclose(u.norm(dim=-1), torch.tensor(1.0)) and torch.allclose(e[1:].norm(dim=-1), torch.tensor(1.0))
    assert torch.all(e[0] == 0)
    h = torch.nn.functional.normalize(m.encode(seq)[target > 0], dim=-1)
    ref = torch.nn.functional.cross_entropy(h @ e[1:].T / 0.1, target[target > 0] - 1)
    torch.testing.assert_close(m.loss(seq, target)[0], ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        tiny(similarity="euclid")


def test_exported_vectors_reproduce_the_training_score():
    """What export writes (and Feast's score view and FAISS multiply) is the model's own score."""
    from training.prep.tensors import Index
    from serving.export import item_vectors, user_vectors

    m = tiny(similarity="cosine", temperature=0.1)
    index = Index([f"i{k}" for k in range(1, 31)])
    histories = [["i1", "i2", "i3"], ["i7", "i9"]]
    users, items = user_vectors(m, index, histories), item_vectors(m, "2026-01-01")
    assert np.allclose(np.linalg.norm(users, axis=1), 1, atol=1e-5) and np.allclose(np.linalg.norm(items, axis=1), 1, atol=1e-5)
    seqs = torch.tensor([[0, 0, 0, 1, 2, 3], [0, 0, 0, 0, 7, 9]])
    expected = m.score(m.users(seqs), m.all_item_embeddings()[1:]).detach().numpy()
    np.testing.assert_allclose(users @ items.T, expected, atol=1e-5)
    # A model that reads session context: the exported users are for their next session (code 2
    # at the latest slot), the earlier slots read where the history's sessions broke.
    m = tiny(similarity="cosine", temperature=0.1, session_gap_minutes=30.0)
    with torch.no_grad():
        m.ctx_emb.weight[1:].normal_()
    times = [np.array(["2026-01-01T10:00", "2026-01-01T10:05", "2026-01-01T12:00"], dtype="datetime64[us]"),
             np.array(["2026-01-01T08:00", "2026-01-01T08:10"], dtype="datetime64[us]")]
    users = user_vectors(m, index, histories, times=times)
    ctx = torch.tensor([[0, 0, 0, 1, 2, 2], [0, 0, 0, 0, 1, 2]])
    np.testing.assert_allclose(users, m.users(seqs, ctx).detach().numpy(), atol=1e-5)
    assert not np.allclose(users, user_vectors(m, index, histories), atol=1e-3)


def test_items_without_text_train_and_score_on_their_id_side():
    """Own logs have items without a title or text: an all-padding token row. They must get
    finite, trainable embeddings (ID side) and a finite loss, in the fused and the text model."""
    for kind in ("fused", "text"):
        model = tiny(kind).train()
        model.item_tokens[5:15] = 0  # ten items with no token at all
        seq = torch.tensor([[0, 5, 6, 7, 8, 9], [1, 2, 3, 10, 11, 12]])
        target = torch.tensor([[5, 6, 7, 8, 9, 10], [2, 3, 10, 11, 12, 13]])
        loss, _ = model.loss(seq, target)
        assert torch.isfinite(loss), kind
        loss.backward()
        vectors = model.all_item_embeddings()[5:15]
        assert torch.isfinite(vectors).all(), kind
        if kind == "fused":  # the ID side carries them: distinct, trainable vectors
            assert model.id_emb.weight.grad[5:15].abs().sum() > 0
            assert torch.cdist(vectors, vectors).fill_diagonal_(1).min() > 0


def test_text_dropout_zeroes_whole_text_parts_in_training_only():
    """model.text_dropout: in training, a share of items lose their whole text part (their ID part
    untouched) on the side(s) text_dropout_side names; in evaluation (and so export and serving)
    every item keeps its text."""
    ids = torch.arange(1, 401)
    D_id = 8
    for side in ("both", "inputs", "scored"):
        torch.manual_seed(0)
        model = tiny("fused", n_items=400, text_dropout=0.5, text_dropout_side=side)
        assert model.cfg.id_dim == D_id
        model.eval()
        full = model._embed(ids).detach()
        assert all(torch.equal(v, full) for v in model.drop_text(full, ids))
        model.train()
        inputs, scored = (v.detach() for v in model.drop_text(model._embed(ids), ids))
        dropped, kept = (inputs, scored) if side == "inputs" else (scored, inputs)
        assert torch.equal(kept, full) if side != "both" else torch.equal(inputs, scored)
        assert torch.equal(dropped[:, :D_id], full[:, :D_id])
        gone = (dropped[:, D_id:] == 0).all(1)
        assert 0.4 < gone.float().mean() < 0.6, side  # about half, at p = 0.5
        assert torch.allclose(dropped[~gone, D_id:], full[~gone, D_id:], atol=1e-6)  # the rest unchanged


def test_count_aware_text_dropout_spares_items_seldom_seen_in_training():
    """text_dropout_half_count k: an item seen n times as a target drops its text at p x n/(n+k):
    never when unseen, about p when seen far more than k times."""
    torch.manual_seed(0)
    model = tiny("fused", n_items=2000, text_dropout=0.5, text_dropout_half_count=10.0).train()
    counts = torch.zeros(2001)
    counts[1001:] = 1e6  # items 1001..2000 seen very often, 1..1000 never
    model.set_item_counts(counts)
    ids = torch.arange(1, 2001)
    gone = (model.drop_text(model._embed(ids), ids)[1][:, model.cfg.id_dim:] == 0).all(1).detach()
    assert not gone[:1000].any()
    assert 0.45 < gone[1000:].float().mean() < 0.55
    from training.targeted import Targeted

    assert Targeted(model, 16).base.text_dropout == 0.0  # targeted training fine-tunes without it
    assert not (model.drop_text(model._embed(ids), ids)[1][:, model.cfg.id_dim:] == 0).all(1).any()


@pytest.mark.parametrize("sampled", [False, True])
def test_id_aux_loss_adds_the_loss_of_the_id_side_alone_in_training_only(sampled):
    """model.id_aux_weight w: the training loss is the fused loss + w x the same loss with every
    item's text part zeroed (inputs and scored items); the text parameters get no gradient from
    that term, and evaluation's loss is the plain one."""
    torch.manual_seed(0)
    seq = torch.randint(1, 31, (4, 6))
    seq[0, :2] = 0
    target = torch.roll(seq, -1, dims=1)
    target[:, -1] = torch.randint(1, 31, (4,))
    negatives = torch.randint(1, 31, (12,)) if sampled else None
    base, aux = tiny("fused").train(), tiny("fused", id_aux_weight=0.5).train()
    plain, _ = base.loss(seq, target, negatives)
    total, stats = aux.loss(seq, target, negatives)
    # The reference for the ID side alone: the same weights with the text part switched off.
    text_off = tiny("fused").train()
    text_off.semantic = lambda items: (torch.zeros(len(items), 8), {})
    id_alone, _ = text_off.loss(seq, target, negatives)
    assert abs(stats["id_aux_loss"] - id_alone.item()) < 1e-5
    torch.testing.assert_close(total, plain + 0.5 * id_alone)
    assert not torch.isclose(total, plain)
    # Gradient: the aux term reaches the ID rows but not the token table.
    (total - plain.detach()).backward()
    g_text_aux = aux.tok_emb.weight.grad.clone()
    aux.zero_grad()
    aux.loss(seq, target, negatives)[0].backward()
    torch.testing.assert_close(aux.tok_emb.weight.grad, g_text_aux)  # aux adds nothing to the text side
    base.loss(seq, target, negatives)[0].backward()
    torch.testing.assert_close(aux.tok_emb.weight.grad, base.tok_emb.weight.grad)
    assert not torch.allclose(aux.id_emb.weight.grad, base.id_emb.weight.grad)
    # Evaluation: the plain loss.
    torch.testing.assert_close(aux.eval().loss(seq, target, negatives)[0], base.eval().loss(seq, target, negatives)[0])


def test_session_context_is_added_to_the_inputs_and_starts_as_nothing():
    """model.session_gap_minutes > 0: each position's session code (training.prep.tensors) adds a learned
    vector to its input; the vectors start at zero and draw no random numbers, so the model is the
    same as without until it trains, and a code of 0 (no timestamps) never adds anything."""
    plain, ctx_model = tiny(), tiny(session_gap_minutes=30.0)
    assert plain.ctx_emb is None
    for name, weight in plain.state_dict().items():  # the other weights are drawn exactly as before
        torch.testing.assert_close(ctx_model.state_dict()[name], weight)
    seq = torch.tensor([[0, 0, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5]])
    new, same = torch.tensor([[0, 0, 1, 2, 1, 2]] * 2), torch.tensor([[0, 0, 1, 2, 1, 1]] * 2)
    torch.testing.assert_close(ctx_model.encode(seq, context=new), plain.encode(seq))
    with torch.no_grad():
        ctx_model.ctx_emb.weight[1:].normal_()
    h_new, h_same = ctx_model.encode(seq, context=new), ctx_model.encode(seq, context=same)
    torch.testing.assert_close(h_new[:, :5], h_same[:, :5])  # the last position's code: only its own output
    assert not torch.allclose(h_new[:, 5], h_same[:, 5])
    torch.testing.assert_close(ctx_model.encode(seq, context=torch.zeros_like(seq)), plain.encode(seq))
    torch.testing.assert_close(ctx_model.users(seq, new), ctx_model.to_space(h_new[:, -1]))
    target = torch.roll(seq, -1, 1) * (seq > 0)
    target[:, -1] = 7  # the position whose code differs has a target
    loss_new, _ = ctx_model.loss(seq, target, context=new)
    loss_same, _ = ctx_model.loss(seq, target, context=same)
    assert not torch.isclose(loss_new, loss_same)


def test_session_context_dropout_hides_whole_sequences_contexts_in_training_only():
    """model.session_context_dropout p: in training, a share p of the sequences reads code 0
    (unknown) at every position, so inputs without timestamps stay familiar; evaluation reads all."""
    seq = torch.tensor([[0, 0, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5]])
    target = torch.roll(seq, -1, 1) * (seq > 0)
    target[:, -1] = 7
    context = torch.tensor([[0, 0, 1, 2, 1, 2], [0, 1, 1, 2, 1, 2]])
    losses = {}
    for p in (0.0, 0.999):
        m = tiny(session_gap_minutes=30.0, session_context_dropout=p)
        with torch.no_grad():
            m.ctx_emb.weight[1:].normal_(generator=torch.Generator().manual_seed(1))
        torch.manual_seed(0)
        losses[p] = (m.train().loss(seq, target, context=context)[0], m.train().loss(seq, target)[0],
                     m.eval().loss(seq, target, context=context)[0])
    with_ctx, without, evaluated = losses[0.999]
    torch.testing.assert_close(with_ctx, without)  # every sequence dropped (p close to 1)
    assert not torch.isclose(losses[0.0][0], losses[0.0][1])  # p = 0: the context counts
    torch.testing.assert_close(evaluated, losses[0.0][2])  # evaluation never drops


def reference_loss(seq, target, negatives, logit) -> torch.Tensor:
    """The next-item loss written out position by position: logit(p, j, read) the logit of item j
    at the p-th valid position, read = the items that position has read (itself and before);
    candidates every item (exact) or the target then `negatives` (sampled; a negative equal to the
    target masked). The reference of the history-offset and text-logit tests."""
    t = target[target > 0]
    read = [set(seq[b, : l + 1].tolist()) - {0} for b in range(len(seq)) for l in range(seq.shape[1]) if target[b, l] > 0]
    ref = []
    for p, items in enumerate(read):
        cand = [int(t[p])] + negatives.tolist() if negatives is not None else list(range(1, 31))
        logits = torch.stack([logit(p, j, items) for j in cand])
        if negatives is not None:
            logits[1:][negatives == t[p]] = float("-inf")  # a negative equal to the target is masked
            ref.append(torch.logsumexp(logits, 0) - logits[0])
        else:
            ref.append(torch.logsumexp(logits, 0) - logits[int(t[p]) - 1])
    return torch.stack(ref).mean()


@pytest.mark.parametrize("sampled", [False, True])
def test_history_offset_adds_a_learned_logit_to_the_items_already_read(sampled):
    """model.history_offset: at each position, every item it has read (itself and the positions
    before) scores its logit plus one learned offset, the position's own target included when it
    is a repeat; exact and sampled softmax alike (sampled: every negative column of such an item,
    a negative equal to the target still masked). Evaluation ranks with the same offset."""
    torch.manual_seed(0)
    seq = torch.tensor([[0, 3, 5, 3, 9, 2], [4, 6, 1, 8, 2, 7]])
    target = torch.tensor([[0, 5, 3, 7, 2, 11], [6, 1, 8, 2, 7, 4]])  # repeats: row 0's 3, row 1's last 4
    negatives = torch.tensor([3, 9, 9, 12, 4, 20, 11, 1]) if sampled else None
    m = tiny("id", history_offset=True).train()
    with torch.no_grad():
        m.history_bias.fill_(-0.13)  # offset -1.3 (HISTORY_OFFSET_SCALE 10)
    offset = m.history_logit().item()
    h = m.to_space(m.encode(seq))[target > 0]  # (P, D); dropout is 0
    e = m.all_item_embeddings()
    ref = reference_loss(seq, target, negatives, lambda p, j, read: h[p] @ e[j] + (offset if j in read else 0.0))
    got, _ = m.loss(seq, target, negatives)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    got.backward()
    assert m.history_bias.grad is not None and float(m.history_bias.grad) != 0.0, "the offset is learned"
    # Evaluation: the window's items score with the offset (ranks and loss of the next item).
    from training.trainer import model_ranks
    inputs, nxt = seq, torch.tensor([3, 11])  # row 0's next item is one it has read
    ranks, losses = model_ranks(m, inputs, nxt)
    users = m.users(inputs)
    scores = users @ e.T
    for b in range(2):
        scores[b, [j for j in set(inputs[b].tolist()) if j]] += offset
    scores[:, 0] = float("-inf")
    expect = [(scores[b] >= scores[b, nxt[b]]).sum().item() - 1 for b in range(2)]
    assert ranks.tolist() == expect
    torch.testing.assert_close(torch.from_numpy(losses), torch.logsumexp(scores, 1) - scores[[0, 1], nxt], atol=1e-5, rtol=1e-5)


def test_text_neighbour_vectors_keep_the_centred_text_cosine():
    """text_logit_dim: the frozen vectors are the text-neighbours baseline's (centred, normalised
    mean token states) in the leading principal components: with as many components as the
    language model's width the cosines are the baseline's exactly; fewer keep most of them."""
    from training.models.baselines import TextNeighbours
    from training.models.precise import Bags, text_neighbour_vectors

    torch.manual_seed(0)
    tokens = torch.randint(1, 13, (31, 5))
    tokens[0], tokens[4] = 0, 0  # padding and an item without text
    init = torch.randn(12, 16) + 3.0  # a large common direction, as language-model states have
    mean = Bags(tokens).mean(torch.cat([torch.zeros(1, 16), init])).numpy()
    base = TextNeighbours(mean, [np.array([1])], 30).vectors
    full = text_neighbour_vectors(tokens, init, 16)
    np.testing.assert_allclose(full.numpy() @ full.numpy().T, base @ base.T, atol=1e-4)
    assert float(full[0].abs().sum()) == 0 and float(full[4].abs().sum()) == 0
    small = text_neighbour_vectors(tokens, init, 4)
    assert small.shape == (31, 4) and torch.allclose(small[1:4].norm(dim=1), torch.tensor(1.0))
    assert float(text_neighbour_vectors(tokens, None, 4).abs().sum()) == 0, "no tokens: no text term"


@pytest.mark.parametrize("sampled", [False, True])
def test_text_logit_adds_a_learned_weight_on_the_last_items_text_cosine(sampled):
    """model.text_logit_dim: every logit of a position gains w x T[the position's item] . T[j];
    exact and sampled softmax alike, beside the history offset; evaluation and the exported
    vectors (user + temperature w T[last], item + T[j]) rank with the same term."""
    from training.prep.tensors import Index
    from serving.export import item_vectors, user_vectors
    from training.trainer import model_ranks

    seq = torch.tensor([[0, 3, 5, 3, 9, 2], [4, 6, 1, 8, 2, 7]])
    target = torch.tensor([[0, 5, 3, 7, 2, 11], [6, 1, 8, 2, 7, 4]])
    negatives = torch.tensor([3, 9, 9, 12, 4, 20, 11, 1]) if sampled else None
    m = tiny("fused", history_offset=True, text_logit_dim=4, similarity="cosine", temperature=0.1, id_aux_weight=0.0).train()
    with torch.no_grad():
        m.history_bias.fill_(-0.13)
        m.text_weight.fill_(0.25)  # w = 2.5 (TEXT_LOGIT_SCALE 10)
    w, offset, T = m.text_logit().item(), m.history_logit().item(), m.item_text
    h = m.to_space(m.encode(seq))[target > 0]
    e = m.all_item_embeddings()
    last = seq[target > 0]  # each position's own item
    ref = reference_loss(seq, target, negatives,
                         lambda p, j, read: h[p] @ e[j] / 0.1 + w * (T[last[p]] @ T[j]) + (offset if j in read else 0.0))
    got, _ = m.loss(seq, target, negatives)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    got.backward()
    assert float(m.text_weight.grad) != 0.0, "the weight is learned"
    # Evaluation and export: the same term, from the window's last item.
    m.eval()
    inputs, nxt = seq, torch.tensor([3, 11])
    ranks, _ = model_ranks(m, inputs, nxt)
    scores = m.users(inputs) @ e.T / 0.1 + w * T[inputs[:, -1]] @ T.T
    for b in range(2):
        scores[b, [j for j in set(inputs[b].tolist()) if j]] += offset
    scores[:, 0] = float("-inf")
    assert ranks.tolist() == [(scores[b] >= scores[b, nxt[b]]).sum().item() - 1 for b in range(2)]
    index = Index([f"i{k}" for k in range(1, 31)])
    served = user_vectors(m, index, [[f"i{k}" for k in row if k] for row in seq.tolist()]) @ item_vectors(m, "2026-01-01").T
    np.testing.assert_allclose(served / 0.1 + 0, (scores[:, 1:] - torch.stack(
        [torch.tensor([offset if j in set(r.tolist()) else 0.0 for j in range(1, 31)]) for r in inputs])).detach().numpy(),
        atol=1e-4)
