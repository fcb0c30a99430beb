"""The offline side of the feature store: point-in-time training data for ranking teams.

A ranking team trains on its labelled log, and each logged event must get the feature values that
were served **when it happened**, never later ones (they would leak the future into the training
set). So every publish also keeps its day's exported vectors, per model, in an append-only
history that Feast's offline store reads:

    var/feast/offline/history/<model>/user/<D>.parquet   the export of data day D, rows as
    var/feast/offline/history/<model>/item/<D>.parquet   serving/export.py writes them

Each row's `event_timestamp` is **the start of day D + 1 (UTC)**: vectors built from the data
through D serve the day after. A later publish never rewrites an earlier day's file; publishing
day D again (a rollback, `--force`) replaces D's file, since the version published last for D is
the one served after it. Feast's views `<model>_user_history` and `<model>_item_history` (offline
only, TTL `publish.history_ttl_days`) and the on-demand `<model>_score_history`
(features/definitions.py) read them, so `get_historical_features` joins each event to the newest
day file stamped at or before it:

* an event on day E gets the export of the last published day before E (never E's own, nor a later one);
* before the first publish, or more than the TTL after the last one, its features are null;
* `<model>_user_model_version` / `<model>_item_model_version` say which model version each value
  comes from; `<model>_score` is null when the user's and the item's versions differ (as online).

Simplification, said plainly: the offline history holds the daily exports only. Items embedded by
the hourly path (`precise export --new-items`) have vectors online before the next daily export,
but null item features offline on the day they appear.
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.atomic import atomic_path
from core.errors import PreciseError
from core.ids import normalize_ids
from core.settings import Settings

KINDS = ("user", "item")
ENTITY_COLUMNS = ("user_id", "item_id", "event_timestamp")


def history_dir(settings: Settings) -> Path:
    return settings.paths.var / "feast" / "offline" / "history"


def valid_from(day: str) -> dt.datetime:
    """The moment the export of data day D starts to serve: D + 1, 00:00 UTC."""
    return dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc) + dt.timedelta(days=1)


def record_day(settings: Settings, export_dir: Path, day: str, models: list[str]) -> dict[str, dict]:
    """Copy day D's export of each model into its history (atomic per file), stamped valid_from(D);
    returns the `history` entries of the published state (features/definitions.py)."""
    stamp = valid_from(day)
    entries = {}
    for model in models:
        folders = {}
        for kind in KINDS:
            table = pq.read_table(export_dir / f"{model}_{kind}.parquet")
            column = pa.array([stamp] * table.num_rows, pa.timestamp("us", tz="UTC"))
            table = table.set_column(table.schema.get_field_index("event_timestamp"), "event_timestamp", column)
            folder = history_dir(settings) / model / kind
            with atomic_path(folder / f"{day}.parquet") as tmp:
                pq.write_table(table, tmp)
            folders[kind] = str(folder)
            if kind == "user":
                folders["history"] = "history_logit" in table.schema.names
        entries[model] = folders | {"ttl_days": settings.publish.history_ttl_days}
    return entries


def read_entities(path: Path) -> pd.DataFrame:
    """An entity frame from Parquet or CSV: user_id, item_id, event_timestamp (any other columns,
    labels say, are kept). Timestamps without a zone are UTC."""
    path = Path(path)
    if not path.is_file():
        raise PreciseError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path, dtype={"user_id": str, "item_id": str}) if path.suffix.lower() == ".csv" \
            else pd.read_parquet(path)
    except Exception as exc:  # unreadable input is the user's mistake, said in one line
        raise PreciseError(f"{path}: cannot read it as {'CSV' if path.suffix.lower() == '.csv' else 'Parquet'} ({exc})") from exc
    return entity_frame(frame, str(path))


def entity_frame(frame: pd.DataFrame, where: str = "entities") -> pd.DataFrame:
    """Check and normalise an entity frame: ids as strings, event_timestamp as UTC times."""
    missing = [c for c in ENTITY_COLUMNS if c not in frame.columns]
    if missing:
        raise PreciseError(f"{where}: missing column(s) {', '.join(missing)} (needs {', '.join(ENTITY_COLUMNS)})")
    frame = frame.copy()
    for column in ("user_id", "item_id"):
        if frame[column].isna().any():
            raise PreciseError(f"{where}: {int(frame[column].isna().sum())} row(s) without {column}")
        frame[column] = normalize_ids(frame[column])[0].astype(str)  # as ingest wrote them
    try:
        ts = pd.to_datetime(frame["event_timestamp"], utc=True)
    except (ValueError, TypeError) as exc:
        raise PreciseError(f"{where}: event_timestamp is not a time ({exc})") from exc
    if ts.isna().any():
        raise PreciseError(f"{where}: {int(ts.isna().sum())} row(s) without event_timestamp")
    frame["event_timestamp"] = ts
    return frame


def feature_refs(state: dict, model: str, kind: str) -> list[str]:
    """The history features of one model's user or item view."""
    fields = ["embedding", "model_version"]
    if kind == "user" and state["history"][model].get("history"):
        fields += ["window", "history_logit"]  # what the score adds the model's offset with
    return [f"{model}_{kind}_history:{model}_{kind}_{f}" for f in fields]


