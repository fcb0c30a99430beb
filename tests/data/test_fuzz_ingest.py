"""Property-based fuzzing of the import contract (issue 33): Hypothesis writes CSV logs with
adversarial ids, titles, timestamps and encodings; ingest's contract check must never raise a
traceback, never touch the raw file, keep or reject (with a reason) every row, and normalise ids
as core/ids.py says: inputs the contract calls equal become one id, different ones stay two.

At least 2,000 generated logs per run (events and catalogs), in bounded time: examples are small
and the database is off, so every CI run draws afresh (a failure prints its reproducing example)."""

from __future__ import annotations

import csv
import hashlib
import io
import unicodedata
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import PreciseError
from core.settings import IngestConfig
from ingest.ingest import enforce_catalog, enforce_events
from ingest.readers import read_raw

CFG = IngestConfig()
FUZZ = settings(max_examples=1200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# ids that differ only in shapes the contract merges, and ids it keeps apart (case, compatibility forms)
BASE_IDS = ["u1", "U1", "u2", "\u00e9", "e\u0301", "\u7528\u6237", "a b", "x,y", 'q"t', "0042", "42",
            "\uff55\uff11", "caf\u00e9", "cafe\u0301"]
EDGES = ["", " ", "  ", "\t", "\u00a0", "\u3000", "\n", "\u200b", "\ufeff", "\u2060"]
CONTROL = ["\x00", "\x01", "\x1b", "\x7f", "\x85"]


def reference(value: str) -> str:
    """The contract, written again independently of core/ids.py."""
    for ch in ("\u200b", "\u2060", "\ufeff"):
        value = value.replace(ch, "")
    return unicodedata.normalize("NFC", value).strip()


@st.composite
def an_id(draw) -> str:
    kind = draw(st.integers(0, 9))
    if kind <= 5:  # a known id in some shape
        base = draw(st.sampled_from(BASE_IDS))
        if draw(st.booleans()):  # an invisible character inside
            i = draw(st.integers(0, len(base)))
            base = base[:i] + draw(st.sampled_from(["\u200b", "\ufeff", "\u2060"])) + base[i:]
        return draw(st.sampled_from(EDGES)) + base + draw(st.sampled_from(EDGES))
    if kind == 6:
        return draw(st.sampled_from(["null", "None", "NaN", "-", " null ", ""]))
    if kind == 7:
        base = draw(st.sampled_from(BASE_IDS))
        return base + draw(st.sampled_from(CONTROL))
    return draw(st.text(max_size=6))


TIMES = st.one_of(
    st.datetimes(min_value=__import__("datetime").datetime(2020, 1, 1),
                 max_value=__import__("datetime").datetime(2026, 6, 1)).map(lambda d: d.isoformat()),
    st.integers(1_577_836_800, 1_780_000_000).map(str),                 # epoch seconds
    st.integers(1_577_836_800_000, 1_780_000_000_000).map(str),         # epoch milliseconds
    st.sampled_from(["", "null", "not a time", "1970-01-01T00:00:00", "2999-01-01", "2026-02-30", "12/31/2025 10:00"]),
    st.text(max_size=8),
)


@st.composite
def csv_log(draw, columns: list[str], cells: dict) -> tuple[bytes, int]:
    """(file bytes, rows written): a header, rows of drawn cells, maybe malformed lines, a BOM,
    rows in Latin-1 (invalid UTF-8 bytes), CRLF line ends."""
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    out = io.BytesIO()
    if draw(st.integers(0, 9)) == 0:
        out.write(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark, as spreadsheet exports write
    header = io.StringIO()
    csv.writer(header, lineterminator=newline).writerow(columns)
    out.write(header.getvalue().encode())
    n = draw(st.integers(0, 25))
    for _ in range(n):
        if draw(st.integers(0, 19)) == 0:  # a malformed line: too few fields
            out.write(("only,two" + newline).encode())
            continue
        line = io.StringIO()
        values = [draw(cells[c]) for c in columns]
        # a bare CR or LF must be quoted, or any reader splits the row: quote the whole row then
        quoting = csv.QUOTE_ALL if any("\r" in v or "\n" in v for v in values) else csv.QUOTE_MINIMAL
        csv.writer(line, lineterminator=newline, quoting=quoting).writerow(values)
        encoding = "latin-1" if draw(st.integers(0, 14)) == 0 else "utf-8"
        out.write(line.getvalue().encode(encoding, errors="replace"))
    return out.getvalue(), n


EVENT_CELLS = {"user_id": an_id(), "item_id": an_id(), "scene": st.sampled_from(["article", " video ", "music\u200b", "", "null"]),
               "action": st.sampled_from(["click", "share ", "\u00a0click", "", "-"]), "ts": TIMES}
CATALOG_CELLS = {"item_id": an_id(), "scene": st.sampled_from(["article", " video", ""]),
                 "title": st.one_of(st.text(max_size=12), st.sampled_from([" T\u00e9a ", "tab\there", "bell\x07", "e\u0301t\u00e9"])),
                 "text": st.one_of(st.just(""), st.text(max_size=12)), "published_at": TIMES}


def check(path: Path, data: bytes, rows: int, enforce, keys: tuple[str, ...]) -> None:
    path.write_bytes(data)
    before = hashlib.sha256(data).hexdigest()
    try:
        raw = read_raw(path)
        good, rejects = enforce(raw, path, CFG)
    except PreciseError:  # a clear one-line error, only for a line the CSV parser can neither split nor decode
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return
        raise
    finally:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before, "the raw file is never modified"
    assert len(good) + len(rejects) == rows, "every written row is kept or rejected"
    assert rejects["reason"].ne("").all() if len(rejects) else True
    parsed = rejects[rejects["reason"] != "malformed line"]
    kept_rows = np.setdiff1d(np.arange(1, len(raw.frame) + 1), parsed["row"].to_numpy())
    assert len(kept_rows) == len(good)
    for column in keys:
        raw_values = [raw.frame[column].iloc[r - 1] for r in kept_rows]
        kept = list(good[column])
        assert kept == [reference(v) for v in raw_values], column
        for v in kept:
            assert v and v == v.strip() and unicodedata.is_normalized("NFC", v), repr(v)
            assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in v), repr(v)
            assert v.strip() not in CFG.null_tokens
        # one id per class of inputs the contract calls equal, and distinct classes stay distinct
        pairs = {(reference(r), k) for r, k in zip(raw_values, kept)}
        assert len(pairs) == len({k for _, k in pairs}) == len({r for r, _ in pairs})


@FUZZ
@given(log=csv_log(list(EVENT_CELLS), EVENT_CELLS))
def test_fuzzed_event_logs_keep_or_reject_every_row_and_normalise_ids(log, tmp_path):
    data, rows = log
    check(tmp_path / "events.csv", data, rows, enforce_events, ("user_id", "item_id", "scene", "action"))


@settings(parent=FUZZ, max_examples=800)
@given(log=csv_log(list(CATALOG_CELLS), CATALOG_CELLS))
def test_fuzzed_catalogs_keep_or_reject_every_row_and_normalise_ids(log, tmp_path):
    data, rows = log
    check(tmp_path / "catalog.csv", data, rows, enforce_catalog, ("item_id", "scene"))


def test_shapes_the_contract_merges_become_one_id_and_others_stay_apart(tmp_path):
    """The contract's examples, spelled out (core/ids.py)."""
    lines = ["user_id,item_id,scene,action,ts"]
    for user in ["u1", " u1", "u1\u00a0", "\u200bu1", "\ufeffu1", "U1", "\uff55\uff11", "caf\u00e9", "cafe\u0301", "a b"]:
        lines.append(f"{user},i1,article,click,2026-01-01T10:00:00Z")
    path = tmp_path / "events.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    good, rejects = enforce_events(read_raw(path), path, CFG)
    assert rejects.empty
    assert list(good["user_id"]) == ["u1"] * 5 + ["U1", "\uff55\uff11", "caf\u00e9", "caf\u00e9", "a b"]
