"""Timestamp parsing and raw readers: every format we promise, and NaT (not an exception) otherwise."""

import numpy as np
import pandas as pd
import pytest

from ingest.readers import missing_values, parse_timestamps, read_raw
from core.errors import PreciseError


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2026-01-05T10:00:00Z", "2026-01-05T10:00:00"),
        ("2026-01-05 12:00:00+02:00", "2026-01-05T10:00:00"),
        ("2026-01-05T10:00:00", "2026-01-05T10:00:00"),           # naive = UTC
        ("2026-01-05", "2026-01-05T00:00:00"),
        ("1767607200", "2026-01-05T10:00:00"),                    # epoch seconds
        ("1767607200000", "2026-01-05T10:00:00"),                 # milliseconds
        ("1767607200000000", "2026-01-05T10:00:00"),              # microseconds
        ("1767607200.5", "2026-01-05T10:00:00.500000"),
        ("Jan 5 2026 10:00", "2026-01-05T10:00:00"),              # not ISO: the slow path
    ],
)
def test_parse_timestamps_formats(value, expected):
    # A second, ISO value keeps the fast path in play for the mixed case.
    out = parse_timestamps(pd.Series([value, "2026-01-01T00:00:00Z"], dtype=object))
    assert out.iloc[0] == pd.Timestamp(expected, tz="UTC")
    assert str(out.dtype) == "datetime64[us, UTC]"


@pytest.mark.parametrize("value", ["soon", "", None, "2026-02-30", "99999999999999999999999"])
def test_unparsable_is_nat(value):
    assert parse_timestamps(pd.Series([value], dtype=object)).isna().all()


def test_typed_inputs():
    naive = pd.Series(pd.to_datetime(["2026-01-05 10:00"]))
    assert parse_timestamps(naive).iloc[0] == pd.Timestamp("2026-01-05T10:00Z")
    assert parse_timestamps(pd.Series([1767607200])).iloc[0] == pd.Timestamp("2026-01-05T10:00Z")


def test_missing_values():
    assert missing_values(pd.Series(["a", "", "  ", None, np.nan, "0"], dtype=object)).tolist() == [
        False, True, True, True, True, False
    ]


def test_read_raw_rejects_unknown_suffix(tmp_path):
    p = tmp_path / "events.json"
    p.write_text("{}")
    with pytest.raises(PreciseError, match="unsupported file type"):
        read_raw(p)


def test_parquet_binary_columns_flag_bad_bytes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "events.parquet"
    pq.write_table(pa.table({"user_id": pa.array([b"ok", b"b\xffd"], type=pa.binary())}), p)
    raw = read_raw(p)
    assert raw.bad_bytes.tolist() == [False, True]
    assert raw.frame["user_id"].tolist() == ["ok", "b\\xffd"]
