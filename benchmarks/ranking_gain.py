"""Do the embeddings help a ranking model? And does recall through the served index find next-day
clicks? (PRECISE Tables IX and VIII, offline; issue 31.)

    python -m benchmarks.ranking_gain [--publish-days 3] [--task click_article]   # about 30 min here
    python -m benchmarks.ranking_gain --render                                    # docs/ranking_results.md

On the embedded default world (params.yaml, its own project in benchmarks/out/ranking/): the daily
chain (sequences, encode, gates, universal, targeted, export, publish) for the `--publish-days`
days before the last day N, exactly as the DAGs run it. Then, as a ranking team would:

1. **Training set through the feature store**: the impression log of the task's scene (one slate
   per click, `impressions.parquet`) on the days after the first publish, with point-in-time
   features from `serving.historical.historical` (Feast `get_historical_features`; an event on day
   E gets the vectors exported for E - 1). Base features, also point in time (from the events of
   the days before E only): the item's clicks over the last 7 days and the last day, the item's age
   in days, the user's clicks over the last 7 days, overall and in the task's scene.
2. **A reference ranker**, scikit-learn's HistGradientBoostingClassifier (a gradient-boosted tree
   library every ranking team knows; missing values handled natively, which the null features of
   new users and items need; no extra dependency), trained on days < N and evaluated on day N:
   AUC and GAUC (per-user AUC weighted by the user's impressions, users with both labels) for
   (a) base features, (b) + the universal score, (c) + the task score and the task's user and item vectors.
3. **Recall** of day N's task clicks through the FAISS index `precise recall` reads (the version
   served on N): recall@50/100/200 of U2I and U2I2I, exact scoring of the same vectors (U2I, the
   same exclusions and history offset), and popularity; for every user with a task click on N and
   for users new to the task (at most 2 task clicks before N).

Writes benchmarks/out/ranking_gain.json; `--render` writes docs/ranking_results.md from it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]

from benchmarks.common import project, train_day  # noqa: E402
from core import schema  # noqa: E402
from core.atomic import write_json, write_text  # noqa: E402
from core.settings import Settings  # noqa: E402

OUT = REPO / "benchmarks" / "out"
RESULT = OUT / "ranking_gain.json"
DOC = REPO / "docs" / "ranking_results.md"
KS = (50, 100, 200)
NEW_TO_TASK = 2  # at most this many task clicks before day N


def chain(s: Settings, days: list[str]) -> dict:
    """The daily chain for each day, as the DAGs run it; a day already published is skipped."""
    from serving import historical, publish
    from serving import export

    timings = {}
    for day in days:
        if (historical.history_dir(s) / "universal" / "user" / f"{day}.parquet").is_file():
            continue
        t0 = time.perf_counter()
        train_day(s, day)
        export.main(s, day)
        publish.main(s, day)
        timings[day] = round(time.perf_counter() - t0, 1)
        print(f"published {day} in {timings[day]} s", flush=True)
    return timings


def base_features(events: pd.DataFrame, catalog: pd.DataFrame, frame: pd.DataFrame, scenes: set[str]) -> pd.DataFrame:
    """Point-in-time base features of impression rows (day column E): counts from days < E only."""
    clicks = events[events["action"] == "click"].assign(day=lambda e: e["ts"].dt.strftime("%Y-%m-%d"))
    published = catalog.set_index("item_id")["published_at"]
    out = []
    for day, rows in frame.groupby("day"):
        d = pd.Timestamp(day)
        window = clicks[(clicks["day"] < day) & (clicks["day"] >= (d - pd.Timedelta(days=7)).strftime("%Y-%m-%d"))]
        last = window[window["day"] == (d - pd.Timedelta(days=1)).strftime("%Y-%m-%d")]
        rows = rows.copy()
        rows["item_clicks_7d"] = rows["item_id"].map(window["item_id"].value_counts()).fillna(0)
        rows["item_clicks_1d"] = rows["item_id"].map(last["item_id"].value_counts()).fillna(0)
        rows["user_clicks_7d"] = rows["user_id"].map(window["user_id"].value_counts()).fillna(0)
        task = window[window["scene"].isin(scenes)]
        rows["user_task_clicks_7d"] = rows["user_id"].map(task["user_id"].value_counts()).fillna(0)
        rows["item_age_days"] = (d.tz_localize("UTC") - rows["item_id"].map(published)).dt.total_seconds() / 86400
        out.append(rows)
    return pd.concat(out).sort_index()


BASE = ["item_clicks_7d", "item_clicks_1d", "user_clicks_7d", "user_task_clicks_7d", "item_age_days"]


def gauc(frame: pd.DataFrame, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    total, weight = 0.0, 0
    for _, idx in frame.groupby("user_id").indices.items():
        labels = frame["clicked"].to_numpy()[idx]
        if 0 < labels.sum() < len(labels):
            total += roc_auc_score(labels, score[idx]) * len(idx)
            weight += len(idx)
    return total / max(weight, 1)


def ranker(train: pd.DataFrame, test: pd.DataFrame, columns: list[str], seed: int = 0) -> dict:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, early_stopping=True,
                                           validation_fraction=0.1, random_state=seed)
    t0 = time.perf_counter()
    model.fit(train[columns].to_numpy(np.float32), train["clicked"].to_numpy())
    p = model.predict_proba(test[columns].to_numpy(np.float32))[:, 1]
    return {"AUC": round(float(roc_auc_score(test["clicked"], p)), 4), "GAUC": round(gauc(test, p), 4),
            "features": len(columns), "iterations": int(model.n_iter_), "fit_seconds": round(time.perf_counter() - t0, 1)}


def vectors(frame: pd.DataFrame, column: str, width: int) -> np.ndarray:
    """A list-valued column -> (rows, width) float32, NaN where null."""
    out = np.full((len(frame), width), np.nan, dtype=np.float32)
    for i, v in enumerate(frame[column]):
        if v is not None and not (isinstance(v, float) and np.isnan(v)):
            out[i] = v
    return out


def ranking(s: Settings, task: str, days: list[str], last: str, sample: float) -> dict:
    """Steps 1 and 2 of the module docstring."""
    from serving import historical

    scenes = set(s.task(task).scenes or s.synth.scenes)
    first_event_day = (pd.Timestamp(days[0]) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    event_days = [d for d in schema.list_days(s.paths.events) if first_event_day <= d <= last]
    imp = pd.concat([pd.read_parquet(s.paths.landing / f"date={d}" / "impressions.parquet").assign(day=d)
                     for d in event_days], ignore_index=True)
    imp = imp[imp["scene"].isin(scenes)]
    rng = np.random.default_rng(0)
    slates = imp["slate_id"].unique()
    keep = set(slates[rng.random(len(slates)) < sample])
    imp = imp[imp["slate_id"].isin(keep)].reset_index(drop=True)
    events = pd.concat([pd.read_parquet(p) for p in sorted(s.paths.events.glob("date=*/part-0.parquet"))])
    catalog = schema.read_catalog(s.paths.data, as_of=last)
    frame = base_features(events, catalog, imp, scenes)
    entities = frame.rename(columns={"ts": "event_timestamp"})
    t0 = time.perf_counter()
    feats = historical.historical(s, entities[["user_id", "item_id", "event_timestamp"]], ["universal", task])
    retrieval = time.perf_counter() - t0
    frame = pd.concat([frame, feats.drop(columns=["user_id", "item_id", "event_timestamp"])], axis=1)
    width = len(next(v for v in frame[f"{task}_user_embedding"] if v is not None and not isinstance(v, float)))
    user_v = vectors(frame, f"{task}_user_embedding", width)
    item_v = vectors(frame, f"{task}_item_embedding", width)
    vec_cols = [f"u{i}" for i in range(width)] + [f"i{i}" for i in range(width)]
    frame = pd.concat([frame, pd.DataFrame(np.hstack([user_v, item_v]), columns=vec_cols)], axis=1)
    frame["universal_score"] = frame["universal_score"].astype(float)
    frame[f"{task}_score"] = frame[f"{task}_score"].astype(float)
    train, test = frame[frame["day"] < last], frame[frame["day"] == last]
    rows = {
        "(a) base features": BASE,
        "(b) + universal score": BASE + ["universal_score"],
        "(c) + task score": BASE + ["universal_score", f"{task}_score"],
        "(c') + task score and vectors": BASE + ["universal_score", f"{task}_score"] + vec_cols,
    }
    results = {label: ranker(train, test, cols) for label, cols in rows.items()}
    coverage = {c: round(float(test[c].notna().mean()), 3) for c in ("universal_score", f"{task}_score")}
    return {"rows": results, "train_rows": len(train), "test_rows": len(test), "train_days": sorted(train["day"].unique()),
            "test_day": last, "retrieval_seconds": round(retrieval, 1), "retrieval_rows": len(entities),
            "models_retrieved": 2, "test_non_null": coverage, "positives": round(float(frame["clicked"].mean()), 3)}


def task_clicks(s: Settings, task: str, day: str) -> tuple[pd.Series, pd.Series, list[str]]:
    """The task's clicks on `day` (user -> set of items), each user's number of task clicks before
    it, and popularity: the task's items by clicks in the 7 days before it, most clicked first."""
    scenes = set(s.task(task).scenes or s.synth.scenes)
    events = pd.read_parquet(s.paths.events / f"date={day}" / "part-0.parquet")
    day_clicks = events[(events["action"] == "click") & events["scene"].isin(scenes)]
    before = pd.concat([pd.read_parquet(p) for p in sorted(s.paths.events.glob("date=*/part-0.parquet"))
                        if p.parent.name < f"date={day}"])
    task_before = before[(before["action"] == "click") & before["scene"].isin(scenes)]
    week = (pd.Timestamp(day, tz="UTC") - pd.Timedelta(days=7))
    popular = list(task_before[task_before["ts"] >= week]["item_id"].value_counts().index)
    return day_clicks.groupby("user_id")["item_id"].agg(set), task_before.groupby("user_id").size(), popular


