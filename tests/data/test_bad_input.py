"""Bad input through `precise data import csv` -> `ingest` -> `validate`: a clear `error:` line or a
rejected row with its own reason, never a traceback, never a 1970 partition, raw files untouched."""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from ingest import importers, ingest
from core import schema
from core.errors import PreciseError
from core.settings import IngestConfig
from tests.conftest import run_cli, write_params

HEADER = "user_id,item_id,scene,action,ts\n"
ROWS = [f"u{i % 5},it-{i % 7},news,view,2026-01-05T{10 + i % 10:02d}:00:00Z\n" for i in range(20)]
MAP = ["--map", "user_id=user_id,item_id=item_id,scene=scene,action=action,ts=ts"]


def cli(*args: str, cwd: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    """`precise ARGS` in this process (the same `main()`, its `error:` handling and exit codes)."""
    from precise.cli import main

    monkeypatch.chdir(cwd)
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _project(tmp_path: Path) -> Path:
    write_params(tmp_path)
    return tmp_path


def test_gzip_csv_is_read_whatever_its_name(tmp_path):
    project = _project(tmp_path)
    for name in ("log.csv", "log2.csv.gz"):
        (tmp_path / name).write_bytes(gzip.compress((HEADER + "".join(ROWS)).encode()))
    for name in ("log.csv", "log2.csv.gz"):
        out = run_cli("data", "import", "csv", "--events", str(tmp_path / name), *MAP, "--replace", cwd=project)
        assert '"events": 20' in out.stdout, out.stdout


@pytest.mark.parametrize("kind", ["zip", "bzip2"])
def test_archives_are_refused_with_an_error_line(tmp_path, kind, monkeypatch, capsys):
    project = _project(tmp_path)
    path = tmp_path / "log.csv"
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("log.csv", HEADER + "".join(ROWS))
    else:
        import bz2

        path.write_bytes(bz2.compress((HEADER + "".join(ROWS)).encode()))
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    code, _, err = cli("data", "import", "csv", "--events", str(path), *MAP, cwd=project, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2
    assert err.startswith("error:") and f"{kind} archive" in err and "Traceback" not in err
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert not (project / "landing").exists() or not any((project / "landing").glob("date=*"))


def test_a_gzip_drop_in_landing_is_ingested(settings):
    drop = settings.paths.landing / "date=2026-01-05"
    drop.mkdir(parents=True)
    (drop / "events.csv.gz").write_bytes(gzip.compress((HEADER + "".join(ROWS)).encode()))
    (report,) = ingest.run(settings, days=["2026-01-05"])
    assert report.events == 20 and report.rejected_events == 0


@pytest.mark.parametrize("token", ["null", "None", "NULL", "NaN", "nan", "-", " null "])
def test_null_like_ids_are_rejected_with_their_own_reason(settings, tmp_path, token):
    path = tmp_path / "log.csv"
    path.write_text(HEADER + "".join(ROWS) + f"{token},it-1,news,view,2026-01-05T12:00:00Z\n"
                    f"u1,{token},news,view,2026-01-05T12:00:00Z\n")
    report = importers.import_csv(settings.paths.landing, path, importers.parse_mapping(MAP[1:]))
    assert report["events"] == 20
    rejects = pd.read_parquet(settings.paths.landing / "_rejects" / "log.parquet")
    assert sorted(rejects["reason"]) == ["null-like item_id", "null-like user_id"]
    events = pd.read_parquet(settings.paths.landing / "date=2026-01-05" / "events.parquet")
    assert not events["user_id"].isin(["null", "None", "NULL", "NaN", "nan", "-"]).any()


def test_the_null_token_list_is_configurable(settings, tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(HEADER + "".join(ROWS) + "unknown,it-1,news,view,2026-01-05T12:00:00Z\n")
    report = importers.import_csv(settings.paths.landing, path, importers.parse_mapping(MAP[1:]),
                                  cfg=IngestConfig(null_tokens=("unknown",)))
    assert report["rejected"] == {"log.csv": 1}


def test_implausible_times_are_rejected_never_a_1970_drop(tmp_path, monkeypatch, capsys):
    project = _project(tmp_path)
    path = tmp_path / "log.csv"
    bad = ["u1,it-1,news,view,1970-01-01T00:00:00Z\n", "u2,it-2,news,view,0\n",
           "u3,it-3,news,view,2999-01-01T00:00:00Z\n", "u4,it-4,news,view,1994-12-31T23:59:59Z\n"]
    path.write_text(HEADER + "".join(ROWS) + "".join(bad))
    code, stdout, _ = cli("data", "import", "csv", "--events", str(path), *MAP, cwd=project, monkeypatch=monkeypatch,
                          capsys=capsys)
    assert code == 0 and '"events": 20' in stdout
    assert sorted(p.name for p in (project / "landing").glob("date=*")) == ["date=2026-01-05"]
    rejects = pd.read_parquet(project / "landing" / "_rejects" / "log.parquet")
    assert rejects["reason"].tolist() == ["implausible ts"] * 4


def test_ingest_rejects_implausible_times_in_a_drop(settings):
    drop = settings.paths.landing / "date=2026-01-05"
    drop.mkdir(parents=True)
    (drop / "events.csv").write_text(HEADER + "".join(ROWS) + "u1,it-1,news,view,1970-01-01T00:00:00Z\n")
    (report,) = ingest.run(settings, days=["2026-01-05"])
    assert report.events == 20 and report.reasons == {"implausible ts": 1}
    assert schema.list_days(settings.paths.events) == ["2026-01-05"]


def test_unreadable_csv_is_an_error_not_a_traceback(tmp_path):
    project = _project(tmp_path)
    path = tmp_path / "log.csv"
    path.write_bytes(b'user_id,item_id,"scene\rx",action,ts\n' + gzip.compress(b"x" * 100))
    out = run_cli("data", "import", "csv", "--events", str(path), *MAP, cwd=project, check=False)
    assert out.returncode == 2 and out.stderr.startswith("error:") and "Traceback" not in out.stderr, out.stderr


def test_since_and_until_keep_a_window(settings, tmp_path):
    path = tmp_path / "log.csv"
    days = ["2019-03-01", "2020-06-01", "2021-01-02", "2024-12-31"]
    path.write_text(HEADER + "".join(f"u{i},it-{i},news,view,{d}T10:00:00Z\n" for i, d in enumerate(days)))
    report = importers.import_csv(settings.paths.landing, path, importers.parse_mapping(MAP[1:]),
                                  since="2020-01-01", until="2021-01-02")
    assert report["days"] == ["2020-06-01", "2021-01-02"]
    with pytest.raises(PreciseError, match="not a date"):
        importers.import_csv(settings.paths.landing, path, importers.parse_mapping(MAP[1:]), since="last year")
