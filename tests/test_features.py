"""Feature tables: built into Delta from lake sources, by window, idempotent, checked."""

from __future__ import annotations

import datetime as dt

import pytest

from sparkml_platform import features, lake
from sparkml_platform.errors import ConfigError


@pytest.fixture(scope="module")
def raw_weather(spark, config):
    rows = []
    for day in (1, 2, 3):
        for hour in (0, 12):
            for origin in ("EWR", "JFK"):
                rows.append((origin, f"2013-01-0{day}T{hour:02d}:00:00Z", 30.0 + day, 20.0, 50.0,
                             10.0, None, 0.0, 1010.0, 10.0))
    df = spark.createDataFrame(rows, "origin string, time_hour string, temp double, dewp double, "
                               "humid double, wind_speed double, wind_gust double, precip double, "
                               "pressure double, visib double")
    lake.write(df, lake.table_path(config.lake_root, "raw.weather"))
    return df


def weather_rows(spark, config):
    return lake.read(spark, lake.table_path(config.lake_root, "features.origin_weather_hourly"))


def test_build_writes_the_declared_columns(spark, config, raw_weather):
    result = features.build(spark, config, "origin_weather_hourly")
    df = weather_rows(spark, config)
    assert result["rows"] == 12 == df.count()
    assert df.columns == ["origin", "observed_at", "temp", "dewp", "humid", "wind_speed",
                          "wind_gust", "precip", "pressure", "visib"]
    meta = lake.commits(lake.table_path(config.lake_root, "features.origin_weather_hourly"))[-1]["metadata"]
    assert meta["sources"] == {"raw.weather": 0}
    assert meta["definition_hash"] and "git_commit" in meta["code"]


def test_window_build_replaces_only_that_window_and_never_duplicates(spark, config, raw_weather):
    from pyspark.sql import functions as F

    raw = lake.table_path(config.lake_root, "raw.weather")
    features.build(spark, config, "origin_weather_hourly")
    # The source moves on everywhere: only the rebuilt window may pick that up.
    lake.write(raw_weather.withColumn("dewp", F.col("dewp") + 100), raw)
    try:
        for _ in range(2):
            result = features.build(spark, config, "origin_weather_hourly", "2013-01-02", "2013-01-02")
    finally:
        lake.write(raw_weather, raw)
    rows = weather_rows(spark, config)
    assert rows.count() == 12  # same rows, once each
    dewps = {(r.origin, r.observed_at.day): r.dewp for r in rows.collect()}
    assert dewps == {(o, d): 20.0 + (100 if d == 2 else 0)
                     for o in ("EWR", "JFK") for d in (1, 2, 3)}
    assert result["window"] == ["2013-01-02", "2013-01-02"]
    ops = [c["metadata"]["window"] for c in
           lake.commits(lake.table_path(config.lake_root, "features.origin_weather_hourly"))[-2:]]
    assert ops == [["2013-01-02", "2013-01-02"]] * 2


def test_definition_mismatch_fails_before_writing(spark, config, raw_weather):
    table = config.feature_table("origin_weather_hourly")
    original = table.features["temp"].type
    path = lake.table_path(config.lake_root, "features.origin_weather_hourly")
    features.build(spark, config, "origin_weather_hourly")
    version = lake.commits(path)[-1]["version"]
    table.features["temp"].type = "string"
    try:
        with pytest.raises(ConfigError, match="column 'temp' is double, declared string"):
            features.build(spark, config, "origin_weather_hourly")
    finally:
        table.features["temp"].type = original
    assert lake.commits(path)[-1]["version"] == version  # nothing written


def test_end_before_start_is_refused():
    with pytest.raises(ConfigError, match="--end 2013-01-01 is before --start 2013-01-05"):
        features.parse_window("2013-01-05", "2013-01-01")
    assert features.parse_window("2013-01-01", "2013-01-01") == (dt.date(2013, 1, 1),) * 2


@pytest.fixture
def validated(config):
    """The reference suite switched on for origin_weather_hourly (off in the test project)."""
    table = config.feature_table("origin_weather_hourly")
    table.expectations = "origin_weather_hourly"
    yield table
    table.expectations, table.on_failure = None, "block"


