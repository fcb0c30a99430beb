"""The cold-item gate (`model.cold_gate`, issue 30): an item the IDs do not know is scored from its
text, never from an untrained ID row, alike in training, evaluation, export and growth."""

import numpy as np
import pytest
import torch

from tests.model.test_model import tiny
from training.evaluate import BUCKETS, breakdown, fresh_targets
from training.prep.tensors import Index


def gated(**kw):
    return tiny("fused", **({"cold_gate": True, "cold_half_count": 5.0} | kw))


def test_a_never_seen_item_is_its_generated_id_part_and_its_text():
    m = gated()
    counts = torch.zeros(m.cfg.n_items + 1)
    counts[1:11] = torch.arange(1, 11, dtype=torch.float)  # items 1..10 seen 1..10 times, the rest never
    m.set_item_counts(counts)
    items = torch.arange(1, m.cfg.n_items + 1)
    before = m.input_embeddings(items)
    with torch.no_grad():
        m.id_emb.weight.add_(torch.randn_like(m.id_emb.weight))  # change every ID row
    after = m.input_embeddings(items)
    never, seen = items > 10, items <= 10
    torch.testing.assert_close(after[never], before[never]), "a never-seen item ignores its ID row"
    assert not torch.allclose(after[seen], before[seen]), "a seen item's vector depends on its ID row"
    # what the vector is: [G(text part) ; text part], for the exact reference
    sem, _ = m.semantic(items[never])
    torch.testing.assert_close(after[never], torch.cat([m.id_gen(sem), sem], -1))
    # a seen item: a ID + (1 - a) G, a = n / (n + 5) at the start
    n = counts[items[seen]].unsqueeze(-1)
    a = n / (n + 5.0)
    sem_s, _ = m.semantic(items[seen])
    expected = torch.cat([a * m.id_emb(items[seen]) + (1 - a) * m.id_gen(sem_s), sem_s], -1)
    torch.testing.assert_close(after[seen], expected)


def test_id_dropout_hides_id_rows_in_training_only_and_trains_the_generator():
    m = gated(id_dropout=0.5)
    m.set_item_counts(torch.full((m.cfg.n_items + 1,), 50.0))
    items = torch.arange(1, m.cfg.n_items + 1)
    assert torch.all(m.id_share(items) > 0.8), "eval: every seen item uses its ID row"
    m.train()
    torch.manual_seed(3)
    share = m.id_share(items).squeeze(-1)
    hidden = (share == 0).float().mean()
    assert 0.25 < hidden < 0.75, f"about half the items read as never seen, got {hidden:.2f}"
    seq = torch.randint(1, m.cfg.n_items + 1, (4, 6))
    loss, _ = m.loss(seq, torch.roll(seq, -1, 1))
    loss.backward()
    assert m.id_gen[0].weight.grad.abs().sum() > 0 and m.gate_w.grad is not None


def test_counts_are_a_running_maximum_saved_with_the_weights():
    m = gated()
    first = torch.zeros(m.cfg.n_items + 1)
    first[1:5] = 10.0
    m.set_item_counts(first)
    later = torch.zeros(m.cfg.n_items + 1)
    later[3:8] = 2.0  # a replay window: fewer behaviours of items 3, 4, new ones of 5..7
    m.set_item_counts(later)
    assert m.id_counts[1:8].tolist() == [10, 10, 10, 10, 2, 2, 2]
    assert "id_counts" in m.state_dict()
    assert "id_counts" not in tiny("fused").state_dict(), "checkpoints without the gate load as before"


