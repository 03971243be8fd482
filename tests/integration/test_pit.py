"""The point-in-time join against an independent reference (pandas merge_asof)."""

from __future__ import annotations

import datetime as dt
import random

import pandas as pd
import pytest

from sparkml_platform.core.errors import ConfigError
from sparkml_platform.storage import pit
from sparkml_platform.storage.pit import FeatureLookup, as_of_join, content_digest, join_features

T0 = dt.datetime(2013, 1, 1)


@pytest.fixture(autouse=True, params=["merge", "window"])
def path(request, spark, monkeypatch):
    """Every test runs on both ways of joining: the sort-merge scan in the platform's jar,
    and the window a session without that jar uses."""
    if request.param == "merge":
        assert pit._merge_scan(spark) is not None, "the test session lacks the platform's jar (make setup)"
    else:
        monkeypatch.setattr(pit, "_merge_scan", lambda session: None)
    return request.param


def ts(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def test_picks_newest_row_at_or_before_and_never_later(spark):
    labels = spark.createDataFrame(
        [(1, "a", ts(10)), (2, "a", ts(20)), (3, "a", ts(5)), (4, "b", ts(10)), (5, None, ts(10))],
        "id int, k string, t timestamp")
    feats = spark.createDataFrame(
        [("a", ts(5), 1.0), ("a", ts(15), 2.0), ("a", ts(25), 3.0), ("c", ts(0), 9.0)],
        "k string, ft timestamp, x double")
    lookup = FeatureLookup("f", {"k": "k"}, "ft", {"x": "x"})
    out = as_of_join(labels, "t", feats, lookup, "m").orderBy("id").collect()
    assert [(r.id, r.x, r.m) for r in out] == [
        (1, 1.0, True),   # 5 <= 10 < 15
        (2, 2.0, True),   # newest before 20 is 15, never 25
        (3, 1.0, True),   # equal event time counts as "at or before"
        (4, None, False),  # key without feature rows: nulls, row kept
        (5, None, False),  # null key: nulls, row kept
    ]


@pytest.mark.parametrize("kind", ["timestamp", "timestamp_ntz", "date", "before 1970"])
def test_every_time_type_and_times_before_1970(spark, kind):
    """The scan sorts by a long holding the time in whole seconds (days for dates) since 1970,
    held at 0 before it: rows a fraction of a second apart, dates, and times before 1970
    still give the newest row at or before each label's time."""
    base = {"date": dt.date(2013, 1, 1), "before 1970": dt.datetime(1950, 6, 1)}.get(kind, T0)
    step = dt.timedelta(days=1) if kind == "date" else dt.timedelta(milliseconds=50)
    at = lambda n: base + n * step  # noqa: E731
    time_type = "timestamp" if kind == "before 1970" else kind
    labels = spark.createDataFrame(
        [(1, "a", at(10)), (2, "a", at(20)), (3, "a", at(5)), (4, "b", at(10)), (5, None, at(10)), (6, "a", None)],
        f"id int, k string, t {time_type}")
    feats = spark.createDataFrame(
        [("a", at(5), 1.0), ("a", at(15), 2.0), ("a", at(25), 3.0), ("c", at(0), 9.0)],
        f"k string, ft {time_type}, x double")
    out = as_of_join(labels, "t", feats, FeatureLookup("f", {"k": "k"}, "ft", {"x": "x"}), "m")
    assert [(r.id, r.x, r.m) for r in out.orderBy("id").collect()] == [
        (1, 1.0, True), (2, 2.0, True), (3, 1.0, True), (4, None, False), (5, None, False), (6, None, False)]


def test_lookback_expires_old_values(spark):
    labels = spark.createDataFrame([(1, "a", ts(100)), (2, "a", ts(40))], "id int, k string, t timestamp")
    feats = spark.createDataFrame([("a", ts(0), 1.0)], "k string, ft timestamp, x double")
    lookup = FeatureLookup("f", {"k": "k"}, "ft", {"x": "x"}, lookback_seconds=3600)
    out = {r.id: r.x for r in as_of_join(labels, "t", feats, lookup, "m").collect()}
    assert out == {1: None, 2: 1.0}


def test_ties_on_event_time_are_deterministic(spark):
    labels = spark.createDataFrame([(1, "a", ts(10))], "id int, k string, t timestamp")
    rows = [("a", ts(5), 1.0), ("a", ts(5), 3.0), ("a", ts(5), 2.0), ("a", ts(5), None)]
    results = set()
    for seed in range(4):
        random.Random(seed).shuffle(rows)
        feats = spark.createDataFrame(rows, "k string, ft timestamp, x double").repartition(3)
        lookup = FeatureLookup("f", {"k": "k"}, "ft", {"x": "x"})
        results.add(as_of_join(labels, "t", feats, lookup, "m").collect()[0].x)
    want = tie_ranks(spark, pd.DataFrame(rows, columns=["k", "ft", "x"]), ["x"]).sort_values("__tie")
    assert results == {want["x"].iloc[-1]}  # the greatest tie-break hash wins, whatever the order


def test_incompatible_event_time_types_are_refused(spark):
    labels = spark.createDataFrame([(1, "a", dt.date(2013, 1, 1))], "id int, k string, t date")
    feats = spark.createDataFrame([("a", ts(5), 1.0)], "k string, ft timestamp, x double")
    with pytest.raises(ConfigError, match="event time 'ft' is timestamp but the entity event time 't' is date"):
        as_of_join(labels, "t", feats, FeatureLookup("f", {"k": "k"}, "ft", {"x": "x"}), "m")


def tie_ranks(spark, feats: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """`feats` with the tie-break the join documents: a 64-bit hash of the feature values and
    of which of them are null (computed by Spark, whose xxhash64 defines it)."""
    from pyspark.sql import functions as F

    sdf = spark.createDataFrame(feats.assign(__row=range(len(feats))).astype({c: "float64" for c in columns}))
    hashed = sdf.select("__row", F.xxhash64(*[x for c in columns for x in (F.col(c), F.col(c).isNull())])
                        .alias("__tie")).toPandas()
    return feats.assign(__tie=hashed.set_index("__row")["__tie"].reindex(range(len(feats))).to_numpy())


def reference(spark, labels: pd.DataFrame, feats: pd.DataFrame, keys: list[str], lookback_s: int | None,
              out: str, unique: bool) -> pd.Series:
    """pandas merge_asof: backward search by the keys, with the same tie rule (the greatest
    tie-break hash wins; a table with unique times needs none)."""
    feats = feats.dropna(subset=keys)
    if not unique:
        feats = tie_ranks(spark, feats, ["x"]).sort_values(["ft", "__tie"]).drop(columns="__tie")
        feats = feats.drop_duplicates([*keys, "ft"], keep="last")
    left = labels.dropna(subset=keys).sort_values("t")
    merged = pd.merge_asof(left, feats.sort_values("ft").rename(columns={"x": out}), left_on="t",
                           right_on="ft", by=keys, direction="backward",
                           tolerance=pd.Timedelta(seconds=lookback_s) if lookback_s else None)
    return merged.set_index("id")[out].reindex(labels["id"])


# name, entity keys, lookback, one row per key and time
TABLES = [("f1", ["k1"], None, False), ("f2", ["k2"], 1800, False), ("f3", ["k1"], 600, False),
          ("f4", ["k1", "k2"], None, False), ("f5", ["k2"], 3600, True), ("f6", ["k1"], None, True)]


def test_matches_pandas_merge_asof_on_random_inputs(spark):
    """Several lookups sharing their keys (one sort), others keying on other columns or on
    two, each with its own lookback, with and without unique times, joined in one call."""
    rng = random.Random(7)
    keys = ["a", "b", "c", "d", None]
    labels = pd.DataFrame({
        "id": range(400),
        "k1": [rng.choice(keys) for _ in range(400)],
        "k2": [rng.choice(keys[:3]) for _ in range(400)],
        "t": [ts(rng.randrange(0, 500)) for _ in range(400)],
    })
    tables = []
    for name, on, lookback, unique in TABLES:
        n = 300
        feats = pd.DataFrame({
            **{key: [rng.choice(keys[:4]) for _ in range(n)] for key in on},  # no 'd' for k2 labels
            "ft": [ts(rng.randrange(0, 500)) for _ in range(n)],  # many ties and late rows
            "x": [rng.choice([None, *range(20)]) for _ in range(n)],
        }).astype({"x": "float64"})
        if unique:
            feats = feats.drop_duplicates([*on, "ft"])
        tables.append((name, on, lookback, unique, feats))
    sdf_labels = spark.createDataFrame(labels, "id long, k1 string, k2 string, t timestamp")
    lookups = []
    for name, on, lookback, unique, feats in tables:
        sdf = spark.createDataFrame(feats, ", ".join([*(f"{k} string" for k in on), "ft timestamp, x double"]))
        lookups.append((FeatureLookup(name, {k: k for k in on}, "ft", {"x": f"x_{name}"}, lookback,
                                      unique_times=unique), sdf))
    joined, flags = join_features(sdf_labels, "t", lookups)
    # The entity columns, then each lookup's columns and flag in the order given.
    assert joined.columns == ["id", "k1", "k2", "t", *[c for (n, *_), f in zip(TABLES, flags) for c in (f"x_{n}", f)]]
    got = joined.toPandas().set_index("id").sort_index()
    assert len(got) == len(labels) and got.index.is_unique  # nothing dropped or duplicated
    for (name, on, lookback, unique, feats), flag in zip(tables, flags):
        want = reference(spark, labels, feats, on, lookback, f"x_{name}", unique).sort_index()
        pd.testing.assert_series_equal(got[f"x_{name}"], want, check_names=False, check_index_type=False)
        matched = reference(spark, labels, feats.assign(x=1.0), on, lookback, "m", unique).sort_index()
        assert (got[flag] == matched.notna()).all(), name  # the flag: a row matched, even of nulls


def test_keys_whose_hashes_collide_are_joined_apart(spark):
    """The scan sorts by a long holding 32 bits of a hash of the keys and the time, so rows of
    two keys with the same 32 bits interleave in time: each key still gets its own newest row,
    ties included (several times share a second there)."""
    from pyspark.sql import functions as F

    hashed = spark.range(400_000).select(F.col("id").alias("k"), F.shiftright(F.xxhash64("k"), 32).alias("h"))
    pair = hashed.groupBy("h").agg(F.collect_list("k").alias("ks")).where(F.size("ks") > 1).first()
    assert pair is not None, "no two of 400,000 keys share the upper 32 bits of their hash"
    a, b = pair.ks[:2]
    rng = random.Random(11)
    seconds = lambda: T0 + dt.timedelta(seconds=rng.randrange(0, 40))  # noqa: E731
    labels = pd.DataFrame({"id": range(120), "k": [rng.choice([a, b]) for _ in range(120)],
                           "t": [seconds() for _ in range(120)]})
    feats = pd.DataFrame({"k": [rng.choice([a, b]) for _ in range(200)], "ft": [seconds() for _ in range(200)],
                          "x": [float(rng.randrange(50)) for _ in range(200)]})
    lookup = FeatureLookup("f", {"k": "k"}, "ft", {"x": "x"})
    parts = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", "1")  # both keys in one partition, interleaved
    try:
        joined = as_of_join(spark.createDataFrame(labels, "id long, k long, t timestamp"), "t",
                            spark.createDataFrame(feats, "k long, ft timestamp, x double"), lookup, "m")
        got = joined.toPandas().set_index("id").sort_index()
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", parts)
    want = reference(spark, labels, feats, ["k"], None, "x", False).sort_index()
    assert got["m"].sum() > 50  # most labels have a row of their key before them
    pd.testing.assert_series_equal(got["x"], want, check_names=False, check_index_type=False)


def test_lookups_sharing_keys_are_answered_with_one_sort(spark, path):
    from pyspark.sql import functions as F

    labels = spark.createDataFrame([(1, "a", ts(10))], "id int, k string, t timestamp")
    feats = spark.createDataFrame([("a", ts(5), 1.0)], "k string, ft timestamp, x double")
    other = spark.createDataFrame([("a", ts(5), 2.0)], "o string, ft timestamp, y double")
    shared = [(FeatureLookup(f"f{i}", {"k": "k"}, "ft", {"x": f"x{i}"}, unique_times=True), feats)
              for i in range(3)]
    plan = lambda df: df._jdf.queryExecution().executedPlan().toString()  # noqa: E731
    one_key, _ = join_features(labels, "t", shared)
    two_keys, _ = join_features(labels.withColumn("o", F.lit("a")), "t",
                                [*shared, (FeatureLookup("g", {"o": "o"}, "ft", {"y": "y"}), other)])
    if path == "window":
        assert plan(one_key).count("Window [") == 1 and plan(two_keys).count("Window [") == 2
    else:  # each key set's labels shuffled and sorted once, and each table once
        shuffles = lambda df: df._jdf.rdd().toDebugString().count("ShuffledRowRDD")  # noqa: E731
        assert "Window [" not in plan(one_key) and (shuffles(one_key), shuffles(two_keys)) == (4, 6)
    assert [tuple(r) for r in one_key.collect()] == [(1, "a", ts(10), 1.0, True, 1.0, True, 1.0, True)]


def test_an_empty_side_gives_every_label_row_once_without_a_match(spark):
    labels = spark.createDataFrame([(1, "a", ts(10)), (2, None, ts(10))], "id int, k string, t timestamp")
    feats = spark.createDataFrame([("a", ts(5), 1.0)], "k string, ft timestamp, x double")
    none = feats.where("false")
    lookup = FeatureLookup("f", {"k": "k"}, "ft", {"x": "x"})
    assert sorted(tuple(r) for r in as_of_join(labels, "t", none, lookup, "m").collect()) == [
        (1, "a", ts(10), None, False), (2, None, ts(10), None, False)]
    assert as_of_join(labels.where("false"), "t", feats, lookup, "m").collect() == []


def test_an_observation_on_the_label_rows_still_reports(spark):
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    seen = Observation("labels")
    labels = spark.createDataFrame([(1, "a", ts(10)), (2, "b", ts(10))], "id int, k string, t timestamp") \
        .observe(seen, F.count(F.lit(1)).alias("rows"))
    feats = spark.createDataFrame([("a", ts(5), 1.0)], "k string, ft timestamp, x double")
    out = as_of_join(labels, "t", feats, FeatureLookup("f", {"k": "k"}, "ft", {"x": "x"}), "m")
    assert sorted(r.x or 0.0 for r in out.collect()) == [0.0, 1.0]
    assert seen.get == {"rows": 2}


def test_content_digest_ignores_row_order_and_sees_changes(spark):
    a = spark.createDataFrame([(1, "x"), (2, "y")], "id int, v string")
    b = spark.createDataFrame([(2, "y"), (1, "x")], "id int, v string").repartition(2)
    c = spark.createDataFrame([(1, "x"), (2, "z")], "id int, v string")
    assert content_digest(a) == content_digest(b)
    assert content_digest(a) != content_digest(c)
