"""Feature tables: built into Delta from lake sources, by window, idempotent, checked."""

from __future__ import annotations

import json

import pytest
from conftest import make_project, utc

from sparkml_platform.core.errors import ConfigError, JobFailed
from sparkml_platform.features import build as features
from sparkml_platform.features import validation
from sparkml_platform.runtime.project import open_project
from sparkml_platform.storage import lake, places, statistics


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
    lake.write(df, places.table(config, "raw.weather"))
    return df


def weather_rows(spark, config):
    return lake.read(spark, places.table(config, "features.origin_weather_hourly"))


def test_build_writes_the_declared_columns(spark, config, raw_weather):
    result = features.build(spark, config, "origin_weather_hourly")
    df = weather_rows(spark, config)
    assert result["rows"] == 12 == df.count()
    assert df.columns == ["origin", "observed_at", "temp", "dewp", "humid", "wind_speed",
                          "wind_gust", "precip", "pressure", "visib"]
    meta = lake.commits(places.table(config, "features.origin_weather_hourly"))[-1]["metadata"]
    assert meta["sources"] == {"raw.weather": 0}
    assert meta["definition_hash"] and "git_commit" in meta["code"]


def test_small_inputs_are_judged_from_the_sources_delta_logs(config, raw_weather, monkeypatch, tmp_path):
    """What picks a feature build's JIT (session.driver_java_options): its sources' file
    sizes from their logs, no JVM; a missing source is not small."""
    size = lake.size_bytes(places.table(config, "raw.weather"))
    files = places.table(config, "raw.weather").local.glob("*.parquet")
    assert size == sum(f.stat().st_size for f in files) > 0
    assert features.small_inputs(config, "origin_weather_hourly")
    monkeypatch.setattr(features, "SMALL_INPUT_BYTES", size - 1)
    assert not features.small_inputs(config, "origin_weather_hourly")
    empty = open_project(make_project(tmp_path), "test")  # a lake without the source
    assert not features.small_inputs(empty, "origin_weather_hourly")


def test_window_build_replaces_only_that_window_and_never_duplicates(spark, config, raw_weather):
    from pyspark.sql import functions as F

    raw = places.table(config, "raw.weather")
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
    dewps = {(r.origin, utc(r.observed_at).day): r.dewp for r in rows.collect()}
    assert dewps == {(o, d): 20.0 + (100 if d == 2 else 0)
                     for o in ("EWR", "JFK") for d in (1, 2, 3)}
    assert result["window"] == ["2013-01-02", "2013-01-02"]
    ops = [c["metadata"]["window"] for c in
           lake.commits(places.table(config, "features.origin_weather_hourly"))[-2:]]
    assert ops == [["2013-01-02", "2013-01-02"]] * 2


def test_definition_mismatch_fails_before_writing(spark, config, raw_weather):
    table = config.feature_table("origin_weather_hourly")
    original = table.features["temp"].type
    path = places.table(config, "features.origin_weather_hourly")
    features.build(spark, config, "origin_weather_hourly")
    version = lake.commits(path)[-1]["version"]
    table.features["temp"].type = "string"
    try:
        with pytest.raises(ConfigError, match="column 'temp' is double, declared string"):
            features.build(spark, config, "origin_weather_hourly")
    finally:
        table.features["temp"].type = original
    assert lake.commits(path)[-1]["version"] == version  # nothing written


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

    from sparkml_platform.core.errors import GateFailed

    path = places.table(config, "features.origin_weather_hourly")
    raw = places.table(config, "raw.weather")
    features.build(spark, config, "origin_weather_hourly")
    version = lake.commits(path)[-1]["version"]
    lake.write(raw_weather.withColumn("temp", F.when(F.col("origin") == "JFK", 500.0)
                                      .otherwise(F.col("temp"))), raw)
    try:
        with pytest.raises(GateFailed) as err:
            features.build(spark, config, "origin_weather_hourly", full=True)
        assert err.value.exit_code == 3
        message = str(err.value)
        assert "expect_column_values_to_be_between" in message and "'column': 'temp'" in message
        assert "6 of 12 rows" in message and "500.0" in message
        assert lake.commits(path)[-1]["version"] == version  # nothing written
        kept = json.loads(sorted((places.validation_dir(config).local / "origin_weather_hourly").glob("*.json"))[-1]
                          .read_text())
        assert kept["success"] is False and kept["failed"][0]["unexpected_count"] == 6

        config.feature_table("origin_weather_hourly").on_failure = "warn"
        result = features.build(spark, config, "origin_weather_hourly", full=True)
        assert result["validation"]["success"] is False and result["version"] == version + 1
    finally:
        config.feature_table("origin_weather_hourly").on_failure = "block"
        lake.write(raw_weather, raw)


