"""The validation manifest (ARCHITECTURE contract): which ingested days training may read.

One JSON file, `data/validation/manifest.json`:

    {"days": {"2026-01-03": {"status": "passed", "checked_at": "...", "result": "path/to/result.json"},
              ...}}

Status is one of `passed`, `warning`, `quarantined`, `released`. Training reads only `passed`,
`warning` and `released` days; a day the manifest does not list (not validated yet) is not read,
and without a manifest nothing is: run `precise validate --all` first. The validate stage
(validation/validate.py) is the only writer; every write is atomic.
"""

from __future__ import annotations

import json
from pathlib import Path

from core import schema
from core.atomic import write_json
from core.errors import PreciseError
from core.settings import Settings, parse_date

STATUSES = ("passed", "warning", "quarantined", "released")
READABLE = frozenset({"passed", "warning", "released"})


def read(path: Path) -> dict[str, dict]:
    """Day -> entry of an existing manifest file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))["days"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise PreciseError(f"{path}: not a valid validation manifest ({exc})") from None


def read_or_empty(path: Path) -> dict[str, dict]:
    return read(path) if Path(path).is_file() else {}


def write(path: Path, entries: dict[str, dict]) -> None:
    write_json(path, {"days": dict(sorted(entries.items()))})


def good_days(settings: Settings, up_to: str | None = None) -> list[str]:
    """Ingested days that training may read, up to and including `up_to`, sorted."""
    if not settings.paths.manifest.is_file():
        raise PreciseError(
            f"no validation manifest at {settings.paths.manifest}: run `precise validate --all` first"
        )
    entries = read(settings.paths.manifest)
    days = [d for d in schema.list_days(settings.paths.events) if entries.get(d, {}).get("status") in READABLE]
    return [d for d in days if up_to is None or d <= up_to]


def resolve_day(settings: Settings, value: str | None = None) -> str:
    """The data day a stage builds: `value`, else `run.date`; `latest` is the latest ingested day."""
    value = value or settings.run_date
    if value != "latest":
        return parse_date(value).isoformat()
    days = schema.list_days(settings.paths.events)
    if not days:
        raise PreciseError(f"no ingested days under {settings.paths.events}; run `precise ingest --all` first")
    return days[-1]
