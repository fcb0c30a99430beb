"""Bringing one's own log: import prints what it saw and params that fit; pasted in, the days pass the gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from core.settings import Settings
from tests.conftest import run_cli, write_params
from validation import validate


def own_log(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """A two-scene log in its own names: `shop`/`forum` scenes, `view`/`buy`/`reply` actions, unix
    seconds over three years, 40% of the items without any text."""
    rng = np.random.default_rng(seed)
    items = [f"{scene}:{i}" for scene in ("shop", "forum") for i in range(150)]
    start = pd.Timestamp("2023-01-01", tz="UTC").value // 10**9
    n = 6000
    # Three years of sparse history, then a dense last week (the window a user imports).
    old = rng.integers(start, start + 3 * 365 * 86400, n // 3)
    recent = rng.integers(start + 3 * 365 * 86400, start + 3 * 365 * 86400 + 7 * 86400, n - n // 3)
    item = rng.choice(items, n)
    action = np.where(rng.random(n) < 0.9, "view", np.where(np.char.startswith(item.astype(str), "shop"), "buy", "reply"))
    events = pd.DataFrame({"uid": rng.integers(0, 300, n), "thing": item, "kind": action,
                           "section": [i.split(":")[0] for i in item], "unix": np.concatenate([old, recent])})
    log_path, items_path = folder / "activity.csv", folder / "things.csv"
    events.to_csv(log_path, index=False)
    titled = rng.random(len(items)) < 0.6
    pd.DataFrame({"thing": items, "section": [i.split(":")[0] for i in items],
                  "name": np.where(titled, [f"thing number {i}" for i in range(len(items))], "")}).to_csv(items_path, index=False)
    return log_path, items_path


def test_own_log_import_suggests_params_that_pass_the_gate(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    params_path = write_params(project)
    log_path, items_path = own_log(tmp_path)
    out = run_cli("data", "import", "csv", "--events", str(log_path), "--catalog", str(items_path),
                  "--map", "user_id=uid,item_id=thing,scene=section,action=kind,ts=unix",
                  "--catalog-map", "item_id=thing,scene=section,title=name", "--since", "2026-01-05", cwd=project)
    report = json.loads(out.stdout)
    seen = report["seen"]
    assert sorted(seen["scenes"]) == ["forum", "shop"] and sorted(seen["actions"]) == ["buy", "reply", "view"]
    assert 0.5 < seen["items_with_text"] < 0.7
    assert report["first_day"] >= "2026-01-05" and report["n_days"] <= 3
    assert "Traceback" not in out.stderr and "validate.profiles" in out.stderr
    suggestion = yaml.safe_load(out.stderr.split("then ingest and validate:", 1)[1])
    names = [t["name"] for t in suggestion["tasks"]]  # per scene for the main action, then the others
    assert names[:2] == ["view_forum", "view_shop"] and sorted(names[2:]) == ["buy_all", "reply_all"]

    # Without the suggestion every day is quarantined (unknown scenes and actions) ...
    run_cli("ingest", "--all", cwd=project)
    before = run_cli("validate", "--all", cwd=project)
    assert json.loads(before.stdout)["quarantined"] == report["n_days"]

    # ... pasted in, every day passes.
    params = yaml.safe_load(params_path.read_text())
    params["validate"]["profile"] = suggestion["validate"]["profile"]
    params["validate"]["profiles"] |= suggestion["validate"]["profiles"]
    params["sequences"] |= suggestion["sequences"]
    params["tasks"] = suggestion["tasks"]
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    days = sorted(p.name.removeprefix("date=") for p in (project / "landing").glob("date=*"))
    assert len(days) == report["n_days"]
    settings = Settings.load(params_path)
    for day in days:
        result, _ = validate.run_date(settings, day)
        assert result.status == "passed", validate.summary(result)
