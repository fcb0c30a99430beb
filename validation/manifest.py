"""The validation manifest (ARCHITECTURE contract): which ingested days training may read.

One JSON file, `data/validation/manifest.json`:

    {"days": {"2026-01-03": {"status": "passed", "checked_at": "...", "result": "path/to/result.json"},
              ...}}

Status is one of `passed`, `warning`, `quarantined`, `released`. Training reads only `passed`,
`warning` and `released` days. Until the validate stage has written a manifest, every ingested day
is readable (there is no gate yet); once a manifest exists, a day it does not list is not.
"""

from __future__ import annotations

import json
from pathlib import Path

from precise import schema
from precise.errors import PreciseError
from precise.settings import Settings, parse_date

STATUSES = ("passed", "warning", "quarantined", "released")
READABLE = frozenset({"passed", "warning", "released"})


def read(path: Path) -> dict[str, dict]:
    """Day -> entry of an existing manifest file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))["days"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise PreciseError(f"{path}: not a valid validation manifest ({exc})") from None


def good_days(settings: Settings, up_to: str | None = None) -> list[str]:
    """Ingested days that training may read, up to and including `up_to`, sorted."""
    days = schema.list_days(settings.paths.events)
    if settings.paths.manifest.is_file():
        entries = read(settings.paths.manifest)
        days = [d for d in days if entries.get(d, {}).get("status") in READABLE]
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