def test_a_stricter_suite_makes_the_table_stale_and_its_rows_validated_again(spark, config, raw_weather, validated):
    """Rows validated against another suite are not up to date: the next build validates every
    row against the new one (a full build; the definition itself did not change)."""
    from sparkml_platform.core.errors import GateFailed

    path = places.table(config, "features.origin_weather_hourly")
    features.build(spark, config, "origin_weather_hourly", full=True)
    assert features.build(spark, config, "origin_weather_hourly")["mode"] == "up to date"
    version = lake.commits(path)[-1]["version"]
    suite = config.expectations["origin_weather_hourly"]
    original = list(suite.expectations)
    suite.expectations.append({"expect_column_values_to_be_between": {"column": "temp", "max_value": -100}})
    try:
        assert features.up_to_date(config, "origin_weather_hourly") is None
        with pytest.raises(GateFailed, match="'max_value': -100"):
            features.build(spark, config, "origin_weather_hourly")
        assert lake.commits(path)[-1]["version"] == version  # nothing written
    finally:
        suite.expectations[:] = original
    assert features.build(spark, config, "origin_weather_hourly")["mode"] == "up to date"


@pytest.fixture(params=["driver-copy", "spark"])
def engine(request, monkeypatch):
    """A small window is checked on a driver copy; with no bytes allowed on the driver, every
    window takes the path of a large one: cached, checked and validated with Spark."""
    if request.param == "spark":
        monkeypatch.setattr(validation, "LOCAL_MAX_BYTES", -1)
    return request.param


def test_passing_expectations_are_recorded_in_the_commit(spark, config, raw_weather, validated, engine):
    result = features.build(spark, config, "origin_weather_hourly", force=True)  # a write, nothing new
    assert result["validation"]["success"] is True and result["validation"]["failed"] == 0
    path = places.table(config, "features.origin_weather_hourly")
    meta = lake.commits(path)[-1]["metadata"]
    assert meta["validation"]["suite"] == "origin_weather_hourly"
    kept = json.loads(config.path(result["validation"]["results"]).read_text())  # project-relative
    assert kept["engine"] == ("pandas" if engine == "driver-copy" else "spark")
    # The statistics observed on the write count the rows the duplicate check counted.
    observed = statistics.load(path, result["version"])["written"]
    assert observed["rows"] == result["rows_written"] > 0
    assert observed["features"]["temp"]["count"] > 0
    assert lake.read(spark, path).schema["temp"].metadata.get("comment")  # on either path
    commit = (path / "_delta_log" / f"{result['version']:020d}.json").read_text().splitlines()
    files = [a for a in map(json.loads, commit) if "add" in a]
    assert 0 < len(files) <= 4  # a driver copy is written by at most 4 tasks, not one per slice


def weather_twice(weather):
    from sparkml_platform.reference.flights import origin_weather_hourly

    once = origin_weather_hourly(weather)
    return once.unionByName(once)


def test_duplicate_entity_and_event_time_pairs_are_refused(spark, config, raw_weather, validated, engine):
    from sparkml_platform.core.errors import GateFailed

    path = places.table(config, "features.origin_weather_hourly")
    features.build(spark, config, "origin_weather_hourly")
    version = lake.commits(path)[-1]["version"]
    table = config.feature_table("origin_weather_hourly")
    table.keys = ["origin"]
    table.event_time, original = "observed_at", table.event_time
    definition = table.transformation
    table.transformation = "integration.test_features.weather_twice"
    try:
        with pytest.raises(GateFailed, match=r"12 \(entity, event time\) pairs occur more than once.*origin=EWR"):
            features.build(spark, config, "origin_weather_hourly")
    finally:
        table.transformation, table.event_time = definition, original
    assert lake.commits(path)[-1]["version"] == version


