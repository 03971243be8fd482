"""The point-in-time join against an independent reference (pandas merge_asof)."""

from __future__ import annotations

import datetime as dt
import random

import pandas as pd
import pytest

from sparkml_platform.errors import ConfigError
from sparkml_platform.pit import FeatureLookup, as_of_join, content_digest, join_features

T0 = dt.datetime(2013, 1, 1)


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


def test_lookback_expires_old_values(spark):
    labels = spark.createDataFrame([(1, "a", ts(100)), (2, "a", ts(40))], "id int, k string, t timestamp")
    feats = spark.createDataFrame([("a", ts(0), 1.0)], "k string, ft timestamp, x double")
    lookup = FeatureLookup("f", {"k": "k"}, "ft", {"x": "x"}, lookback_seconds=3600)
    out = {r.id: r.x for r in as_of_join(labels, "t", feats, lookup, "m").collect()}
    assert out == {1: None, 2: 1.0}


def test_ties_on_event_time_are_deterministic(spark):
    labels = spark.createDataFrame([(1, "a", ts(10))], "id int, k string, t timestamp")
    rows = [("a", ts(5), 1.0), ("a", ts(5), 3.0), ("a", ts(5), 2.0)]
    results = set()
    for seed in range(3):
        random.Random(seed).shuffle(rows)
        feats = spark.createDataFrame(rows, "k string, ft timestamp, x double").repartition(3)
        lookup = FeatureLookup("f", {"k": "k"}, "ft", {"x": "x"})
        results.add(as_of_join(labels, "t", feats, lookup, "m").collect()[0].x)
    assert results == {3.0}  # the greatest feature row wins a tie, whatever the order


def test_incompatible_event_time_types_are_refused(spark):
    labels = spark.createDataFrame([(1, "a", dt.date(2013, 1, 1))], "id int, k string, t date")
    feats = spark.createDataFrame([("a", ts(5), 1.0)], "k string, ft timestamp, x double")
    with pytest.raises(ConfigError, match="event time 'ft' is timestamp but the entity event time 't' is date"):
        as_of_join(labels, "t", feats, FeatureLookup("f", {"k": "k"}, "ft", {"x": "x"}), "m")


def reference(labels: pd.DataFrame, feats: pd.DataFrame, key: str, lookback_s: int | None,
              out: str) -> pd.Series:
    """pandas merge_asof: backward search by key, with the same tie rule (greatest row wins)."""
    feats = feats.dropna(subset=[key]).sort_values(["ft", "x"], na_position="first")
    feats = feats.drop_duplicates([key, "ft"], keep="last")
    left = labels.dropna(subset=[key]).sort_values("t")
    merged = pd.merge_asof(left, feats.rename(columns={"x": out}), left_on="t", right_on="ft",
                           by=key, direction="backward",
                           tolerance=pd.Timedelta(seconds=lookback_s) if lookback_s else None)
    return merged.set_index("id")[out].reindex(labels["id"])


def test_matches_pandas_merge_asof_on_random_inputs(spark):
    rng = random.Random(7)
    keys = ["a", "b", "c", "d", None]
    labels = pd.DataFrame({
        "id": range(400),
        "k1": [rng.choice(keys) for _ in range(400)],
        "k2": [rng.choice(keys[:3]) for _ in range(400)],
        "t": [ts(rng.randrange(0, 500)) for _ in range(400)],
    })
    tables = []
    for name, key, lookback in (("f1", "k1", None), ("f2", "k2", 1800)):
        n = 300
        feats = pd.DataFrame({
            key: [rng.choice(keys[:4]) for _ in range(n)],  # 'd' never appears for k2 labels
            "ft": [ts(rng.randrange(0, 500)) for _ in range(n)],  # many ties and late rows
            "x": [rng.choice([None, *range(20)]) for _ in range(n)],
        }).astype({"x": "float64"})
        tables.append((name, key, lookback, feats))
    sdf_labels = spark.createDataFrame(labels, "id long, k1 string, k2 string, t timestamp")
    lookups = []
    for name, key, lookback, feats in tables:
        sdf = spark.createDataFrame(feats, f"{key} string, ft timestamp, x double")
        lookups.append((FeatureLookup(name, {key: key}, "ft", {"x": f"x_{name}"}, lookback), sdf))
    joined, flags = join_features(sdf_labels, "t", lookups)
    got = joined.toPandas().set_index("id").sort_index()
    assert len(got) == len(labels) and got.index.is_unique  # nothing dropped or duplicated
    for name, key, lookback, feats in tables:
        want = reference(labels, feats, key, lookback, f"x_{name}").sort_index()
        pd.testing.assert_series_equal(got[f"x_{name}"], want, check_names=False, check_index_type=False)


def test_content_digest_ignores_row_order_and_sees_changes(spark):
    a = spark.createDataFrame([(1, "x"), (2, "y")], "id int, v string")
    b = spark.createDataFrame([(2, "y"), (1, "x")], "id int, v string").repartition(2)
    c = spark.createDataFrame([(1, "x"), (2, "z")], "id int, v string")
    assert content_digest(a) == content_digest(b)
    assert content_digest(a) != content_digest(c)