def recall_eval(s: Settings, task: str, last: str) -> dict:
    """Step 3 of the module docstring. Popularity: the task's most clicked items of the 7 days
    before N, the user's recent task items left out (the served fallback keeps only recall.top_k)."""
    from recall.index import Recall

    clicks, history, popular = task_clicks(s, task, last)
    r, exact = Recall(s, task), Recall(s, task, exact=True)  # the same vectors, exclusions and offsets
    kmax = max(KS)
    methods = ("U2I (FAISS)", "U2I (exact)", "U2I2I (FAISS)", "U2I2I (exact)", "popularity")
    found: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
    groups: dict[str, list[str]] = {"all": [], "new to the task": []}
    for user, targets in clicks.items():
        lists = {"U2I (FAISS)": [x["item_id"] for x in r.u2i(user, kmax)],
                 "U2I (exact)": [x["item_id"] for x in exact.u2i(user, kmax)],
                 "U2I2I (FAISS)": [x["item_id"] for x in r.u2i2i(user, kmax)],
                 "U2I2I (exact)": [x["item_id"] for x in exact.u2i2i(user, kmax)],
                 "popularity": [i for i in popular if i not in set(r.recent.get(user, []))][:kmax]}
        group = ["all"] + (["new to the task"] if int(history.get(user, 0)) <= NEW_TO_TASK else [])
        for g in group:
            groups[g].append(user)
        for method, ranked in lists.items():
            found[method][user] = [len(targets & set(ranked[:k])) / len(targets) for k in KS]
    table = {}
    for g, users in groups.items():
        table[g] = {"users": len(users)}
        for method in found:
            m = np.mean([found[method][u] for u in users], axis=0) if users else [float("nan")] * len(KS)
            table[g][method] = {f"R@{k}": round(float(v), 4) for k, v in zip(KS, m)}
    exact_r, faiss_r = table["all"]["U2I (exact)"]["R@100"], table["all"]["U2I (FAISS)"]["R@100"]
    return {"day": last, "model_version": r.meta["model_version"], "index": r.meta["kind"], "items": len(r.ids),
            "groups": table, "faiss_over_exact_R@100": round(faiss_r / exact_r, 4) if exact_r else None}


