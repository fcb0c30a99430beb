"""Shared fixtures. Tests are offline and small; the ones that need ../shared/datasets or a system
service skip with a reason outside CI and fail when CI=true (a missing dependency in CI is a bug)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import common
from benchmarks.common import free_port, wait_for  # noqa: F401 (shared with the benchmarks)
from core.settings import Settings

REPO = Path(__file__).resolve().parents[1]

# `make test` runs one pytest-xdist worker per core (`-n auto --dist loadfile`): each worker, and
# every process it starts, then computes on one thread, so that the workers share the cores
# instead of oversubscribing them. A plain `pytest` run keeps torch's default.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    # A worker's __main__ (execnet's) has no file; pyspark.sql.connect, which Great Expectations
    # imports, takes such a process for a doctest run and calls sys.exit(0) when its optional
    # gRPC packages are absent (pyspark/sql/connect/utils.py check_dependencies).
    main = sys.modules["__main__"]
    if getattr(main, "__spec__", None) is None and not hasattr(main, "__file__"):
        main.__file__ = "<pytest-xdist worker>"

SHARED_DATASETS = REPO.parent / "shared" / "datasets"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Skip outside CI when a prerequisite is missing; fail in CI."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture
def shared_datasets() -> Path:
    need(SHARED_DATASETS.is_dir(), f"../shared/datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


# A tiny synthetic world: seconds to generate, still four scenes and every property.
TINY_SYNTH = {
    "days": 4,
    "users": 120,
    "items_per_scene": 200,
    "new_items_per_scene_per_day": 10,
    "topics": 8,
}


# A tiny model and a one-epoch run for the pipeline tests (each file adds what it tests).
TINY_MODEL = {"id_dim": 16, "sem_dim": 16, "experts": 2, "top_k": 1, "layers": 1, "heads": 2, "max_len": 12}
TINY_TRAIN = {"epochs": 1, "min_steps": 0, "batch_size": 32, "warmup_steps": 2, "checkpoint_every": 0}


def write_params(folder: Path, **sections) -> Path:
    """A params.yaml in `folder`: the repo's own with the tiny world, sections updated from `sections`."""
    return common.write_params(folder, synth=TINY_SYNTH | sections.pop("synth", {}), **sections)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings rooted in an empty temporary project folder (no DVC)."""
    return Settings.load(write_params(tmp_path))


def run_cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real `precise` command in a subprocess."""
    proc = subprocess.run(
        [sys.executable, "-m", "precise.cli", *args], cwd=cwd, capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"precise {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def git_dvc_repo(folder: Path, remote: Path) -> None:
    """Make `folder` a git + DVC repository whose default remote is the local folder `remote`."""
    need(shutil.which("git") is not None, "git is not installed")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True, env=env)
    for args in (["init", "-q"], ["config", "core.analytics", "false"], ["remote", "add", "-d", "local", str(remote)]):
        subprocess.run([sys.executable, "-m", "dvc", *args], cwd=folder, check=True, capture_output=True)


def ingested_world(root: Path, max_tokens: int = 8, before_ingest=None, **sections) -> Settings:
    """A tiny project in `root`: params with the tiny language model and `sections`, the synthetic
    world generated, ingested and validated (`before_ingest(settings)` runs first, if given)."""
    from ingest import ingest, synth
    from validation import validate

    s = Settings.load(write_params(
        root, encode={"model": str(tiny_qwen2(root / "tiny-qwen2")), "max_tokens": max_tokens, "batch_size": 128},
        **sections))
    if before_ingest is not None:
        before_ingest(s)
    synth.run(s.synth, s.paths.landing)
    ingest.run(s)
    validate.run_all(s)
    return s


def tiny_qwen2(folder: Path) -> Path:
    """A tiny, randomly initialised Qwen2-style decoder and a BPE tokenizer trained on the
    synthetic world's words, saved as a Hugging Face model folder (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2Model

    from ingest.synth import GENERIC_WORDS, SCENE_NOUNS, TOPIC_WORDS

    words = [w for topic in TOPIC_WORDS for w in topic] + list(GENERIC_WORDS)
    words += [n for nouns in SCENE_NOUNS.values() for n in nouns]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator([" ".join(words)] * 5, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|endoftext|>")
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    import torch

    torch.manual_seed(0)  # deterministic weights
    config = Qwen2Config(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    Qwen2Model(config).save_pretrained(folder)
    return folder


def pytest_collection_modifyitems(config, items):
    """The longest files first (`slow(seconds=N)`, about how long the test takes alone): `make
    test`'s xdist workers take whole files in this order, so the DVC pipeline test starts at once
    beside the short tests instead of last with the other worker idle."""
    def seconds(item) -> float:
        marker = item.get_closest_marker("slow")
        return marker.kwargs.get("seconds", 1.0) if marker is not None else 0.0

    longest: dict[str, float] = {}
    for item in items:
        longest[str(item.path)] = max(longest.get(str(item.path), 0.0), seconds(item))
    items.sort(key=lambda item: -longest[str(item.path)])  # stable: files and tests keep their order otherwise