def test_a_grown_model_scores_new_items_from_their_text():
    """universal.grow: yesterday's counts kept, today's new items count 0 (their ID rows unused)."""
    import pandas as pd

    from training import universal

    m = gated()
    counts = torch.zeros(m.cfg.n_items + 1)
    counts[1:] = 3.0
    m.set_item_counts(counts)
    n, T = m.cfg.n_items, m.item_tokens.shape[1]
    tok_ids = np.arange(100, 100 + m.cfg.n_tokens)
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(1, n + 3)],
                          "token_ids": [list(tok_ids[(m.item_tokens[min(k, n)][m.item_tokens[min(k, n)] > 0] - 1).tolist()])
                                        for k in range(1, n + 3)]})
    meta = {"model": m.cfg.to_dict(), "item_ids": [f"i{k}" for k in range(1, n + 1)],
            "token_ids": [str(t) for t in tok_ids]}
    tok_init = m.tok_emb.weight[1:].detach().numpy()
    grown, index, _, n_new = universal.grow(meta, m.state_dict(), items, tok_ids, tok_init, T, 3)
    assert n_new == 2 and grown.cfg.n_items == n + 2
    assert grown.id_counts[1 : n + 1].tolist() == [3.0] * n and grown.id_counts[n + 1 :].tolist() == [0.0, 0.0]
    new = torch.tensor([n + 1, n + 2])
    sem, _ = grown.semantic(new)
    torch.testing.assert_close(grown.eval().input_embeddings(new), torch.cat([grown.id_gen(sem), sem], -1))


def test_breakdown_buckets_by_training_count_and_fresh():
    freq = np.array([0, 0, 1, 4, 5, 19, 20, 100])  # item 1 never seen
    targets = np.array([1, 2, 3, 4, 5, 6, 7])
    ranks = np.array([0, 50, 3, 50, 0, 50, 0])
    out = breakdown(ranks, targets, freq, (10,), fresh=np.array([1, 0, 0, 0, 0, 0, 1], dtype=bool))
    assert [out[b]["n"] for b, _ in BUCKETS] == [1, 2, 2, 2]
    assert [out[b]["R@10"] for b, _ in BUCKETS] == [1.0, 0.5, 0.5, 0.5]
    assert out["fresh"]["n"] == 2 and out["fresh"]["R@10"] == 1.0
    assert "fresh" not in breakdown(ranks, targets, freq, (10,))


def test_fresh_targets_are_published_that_day_or_never_seen():
    items = pd_items()
    index = Index(list(items["item_id"]))
    freq = np.array([0, 5, 0, 5])
    fresh = fresh_targets(items, index, np.array([1, 2, 3]), freq, "2026-01-05")
    assert fresh.tolist() == [False, True, True]  # a: old and seen; b: never seen; c: published that day


