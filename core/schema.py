"""The data contract (ARCHITECTURE 'contracts'; documented in docs/data.md).

Events, one Parquet partition per UTC data day, `data/events/date=D/part-0.parquet`:

    user_id  string, not null
    item_id  string, not null
    scene    string, not null      e.g. article, video
    action   string, not null      e.g. click, share
    ts       timestamp[us, UTC], not null

Item catalog, daily deltas, `data/catalog/date=D/part-0.parquet` (items published or changed on D):

    item_id       string, not null
    scene         string, not null
    title         string, not null (may be empty)
    text          string, nullable
    published_at  timestamp[us, UTC], not null

The catalog as of day D is every delta up to D, the latest row of each item winning.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import PreciseError

TS = pa.timestamp("us", tz="UTC")

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("scene", pa.string(), nullable=False),
        pa.field("action", pa.string(), nullable=False),
        pa.field("ts", TS, nullable=False),
    ]
)

CATALOG_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("scene", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=True),
        pa.field("published_at", TS, nullable=False),
    ]
)

# Required input columns of a drop; `text` is the only optional one.
EVENT_COLUMNS = tuple(EVENTS_SCHEMA.names)
CATALOG_COLUMNS = tuple(CATALOG_SCHEMA.names)
CATALOG_REQUIRED = ("item_id", "scene", "title", "published_at")

# data/sequences/{all_scene,task=<name>}.parquet (training/prep/sequences.py): one row per user.
SEQUENCES_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string()),
        pa.field("item_ids", pa.list_(pa.string())),
        pa.field("scenes", pa.list_(pa.string())),
        pa.field("actions", pa.list_(pa.string())),
        pa.field("ts", pa.list_(TS)),
        pa.field("n_total", pa.int64()),
        pa.field("last_day", pa.string()),
    ]
)

PART_FILE = "part-0.parquet"
_DAY_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


def partition_dir(table_root: Path, day: str) -> Path:
    return Path(table_root) / f"date={day}"


def list_days(table_root: Path, marker: str = PART_FILE) -> list[str]:
    """Days with a complete partition (a `date=D/` folder holding `marker`) under `table_root`,
    sorted. Temporary folders are skipped."""
    root = Path(table_root)
    if not root.is_dir():
        return []
    days = []
    for child in root.iterdir():
        m = _DAY_DIR.match(child.name)
        if m and child.is_dir() and (child / marker).is_file():
            days.append(m.group(1))
    return sorted(days)


def write_partition(df: pd.DataFrame, schema: pa.Schema, folder: Path) -> None:
    """Write one contract partition into `folder` (which the caller swaps in atomically)."""
    table = pa.Table.from_pandas(df[list(schema.names)], schema=schema, preserve_index=False)
    pq.write_table(table, Path(folder) / PART_FILE, compression="zstd")


def partition_file(table_root: Path, day: str) -> Path:
    """The Parquet file of a day's partition, or a readable error when it is not there."""
    path = partition_dir(table_root, day) / PART_FILE
    if not path.is_file():
        raise PreciseError(f"no partition for {day} at {path}; ingest it first")
    return path


def read_days_table(table_root: Path, days: Iterable[str], schema: pa.Schema,
                    where: Callable[[pa.Table], pa.Array] | None = None) -> pa.Table:
    """The partitions of `days` (each must exist) as one Arrow table with a string `date` column,
    in day order and file order within a day; `where(day_table)`, a boolean mask, keeps only some
    rows of each day before the days are put together."""
    tables = []
    for day in days:
        table = pq.read_table(partition_file(table_root, day), schema=schema)
        if where is not None:
            table = table.filter(where(table))
        tables.append(table.append_column("date", pa.array([day] * table.num_rows, type=pa.string())))
    if not tables:
        return schema.empty_table().append_column("date", pa.array([], type=pa.string()))
    return pa.concat_tables(tables)


def read_days(table_root: Path, days: Iterable[str], schema: pa.Schema) -> pd.DataFrame:
    """Concatenate the partitions of `days` (each must exist) into one frame with a `date` column."""
    return read_days_table(table_root, days, schema).to_pandas()


def read_events(data_root: Path, days: Iterable[str]) -> pd.DataFrame:
    return read_days(Path(data_root) / "events", days, EVENTS_SCHEMA)


def read_catalog(data_root: Path, as_of: str, days: Iterable[str] | None = None) -> pd.DataFrame:
    """The item catalog as of day `as_of`: all deltas up to it (or only those of `days`), the
    latest row per item winning."""
    root = Path(data_root) / "catalog"
    allowed = None if days is None else set(days)
    days = [d for d in list_days(root) if d <= as_of and (allowed is None or d in allowed)]
    deltas = read_days(root, days, CATALOG_SCHEMA)
    # Deltas are in day order and rows in file order, so `last` is the latest version.
    latest = deltas.drop_duplicates("item_id", keep="last")
    return latest.sort_values("item_id", kind="stable").reset_index(drop=True)


def day_bounds(day: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) of a UTC data day."""
    start = pd.Timestamp(dt.date.fromisoformat(day), tz="UTC")
    return start, start + pd.Timedelta(days=1)


def dvc_file(table_root: Path, day: str) -> Path:
    """The `.dvc` file `dvc add` writes beside a day's partition (`<table>/date=D.dvc`)."""
    return Path(f"{partition_dir(table_root, day)}.dvc")


def day_data_version(table_root: Path, day: str) -> str | None:
    """A day's data version (the md5 of its partition's `.dvc` file); None when not versioned."""
    path = dvc_file(table_root, day)
    return data_version(path) if path.is_file() else None


def data_version(dvc_file: Path) -> str:
    """The md5 a `.dvc` file records (for a partition folder: the md5 of its listing, ending
    `.dir`): a day's data version, the same string in the manifest, MLflow and the registry."""
    import yaml

    meta = yaml.safe_load(Path(dvc_file).read_text(encoding="utf-8"))
    return str(meta["outs"][0]["md5"])


def read_sequences(folder: Path, name: str = "all_scene") -> pd.DataFrame:
    """One sequence file of the sequences stage (`all_scene` or `task=<name>`) from its folder."""
    path = Path(folder) / f"{name}.parquet"
    if not path.is_file():
        raise PreciseError(f"no sequences at {path}; run `precise sequences` first")
    return pq.read_table(path).to_pandas()
