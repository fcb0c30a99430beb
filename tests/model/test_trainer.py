"""Training: the loss falls, alternate training freezes then unfreezes tokens, a killed run resumes."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from training.prep.tensors import next_item_pairs, pad_left
from training.trainer import AlternateConfig, TrainConfig, fit
from tests.model.test_model import tiny


def toy_data(n_users=60, n_items=30, seed=0):
    """Users walk through items in order (item k is followed by k+1): learnable next-item signal."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n_users):
        start, length = rng.integers(1, n_items - 8), rng.integers(4, 9)
        seqs.append(np.arange(start, start + length))
    train = next_item_pairs([s[:-1] for s in seqs], 6)
    valid = (torch.from_numpy(pad_left([s[:-1] for s in seqs], 6)), torch.tensor([s[-1] for s in seqs]))
    return train, valid


CFG = TrainConfig(batch_size=16, lr=0.01, epochs=6, min_steps=0, warmup_steps=2, checkpoint_every=5, patience=10,
                  alternate=AlternateConfig(enabled=False))


def test_loss_decreases_and_the_model_learns():
    train, valid = toy_data()
    model = tiny("fused").train()
    state = fit(model, train, valid, CFG)
    first, last = state.history[0], state.history[-1]
    assert last["val_loss"] < first["val_loss"]
    assert state.best_r10 > 0.3, state.history  # random is 10/30


def test_the_epoch_metrics_carry_the_id_side_loss_when_it_is_on():
    train, valid = toy_data()
    off = fit(tiny("fused").train(), train, valid, dataclasses.replace(CFG, epochs=1))
    on = fit(tiny("fused", id_aux_weight=1.0).train(), train, valid, dataclasses.replace(CFG, epochs=2))
    assert "id_aux_loss" not in off.history[0]
    for m in on.history:  # the logged loss is the fused loss + the ID-side one (+ MoE balancing)
        assert 0 < m["id_aux_loss"] < m["loss"], m


def test_a_rising_validation_loss_stops_a_run_before_min_steps_only_with_loss_patience():
    """min_steps holds off R@10's early stopping; loss_patience evaluations without a lower val_loss
    end the run anyway. Valid targets run backwards (k -> k-1) while training learns k -> k+1, so
    the better the model fits, the higher its validation loss."""
    train, (valid_in, valid_out) = toy_data()
    backwards = (valid_in, torch.clamp(valid_in[:, -1] - 1, min=1))
    cfg = dataclasses.replace(CFG, epochs=1, min_steps=60, patience=1)  # 4 steps per epoch: 15 epochs
    full = fit(tiny("fused").train(), train, backwards, dataclasses.replace(cfg, loss_patience=0))
    stopped = fit(tiny("fused").train(), train, backwards, dataclasses.replace(cfg, loss_patience=2))
    assert len(full.history) == 15 and full.step == 60
    losses = [m["val_loss"] for m in stopped.history]
    assert len(stopped.history) < 15 and stopped.step < 60, losses
    lowest = losses.index(min(losses))
    assert len(losses) == lowest + 3, losses  # the two evaluations after the lowest loss, no more


def test_alternate_training_freezes_tokens_until_the_switch():
    train, valid = toy_data()
    model = tiny("fused").train()
    before = model.tok_emb.weight.detach().clone()
    cfg = dataclasses.replace(CFG, epochs=3, alternate=AlternateConfig(enabled=True, max_phase1_steps=8,
                                                                      max_phase1_fraction=1.0))
    state = fit(model, train, valid, cfg, stop_after_steps=7)
    assert state.phase == 1 and torch.equal(model.tok_emb.weight, before), "tokens frozen in phase 1"
    model2 = tiny("fused").train()
    state = fit(model2, train, valid, cfg, stop_after_steps=10)  # stopped before best weights are restored
    assert state.switched_at == 8 and state.phase == 2
    assert not torch.equal(model2.tok_emb.weight, before), "tokens train after the switch"
    state = fit(tiny("fused").train(), train, valid, cfg)
    assert state.switched_at == 8 and [m["phase"] for m in state.history][-1] == 2
    relative = fit(tiny("fused").train(), train, valid, dataclasses.replace(
        cfg, alternate=AlternateConfig(enabled=True, max_phase1_steps=1000, max_phase1_fraction=0.5)))
    assert relative.switched_at == 6, "at the latest half-way through the run's 12 steps"


def test_a_killed_run_resumes_to_the_same_result(tmp_path):
    train, valid = toy_data()
    torch.manual_seed(1)
    straight = tiny("fused").train()
    s1 = fit(straight, train, valid, CFG)
    torch.manual_seed(1)
    killed = tiny("fused").train()
    fit(killed, train, valid, CFG, run_dir=tmp_path / "run", stop_after_steps=13)  # dies mid-epoch
    state_file = tmp_path / "run" / "state.json"  # as an older version wrote it: a retired field too
    meta = json.loads(state_file.read_text())
    meta["state"]["start_r10"] = None
    state_file.write_text(json.dumps(meta))
    torch.manual_seed(1)
    resumed = tiny("fused").train()  # a new process: fresh weights, then the checkpoint
    s2 = fit(resumed, train, valid, CFG, run_dir=tmp_path / "run")
    assert s2.step == s1.step
    # Stated tolerance: validation metrics within 1e-4 (the same batches replay; float order may differ).
    for a, b in zip(s1.history[2:], s2.history[2:]):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-4)
        assert a["R@10"] == pytest.approx(b["R@10"], abs=1e-4)


