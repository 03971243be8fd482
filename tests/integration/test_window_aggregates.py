"""The window-aggregation engine (storage/window_aggregates.py) against brute force in pandas
(tests/support/window_oracle.py), on random events with ties at the window edges, nulls,
an availability lag, keys no row asks for and rows whose key has no event."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from support.window_oracle import close, expected

from sparkml_platform.config.aggregations import Aggregations
from sparkml_platform.storage import window_aggregates as wa

FUNCTIONS = ["count", "sum", "mean", "min", "max", "stddev", "first", "last", "approx_distinct", "p50", "p90"]
START = dt.datetime(2024, 1, 1)


def random_events(seed: int = 3, n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # Whole hours, so many events share a time and fall exactly on window edges.
    hours = rng.integers(0, 24 * 40, n)
    amount = rng.normal(100, 30, n).round(1)
    amount[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({
        "shop": rng.choice(["a", "b", "c", "d", None], n, p=[0.3, 0.3, 0.2, 0.15, 0.05]),
        "at": [START + dt.timedelta(hours=int(h)) for h in hours],
        "amount": amount,
        "kind": rng.choice(["x", "y", "z"], n),
    })


def random_rows(events: pd.DataFrame, seed: int = 4, n: int = 150) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # Half the rows at an event's exact time plus whole days (edges), half anywhere.
    picked = events["at"].sample(n // 2, random_state=seed, replace=True).to_numpy()
    edges = [pd.Timestamp(t) + pd.Timedelta(days=int(d)) for t, d in zip(picked, rng.integers(0, 8, n // 2))]
    anywhere = [START + dt.timedelta(minutes=int(m)) for m in rng.integers(0, 60 * 24 * 45, n - n // 2)]
    rows = pd.DataFrame({"row_id": range(n), "shop": rng.choice(["a", "b", "c", "e"], n),
                         "t": edges + anywhere})
    rows.loc[rows.index[:3], "t"] = pd.NaT  # rows without a time get nulls
    return rows


SPEC = Aggregations.model_validate({
    "source": "raw.sales", "event_time": "at", "availability": "2h", "snapshot": "1d",
    "aggregate": [{"column": "amount", "functions": FUNCTIONS, "windows": ["1d", "7d", "lifetime"]},
                  {"column": "kind", "functions": ["count", "approx_distinct"], "windows": ["3d"]}]})


def spark_frame(spark, frame: pd.DataFrame, schema: str):
    return spark.createDataFrame(frame.astype(object).where(frame.notna(), None), schema)


def compare(got: pd.DataFrame, want: pd.DataFrame, key: str, spec: Aggregations = SPEC) -> None:
    got, want = got.sort_values(key).reset_index(drop=True), want.sort_values(key).reset_index(drop=True)
    assert len(got) == len(want)
    for name, (_, function, _) in spec.output_columns().items():
        approximate = function == "approx_distinct"
        bad = [(got[key][i], got[name][i], want[name][i]) for i in range(len(got))
               if not close(_plain(got[name][i]), _plain(want[name][i]), approximate)]
        assert not bad, f"{name}: {len(bad)} rows differ, first (row, engine, brute force): {bad[:3]}"


def _plain(value):
    return None if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA else value


def test_every_function_and_window_as_of_each_rows_time_equals_brute_force(spark):
    events, rows = random_events(), random_rows(random_events())
    declared = wa.Declared(SPEC, ("shop",), "features.yml: feature_tables.sales_windows")
    source = spark_frame(spark, events, "shop string, at timestamp, amount double, kind string")
    prepared = wa.events_of(source, declared)
    got = wa.as_of(spark_frame(spark, rows, "row_id long, shop string, t timestamp"), "t",
                   {"shop": "shop"}, prepared, declared).toPandas()
    assert list(got.columns[:3]) == ["row_id", "shop", "t"]
    compare(got, expected(rows, "t", ["shop"], events, "at", SPEC), "row_id")


# What the one-pass sweep in the platform's jar computes (no approx_distinct, no percentile).
SWEPT_SPEC = Aggregations.model_validate({
    **SPEC.model_dump(mode="json", exclude_defaults=True),
    "aggregate": [{"column": "amount", "functions": list(wa.SWEPT), "windows": ["1d", "7d", "lifetime"]},
                  {"column": "kind", "functions": ["count"], "windows": ["3d"]}]})


@pytest.mark.parametrize("engine", ["sweep", "frames"])
def test_the_sweep_and_the_frames_both_equal_brute_force(spark, monkeypatch, engine):
    """The jar's sweep (each event added to and dropped from each window once) and the Spark
    frames a session without the jar runs: the same values, brute force's, on ties at window
    edges, nulls, rows without a time and keys without events."""
    swept, sweep = [], wa._swept
    if engine == "frames":
        monkeypatch.setattr(wa, "_sweep", lambda session: None)
    else:
        assert wa._sweep(spark) is not None, "the test session lacks the platform's jar (make setup)"
        monkeypatch.setattr(wa, "_swept", lambda *args: swept.append(1) or sweep(*args))
    events, rows = random_events(seed=8, n=900), random_rows(random_events(seed=8, n=900), seed=9, n=300)
    declared = wa.Declared(SWEPT_SPEC, ("shop",), "features.yml: feature_tables.sales_windows")
    source = spark_frame(spark, events, "shop string, at timestamp, amount double, kind string")
    got = wa.as_of(spark_frame(spark, rows, "row_id long, shop string, t timestamp"), "t",
                   {"shop": "shop"}, wa.events_of(source, declared), declared).toPandas()
    assert swept == ([1] if engine == "sweep" else [])
    assert list(got.columns[:3]) == ["row_id", "shop", "t"] and len(got) == len(rows)
    compare(got, expected(rows, "t", ["shop"], events, "at", SWEPT_SPEC), "row_id", SWEPT_SPEC)


def test_snapshots_hold_each_period_ends_values_and_change_only_where_written(spark):
    """Every row of the snapshot table equals brute force at its period end; and for every
    key and every period end up to the newest event, the newest snapshot row at or before it
    holds the values brute force gives there (no change point is missing)."""
    events = random_events(seed=5, n=300)
    declared = wa.Declared(SPEC, ("shop",), "features.yml: feature_tables.sales_windows")
    source = spark_frame(spark, events, "shop string, at timestamp, amount double, kind string")
    table = wa.snapshots(wa.events_of(source, declared), declared, "as_of").toPandas()
    assert table.groupby(["shop", "as_of"]).size().max() == 1
    assert (table["as_of"].dt.hour == 0).all() and (table["as_of"].dt.minute == 0).all()
    newest = (events["at"].max() + pd.Timedelta(hours=2)).ceil("D")
    assert table["as_of"].max() == newest
    compare(table.assign(row=range(len(table))),
            expected(table.assign(row=range(len(table))), "as_of", ["shop"], events, "at", SPEC), "row")
    # Every period end of every key: the newest row at or before it.
    days = pd.date_range(START, newest, freq="D")
    probes = pd.DataFrame([(s, d) for s in ["a", "b", "c", "d"] for d in days], columns=["shop", "as_of"])
    held = pd.merge_asof(probes.sort_values("as_of"), table.sort_values("as_of"), on="as_of", by="shop")
    held = held.dropna(subset=[c for c in SPEC.output_columns() if c.endswith("lifetime")], how="all")
    want = expected(held[["shop", "as_of"]], "as_of", ["shop"], events, "at", SPEC)
    compare(held.assign(row=range(len(held))), want.assign(row=range(len(want))), "row")


# What tiles merge (no percentile): every such function over finite and lifetime windows.
TILED_SPEC = Aggregations.model_validate({
    **SPEC.model_dump(mode="json", exclude_defaults=True),
    "aggregate": [{"column": "amount", "functions": list(wa.TILED), "windows": ["1d", "7d", "lifetime"]},
                  {"column": "kind", "functions": ["count", "approx_distinct"], "windows": ["3d"]}]})


def test_snapshots_merged_from_tiles_equal_brute_force(spark):
    """Each key's partial aggregates per day, merged into every window at every change point:
    the values brute force gives at those period ends, and the same rows `snapshots` computes
    from the events."""
    events = random_events(seed=6, n=500)
    declared = wa.Declared(TILED_SPEC, ("shop",), "features.yml: feature_tables.sales_windows")
    source = wa.events_of(spark_frame(spark, events, "shop string, at timestamp, amount double, kind string"),
                          declared)
    table = wa.from_tiles(wa.tiles_of(source, declared), declared, "as_of").toPandas()
    direct = wa.snapshots(source, declared, "as_of").toPandas()
    assert sorted(zip(table["shop"], table["as_of"])) == sorted(zip(direct["shop"], direct["as_of"]))
    rows = table.assign(row=range(len(table)))
    compare(rows, expected(rows, "as_of", ["shop"], events, "at", TILED_SPEC), "row", TILED_SPEC)


@pytest.mark.parametrize("change, key, message", [
    ({"event_time": "when"}, "aggregations.event_time", "column 'when' is not in raw.sales"),
    ({"event_time": "kind"}, "aggregations.event_time", "is string, not a timestamp or date"),
    ({"aggregate": [{"column": "kind", "functions": ["mean"], "windows": ["1d"]}]},
     "aggregations.aggregate.0.functions", "mean of 'kind', which is string: these need a number"),
    ({"aggregate": [{"column": "price", "functions": ["sum"], "windows": ["1d"]}]},
     "aggregations.aggregate.0.column", "'price' is not a column of raw.sales"),
    ({"filter": "amount >"}, "aggregations.filter", "PARSE_SYNTAX_ERROR"),
    ({"filter": "price > 3"}, "aggregations.filter", "price"),
    ({"columns": {"big": "amount >>> 2 +"}}, "aggregations.columns.big", "PARSE_SYNTAX_ERROR"),
])
def test_a_declaration_the_source_cannot_feed_is_refused_naming_the_key(spark, change, key, message):
    from sparkml_platform.core.errors import ConfigError

    spec = Aggregations.model_validate({**SPEC.model_dump(), **change, "rename": {}})
    declared = wa.Declared(spec, ("shop",), "features.yml: feature_tables.sales_windows")
    source = spark_frame(spark, random_events(n=20), "shop string, at timestamp, amount double, kind string")
    with pytest.raises(ConfigError) as caught:
        wa.events_of(source, declared)
    assert f"feature_tables.sales_windows.{key}" in str(caught.value) and message in str(caught.value)


def test_keys_missing_from_the_source_are_named(spark):
    from sparkml_platform.core.errors import ConfigError

    declared = wa.Declared(SPEC, ("store",), "features.yml: feature_tables.sales_windows")
    source = spark_frame(spark, random_events(n=20), "shop string, at timestamp, amount double, kind string")
    with pytest.raises(ConfigError, match=r"feature_tables.sales_windows.keys: store is not a column of raw.sales"):
        wa.events_of(source, declared)


# --- an aggregation table in a project: built, looked up in training sets both ways ---------

TABLE = {"description": "Sales per shop over windows.", "owner": "tests", "keys": ["shop"],
         "event_time": "as_of", "aggregations": {**SPEC.model_dump(mode="json", exclude_defaults=True),
                                                  "source": "raw.sales"}}


# A table built from tiles (every function merges), over a source landed day by day.
DAILY = {"description": "Sales per shop, built day by day.", "owner": "tests", "keys": ["shop"],
         "event_time": "as_of", "aggregations": {
             "source": "raw.sales_daily", "event_time": "at",
             "aggregate": [{"column": "amount", "functions": ["count", "sum", "mean", "stddev", "min", "last"],
                            "windows": ["1d", "7d"]},
                           {"column": "kind", "functions": ["approx_distinct"], "windows": ["3d"]}]}}
DAILY_SPEC = Aggregations.model_validate(DAILY["aggregations"])


@pytest.fixture(scope="module")
def shop_project(tmp_path_factory):
    """A project of two parquet sources written here (sales events, visits as labels), an
    aggregation table over the sales and two training sets on the visits: one temporal, one
    reading the table's snapshots."""
    from conftest import make_project
    from support.overlays import TINY

    root = tmp_path_factory.mktemp("shops")
    events, visits = random_events(seed=11, n=400), random_rows(random_events(seed=11, n=400), seed=12, n=120)
    visits = visits.dropna(subset=["t"]).assign(bought=lambda f: (f["row_id"] % 3 == 0).astype(int))
    (root / "data").mkdir()
    def utc(column):  # microseconds, as Spark reads them
        return column.dt.tz_localize("UTC").astype("datetime64[us, UTC]")

    events.assign(at=utc(events["at"])).to_parquet(root / "data" / "sales.parquet")
    visits.assign(t=utc(visits["t"])).to_parquet(root / "data" / "visits.parquet")
    label = {"table": "raw.visits", "keys": ["row_id"], "event_time": "t", "label": "bought"}
    conf = make_project(root, {
        "platform.yml": TINY["platform.yml"],
        "sources.yml": {"sources": {name: {"path": str(root / "data" / f"{name}.parquet"), "format": "parquet"}
                                    for name in ("sales", "visits")}},
        "features.yml": {"feature_tables": {"shop_windows": TABLE, "shop_daily": DAILY, "shop_tiled": {
            **TABLE, "aggregations": {**TILED_SPEC.model_dump(mode="json", exclude_defaults=True),
                                      "source": "raw.sales"}}}},
        "training_sets.yml": {"training_sets": {
            "visits_temporal": {"description": "t", "label": label,
                                "features": [{"table": "shop_windows"}], "split": {"type": "random"}},
            "visits_snapshot": {"description": "s", "label": label,
                                "features": [{"table": "shop_windows", "accuracy": "snapshot"}],
                                "split": {"type": "random"}}}},
        "models.yml": {"models": {
            "visit_buys": {"training_set": "visits_temporal", "estimator": {"type": "logistic_regression"},
                           "thresholds": {"roc_auc": {"min": 0.0}}},
            # Served online: a single-machine model (trees take the nulls of a quiet window).
            "visit_buys_online": {"training_set": "visits_temporal", "thresholds": {"roc_auc": {"min": 0.0}},
                                  "estimator": {"type": "sklearn", "params": {"max_iter": 30, "random_state": 3},
                                                "class": "sklearn.ensemble.HistGradientBoostingClassifier"}}}},
    })
    return conf, events, visits


