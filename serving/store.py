"""The Feast store of precise, built from settings: its config (the online store chosen in
serving/state.py), the FeatureStore over it, and the declarative definitions module. Used by
publish (serving/publish.py) and the offline history (serving/historical.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

from core.atomic import atomic_path
from core.settings import Settings
from serving.state import feast_dir, online_store


def repo_config(settings: Settings) -> dict:
    store, online = online_store(settings)
    registry = {"path": str(feast_dir(settings, store) / "registry.db"),
                "registry_store_type": "serving.registry_store.AtomicFileRegistryStore"}  # atomic rewrites
    return {"project": "precise", "provider": "local", "registry": registry,
            "online_store": online, "offline_store": {"type": "file"}, "entity_key_serialization_version": 3}


def feature_store(settings: Settings):
    """A Feast FeatureStore over this project's registry and the configured online store."""
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    raw = repo_config(settings)
    folder = Path(raw["registry"]["path"]).parent
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "feature_store.yaml") as tmp:  # for `feast serve` and the Feast CLI
        Path(tmp).write_text(yaml.safe_dump(raw, sort_keys=False))
    return FeatureStore(config=RepoConfig(repo_path=str(settings.paths.root / "features"), **raw))


def definitions(settings: Settings):
    """The declarative module features/definitions.py (loaded from its file)."""
    path = settings.paths.root / "features" / "definitions.py"
    if not path.is_file():
        path = Path(__file__).resolve().parents[1] / "features" / "definitions.py"
    spec = importlib.util.spec_from_file_location("precise_feast_definitions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