def test_a_build_leases_the_source_versions_it_reads(spark, config, raw_weather, monkeypatch):
    """While it reads them: a `features vacuum` of a source meanwhile keeps their files."""
    from sparkml_platform.api.workspace import Workspace
    from sparkml_platform.storage import leases

    computed, seen = features.compute, {}

    def looking(spark, config, table, sources_at=None, window=None):
        seen["leases"] = [lease["reads"] for lease in leases.active(config)]
        seen["sources_at"] = sources_at
        return computed(spark, config, table, sources_at, window)

    monkeypatch.setattr(features, "compute", looking)
    built = Workspace.from_config(config, spark).features.build("origin_weather_hourly", full=True).to_dict()
    raw = lake.version(None, places.table(config, "raw.weather"))
    assert seen == {"leases": [{"table:raw.weather": [raw]}], "sources_at": {"raw.weather": raw}}
    assert built["mode"] == "full" and not leases.active(config)


def test_statistics_per_version_and_their_shift(spark, config, raw_weather, capsys):
    from pyspark.sql import functions as F

    from sparkml_platform.cli import main
    from sparkml_platform.insight import catalog

    raw = places.table(config, "raw.weather")
    first = features.build(spark, config, "origin_weather_hourly")
    lake.write(raw_weather.withColumn("humid", F.col("humid") + 10), raw)
    try:
        second = features.build(spark, config, "origin_weather_hourly", full=True)
    finally:
        lake.write(raw_weather, raw)
    shift = catalog.compare_versions(spark, config, "origin_weather_hourly", first["version"], second["version"])
    assert shift["features"]["humid"]["mean"] == [50.0, 60.0, 10.0]
    assert shift["features"]["temp"]["mean"][2] == 0.0
    assert shift["features"]["wind_gust"]["nulls"] == [12, 12, 0]
    assert shift["features"]["humid"]["distinct_approx"][:2] == [1, 1]
    listed = {t["name"]: t for t in catalog.feature_tables(config)}["origin_weather_hourly"]
    assert listed["newest_event_time"] == "2013-01-03 12:00:00" and listed["last_built"]

    code = main(["--conf", str(config.conf_dir), "--env", "test", "features", "show",
                 "origin_weather_hourly", "--compare", str(first["version"]), "999"])
    assert code == 2 and "has no statistics for version 999" in capsys.readouterr().err


def cli(config, *args):
    from sparkml_platform.cli import main

    return main(["--conf", str(config.conf_dir), "--env", "test", *args])


def test_incremental_build_adds_what_is_missing_and_describes_the_table(spark, config, raw_weather,
                                                                         monkeypatch):
    from pyspark.sql import functions as F

    from sparkml_platform.insight import catalog

    path = places.table(config, "features.origin_weather_hourly")
    raw = places.table(config, "raw.weather")
    assert features.build(spark, config, "origin_weather_hourly", full=True)["mode"] == "full"
    day4 = raw_weather.where("time_hour LIKE '2013-01-03%'").withColumn(
        "time_hour", F.regexp_replace("time_hour", "2013-01-03", "2013-01-04"))
    lake.write(raw_weather.unionByName(day4), raw)
    table = config.feature_table("origin_weather_hourly")
    original = table.features["temp"].description
    monkeypatch.setenv("SPARKML_RUN_ID", "oozie-0000042")
    try:
        result = features.build(spark, config, "origin_weather_hourly")
        # Only from the newest day already built: that day again (it may have been partial) and after.
        assert (result["mode"], result["window"]) == ("incremental", ["2013-01-03", "2013-01-04"])
        assert result["rows_written"] == 8 and weather_rows(spark, config).count() == 16
        assert weather_rows(spark, config).groupBy("origin", "observed_at").count() \
            .where("count > 1").count() == 0
        assert lake.commits(path)[-1]["metadata"]["run_id"] == "oozie-0000042"
        listed = {t["name"]: t for t in catalog.feature_tables(config)}["origin_weather_hourly"]
        assert listed["last_run_id"] == "oozie-0000042"

        # Descriptions live in the Delta table itself: any Spark reader sees them.
        described = {r.col_name: r for r in spark.sql(f"DESCRIBE TABLE EXTENDED delta.`{path}`").collect()}
        assert described["temp"].comment == "Temperature (F)"
        assert described["Comment"].data_type == table.description
        props = {r.key: r.value for r in spark.sql(f"SHOW TBLPROPERTIES delta.`{path}`").collect()}
        assert props["sparkml.owner"] == "flights-team" and props["sparkml.keys"] == "origin"
        assert props["sparkml.event_time"] == "observed_at" and props["sparkml.lookback"] == "3h"

        # A changed definition makes earlier rows stale too: the whole table is rebuilt.
        table.features["temp"].description = "Air temperature (degrees F)"
        assert features.build(spark, config, "origin_weather_hourly")["mode"] == "full"
        described = {r.col_name: r for r in spark.sql(f"DESCRIBE TABLE delta.`{path}`").collect()}
        assert described["temp"].comment == "Air temperature (degrees F)"
    finally:
        table.features["temp"].description = original
        lake.write(raw_weather, raw)


