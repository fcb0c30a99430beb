"""Diagnostics of what the embeddings learned (PRECISE IV-E.2, Figure 4b).

Alternate training claims that freezing the token embeddings first makes the ID embeddings
really learn: items that end up neighbours by their fused embedding should also be similar by
their ID embedding alone, more than random pairs. `neighbour_id_similarity` measures it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.models.precise import Precise


@torch.no_grad()
def neighbour_id_similarity(model: Precise, sample: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    """For `sample` items: the ID-embedding cosine to their nearest neighbour by fused embedding,
    and, as the reference, the ID cosine of random pairs. Returns both arrays."""
    if model.id_emb is None:
        raise ValueError("the model has no ID embeddings")
    model.eval()
    n = model.cfg.n_items
    rng = np.random.default_rng(seed)
    items = torch.from_numpy(rng.choice(np.arange(1, n + 1), size=min(sample, n), replace=False))
    fused = F.normalize(model.all_item_embeddings()[1:], dim=-1)  # (N, D)
    ids = F.normalize(model.id_emb.weight[1:], dim=-1)  # (N, id)
    sims = fused[items - 1] @ fused.T  # (S, N)
    sims[torch.arange(len(items)), items - 1] = -2.0  # not itself
    nearest = sims.argmax(1)
    neighbour = (ids[items - 1] * ids[nearest]).sum(-1)
    other = torch.from_numpy(rng.integers(0, n, size=len(items)))
    random = (ids[items - 1] * ids[other]).sum(-1)
    return {"neighbours": neighbour.numpy(), "random": random.numpy()}


def summary(values: dict[str, np.ndarray]) -> dict[str, float]:
    return {f"{k}_{stat}": float(fn(v)) for k, v in values.items()
            for stat, fn in (("mean", np.mean), ("median", np.median))}


def plot(curves: dict[str, np.ndarray], path: Path, title: str) -> None:
    """Histograms of ID cosine similarity, one per label, to a PNG (a note when there are none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(-1, 1, 41)
    for label, values in curves.items():
        ax.hist(values, bins=bins, histtype="step", density=True, label=f"{label} (mean {np.mean(values):.2f})")
    if curves:
        ax.legend(fontsize=8)
    ax.set_xlabel("cosine similarity of ID embeddings")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    if not curves:
        ax.text(0.5, 0.5, "not applicable", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def plot_coverage(days: list[str], curves: dict[str, list[float]], path: Path, title: str) -> None:
    """Figure 4a: pre-trained coverage per day, one line per warm-up cadence, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, values in curves.items():
        ax.plot(range(len(days)), values, marker="o", ms=3, label=label)
    ax.set_xticks(range(len(days)), [d[5:] for d in days], rotation=60, fontsize=7)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("pre-trained coverage")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