def test_failing_expectations_block_the_write_and_keep_the_results(spark, config, raw_weather, validated):
    import json

    from pyspark.sql import functions as F

    from sparkml_platform.errors import GateFailed

    path = lake.table_path(config.lake_root, "features.origin_weather_hourly")
    raw = lake.table_path(config.lake_root, "raw.weather")
    features.build(spark, config, "origin_weather_hourly")
    version = lake.commits(path)[-1]["version"]
    lake.write(raw_weather.withColumn("temp", F.when(F.col("origin") == "JFK", 500.0)
                                      .otherwise(F.col("temp"))), raw)
    try:
        with pytest.raises(GateFailed) as err:
            features.build(spark, config, "origin_weather_hourly")
        assert err.value.exit_code == 3
        message = str(err.value)
        assert "expect_column_values_to_be_between" in message and "'column': 'temp'" in message
        assert "6 of 12 rows" in message and "500.0" in message
        assert lake.commits(path)[-1]["version"] == version  # nothing written
        kept = json.loads(sorted((config.validation_dir / "origin_weather_hourly").glob("*.json"))[-1]
                          .read_text())
        assert kept["success"] is False and kept["failed"][0]["unexpected_count"] == 6

        config.feature_table("origin_weather_hourly").on_failure = "warn"
        result = features.build(spark, config, "origin_weather_hourly")
        assert result["validation"]["success"] is False and result["version"] == version + 1
    finally:
        config.feature_table("origin_weather_hourly").on_failure = "block"
        lake.write(raw_weather, raw)


def test_passing_expectations_are_recorded_in_the_commit(spark, config, raw_weather, validated):
    result = features.build(spark, config, "origin_weather_hourly")
    assert result["validation"]["success"] is True and result["validation"]["failed"] == 0
    meta = lake.commits(lake.table_path(config.lake_root, "features.origin_weather_hourly"))[-1]["metadata"]
    assert meta["validation"]["suite"] == "origin_weather_hourly"


def test_duplicate_entity_and_event_time_pairs_are_refused(spark, config, raw_weather):
    from sparkml_platform.errors import GateFailed

    path = lake.table_path(config.lake_root, "features.origin_weather_hourly")
    features.build(spark, config, "origin_weather_hourly")
    version = lake.commits(path)[-1]["version"]
    table = config.feature_table("origin_weather_hourly")
    table.keys = ["origin"]
    table.event_time, original = "observed_at", table.event_time
    definition = table.transformation
    table.transformation = "test_features.weather_twice"
    try:
        with pytest.raises(GateFailed, match=r"12 \(entity, event time\) pairs occur more than once.*origin=EWR"):
            features.build(spark, config, "origin_weather_hourly")
    finally:
        table.transformation, table.event_time = definition, original
    assert lake.commits(path)[-1]["version"] == version


def weather_twice(weather):
    from sparkml_platform.reference.flights import origin_weather_hourly

    once = origin_weather_hourly(weather)
    return once.unionByName(once)


def test_statistics_per_version_and_their_shift(spark, config, raw_weather, capsys):
    from pyspark.sql import functions as F

    from sparkml_platform import catalog
    from sparkml_platform.cli import main

    raw = lake.table_path(config.lake_root, "raw.weather")
    first = features.build(spark, config, "origin_weather_hourly")
    lake.write(raw_weather.withColumn("humid", F.col("humid") + 10), raw)
    try:
        second = features.build(spark, config, "origin_weather_hourly")
    finally:
        lake.write(raw_weather, raw)
    shift = catalog.compare_versions(config, "origin_weather_hourly", first["version"], second["version"])
    assert shift["features"]["humid"]["mean"] == [50.0, 60.0, 10.0]
    assert shift["features"]["temp"]["mean"][2] == 0.0
    assert shift["features"]["wind_gust"]["nulls"] == [12, 12, 0]
    assert shift["features"]["humid"]["distinct_approx"][:2] == [1, 1]
    listed = {t["name"]: t for t in catalog.feature_tables(config)}["origin_weather_hourly"]
    assert listed["newest_event_time"] == "2013-01-03 12:00:00" and listed["last_built"]

    code = main(["--conf", str(config.conf_dir), "--env", "test", "features", "show",
                 "origin_weather_hourly", "--compare", "0", "999"])
    assert code == 2 and "has no statistics for version 999" in capsys.readouterr().err