def last_job_id(spark) -> int:
    return max(spark.sparkContext.statusTracker().getJobIdsForGroup(None), default=-1)


def test_a_build_with_nothing_new_writes_nothing_and_runs_no_spark_job(spark, config, raw_weather):
    from pyspark.sql import functions as F

    path = places.table(config, "features.origin_weather_hourly")
    raw = places.table(config, "raw.weather")
    built = features.build(spark, config, "origin_weather_hourly", full=True)
    log = sorted(p.name for p in path.local.joinpath("_delta_log").glob("*.json"))
    jobs = last_job_id(spark)
    again = features.build(spark, config, "origin_weather_hourly")
    assert (again["mode"], again["version"], again["rows"], again["rows_written"]) == \
        ("up to date", built["version"], 12, 0)
    assert again["reason"].startswith("nothing new: its sources are at the versions")
    assert sorted(p.name for p in path.local.joinpath("_delta_log").glob("*.json")) == log
    assert last_job_id(spark) == jobs  # decided from the Delta logs alone

    # Forced: the newest day again, as an incremental build always did.
    forced = features.build(spark, config, "origin_weather_hourly", force=True)
    assert (forced["mode"], forced["window"], forced["rows_written"]) == \
        ("incremental", ["2013-01-03", "2013-01-03"], 4)
    assert forced["version"] == built["version"] + 1
    # A new source version is new data even with the same rows: built, not skipped.
    day4 = raw_weather.where("time_hour LIKE '2013-01-03%'").withColumn(
        "time_hour", F.regexp_replace("time_hour", "2013-01-03", "2013-01-04"))
    try:
        lake.write(raw_weather.unionByName(day4), raw)
        grown = features.build(spark, config, "origin_weather_hourly")
        assert (grown["mode"], grown["window"], grown["rows_written"]) == \
            ("incremental", ["2013-01-03", "2013-01-04"], 8)
        assert features.build(spark, config, "origin_weather_hourly")["mode"] == "up to date"
    finally:
        lake.write(raw_weather, raw)
    # A source rewritten without the newest day: nothing from that day on, so nothing is
    # written (an empty write would delete that day's rows).
    versions = lake.version(spark, path)
    assert features.build(spark, config, "origin_weather_hourly")["mode"] == "up to date"
    assert lake.version(spark, path) == versions and weather_rows(spark, config).count() == 16


def test_chunked_backfill_resumes_after_the_chunks_already_committed(spark, config, raw_weather, validated):
    from pyspark.sql import functions as F

    from sparkml_platform.core.errors import GateFailed

    path = places.table(config, "features.origin_weather_hourly")
    raw = places.table(config, "raw.weather")
    suite = config.expectations["origin_weather_hourly"].expectations
    temp_range = next(e for e in suite if e.get("expect_column_values_to_be_between", {})
                      .get("column") == "temp")["expect_column_values_to_be_between"]
    lake.write(raw_weather.withColumn("temp", F.when(F.col("time_hour").startswith("2013-01-02"), 140.0)
                                      .otherwise(F.col("temp"))), raw)
    try:
        with pytest.raises(GateFailed):  # day 1 commits, day 2 fails its suite
            features.build(spark, config, "origin_weather_hourly", "2013-01-01", "2013-01-02", chunk_days=1)
        before = lake.commits(path)
        assert before[-1]["metadata"]["chunk"] == ["2013-01-01", "2013-01-01"]
        temp_range["max_value"] = 150  # the fix: the same command again resumes
        result = features.build(spark, config, "origin_weather_hourly", "2013-01-01", "2013-01-02",
                                chunk_days=1)
    finally:
        temp_range["max_value"] = 130
        lake.write(raw_weather, raw)
    assert [c.get("skipped") is not None for c in result["chunks"]] == [True, False]
    assert [c["window"][0] for c in result["chunks"]] == ["2013-01-01", "2013-01-02"]
    after = [c for c in lake.commits(path)[len(before):] if c["metadata"]["kind"] == "feature_table"]
    assert [c["metadata"]["chunk"][0] for c in after] == ["2013-01-02"]
    rows = weather_rows(spark, config).where("observed_at < '2013-01-03'")  # the backfilled days
    assert rows.count() == 8 and rows.where("temp = 140").count() == 4
    assert rows.groupBy("origin", "observed_at").count().where("count > 1").count() == 0