def pd_items():
    import pandas as pd

    return pd.DataFrame({"item_id": ["a", "b", "c"],
                         "published_at": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-05T03:00:00"], utc=True, format="ISO8601")})


@pytest.mark.parametrize("kind", ["id", "text", "llm"])
def test_the_gate_needs_both_an_id_and_a_text_part(kind):
    m = tiny(kind, cold_gate=True)
    assert m.id_gen is None and m.id_counts is None


@pytest.mark.parametrize("sampled", [False, True])
def test_training_leaves_never_seen_items_out_of_the_softmax(sampled):
    """Under the gate, an item with no training behaviour is no negative: the loss equals the
    loss over the seen items only (exact), or with its sampled logit removed."""
    m = gated(id_aux_weight=0.0)
    counts = torch.ones(m.cfg.n_items + 1)
    counts[0] = 0
    counts[20:] = 0  # items 20.. never seen
    m.set_item_counts(counts)
    seq = torch.randint(1, 20, (3, 6))
    target = torch.randint(1, 20, (3, 6))
    negatives = torch.arange(1, m.cfg.n_items + 1) if sampled else None
    logq = torch.zeros(m.cfg.n_items + 1) if sampled else None
    got, _ = m.loss(seq, target, negatives, logq)
    # reference: the same model scored by hand over the seen items only
    h = m.to_space(m.encode(seq))[target > 0]  # (P, D)
    items = m.to_space(m.input_embeddings(torch.arange(0, 20)))  # (20, D): padding, then seen items 1..19
    logits = (h @ items[1:].T) / m.cfg.temperature  # (P, 19)
    expected = torch.nn.functional.cross_entropy(logits, target[target > 0] - 1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    m.set_item_counts(torch.ones(m.cfg.n_items + 1))  # every item seen: the softmax covers them all
    assert m.untrained_items() is not None and not bool(m.untrained_items()[1:].any())


@pytest.mark.parametrize("loss", ["bpr", "softmax"])
def test_targeted_catalog_losses_leave_never_seen_items_out_too(loss):
    from training.targeted import Targeted

    base = gated(id_aux_weight=0.0)
    counts = torch.ones(base.cfg.n_items + 1)
    counts[0] = 0
    counts[20:] = 0  # never seen by the universal model
    base.set_item_counts(counts)
    m = Targeted(base, 16, "catalog", loss).eval()
    seq, target = torch.randint(1, 20, (5, 6)), torch.randint(1, 20, (5,))
    target[0] = 25  # a task target the universal model never saw stays in the batch's candidates
    got, _ = m.loss(seq, target, None)
    u = m.users(seq) / base.cfg.temperature  # (B, D)
    items = base.all_item_embeddings()
    kept = torch.cat([torch.arange(1, 20), torch.tensor([25])])  # the seen items and the target
    s = u @ items[kept].T  # (B, 20)
    col = torch.tensor([(kept == t).nonzero().item() for t in target])
    if loss == "softmax":
        expected = torch.nn.functional.cross_entropy(s, col)
    else:
        pos = s.gather(1, col.unsqueeze(1))
        keep = torch.ones_like(s, dtype=torch.bool)
        keep[torch.arange(5), col] = False
        expected = -torch.nn.functional.logsigmoid(pos - s)[keep].mean()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_with_half_count_zero_every_seen_item_keeps_its_id_row_whole():
    m = gated(cold_half_count=0.0, id_dropout_loss="generator")
    counts = torch.zeros(m.cfg.n_items + 1)
    counts[1:6] = torch.tensor([1.0, 2.0, 3.0, 50.0, 1000.0])
    m.set_item_counts(counts)
    items = torch.arange(1, m.cfg.n_items + 1)
    assert m.id_share(items).squeeze(-1).tolist() == [1.0] * 5 + [0.0] * (m.cfg.n_items - 5)
    m.train()  # the generator loss hides nothing from the main loss
    assert m.id_share(items).squeeze(-1).tolist() == [1.0] * 5 + [0.0] * (m.cfg.n_items - 5)
    sem, _ = m.semantic(items[:5])
    torch.testing.assert_close(m.input_embeddings(items[:5]), torch.cat([m.id_emb(items[:5]), sem], -1))


@pytest.mark.parametrize("sampled", [False, True])
def test_the_generator_loss_trains_the_generator_alone(sampled):
    """id_dropout_loss: generator: the same weights without it (id_dropout 0) give the same main
    loss and the same gradients everywhere but in G, which only the generator loss trains."""
    counts = torch.zeros(31)
    counts[1:] = 4.0
    counts[-3:] = 0.0  # three never-seen items, never in the batch
    models = []
    for p in (0.5, 0.0):
        m = gated(cold_half_count=0.0, id_dropout_loss="generator", id_dropout=p)
        if models:
            m.load_state_dict(models[0].state_dict())
        m.set_item_counts(counts)
        m.train()
        models.append(m)
    seq = torch.randint(1, 28, (4, 6))
    target = torch.roll(seq, -1, 1)
    negatives = torch.arange(1, 31) if sampled else None
    out = []
    for m in models:
        torch.manual_seed(0)
        loss, stats = m.loss(seq, target, negatives)
        loss.backward()
        out.append((loss, stats))
    (with_gen, stats), (without, _) = out
    assert "generator_loss" in stats and stats["generator_loss"] > 0
    torch.testing.assert_close(with_gen - stats["generator_loss"], without)
    grads = [{n: p.grad for n, p in m.named_parameters()} for m in models]
    for name, g in grads[0].items():
        other = grads[1][name]
        if name.startswith("id_gen"):
            assert g is not None and g.abs().sum() > 0 and (other is None or other.abs().sum() == 0), name
        elif g is not None:
            torch.testing.assert_close(g, other, msg=name)
