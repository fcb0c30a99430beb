"""What a larger language model costs at the encode stage (issue 30, item 3): each model encodes
one dataset's whole catalog into an empty cache, timed, on this machine's threads.

    python -m benchmarks.text_models --dataset movielens --models bundled-minilm var/models/all-mpnet-base-v2
    python -m benchmarks.text_models --dataset food-kitchen --models bundled-minilm var/models/all-mpnet-base-v2

A model is `encode.model`'s value: `bundled-minilm` or a Hugging Face model folder (relative to the
repository root or absolute). Prints, per model, the seconds, items per second, the ratio to the
first model's seconds, its width and the token ids the catalog uses (the size of the trainable
token table, `training/prep/text.py`). The cache is a temporary folder, so every text goes through
the model (a daily run encodes only new or changed texts: this is the one-off cost). Whether the
model's text ranks better is measured by `benchmarks.universal_results --encoder MODEL`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks import datasets
from benchmarks.universal_results import with_encoder
from core.settings import Settings
from training.prep import text

REPO = Path(__file__).resolve().parents[1]


def encode_cost(settings: Settings, model: str, catalog, scratch: Path) -> dict:
    """`training.prep.text.run` of one model on `catalog` into an empty cache under `scratch`."""
    slug = Path(model).name
    return text.run(with_encoder(settings, model).encode, catalog, REPO, scratch / "cache", scratch / f"text-{slug}", scratch / f"encode-{slug}.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens", choices=datasets.DATASETS)
    parser.add_argument("--models", nargs="+", default=[text.BUNDLED], metavar="MODEL")
    args = parser.parse_args()
    settings = Settings.load(REPO / "params.yaml")
    catalog = datasets.load(args.dataset, settings.synth)[0]
    print(f"{args.dataset}: {len(catalog):,} items, max_tokens {settings.encode.max_tokens}, "
          f"batch {settings.encode.batch_size}")
    print("| model | seconds | items/s | x the first | width | token ids in use |")
    print("| --- | --- | --- | --- | --- | --- |")
    first = None
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            out = encode_cost(settings, model, catalog, Path(tmp))
            first = first or out["seconds"]
            print(f"| {out['model']} | {out['seconds']:.0f} | {out['items'] / out['seconds']:.0f} | "
                  f"{out['seconds'] / first:.1f} | {out['hidden_size']} | {out['tokens_in_use']:,} |", flush=True)


if __name__ == "__main__":
    main()