def test_a_backfill_resumes_and_an_incremental_build_follows_after_the_log_was_cleaned(
        spark, config, raw_weather, validated):
    """Delta folds old commits into a checkpoint and deletes their files after
    `delta.logRetentionDuration`: what a resume and an incremental build rely on must outlive
    that (the backfill's progress is in Delta's transaction record, carried by checkpoints)."""
    import os
    import time

    from pyspark.sql import functions as F

    from sparkml_platform.core.errors import GateFailed

    path = places.table(config, "features.origin_weather_hourly")
    raw = places.table(config, "raw.weather")
    suite = config.expectations["origin_weather_hourly"].expectations
    temp_range = next(e for e in suite if e.get("expect_column_values_to_be_between", {})
                      .get("column") == "temp")["expect_column_values_to_be_between"]
    full = features.build(spark, config, "origin_weather_hourly", full=True)["version"]
    lake.write(raw_weather.withColumn("temp", F.when(F.col("time_hour").startswith("2013-01-03"), 140.0)
                                      .otherwise(F.col("temp"))), raw)
    window = ("origin_weather_hourly", "2013-01-01", "2013-01-03")
    try:
        with pytest.raises(GateFailed):  # days 1 and 2 commit, day 3 fails its suite
            features.build(spark, config, *window, chunk_days=1)
        chunk_versions = [c["version"] for c in lake.commits(path)
                          if c["version"] > full and c["metadata"].get("backfill")]
        assert len(chunk_versions) == 2
        # Every log file older than the retention, then a commit: Delta writes a checkpoint
        # and deletes the commit files it folded in.
        log = path.local / "_delta_log"
        old = time.time() - 3 * 86400
        for entry in log.iterdir():
            os.utime(entry, (old, old))
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ("
                  "'delta.checkpointInterval' = '1', 'delta.logRetentionDuration' = 'interval 1 days', "
                  "'delta.deletedFileRetentionDuration' = 'interval 1 days')")
        kept = {int(p.name[:20]) for p in log.glob("*.json")}
        assert not kept & set(chunk_versions), sorted(kept)  # the chunks' commits are gone
        assert not [c for c in lake.commits(path) if c["metadata"] and c["metadata"].get("backfill")]
        temp_range["max_value"] = 150  # the fix: the same command again resumes
        result = features.build(spark, config, *window, chunk_days=1)
        assert [c.get("skipped") is not None for c in result["chunks"]] == [True, True, False]
        assert weather_rows(spark, config).where("temp = 140").count() == 4  # day 3, written now
        # An incremental build after the clean-up (under the suite the backfill ended with: a
        # changed suite would rebuild the table whole): from the newest day built, nothing
        # duplicated.
        day4 = raw_weather.where("time_hour LIKE '2013-01-03%'").withColumn(
            "time_hour", F.regexp_replace("time_hour", "2013-01-03", "2013-01-04"))
        lake.write(raw_weather.unionByName(day4), raw)
        built = features.build(spark, config, "origin_weather_hourly")
    finally:
        temp_range["max_value"] = 130
        lake.write(raw_weather, raw)
        spark.sql(f"ALTER TABLE delta.`{path}` UNSET TBLPROPERTIES ('delta.checkpointInterval', "
                  "'delta.logRetentionDuration', 'delta.deletedFileRetentionDuration')")
    assert (built["mode"], built["window"]) == ("incremental", ["2013-01-03", "2013-01-04"])
    rows = weather_rows(spark, config)
    assert rows.count() == 16 and rows.groupBy("origin", "observed_at").count().where("count > 1").count() == 0


