"""Great Expectations (1.x) suites, defined in code from the checks of validation/checks.py.

One file-backed GX project lives in `var/gx/` (suites, validation results, Data Docs). Each table
(events, catalog, sequences) has a suite, a pandas data asset fed with the day's one-row statistics
frame, and a checkpoint. Every expectation carries its check name in `meta.check`, its description
and its severity (`critical` for our `error`, `warning` for `warning`), so Data Docs and our own
summary speak the same names.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from validation.checks import Check

log = logging.getLogger(__name__)

TABLES = ("events", "catalog", "sequences")
_SEVERITY = {"error": "critical", "warning": "warning"}


@dataclass(frozen=True)
class Outcome:
    check: str
    severity: str  # error | warning
    success: bool
    observed: float | None
    min_value: float | None
    max_value: float | None
    description: str


@functools.lru_cache(maxsize=4)
def _context(root: str):
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no usage statistics leave this machine
    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # GX logs its own import at INFO
    import great_expectations as gx

    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="file", project_root_dir=root)
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)  # keep task logs readable
    return ctx


class Gate:
    """The suites of one check list in the GX project at `root`; `run` checks one statistics frame."""

    def __init__(self, root: Path, checks: list[Check]):
        import great_expectations as gx
        import great_expectations.expectations as gxe

        Path(root).mkdir(parents=True, exist_ok=True)
        self.root = Path(root)
        self.ctx = _context(str(root))
        self.checks = {c.name: c for c in checks}
        source = self.ctx.data_sources.add_or_update_pandas("precise_day_stats")
        self.checkpoints = {}
        for table in TABLES:
            table_checks = [c for c in checks if c.table == table and c.enabled]
            suite = gx.ExpectationSuite(name=f"precise_{table}")
            for c in table_checks:
                suite.add_expectation(
                    gxe.ExpectColumnValuesToBeBetween(
                        column=c.stat,
                        min_value=c.min_value,
                        max_value=c.max_value,
                        severity=_SEVERITY[c.severity],
                        description=f"{c.name}: {c.description}",
                        meta={"check": c.name},
                    )
                )
            suite = self.ctx.suites.add_or_update(suite)
            asset = next((a for a in source.assets if a.name == table), None) or source.add_dataframe_asset(table)
            batch = next((b for b in asset.batch_definitions if b.name == "day"), None)
            batch = batch or asset.add_batch_definition_whole_dataframe("day")
            definition = self.ctx.validation_definitions.add_or_update(
                gx.ValidationDefinition(data=batch, suite=suite, name=f"precise_{table}")
            )
            self.checkpoints[table] = self.ctx.checkpoints.add_or_update(
                gx.Checkpoint(
                    name=f"precise_{table}",
                    validation_definitions=[definition],
                    result_format={"result_format": "SUMMARY"},
                )
            )

    def run(self, table: str, values: dict[str, float | None], run_name: str) -> tuple[list[Outcome], dict]:
        """Check one table's statistics. Returns the outcomes and GX's own result (JSON-ready)."""
        from great_expectations.core.run_identifier import RunIdentifier

        columns = {c.stat: [values.get(c.stat)] for c in self.checks.values() if c.table == table and c.enabled}
        frame = pd.DataFrame({k: pd.Series(v, dtype="float64") for k, v in columns.items()})
        result = self.checkpoints[table].run(
            batch_parameters={"dataframe": frame}, run_id=RunIdentifier(run_name=run_name)
        )
        [validation] = result.run_results.values()
        outcomes = []
        for r in validation.results:
            check = self.checks[r.expectation_config.meta["check"]]
            outcomes.append(
                Outcome(
                    check=check.name,
                    severity=check.severity,
                    success=bool(r.success),
                    observed=values.get(check.stat),
                    min_value=check.min_value,
                    max_value=check.max_value,
                    description=check.description,
                )
            )
        return outcomes, validation.to_json_dict()

    def build_docs(self) -> Path:
        """Rebuild the Data Docs site; returns its index.html."""
        self.ctx.build_data_docs()
        return self.root / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
