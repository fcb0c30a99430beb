"""Reading raw drop files (CSV or Parquet) without losing a row, and parsing their timestamps.

Raw files come from outside and may hold anything: undecodable bytes, malformed CSV lines,
timestamps in several formats. Readers return every row as strings plus what went wrong with
each, so that ingest can reject rows with a reason instead of failing or dropping them silently.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.errors import PreciseError

SUFFIXES = (".parquet", ".csv", ".csv.gz")

# Leading bytes of compressed or archived files: gzip is read transparently, the rest refused
# with a clear message (a CSV reader would otherwise fail deep inside on "binary" lines).
_MAGIC = {b"\x1f\x8b": "gzip", b"PK\x03\x04": "zip", b"BZh": "bzip2", b"\xfd7zXZ": "xz",
          b"(\xb5/\xfd": "zstd", b"PAR1": "parquet"}


@dataclass
class RawFrame:
    """Rows of one raw file.

    frame:     one column per input column, values as `str` (or None), in file order
    bad_bytes: (N,) bool, True where some value held bytes that are not UTF-8
    malformed: rows the CSV parser could not split into the header's columns: (line, text)
    """

    frame: pd.DataFrame
    bad_bytes: np.ndarray
    malformed: list[tuple[int, str]] = field(default_factory=list)


def find_file(folder: Path, stem: str) -> Path | None:
    """`folder/stem.parquet`, `stem.csv` or `stem.csv.gz`, the first that exists."""
    for suffix in SUFFIXES:
        path = Path(folder) / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def sniff(path: Path) -> str | None:
    """The format the file's first bytes announce (gzip, zip, bzip2, xz, zstd, parquet), or None."""
    with open(path, "rb") as f:
        head = f.read(8)
    return next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)


