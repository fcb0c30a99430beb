"""Figure 4b diagnostic: neighbours by fused embedding vs random pairs, by ID similarity."""

import torch

from training import diagnostics
from tests.model.test_model import tiny


def test_neighbours_by_fused_embedding_share_id_similarity(tmp_path):
    model = tiny("fused", n_items=200)
    with torch.no_grad():  # silence the text side: fused neighbours are then ID neighbours
        model.tok_proj.weight.zero_()
        model.tok_proj.bias.zero_()
        for e in model.pool.experts:
            e.value.bias.zero_()
    values = diagnostics.neighbour_id_similarity(model, sample=100)
    assert values["neighbours"].shape == values["random"].shape == (100,)
    s = diagnostics.summary(values)
    assert s["neighbours_mean"] > s["random_mean"] + 0.3
    diagnostics.plot({"neighbours": values["neighbours"], "random": values["random"]}, tmp_path / "f.png", "t")
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