def test_a_built_table_and_a_temporal_training_set_equal_brute_force(spark, shop_project):
    from sparkml_platform import Workspace

    conf, events, visits = shop_project
    ws = Workspace.from_config(_config(conf), spark=spark)
    ws.load_sources(["sales", "visits"])
    built = ws.features.build("shop_windows")
    assert built.mode == "full" and built.rows > 0
    table = ws.features.read("shop_windows").toPandas()
    table["as_of"] = pd.to_datetime(table["as_of"])
    compare(table.assign(row=range(len(table))),
            expected(table.assign(row=range(len(table))), "as_of", ["shop"], events, "at", SPEC), "row")
    again = ws.features.build("shop_windows")
    assert again.mode == "up to date"
    # Temporal: each visit's values exactly as of its own time, from the events.
    rows = ws.build_training_set("visits_temporal").to_pandas()
    rows["t"] = pd.to_datetime(rows["t"])
    compare(rows, expected(rows[["row_id", "shop", "t"]], "t", ["shop"], events, "at", SPEC), "row_id")
    # Snapshot: the newest table row at or before each visit (the online store's answer).
    snap = ws.build_training_set("visits_snapshot").to_pandas()
    snap["t"] = pd.to_datetime(snap["t"])
    held = pd.merge_asof(snap[["row_id", "shop", "t"]].sort_values("t"), table.sort_values("as_of"),
                         left_on="t", right_on="as_of", by="shop").drop(columns="as_of")
    compare(snap, held, "row_id")
    check_published_snapshots(ws, table, snap)