def test_a_run_killed_after_its_best_epoch_resumes_and_ends_on_that_epochs_weights(tmp_path):
    """The best weights are kept on disk beside the checkpoint: a run killed after its best epoch
    must, once resumed in a new process, end on that epoch's weights, not on its last ones."""
    train, valid = toy_data()
    torch.manual_seed(1)
    straight = tiny("fused").train()
    s1 = fit(straight, train, valid, CFG)
    assert s1.best_epoch < len(s1.history) - 1, s1.history  # precondition: the last epoch is not the best
    steps_per_epoch = s1.step // len(s1.history)
    torch.manual_seed(1)
    killed = tiny("fused").train()
    fit(killed, train, valid, CFG, run_dir=tmp_path / "run", stop_after_steps=(s1.best_epoch + 1) * steps_per_epoch + 2)
    torch.manual_seed(1)
    resumed = tiny("fused").train()
    s2 = fit(resumed, train, valid, CFG, run_dir=tmp_path / "run")
    assert s2.best_epoch == s1.best_epoch
    best, last = straight.state_dict(), killed.state_dict()  # last: mid-run weights, what must not be kept
    ended = resumed.state_dict()
    for k, v in ended.items():
        assert torch.allclose(v, best[k], atol=1e-5), f"{k}: not the best epoch's weights"
    assert any(not torch.allclose(v, last[k], atol=1e-5) for k, v in ended.items())


def test_cprec_curriculum_feeds_per_scene_batches_until_the_annealing_then_mixed():
    """CPRec: every batch before the WSD schedule's annealing step comes from the per-scene pairs,
    every batch from it on from the mixed ones (checked on the batches the model receives)."""
    from training.prep.tensors import per_scene

    rng = np.random.default_rng(0)
    scene_of = np.r_[0, np.where(np.arange(1, 31) <= 15, 1, 2)]  # items 1-15 scene 1, 16-30 scene 2
    mixed = [rng.integers(1, 31, size=int(rng.integers(4, 9))) for _ in range(60)]
    domain_seqs = per_scene(mixed, scene_of)
    assert all(len(set(scene_of[s])) == 1 for s in domain_seqs) and sum(map(len, domain_seqs)) == sum(map(len, mixed))
    train, domain = next_item_pairs(mixed, 6), next_item_pairs(domain_seqs, 6)
    _, valid = toy_data()
    cfg = dataclasses.replace(CFG, epochs=4, schedule="wsd", anneal_fraction=0.25, curriculum="cprec", patience=1)
    model = tiny("id").train()
    seen = []
    forward = model.forward

    def recording(seq, target, *rest):
        seen.append(seq.clone())
        return forward(seq, target, *rest)

    model.forward = recording
    state = fit(model, train, valid, cfg, domain=domain)
    total = state.step
    anneal_at = int(total * (1 - cfg.anneal_fraction))
    assert total == 4 * int(np.ceil(len(train[0]) / cfg.batch_size)), "patience never stops a run before its annealing"
    mixed_rows = {tuple(r.tolist()) for r in train[0]}
    domain_rows = {tuple(r.tolist()) for r in domain[0]}
    for step, batch in enumerate(seen):
        rows = {tuple(r.tolist()) for r in batch}
        if step < anneal_at:
            assert rows <= domain_rows and all(len(set(scene_of[r[r > 0]])) <= 1 for r in batch.numpy()), step
        else:
            assert rows <= mixed_rows, step
    assert any(len(set(scene_of[r[r > 0]])) == 2 for r in torch.cat(seen[anneal_at:]).numpy()), "mixed rows span scenes"


def test_a_corrupt_checkpoint_is_refused_by_name_and_skipped_for_an_older_one(tmp_path, caplog):
    from training.trainer import CorruptCheckpoint, load_checkpoint, newest_intact, save_model

    model = tiny("fused")
    old, new, cut = tmp_path / "date=2026-01-01", tmp_path / "date=2026-01-02", tmp_path / "date=2026-01-03"
    for folder in (old, new, cut):
        save_model(folder, model, {"model": "tiny"})
    meta, weights = load_checkpoint(new)
    assert meta["model"] == "tiny" and len(meta["weights_sha256"]) == 64
    assert set(weights) == set(model.state_dict())
    blob = bytearray((new / "model.safetensors").read_bytes())
    blob[-5] ^= 0xFF  # one flipped byte in the tensor data: still a readable file, other numbers
    (new / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(CorruptCheckpoint, match=r"date=2026-01-02 is corrupt: model.safetensors does not match"):
        load_checkpoint(new)
    (cut / "model.safetensors").write_bytes((cut / "model.safetensors").read_bytes()[:100])  # a write cut short
    state = json.loads((cut / "state.json").read_text())
    (cut / "state.json").write_text(json.dumps({k: v for k, v in state.items() if k != "weights_sha256"}))
    with pytest.raises(CorruptCheckpoint, match="date=2026-01-03 cannot be read"):  # no hash: caught by reading
        load_checkpoint(cut)
    assert newest_intact([old, new, cut]) == old
    short = tmp_path / "date=2026-01-04"  # no hash, header whole, the last tensor's bytes missing
    save_model(short, model, {"model": "tiny"})
    state = json.loads((short / "state.json").read_text())
    (short / "state.json").write_text(json.dumps({k: v for k, v in state.items() if k != "weights_sha256"}))
    (short / "model.safetensors").write_bytes((short / "model.safetensors").read_bytes()[:-8])
    with pytest.raises(CorruptCheckpoint, match="date=2026-01-04 cannot be read"):
        load_checkpoint(short)
    assert newest_intact([old, short]) == old
    assert "date=2026-01-03" in caplog.text and "date=2026-01-02" in caplog.text
    assert newest_intact([new, cut]) is None
