"""The item-age offset (`model.age_logit`, issue 30): a learned logit per bucket of an item's age at
the query, trained from each position's target time and used wherever the model scores."""

import dataclasses

import numpy as np
import pandas as pd
import torch

from tests.model.test_model import tiny
from tests.model.test_trainer import CFG
from training.prep.tensors import Index, days_since_epoch, next_item_pairs, pad_left, published_days
from training.evaluate import rank_targets
from training.models.precise import AGE_SCALE
from training.trainer import fit


def aged(**kw):
    m = tiny("fused", age_logit=True, **kw)
    days = torch.full((m.cfg.n_items + 1,), float("-inf"))
    days[1:11] = 100.0  # items 1-10 published on day 100
    days[11:21] = 95.0  # 11-20 five days earlier; 21-30 without a publish time
    m.set_published(days)
    return m


def test_each_item_gets_the_offset_of_its_age_bucket_at_the_query():
    m = aged()
    with torch.no_grad():
        m.age_bias.copy_(torch.arange(6, dtype=torch.float) / AGE_SCALE)  # bucket b -> logit b
    out = m.age_logit(torch.tensor([99.0, 100.5, 101.5, 103.0]))  # (4, N+1)
    # not yet published (99 < 100) -> bucket 0; 0.5 days -> 1; 1.5 -> 2; 3 -> 3
    assert out[:, 1].tolist() == [0.0, 1.0, 2.0, 3.0]
    # published on day 95: 4, 5.5, 6.5 and 8 days old -> buckets 4, 4, 4, 5
    assert out[:, 11].tolist() == [4.0, 4.0, 4.0, 5.0]
    assert torch.all(out[:, 21:] == 5.0), "an item without a publish time is in the oldest bucket"

    pairs = m.age_logit(torch.tensor([100.5, 103.0]), torch.tensor([1, 11]), pairs=True)
    assert pairs.tolist() == [1.0, 5.0]
    assert tiny("fused").age_logit(torch.tensor([100.0])) is None, "off: no offset"


def test_scoring_adds_the_offset_at_each_query_time_and_nothing_without_one():
    m = aged()
    histories = [np.array([21, 22, 23]), np.array([24, 25])]
    targets = np.array([5, 5])
    before = rank_targets(m, histories, targets)
    with torch.no_grad():
        m.age_bias[1] = 5.0  # < 1 day old: +50 logits, far above any cosine / temperature
    fresh = rank_targets(m, histories, targets, when=np.array([100.5, 100.5]))
    assert before.max() >= 10 and fresh.max() < 10, (before, fresh)  # item 5 now among the 10 fresh ones
    late = rank_targets(m, histories, targets, when=np.array([104.0, 104.0]))
    np.testing.assert_array_equal(late, before)  # 4 days later every item's bucket has a zero offset
    np.testing.assert_array_equal(rank_targets(m, histories, targets), before)  # no times: no offset


def test_training_positions_carry_their_targets_times_across_windows():
    seqs = [np.arange(1, 9), np.array([3, 0, 4])]  # one longer than max_len + 1; an unknown item (0) dropped
    times = [np.arange(10.0, 18.0), np.array([1.0, 2.0, 3.0])]
    inputs, targets, ctx, when = next_item_pairs(seqs, 4, times=times)
    assert ctx is None
    for row in range(len(targets)):
        for t, w in zip(targets[row].tolist(), when[row].tolist()):
            if t == 0:
                assert w == 0.0
            elif row < 2:  # sequence 0: item k was read at day 9 + k
                assert w == 9.0 + t
            else:  # sequence 1 without its unknown item: 3 (day 1), then 4 (day 3)
                assert (t, w) == (4, 3.0)
    ts = pd.to_datetime(["1970-01-02T12:00:00Z", "2026-01-01T00:00:00Z"])
    np.testing.assert_allclose(days_since_epoch(ts), [1.5, 20454.0])
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "published_at": [ts[0], pd.NaT, ts[1]]})
    got = published_days(items, Index(["c", "a", "b"]))
    assert got[1] == 20454.0 and got[2] == 1.5 and got[3] == float("-inf") and got[0] == float("-inf")


