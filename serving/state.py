"""Where the publish stage keeps its state, readable without Feast: the online store chosen
(params or `PRECISE_ONLINE_STORE`), its folder `var/feast/<store>/`, and `published.json` (the
published model versions, their files, and which version of each model serves). serving/publish.py
writes it; recall/index.py and `precise status` read it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from core.errors import PreciseError
from core.settings import Settings

ENV_STORE = "PRECISE_ONLINE_STORE"


def online_store(settings: Settings) -> tuple[str, dict]:
    """(store name, Feast online_store config) from params, overridden by PRECISE_ONLINE_STORE."""
    choice = os.environ.get(ENV_STORE, settings.publish.online_store)
    if choice.startswith("redis"):
        address = choice.split("://", 1)[1] if "://" in choice else settings.publish.redis
        return "redis", {"type": "redis", "connection_string": address}
    if choice != "sqlite":
        raise PreciseError(f"unknown online store {choice!r}: sqlite, redis or redis://host:port")
    return "sqlite", {"type": "sqlite", "path": str(feast_dir(settings, "sqlite") / "online.db")}


def feast_dir(settings: Settings, store: str) -> Path:
    return settings.paths.var / "feast" / store


def state_path(settings: Settings) -> Path:
    return feast_dir(settings, online_store(settings)[0]) / "published.json"


def read_state(settings: Settings) -> dict:
    path = state_path(settings)
    if path.is_file():
        return json.loads(path.read_text())
    return {"versions": {}, "recent": {}, "serving": {}, "feature_service": settings.publish.feature_service}