def read_raw(path: Path) -> RawFrame:
    """Every row of a .csv (plain or gzip-compressed, whatever its name) or .parquet file, as text."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise PreciseError(f"{path}: the file is empty")
    kind = sniff(path)
    if kind in ("zip", "bzip2", "xz", "zstd"):
        raise PreciseError(f"{path}: this is a {kind} archive, not a CSV or Parquet file; "
                           "decompress it first (gzip-compressed CSV is read as it is)")
    name = path.name.lower()
    try:
        if kind == "parquet" or name.endswith(".parquet"):
            if kind != "parquet":
                raise PreciseError(f"{path}: not a Parquet file (no PAR1 header)")
            return _read_parquet(path)
        if name.endswith((".csv", ".csv.gz", ".gz")):
            return _read_csv(path, compression="gzip" if kind == "gzip" else None)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError, csv.Error, EOFError) as exc:
        reason = "".join(c if c.isprintable() and c != "\ufffd" else "?" for c in str(exc))[:300]
        raise PreciseError(f"{path}: cannot read the file: {reason}") from None
    raise PreciseError(f"{path}: unsupported file type (expected .csv, .csv.gz or .parquet)")


def _decode_binary(column: pa.ChunkedArray) -> tuple[pd.Series, np.ndarray]:
    """Binary column -> str Series; invalid UTF-8 kept visible as \\xNN and flagged."""
    try:
        return column.cast(pa.string()).to_pandas(), np.zeros(len(column), dtype=bool)
    except pa.ArrowInvalid:
        values = column.to_pylist()
        bad = np.zeros(len(values), dtype=bool)
        out = []
        for i, v in enumerate(values):
            if v is None:
                out.append(None)
                continue
            try:
                out.append(v.decode("utf-8"))
            except UnicodeDecodeError:
                bad[i] = True
                out.append(v.decode("utf-8", errors="backslashreplace"))
        return pd.Series(out, dtype=object), bad


def _read_parquet(path: Path) -> RawFrame:
    table = pq.read_table(path)
    bad = np.zeros(table.num_rows, dtype=bool)
    columns = {}
    for name in table.column_names:
        col = table[name]
        if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
            columns[name], b = _decode_binary(col)
            bad |= b
        else:
            columns[name] = col.to_pandas()
    return RawFrame(pd.DataFrame(columns), bad)


def _open(path: Path, compression: str | None):
    source = pa.OSFile(str(path), "rb")
    return pa.CompressedInputStream(source, compression) if compression else source


def _read_csv(path: Path, compression: str | None = None) -> RawFrame:
    with _open(path, compression) as f:
        first = f.read(1 << 16).split(b"\n", 1)[0].decode("utf-8", errors="replace")
    header = next(csv.reader([first.rstrip("\r")]), [])
    if not header or not any(h.strip() for h in header):
        raise PreciseError(f"{path}: no header line")
    malformed: list[tuple[int, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        malformed.append((row.number or -1, row.text))
        return "skip"

    # pyarrow decodes a malformed row's text as UTF-8 before calling the handler; when that fails
    # it prints the exception and stops with a parse error, which read_raw turns into an `error:`.
    hook, sys.unraisablehook = sys.unraisablehook, lambda _: None
    try:
        table = pacsv.read_csv(
            _open(path, compression),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types={h: pa.binary() for h in header}),
        )
    finally:
        sys.unraisablehook = hook
    bad = np.zeros(table.num_rows, dtype=bool)
    columns = {}
    for name in table.column_names:
        columns[name], b = _decode_binary(table[name])
        bad |= b
    return RawFrame(pd.DataFrame(columns), bad, malformed)


def missing_values(values: pd.Series) -> np.ndarray:
    """True where a value is null or only whitespace."""
    if not (values.dtype == object or pd.api.types.is_string_dtype(values)):
        return values.isna().to_numpy()  # typed (numbers, times): only nulls are missing
    try:
        arr = pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed objects: the slow, general way
        s = values.astype("string")
        return (s.isna() | (s.str.strip() == "")).to_numpy(dtype=bool, na_value=True)
    blank = pc.equal(pc.utf8_trim_whitespace(arr), "")
    return pc.fill_null(blank, True).to_numpy(zero_copy_only=False)


def parse_timestamps(values: pd.Series) -> pd.Series:
    """Parse timestamps to UTC; NaT where a value cannot be parsed.

    Accepts datetime values (naive ones are taken as UTC), ISO 8601 strings (with or without an
    offset; without one, UTC), other common date formats, and epoch numbers whose unit is taken
    from their size: below 1e11 seconds, below 1e14 milliseconds, below 1e17 microseconds, else
    nanoseconds.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        out = pd.to_datetime(values, utc=True)
        return out.dt.as_unit("us") if hasattr(out, "dt") else out
    if pd.api.types.is_numeric_dtype(values):
        return _from_epoch(pd.to_numeric(values, errors="coerce"))
    text = values.astype("string").str.strip()
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")
    numeric = text.str.fullmatch(r"-?\d+(\.\d+)?").fillna(False).to_numpy(dtype=bool)
    if numeric.any():
        out[numeric] = _from_epoch(pd.to_numeric(text[numeric], errors="coerce"))
    rest = ~numeric & text.notna().to_numpy()
    if rest.any():
        # Microseconds (years 1-9999), so that a far-future typo parses and is judged, not crashes.
        parsed = pd.to_datetime(text[rest], utc=True, errors="coerce", format="ISO8601").astype("datetime64[us, UTC]")
        failed = parsed.isna().to_numpy()
        if failed.any():  # slower, per-value parsing only for what ISO 8601 did not take
            retry = text[rest][failed]
            parsed[failed] = pd.Series([_parse_one(v) for v in retry], index=retry.index, dtype="datetime64[us, UTC]")
        out[rest] = parsed
    return out


def _parse_one(value: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return pd.NaT
    if ts is pd.NaT:
        return pd.NaT
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _from_epoch(numbers: pd.Series) -> pd.Series:
    a = numbers.abs()
    unit_scale = np.select([a < 1e11, a < 1e14, a < 1e17], [1e6, 1e3, 1.0], default=1e-3)
    micros = (numbers * unit_scale).round()
    ok = micros.notna() & (micros.abs() < 9.2e18)
    out = pd.Series(pd.NaT, index=numbers.index, dtype="datetime64[us, UTC]")
    out[ok] = pd.to_datetime(micros[ok].astype("int64"), unit="us", utc=True)
    return out