def check_published_snapshots(ws, table: pd.DataFrame, snap: pd.DataFrame) -> None:
    """Published like any table: the store keeps each shop's newest snapshot row; a request
    at or after it gets the values the snapshot training set holds at that time, an earlier
    one is said to be before what is kept (never a newer row's values)."""
    from sparkml_platform.storage import online_stores

    published = ws.features.publish("shop_windows")
    newest = table.sort_values("as_of").groupby("shop").tail(1).set_index("shop")
    assert published.mode == "full" and published.written == len(newest)
    store = online_stores.open_store(ws.config)
    micros = lambda t: int(pd.Timestamp(t).value // 1000)  # noqa: E731
    later = pd.DataFrame({"shop": newest.index, "t": newest["as_of"].to_numpy() + pd.Timedelta(days=400),
                          "row_id": -1 - np.arange(len(newest))})  # each shop, long after its newest row
    asked = pd.concat([snap, later])
    _, values = store.lookup("shop_windows", [online_stores.key_json(["shop"], [s]) for s in asked["shop"]])
    answers = [online_stores.as_of(v, micros(t), None) for v, t in zip(values, asked["t"])]
    kept = (asked["t"] >= asked["shop"].map(newest["as_of"])).to_numpy()
    # Before the newest row: no row where the shop has no other (or none at all), else older rows dropped.
    alone = (asked["shop"].map(table["shop"].value_counts()).fillna(0) <= 1).to_numpy()
    assert [why for _, why in answers] == [online_stores.FOUND if k else online_stores.NO_ROW if a
                                           else online_stores.BEFORE_KEPT for k, a in zip(kept, alone)]
    found = pd.DataFrame([features for features, _ in answers if features is not None]).assign(
        row_id=asked["row_id"].to_numpy()[kept])
    want = pd.concat([snap[kept[:len(snap)]], newest.reset_index().assign(row_id=later["row_id"].to_numpy())])
    compare(found, want[found.columns], "row_id")


def _config(conf):
    from sparkml_platform.config import load_config

    return load_config(conf, "test")


def test_a_filter_that_does_not_parse_exits_2_naming_file_and_key_and_writes_nothing(spark, shop_project):
    """Checked when the build first reads the source (Spark's own parser): exit 2, the file
    and key named, no table made."""
    import yaml
    from conftest import run_main

    conf, _, _ = shop_project
    features = conf / "test" / "features.yml"
    kept = features.read_text()
    bad = yaml.safe_load(kept)
    bad["feature_tables"]["bad_windows"] = {**TABLE, "aggregations": {**TABLE["aggregations"],
                                                                      "filter": "amount > > 3"}}
    features.write_text(yaml.safe_dump(bad))
    try:
        if not (conf.parent / ".sparkml" / "lake" / "raw" / "sales").exists():  # run on its own
            assert run_main(conf, "sources", "load", "sales").returncode == 0
        done = run_main(conf, "features", "build", "bad_windows")
    finally:
        features.write_text(kept)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "conf/test/features.yml: feature_tables.bad_windows.aggregations.filter" in done.stderr, done.stderr
    assert not (conf.parent / ".sparkml" / "lake" / "features" / "bad_windows").exists()


def test_batch_scoring_computes_a_temporal_models_values_as_it_was_trained(spark, shop_project):
    """A model trained on a temporal lookup scores rows with values computed the same way,
    as of each row's own time: on the training set's own rows, the very values it was
    trained on."""
    from sparkml_platform import Workspace

    conf, events, visits = shop_project
    ws = Workspace.from_config(_config(conf), spark=spark)
    if not (conf.parent / ".sparkml" / "lake" / "features" / "shop_windows").exists():  # run on its own
        ws.load_sources(["sales", "visits"])
        ws.features.build("shop_windows")
        ws.build_training_set("visits_temporal")
    trained = ws.train("visit_buys", tune=False)
    rows = ws.training_set("visits_temporal").to_pandas()
    scored = ws.score_batch(f"visit_buys/{trained.version}",
                            spark_frame(spark, visits, "row_id long, shop string, t timestamp, bought long")
                            ).toPandas()
    assert len(scored) == len(visits)
    compare(scored[["row_id", *SPEC.output_columns()]], rows[["row_id", *SPEC.output_columns()]], "row_id")


@pytest.mark.parametrize("name", ["shop_windows", "shop_tiled"])
def test_a_build_killed_while_writing_leaves_the_table_and_the_next_one_duplicates_nothing(spark, shop_project,
                                                                                           name):
    """`features build --full` in a process of its own, SIGKILLed once it has written data files
    it has not committed: the table reads as before; the next build rewrites the same rows.
    A table built from tiles is killed after its tiles' commit, before its rows'."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from conftest import cli_env, run_main

    conf, events, _ = shop_project
    spec = SPEC if name == "shop_windows" else TILED_SPEC
    table = conf.parent / ".sparkml" / "lake" / "features" / name
    if not table.exists():  # first built here, in this session (only the killed build needs a process)
        from sparkml_platform import Workspace

        ws = Workspace.from_config(_config(conf), spark=spark)
        if not (conf.parent / ".sparkml" / "lake" / "raw" / "sales").exists():
            ws.load_sources(["sales"])
        ws.features.build(name)
    before = spark.read.format("delta").load(str(table)).toPandas()
    before_files, log = set(table.rglob("*.parquet")), sorted((table / "_delta_log").glob("*.json"))
    tiles = conf.parent / ".sparkml" / "lake" / "_tiles" / name
    tiles_before = len(list((tiles / "_delta_log").glob("*.json")))
    proc = subprocess.Popen([str(Path(sys.executable).parent / "sparkml"), "--conf", str(conf), "--env", "test",
                             "features", "build", name, "--full"], env=cli_env(), cwd=conf.parent,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not set(table.rglob("*.parquet")) - before_files:
        time.sleep(0.02)
    still_running = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert still_running, "the build finished before it could be killed"
    assert set(table.rglob("*.parquet")) - before_files  # killed with its files written ...
    assert sorted((table / "_delta_log").glob("*.json")) == log  # ... and not committed
    compare(spark.read.format("delta").load(str(table)).toPandas().assign(row=lambda f: f["shop"] + f["as_of"].astype(str)),
            before.assign(row=lambda f: f["shop"] + f["as_of"].astype(str)), "row", spec)
    if name == "shop_tiled":  # its tiles were committed, whole, before its rows were written
        assert len(list((tiles / "_delta_log").glob("*.json"))) == tiles_before + 1
    again = run_main(conf, "features", "build", name, "--full")
    assert again.returncode == 0, again.stderr[-2000:]
    after = spark.read.format("delta").load(str(table)).toPandas()
    assert not after.duplicated(["shop", "as_of"]).any() and len(after) == len(before)
    after["as_of"] = pd.to_datetime(after["as_of"])
    compare(after.assign(row=range(len(after))),
            expected(after.assign(row=range(len(after))), "as_of", ["shop"], events, "at", spec), "row", spec)


def test_daily_builds_read_only_two_days_of_events_and_equal_brute_force_and_a_full_build(spark, shop_project):
    """Twelve days landed and built whole, then one day landed and built at a time: each of
    those builds runs with every event file but the newest two days' moved away (so it can
    read no other), computes those days' tiles and merges them with the older tiles. The last
    day lands with late events of five days before, which that build reads and counts. At
    every period end the table holds brute force's values (a shop that went quiet included:
    its windows empty at the first incremental build's midnight), and rows from the last
    build on equal a full rebuild's."""
    import shutil

    from sparkml_platform import Workspace

    conf, _, _ = shop_project
    ws = Workspace.from_config(_config(conf), spark=spark)
    rng = np.random.default_rng(21)
    n = 1200

    def sales(shops, hours):
        return pd.DataFrame({"shop": rng.choice(shops, n), "at": [START + dt.timedelta(hours=int(h)) for h in hours],
                             "amount": np.where(rng.random(n) < 0.1, np.nan, rng.normal(50, 9, n).round(2)),
                             "kind": rng.choice(["x", "y", "z", "w"], n)})

    events = pd.concat([sales(["a", "b", "c"], rng.integers(0, 24 * 16, n)),
                        sales(["q"], rng.integers(24 * 4, 24 * 5, n))[:20]], ignore_index=True)  # q: day 4 only
    late = events[(events["shop"] == "a") & (events["at"] >= START + dt.timedelta(days=10))
                  & (events["at"] < START + dt.timedelta(days=11))].index[:5]  # land with day 15
    raw = conf.parent / ".sparkml" / "lake" / "raw" / "sales_daily"
    aside = conf.parent / "aside"
    files_of = {}

    def land(day: int, more=None) -> None:
        frame = events[(events["at"] >= START + dt.timedelta(days=day))
                       & (events["at"] < START + dt.timedelta(days=day + 1)) & ~events.index.isin(late)]
        before = set(raw.glob("*.parquet"))
        spark_frame(spark, pd.concat([frame, more]) if more is not None else frame,
                    "shop string, at timestamp, amount double, kind string").coalesce(1) \
            .write.format("delta").mode("append").save(str(raw))
        files_of[day] = set(raw.glob("*.parquet")) - before

    for day in range(12):
        land(day)
    assert ws.features.build("shop_daily").mode == "full"
    for day in range(12, 16):
        land(day, events.loc[late] if day == 15 else None)
        kept = files_of[day - 1] | files_of[day] | (set().union(*[files_of[d] for d in (9, 10, 11, 12, 13)])
                                                    if day == 15 else set())
        aside.mkdir(exist_ok=True)
        for f in set(raw.glob("*.parquet")) - kept:
            shutil.move(f, aside / f.name)
        try:
            built = ws.features.build("shop_daily")
        finally:
            for f in aside.iterdir():
                shutil.move(f, raw / f.name)
        assert built.mode == "incremental" and built.window[0] == str((START + dt.timedelta(days=day)).date())
    table = ws.features.read("shop_daily").toPandas()
    table["as_of"] = pd.to_datetime(table["as_of"])
    assert not table.duplicated(["shop", "as_of"]).any()
    # The rows before the last build were written before the late events landed.
    last_build = START + dt.timedelta(days=15)
    early = events.drop(late)
    for rows, truth in ((table[table["as_of"] < last_build], early), (table[table["as_of"] >= last_build], events)):
        rows = rows.assign(row=range(len(rows)))
        compare(rows, expected(rows, "as_of", ["shop"], truth, "at", DAILY_SPEC), "row", DAILY_SPEC)
    # No change point missing: at every midnight, each shop's newest row at or before it.
    midnights = pd.date_range(START + dt.timedelta(days=1), table["as_of"].max(), freq="D")
    probes = pd.DataFrame([(s, d) for s in "abcq" for d in midnights], columns=["shop", "as_of"])
    held = pd.merge_asof(probes.sort_values("as_of"), table.sort_values("as_of"), on="as_of", by="shop")
    held = held[held["as_of"] < last_build].dropna(subset=["amount_count_7d", "kind_approx_distinct_3d",
                                                           "amount_count_1d"], how="all")
    compare(held.assign(row=range(len(held))),
            expected(held[["shop", "as_of"]], "as_of", ["shop"], early, "at", DAILY_SPEC).assign(
                row=range(len(held))), "row", DAILY_SPEC)
    assert ws.features.build("shop_daily", full=True).mode == "full"
    # The tiles go with the table's VACUUM (nothing removed an hour ago yet: nothing deleted).
    assert ws.features.vacuum("shop_daily", retain_hours=1)["tiles_files_deleted"] == 0
    whole = ws.features.read("shop_daily").toPandas()
    whole["as_of"] = pd.to_datetime(whole["as_of"])
    key = lambda f: f["shop"] + f["as_of"].astype(str)  # noqa: E731
    newest = table[table["as_of"] >= last_build]
    compare(newest.assign(row=key), whole[whole["as_of"] >= last_build].assign(row=key), "row", DAILY_SPEC)