def retrieval_timing(s: Settings, task: str, days: list[str], last: str, rows: int) -> dict:
    """Seconds of one point-in-time retrieval of `rows` impression rows (every scene), two models."""
    from serving import historical

    first = (pd.Timestamp(days[0]) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    frames = [pd.read_parquet(s.paths.landing / f"date={d}" / "impressions.parquet")
              for d in schema.list_days(s.paths.events) if first <= d <= last]
    entities = pd.concat(frames, ignore_index=True).head(rows).rename(columns={"ts": "event_timestamp"})
    t0 = time.perf_counter()
    out = historical.historical(s, entities[["user_id", "item_id", "event_timestamp"]], ["universal", task])
    return {"rows": len(entities), "models": 2, "seconds": round(time.perf_counter() - t0, 1),
            "non_null_task_score": round(float(out[f"{task}_score"].notna().mean()), 3)}


def render(result: dict) -> str:
    task = result["task"]
    rk = result["ranking"]
    lines = ["# Ranking and recall with precise's embeddings (offline, synthetic world)", "",
             "Generated by `python -m benchmarks.ranking_gain` (then `--render`); how to read the features: "
             "`docs/ranking.md`. PRECISE's Table IX (embeddings as ranking features) and Table VIII (U2I and "
             "U2I2I recall), measured offline on the embedded default world.", "",
             f"The daily chain ran for {', '.join(result['published_days'])} (each day: sequences, encode, gates, "
             f"universal, targeted, export, publish; {result['chain_seconds']:.0f} s on this 2-core machine). "
             f"Ranking task: `{task}`'s scene; impressions of {', '.join(rk['train_days'])} train "
             f"({rk['train_rows']:,} rows), {rk['test_day']} tests ({rk['test_rows']:,} rows); one slate of "
             f"{result['slate']} per click, {rk['positives']:.0%} positives. Every feature is point in time: "
             "the vectors through `serving.historical.historical` (Feast `get_historical_features`, an event on day E "
             "gets the export of E - 1), the counts from the days before E. Learner: scikit-learn's "
             "HistGradientBoostingClassifier (300 rounds at most, learning rate 0.05, early stopping on 10% of the "
             "training rows).", "",
             "| features | test AUC | test GAUC | features used | boosting rounds |",
             "| --- | --- | --- | --- | --- |"]
    base = rk["rows"]["(a) base features"]
    for label, row in rk["rows"].items():
        delta = "" if row is base else f" ({row['AUC'] - base['AUC']:+.4f})"
        gdelta = "" if row is base else f" ({row['GAUC'] - base['GAUC']:+.4f})"
        lines.append(f"| {label} | {row['AUC']:.4f}{delta} | {row['GAUC']:.4f}{gdelta} | {row['features']} | {row['iterations']} |")
    lines += ["", "Base features: " + ", ".join(f"`{c}`" for c in BASE) + ". Share of test rows with a non-null score: "
              + ", ".join(f"`{k}` {v:.0%}" for k, v in rk["test_non_null"].items()) + ".", "",
              f"Historical retrieval: {rk['retrieval_rows']:,} entity rows, {rk['models_retrieved']} models "
              f"(user and item vectors, versions, score), {rk['retrieval_seconds']:.1f} s with Feast's file (Dask) "
              "offline store on this 2-core machine.", ""]
    r = result["retrieval"]
    lines += [f"**Historical retrieval of {r['rows']:,} rows** (impressions of every scene, {r['models']} models, "
              f"Feast's file offline store, this 2-core machine): {r['seconds']:.1f} s.", ""]
    rc = result["recall"]
    lines += [f"## Recall of next-day clicks through the served index ({rc['day']})", "",
              f"`{task}` version `{rc['model_version']}`, FAISS index `{rc['index']}` over {rc['items']:,} items; "
              "for each user with a task click on the day, the share of those clicks among the top K (consumed items "
              "excluded, as `precise recall` does). New to the task: at most "
              f"{NEW_TO_TASK} task clicks before the day. FAISS / exact U2I at K=100: {rc['faiss_over_exact_R@100']}.", "",
              "| users | method | R@50 | R@100 | R@200 |", "| --- | --- | --- | --- | --- |"]
    for g, row in rc["groups"].items():
        for method, m in row.items():
            if method == "users":
                continue
            lines.append(f"| {g} ({row['users']}) | {method} | {m['R@50']:.4f} | {m['R@100']:.4f} | {m['R@200']:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publish-days", type=int, default=3)
    parser.add_argument("--task", default="click_article")
    parser.add_argument("--sample", type=float, default=1.0, help="share of slates kept")
    parser.add_argument("--folder", type=Path, default=OUT / "ranking")
    parser.add_argument("--retrieval-rows", type=int, default=100_000, help="rows of the timed retrieval")
    parser.add_argument("--tiny", action="store_true", help="a small world and short training (a smoke run, not a result)")
    parser.add_argument("--render", action="store_true", help="only write docs/ranking_results.md from the JSON")
    args = parser.parse_args()
    if args.render:
        write_text(DOC, render(json.loads(RESULT.read_text())))
        print(f"wrote {DOC}")
        return
    from ingest import ingest, synth
    from validation import validate

    tiny = {}
    if args.tiny:
        import yaml

        base = yaml.safe_load((REPO / "params.yaml").read_text())
        tiny = {"synth": {"days": 5, "users": 150, "items_per_scene": 200, "new_items_per_scene_per_day": 10, "topics": 8},
                "train_universal": {"train": base["train_universal"]["train"] | {"epochs": 1, "min_steps": 0,
                                                                                  "checkpoint_every": 0},
                                    "valid_users": 30},
                "train_targeted": {"train": base["train_targeted"]["train"] | {"epochs": 1, "checkpoint_every": 0},
                                   "valid_users": 20},
                "registry": {"tolerance": 1.0, "warmup_tolerance": 1.0}}
    s = project(args.folder, features=not (args.folder / "features").exists(), **tiny)
    synth.run(s.synth, s.paths.landing)
    ingest.run(s)
    validate.run_all(s)
    all_days = schema.list_days(s.paths.events)
    last = all_days[-1]
    days = all_days[-(args.publish_days + 1):-1]
    t0 = time.perf_counter()
    timings = chain(s, days)
    result = {"task": args.task, "published_days": days, "chain_seconds": round(time.perf_counter() - t0, 1),
              "chain_timings": timings, "slate": s.synth.impressions_per_click}
    result["retrieval"] = retrieval_timing(s, args.task, days, last, args.retrieval_rows)
    print(json.dumps(result["retrieval"]), flush=True)
    result["ranking"] = ranking(s, args.task, days, last, args.sample)
    print(json.dumps(result["ranking"], indent=1), flush=True)
    result["recall"] = recall_eval(s, args.task, last)
    print(json.dumps(result["recall"], indent=1), flush=True)
    if args.tiny:  # a smoke run is not a result
        print(render(result))
        return
    write_json(RESULT, result)
    write_text(DOC, render(result))
    print(f"wrote {RESULT} and {DOC}")


if __name__ == "__main__":
    main()