def historical(settings: Settings, entities: pd.DataFrame, models: list[str] | None = None) -> pd.DataFrame:
    """Point-in-time features for each row of `entities` (user_id, item_id, event_timestamp, ...):
    the rows (order kept, other columns kept) plus, per model, `<m>_user_embedding`,
    `<m>_user_model_version`, `<m>_item_embedding`, `<m>_item_model_version` and `<m>_score`.

    Each view is asked for its distinct (key, event_timestamp) pairs and the answers are joined
    back onto every row; the score is the on-demand view's own function applied to the joined
    rows. Asking Feast's file store for the raw log would lose rows: it keeps one entity row per
    (first view's key, timestamp), so all but one item of a slate shown to a user at one moment
    would read null; and it drops a row whose every history row is after it or past the TTL."""
    from serving.state import read_state
    from serving.store import feature_store

    frame = entity_frame(entities).reset_index(drop=True)
    state = read_state(settings)
    available = sorted(state.get("history", {}))
    chosen = available if models is None else list(models)
    unknown = [m for m in chosen if m not in available]
    if unknown:
        raise PreciseError(f"no published history for {', '.join(unknown)}; there is: {', '.join(available) or 'none'} "
                           "(run `precise publish --date D` first)")
    store = feature_store(settings)
    for model in chosen:
        for kind in KINDS:
            key = f"{kind}_id"
            refs = feature_refs(state, model, kind)
            pairs = frame[[key, "event_timestamp"]].drop_duplicates().reset_index(drop=True)
            pairs["_pair"] = range(len(pairs))
            with warnings.catch_warnings():  # library noise on every call, nothing the user can act on
                warnings.filterwarnings("ignore", category=FutureWarning, module="dask")
                found = store.get_historical_features(entity_df=pairs, features=refs).to_df()
            names = [r.split(":", 1)[1] for r in refs]
            found = pairs.merge(found.drop_duplicates("_pair")[["_pair", *names]], on="_pair", how="left")
            frame = frame.merge(found.drop(columns="_pair"), on=[key, "event_timestamp"], how="left")
        udf = store.get_on_demand_feature_view(f"{model}_score_history").feature_transformation
        inputs = {c: [None if _missing(v) else v for v in frame[c]] for c in frame.columns
                  if c.startswith(f"{model}_") or c == "item_id"}
        frame[f"{model}_score"] = pd.array(udf.transform(inputs)[f"{model}_score"], dtype="Float64")
        frame = frame.drop(columns=[c for c in (f"{model}_user_window", f"{model}_user_history_logit") if c in frame])
    return frame


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value) or value is pd.NA


def write(frame: pd.DataFrame, path: Path) -> None:
    """A training set to Parquet, atomically."""
    with atomic_path(Path(path)) as tmp:
        frame.to_parquet(tmp, index=False)