def test_a_temporal_model_is_served_online_the_values_batch_computes_as_of_each_requests_time(spark, shop_project):
    """`features publish` also writes each shop's recent events; from them the store answers
    every function and window as of a request's own time, equal to brute force, and `sparkml
    serve` predicts what batch scoring does on the same rows. A request before a shop's newest
    event is said to be before the kept window; a shop without events has no row."""
    from support.online_server import Served

    from sparkml_platform import Workspace
    from sparkml_platform.storage import online_stores
    from sparkml_platform.storage import recent_events

    conf, events, visits = shop_project
    ws = Workspace.from_config(_config(conf), spark=spark)
    if not (conf.parent / ".sparkml" / "lake" / "features" / "shop_windows").exists():  # run on its own
        ws.load_sources(["sales", "visits"])
        ws.features.build("shop_windows")
        ws.build_training_set("visits_temporal")
    trained = ws.train("visit_buys_online", tune=False)
    published = ws.features.publish("shop_windows", full=True)
    assert published.recent_events["written"] == 4  # shops a to d; e has no event
    assert ws.features.publish("shop_windows").recent_events["mode"] == "up to date"
    cut = (events.dropna(subset=["shop"]).groupby("shop")["at"].max() + pd.Timedelta(hours=2))
    rng = np.random.default_rng(31)
    asked = [(s, cut[s] + pd.Timedelta(hours=int(h))) for s in "abcd" for h in [0, *rng.integers(1, 24 * 9, 12)]]
    asked += [(s, cut[s] + pd.Timedelta(minutes=int(m))) for s in "abcd" for m in rng.integers(1, 60 * 24 * 9, 6)]
    asked += [("e", cut.max()), ("a", cut["a"] - pd.Timedelta(hours=1))]
    rows = pd.DataFrame(asked, columns=["shop", "t"]).assign(row_id=lambda f: -1 - np.arange(len(f)))
    micros = lambda t: int(pd.Timestamp(t).value // 1000)  # noqa: E731
    # The store's values, every function and window, against brute force.
    store = online_stores.open_store(ws.config)
    _, values = store.lookup("shop_windows~events", [online_stores.key_json(["shop"], [s]) for s in rows["shop"]])
    answers = [recent_events.answer(v, micros(t), SPEC, list(SPEC.output_columns())) for v, t in zip(values, rows["t"])]
    assert [why for _, why in answers] == [online_stores.FOUND] * (len(rows) - 2) + [online_stores.NO_ROW,
                                                                                      online_stores.BEFORE_KEPT]
    got = pd.DataFrame([f for f, _ in answers[:-2]]).assign(row_id=rows["row_id"][:-2].to_numpy())
    compare(got, expected(rows[:-2], "t", ["shop"], events, "at", SPEC), "row_id")
    # Over HTTP: the served model's predictions are batch scoring's on the same rows.
    model = f"visit_buys_online/{trained.version}"
    batch = ws.score_batch(model, spark_frame(spark, rows, "shop string, t timestamp, row_id long")).toPandas()
    served = Served(conf, model)
    try:
        status, body = served.predict({"rows": [{"row_id": int(r.row_id), "shop": r.shop, "t": r.t.isoformat() + "Z"}
                                                for r in rows.itertuples()]})
    finally:
        served.stop()
    assert status == 200 and body.get("rows_before_kept_window") == {"shop_windows": 1}, body
    online = [p["probability"] for p in body["predictions"]]
    want = batch.set_index("row_id").loc[rows["row_id"], "probability"].to_numpy()
    assert max(abs(o - w) for o, w in zip(online[:-1], want[:-1])) < 1e-9