def test_window_outside_the_source_data_changes_nothing(spark, config, raw_weather, capsys):
    path = places.table(config, "features.origin_weather_hourly")
    features.build(spark, config, "origin_weather_hourly", full=True)
    version = lake.commits(path)[-1]["version"]
    code = cli(config, "features", "build", "origin_weather_hourly", "--start", "2020-01-01",
               "--end", "2020-01-31")
    err = capsys.readouterr().err
    assert code == 2, err
    assert "window 2020-01-01 to 2020-01-31 is outside the source data" in err
    assert "2013-01-01 00:00:00 to 2013-01-03 12:00:00" in err
    assert lake.commits(path)[-1]["version"] == version


def test_transformation_that_does_not_import_changes_nothing(spark, config, raw_weather):
    path = places.table(config, "features.origin_weather_hourly")
    features.build(spark, config, "origin_weather_hourly", full=True)
    version = lake.commits(path)[-1]["version"]
    table = config.feature_table("origin_weather_hourly")
    original, table.transformation = table.transformation, "sparkml_platform.reference.nowhere.weather"
    try:
        with pytest.raises(ConfigError) as err:
            features.build(spark, config, "origin_weather_hourly")
    finally:
        table.transformation = original
    assert err.value.exit_code == 2
    assert "feature_tables.origin_weather_hourly.transformation: cannot import" in str(err.value)
    assert "sparkml_platform.reference.nowhere" in str(err.value)
    assert lake.commits(path)[-1]["version"] == version


def test_tables_by_name_as_views_or_in_the_configured_metastore(spark, config, raw_weather):
    from sparkml_platform.api import notebook

    features.build(spark, config, "origin_weather_hourly", full=True)
    views = notebook.register_views(spark, str(config.conf_dir), "test")
    assert "features_origin_weather_hourly" in views and "raw_weather" in views
    assert spark.sql("SELECT count(*) FROM features_origin_weather_hourly").collect()[0][0] == 12

    config.platform.metastore.database = "sparkml_test"
    try:
        result = features.build(spark, config, "origin_weather_hourly", full=True)
    finally:
        config.platform.metastore.database = None
    assert result["registered_as"] == "`sparkml_test`.`features_origin_weather_hourly`"
    described = {r.col_name: r.comment for r in
                 spark.sql("DESCRIBE TABLE sparkml_test.features_origin_weather_hourly").collect()}
    assert described["humid"] == "Relative humidity (%)"


def test_statistics_record_instants_in_utc_whatever_the_process_time_zone(spark, monkeypatch):
    """Collected timestamps are wall-clock values of the Python process's zone; the event-time
    range (which incremental builds start from) must be the session's UTC instants."""
    import time

    from sparkml_platform.storage import statistics

    df = spark.sql("SELECT 'a' AS k, TIMESTAMP '2013-01-01 23:30:00' AS at, 1.0 AS x")
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        stats = statistics.summarize(df, {"x": "double"}, "at")
    finally:
        monkeypatch.setenv("TZ", "UTC")
        time.tzset()
    assert stats["event_time_range"] == ["2013-01-01 23:30:00", "2013-01-01 23:30:00"]


def test_a_first_build_is_one_commit_with_its_rows_and_description(spark, config, raw_weather):
    """Never an empty version 0 that a kill could leave behind: the table, its description,
    properties and column comments come with its first rows."""
    definition = config.feature_table("origin_weather_hourly").model_copy(deep=True)
    config.features.feature_tables["weather_once"] = definition
    try:
        result = features.build(spark, config, "weather_once")
    finally:
        config.features.feature_tables.pop("weather_once")
    path = places.table(config, "features.weather_once")
    commits = lake.commits(path)
    assert [c["version"] for c in commits] == [0] and result["version"] == 0
    assert commits[0]["metadata"]["kind"] == "feature_table" and result["rows"] == 12
    history = lake.history(path)
    assert history[0]["rows_written"] == "12"
    described = {r.col_name: r for r in spark.sql(f"DESCRIBE TABLE EXTENDED delta.`{path}`").collect()}
    assert described["temp"].comment == "Temperature (F)"
    assert described["Comment"].data_type == definition.description
    props = {r.key: r.value for r in spark.sql(f"SHOW TBLPROPERTIES delta.`{path}`").collect()}
    assert props["sparkml.owner"] == "flights-team" and props["sparkml.keys"] == "origin"