def test_the_offset_learns_that_fresh_items_are_clicked():
    """A world where each day's click goes to one of that day's three new items, whatever the user
    read before: only the age tells the target apart, and the model learns to raise fresh items."""
    rng = np.random.default_rng(0)
    m = tiny("fused", age_logit=True, n_items=30)
    m.set_published(torch.cat([torch.tensor([float("-inf")]), torch.arange(30, dtype=torch.float) // 3]))  # 3 a day, days 0-9
    seqs, times = [], []
    for _ in range(120):
        days = np.sort(rng.choice(10, size=5, replace=False)).astype(float)
        seqs.append(1 + 3 * days.astype(int) + rng.integers(0, 3, size=5))  # a new item of each day
        times.append(days + 0.5)
    train = next_item_pairs(seqs, 6, times=times)
    valid = (torch.from_numpy(pad_left([s[:-1] for s in seqs[:40]], 6)), torch.tensor([s[-1] for s in seqs[:40]]),
             None, torch.tensor([t[-1] for t in times[:40]]))
    state = fit(m, train, valid, dataclasses.replace(CFG, epochs=8))
    bias = (m.age_bias * AGE_SCALE).detach()
    assert bias[1] > bias[0] + 1 and bias[1] > bias[5] + 1, bias  # < 1 day old over not yet published and old
    assert state.best_r10 > 0.6, state.history  # random would be 10/30; the day's 3 new items are 1 in 3


def test_exported_vectors_score_as_the_model_does_on_the_serving_day():
    from serving.export import item_vectors, user_vectors

    m = aged(similarity="cosine", temperature=0.1)
    with torch.no_grad():
        m.age_bias.copy_(torch.linspace(-0.3, 0.3, 6))
    index = Index([f"i{k}" for k in range(1, 31)])
    histories = [np.array([21, 22, 23]), np.array([3, 4])]
    day = 101.0  # 1970-04-12: items 1-10 one day old, 11-20 six days old
    served = user_vectors(m, index, [[f"i{k}" for k in h] for h in histories]) @ item_vectors(m, "1970-04-12").T
    inputs = torch.from_numpy(pad_left(histories, m.cfg.max_len))
    logits = m.users(inputs) @ m.all_item_embeddings().T / 0.1 + m.age_logit(torch.tensor([day, day]))
    np.testing.assert_allclose(served / 0.1, logits[:, 1:].detach().numpy(), atol=1e-4)
    assert not np.allclose(item_vectors(m, "1970-04-12"), item_vectors(m, "1970-04-20")), "the age column moves"


def test_items_on_their_publish_day_are_scored_from_their_text_in_both_losses():
    """fresh_from_text: a position on an item's publish day scores it as serving scores an item
    published today, [G(text part); text part], in the exact and in the sampled softmax alike."""
    m = aged(cold_gate=True, cold_half_count=0.0, id_dropout_loss="generator", id_dropout=0.0,
             fresh_from_text=True, similarity="cosine", temperature=0.1)
    m.set_item_counts(torch.ones(m.cfg.n_items + 1))  # every item seen: only the day decides
    with torch.no_grad():
        m.age_bias.copy_(torch.linspace(-0.2, 0.2, 6))
    torch.manual_seed(1)
    seq = torch.randint(1, 31, (3, 6))
    target = torch.randint(1, 31, (3, 6))
    target[0, -1] = 4  # published on day 100, read on day 100: fresh
    when = torch.full((3, 6), 100.5, dtype=torch.float64)
    when[2] = 103.0  # nothing is fresh on day 103
    exact, _ = m.loss(seq, target, when=when)
    sampled, _ = m.loss(seq, target, torch.arange(1, 31), when=when)
    torch.testing.assert_close(exact, sampled, atol=1e-5, rtol=1e-5)
    # by hand
    ids = torch.arange(31)
    emb = m.input_embeddings(ids)
    sem = emb[:, m.id_emb.embedding_dim :]
    generated = m.to_space(torch.cat([m.id_gen(sem), sem], -1))
    embedded = m.to_space(emb)
    h = m.to_space(m.encode(seq, causal=True))
    losses = []
    for b in range(3):
        for pos in range(6):
            day = torch.floor(when[b, pos])
            fresh = (m.item_published == day).unsqueeze(1)
            vectors = torch.where(fresh, generated, embedded)[1:]
            logits = vectors @ h[b, pos] / 0.1 + m.age_logit(when[b, pos : pos + 1].float())[0, 1:]
            losses.append(torch.logsumexp(logits, 0) - logits[target[b, pos] - 1])
    torch.testing.assert_close(exact, torch.stack(losses).mean(), atol=1e-5, rtol=1e-5)
    plain = aged(cold_gate=True, cold_half_count=0.0, id_dropout_loss="generator", id_dropout=0.0,
                 fresh_from_text=False, similarity="cosine", temperature=0.1)
    plain.load_state_dict(m.state_dict())
    plain.set_item_counts(torch.ones(m.cfg.n_items + 1))
    assert not torch.allclose(plain.loss(seq, target, when=when)[0], exact), "the fresh item changed the loss"


def test_a_click_just_before_midnight_is_scored_on_its_own_day():
    """Days since 1970 are about 20,000: float32 cannot tell 23:59 from the next midnight, so
    times stay float64 until they are floored to days, in evaluation as in training."""
    m = tiny("fused", age_logit=True)
    day = float(days_since_epoch(["2026-01-01T00:00:00Z"])[0])
    m.set_published(torch.full((m.cfg.n_items + 1,), day))
    with torch.no_grad():
        m.age_bias[1] = 5.0  # published that day: +50 logits to every item, the target too
        m.age_bias[2] = -5.0  # a day old: -50, so a wrong day would change nothing here ...
        m.item_published[5] = day - 1  # ... but for item 5, published the day before
    histories, targets = [np.array([21, 22, 23])], np.array([5])
    noon = rank_targets(m, histories, targets, when=np.array([day + 0.5]))
    last_second = rank_targets(m, histories, targets, when=np.array([day + 86399 / 86400]))
    np.testing.assert_array_equal(last_second, noon)
    seq = torch.from_numpy(pad_left([np.arange(1, 7)], 6))
    when = torch.full((1, 6), day + 86399 / 86400, dtype=torch.float64)
    train = m.loss(seq, torch.roll(seq, -1, 1) * (torch.arange(6) < 5), when=when)[0]
    torch.testing.assert_close(train, m.loss(seq, torch.roll(seq, -1, 1) * (torch.arange(6) < 5),
                                             when=torch.full((1, 6), day + 0.5, dtype=torch.float64))[0])