def test_writers_of_one_table_at_once_retry_delta_conflicts(spark, config):
    """Two writers overwriting one table at the same moment: Delta's optimistic concurrency
    makes one of each pair fail its commit; the write is a replacement, so it is retried on
    the new snapshot, and every write succeeds with whole rows from one side or the other."""
    import threading

    path = places.table(config, "entities.concurrent_writers")
    frames = [spark.range(0, 200).selectExpr("id", f"{side} AS side") for side in (1, 2)]
    lake.write(frames[0], path)
    errors: list[BaseException] = []

    def writer(df):
        try:
            for _ in range(4):
                lake.write(df, path, metadata={"kind": "test"})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(df,)) for df in frames]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = lake.read(spark, path).groupBy("side").count().collect()
    assert len(rows) == 1 and rows[0]["count"] == 200
    assert lake.version(spark, path) == 8  # the first write and eight more, none lost


def test_a_build_killed_after_its_commit_gets_its_statistics_later(spark, config, raw_weather):
    from sparkml_platform.insight import catalog

    path = places.table(config, "features.origin_weather_hourly")
    built = features.build(spark, config, "origin_weather_hourly", full=True)
    kept = statistics.stats_path(path, built["version"])
    kept.unlink()  # killed between its commit and recording its statistics
    sessions = []  # a table this small is summarized without Spark; a larger one by Spark
    default = config.platform.local_read_max_mb
    for max_mb in (default, 0):
        config.platform.local_read_max_mb = max_mb
        try:
            shown = catalog.show_feature_table(lambda: sessions.append(max_mb) or spark, config,
                                               "origin_weather_hourly")
        finally:
            config.platform.local_read_max_mb = default
        stats = shown["latest_statistics"]
        assert (stats["version"], stats["rows"], shown["rows"]) == (built["version"], 12, 12)
        assert stats["event_time_range"] == shown["event_time_range"] == ["2013-01-01 00:00:00", "2013-01-03 12:00:00"]
        assert stats["features"]["temp"]["mean"] == pytest.approx(32.0)
        assert statistics.stats_path(path, built["version"]).exists()
        kept.unlink()
    assert sessions == [0]

    # Missing again: this time the next build finds them missing.
    again = features.build(spark, config, "origin_weather_hourly")
    assert statistics.load(path, built["version"])["rows"] == 12
    assert again["mode"] == "incremental" and again["window"][0] == "2013-01-03"


def test_a_damaged_log_is_refused_with_the_file_not_read_as_an_older_version(spark, config, raw_weather):
    path = places.table(config, "features.origin_weather_hourly")
    built = features.build(spark, config, "origin_weather_hourly", full=True)
    if (path.local / "_delta_log" / f"{built['version']:020d}.checkpoint.parquet").exists():
        # A commit a checkpoint already holds is not read again (Delta reads the checkpoint):
        # damage one after it.
        built = features.build(spark, config, "origin_weather_hourly", full=True)
    newest = (path / "_delta_log" / f"{built['version']:020d}.json").local
    saved = newest.read_bytes()
    try:
        newest.write_bytes(saved[: len(saved) // 2])
        with pytest.raises(JobFailed, match=f"{newest.name} is damaged"):
            weather_rows(spark, config)
        newest.unlink()  # removed: Delta alone would read the version before, silently
        with pytest.raises(JobFailed, match=f"commit {built['version']} is missing from its log"):
            weather_rows(spark, config)
        # The platform's own record of its newest commit gone too: the commit's checksum file
        # still says it was written (delta-rs alone fails with a kernel error about it).
        head = (path / lake.HEAD).local
        recorded = head.read_bytes()
        head.unlink()
        try:
            with pytest.raises(JobFailed, match=f"commit {built['version']} is missing from its log"):
                lake.version(None, path, "features.origin_weather_hourly")
            with pytest.raises(JobFailed, match=f"commit {built['version']} is missing from its log"):
                features.build(spark, config, "origin_weather_hourly")
        finally:
            head.write_bytes(recorded)
    finally:
        newest.write_bytes(saved)
    assert weather_rows(spark, config).count() == 12
