"""Training sets on small synthetic tables: versions, manifests, reproducibility, bad input."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import utc

from sparkml_platform.config import Feature, FeatureTable, Split, TrainingSet
from sparkml_platform.core.errors import ConfigError, JobFailed
from sparkml_platform.storage import lake, places
from sparkml_platform.storage import training_sets as trainset_store
from sparkml_platform.trainsets import build as training_sets

T0 = dt.datetime(2024, 1, 1)


def ts(hours: int) -> dt.datetime:
    """An instant as UTC wall-clock time (how the platform writes and compares instants)."""
    return T0 + dt.timedelta(hours=hours)


def at(hours: int) -> dt.datetime:
    """The same instant for a DataFrame: zone-aware, since Spark reads a naive datetime as the
    process's local time (the suite runs in another zone than UTC)."""
    return ts(hours).replace(tzinfo=dt.timezone.utc)


def feature_table(name: str, features: dict[str, str]) -> FeatureTable:
    return FeatureTable(description=f"synthetic {name}", owner="tests", keys=["k"], event_time="ft",
                        sources={"src": "raw.unused"}, transformation="tests.unused",
                        features={n: Feature(type=t) for n, t in features.items()})


@pytest.fixture
def synthetic(spark, config):
    """Labels keyed `kk` (the tables' key is `k`), two feature tables, one training set."""
    labels = spark.createDataFrame(
        [(i, ["a", "b", "c", "zz"][i % 4], at(10 + i), i % 2) for i in range(40)],
        "id int, kk string, t timestamp, outcome int")
    table_a = spark.createDataFrame(
        [(k, at(h), float(h), f"s{h}") for k in ("a", "b", "c") for h in range(0, 60, 5)],
        "k string, ft timestamp, x double, y string")
    table_b = spark.createDataFrame(  # starts after the first labels: those get nulls
        [(k, at(h), h * 10) for k in ("a", "b") for h in range(30, 60, 3)],
        "k string, ft timestamp, z int")
    lake.write(labels, places.table(config, "entities.ts_labels"))
    lake.write(table_a, places.table(config, "features.ts_a"))
    lake.write(table_b, places.table(config, "features.ts_b"))
    config.features.feature_tables["ts_a"] = feature_table("ts_a", {"x": "double", "y": "string"})
    config.features.feature_tables["ts_b"] = feature_table("ts_b", {"z": "int"})
    config.training_sets.training_sets["ts_set"] = TrainingSet.model_validate({
        "label": {"table": "entities.ts_labels", "keys": ["id"], "event_time": "t",
                  "label": "outcome"},
        "features": [
            {"table": "ts_a", "features": ["x", "y"], "key_map": {"k": "kk"}, "rename": {"x": "a_x"}},
            {"table": "ts_b", "features": ["z"], "key_map": {"k": "kk"}, "lookback": "6h"},
        ],
        "split": {"type": "random", "test_fraction": 0.3, "seed": 3},
    })
    yield labels, table_a, table_b
    for name in ("ts_a", "ts_b"):
        config.features.feature_tables.pop(name)
    config.training_sets.training_sets.pop("ts_set")


def test_build_writes_a_version_with_its_manifest(spark, config, synthetic):
    labels, _, _ = synthetic
    man = training_sets.build(spark, config, "ts_set")
    assert man["version"] == max(trainset_store.list_versions(config, "ts_set"))
    assert man["rows"]["total"] == labels.count() == man["rows"]["train"] + man["rows"]["test"]
    assert man["rows"]["test"] > 0 and man["rows"]["train"] > 0
    assert man["label_source"] == {"table": "entities.ts_labels", "version": 0}
    assert {lk["table"]: lk["version"] for lk in man["lookups"]} == {"ts_a": 0, "ts_b": 0}
    # key 'zz' is in no table; ts_b has no row before hour 30 and only keys a, b (lookback 6h)
    assert man["rows_without_match"]["ts_a"] == 10
    rows = trainset_store.read_version(spark, config, man).orderBy("id").collect()
    assert [r.a_x for r in rows[:4]] == [10.0, 10.0, 10.0, None]  # hour 10..13 -> row of hour 10
    assert all(r.z is None for r in rows if utc(r.t) < ts(30))
    expected_missing_b = sum(1 for r in rows if r.z is None)
    assert man["rows_without_match"]["ts_b"] == expected_missing_b > 0
    assert trainset_store.manifest(config, "ts_set")["digest"] == man["digest"]


def test_rebuild_from_manifest_gives_the_same_digest_after_features_move_on(spark, config, synthetic):
    from pyspark.sql import functions as F

    _, table_a, _ = synthetic
    first = training_sets.build(spark, config, "ts_set")
    path = places.table(config, "features.ts_a")
    lake.write(table_a.withColumn("x", F.col("x") + 1), path)  # the feature table moves on
    second = training_sets.build(spark, config, "ts_set")
    assert second["version"] == first["version"] + 1
    assert second["digest"] != first["digest"]
    rebuilt = training_sets.rebuild(spark, config, f"ts_set@{first['version']}")
    assert rebuilt == {"ref": f"ts_set@{first['version']}", "digest": first["digest"], "matches": True}


def test_split_is_the_same_on_every_rebuild(spark, config, synthetic):
    a = training_sets.build(spark, config, "ts_set")
    b = training_sets.build(spark, config, "ts_set")
    assert a["rows"] == b["rows"] and a["digest"] == b["digest"]


def test_lookup_of_a_feature_the_table_lacks(spark, config, synthetic):
    config.training_sets.training_sets["ts_set"].features[0].features.append("nope")
    with pytest.raises(ConfigError, match="features.0.features: feature table ts_a has no feature nope"):
        training_sets.build(spark, config, "ts_set")


def test_key_map_to_a_missing_column(spark, config, synthetic):
    config.training_sets.training_sets["ts_set"].features[1].key_map = {"k": "missing_col"}
    with pytest.raises(ConfigError, match=r"features.1.key_map: column missing_col is not in entities.ts_labels"):
        training_sets.build(spark, config, "ts_set")


def test_incompatible_event_time_types(spark, config, synthetic):
    labels, _, _ = synthetic
    lake.write(labels.withColumn("t", labels.t.cast("date")),
               places.table(config, "entities.ts_labels"))
    with pytest.raises(ConfigError, match="event time 'ft' is timestamp but the entity event time 't' is date"):
        training_sets.build(spark, config, "ts_set")


def test_empty_label_source_writes_nothing(spark, config, synthetic):
    before = trainset_store.list_versions(config, "ts_set")
    config.training_sets.training_sets["ts_set"].label.filter = "id < 0"
    with pytest.raises(JobFailed, match="label source entities.ts_labels gave no rows"):
        training_sets.build(spark, config, "ts_set")
    assert trainset_store.list_versions(config, "ts_set") == before


def test_label_keys_shared_by_several_rows_are_refused_before_writing(spark, config, synthetic):
    before = trainset_store.list_versions(config, "ts_set")
    config.training_sets.training_sets["ts_set"].label.keys = ["kk"]  # 10 label rows per kk
    with pytest.raises(ConfigError, match=r"training_sets.ts_set.label.keys: kk do not identify one label row "
                                          r"each in entities.ts_labels: kk='a' \(10 rows\); kk='b' \(10 rows\); "
                                          r"kk='c' \(10 rows\) \.\.\."):
        training_sets.build(spark, config, "ts_set")
    assert trainset_store.list_versions(config, "ts_set") == before


def test_bad_sql_in_the_label_names_the_key(spark, config, synthetic):
    config.training_sets.training_sets["ts_set"].label.label = "no_such_column > 1"
    with pytest.raises(ConfigError, match="training_sets.ts_set.label.label: "):
        training_sets.build(spark, config, "ts_set")


def test_feature_table_in_the_lake_without_a_declared_column(spark, config, synthetic):
    _, table_a, _ = synthetic
    lake.write(table_a.drop("y"), places.table(config, "features.ts_a"))
    with pytest.raises(ConfigError, match="features.ts_a in the lake has no column y"):
        training_sets.build(spark, config, "ts_set")


def test_time_cut_offs_outside_the_label_rows_are_refused_before_writing(spark, config, synthetic):
    before = trainset_store.list_versions(config, "ts_set")
    definition = config.training_sets.training_sets["ts_set"]
    definition.split = Split(type="time", test_start=str(ts(60)))  # labels run from hour 10 to 49
    with pytest.raises(ConfigError, match=r"training_sets.ts_set.split.test_start: 2024-01-03 12:00:00 "
                                          r"is outside the label rows' event times \(t from 2024-01-01 "
                                          r"10:00:00 to 2024-01-03 01:00:00\), so the test split would be empty"):
        training_sets.build(spark, config, "ts_set")
    definition.split = Split(type="time", validation_start=str(ts(5)), test_start=str(ts(30)))
    with pytest.raises(ConfigError, match=r"split.validation_start: .* so the train split would be empty"):
        training_sets.build(spark, config, "ts_set")
    assert trainset_store.list_versions(config, "ts_set") == before
    definition.split = Split(type="time", validation_start=str(ts(20)), test_start=str(ts(30)))
    man = training_sets.build(spark, config, "ts_set")
    assert (man["rows"]["train"], man["rows"]["validation"], man["rows"]["test"]) == (10, 10, 20)


def test_a_build_that_fails_while_writing_leaves_no_directory(spark, config, synthetic):
    before = trainset_store.list_versions(config, "ts_set")
    base = places.table(config, "trainsets.ts_set")
    entries = (base.names() if base.exists() else None)
    # The label expression fails only when rows are computed: half-way through the write.
    config.training_sets.training_sets["ts_set"].label.label = \
        "CASE WHEN id = 37 THEN raise_error('bad row') ELSE outcome END"
    with pytest.raises(Exception, match="bad row"):
        training_sets.build(spark, config, "ts_set")
    assert trainset_store.list_versions(config, "ts_set") == before
    assert ((base.names() if base.exists() else None)) == entries


def test_a_manifest_cannot_point_a_version_at_other_data(spark, config, synthetic):
    """The data's place is derived from name and version, never read from the manifest, and
    the data found there must have been written as that version."""
    import json
    import shutil

    first = training_sets.build(spark, config, "ts_set")
    config.training_sets.training_sets["ts_set"].label.filter = "id < 20"
    second = training_sets.build(spark, config, "ts_set")
    base = places.table(config, "trainsets.ts_set")
    manifest = base / f"v{second['version']:04d}.json"
    edited = {**json.loads(manifest.read_text()), "path": f"trainsets/ts_set/v{first['version']:04d}"}
    manifest.write_text(json.dumps(edited))
    rows = trainset_store.read_version(spark, config, trainset_store.manifest(config, f"ts_set@{second['version']}"))
    assert rows.count() == second["rows"]["total"] == 20 != first["rows"]["total"]
    # The second version's data replaced by the first's: refused, not read as version 2.
    target = (base / f"v{second['version']:04d}").local
    shutil.rmtree(target)
    shutil.copytree((base / f"v{first['version']:04d}").local, target)
    with pytest.raises(JobFailed, match=rf"trainset ts_set@{second['version']}: the data at .* was not "
                                        rf"written as this version"):
        trainset_store.read_version(spark, config, edited)


def test_versions_are_reserved_exclusively(tmp_path):
    import json
    import subprocess
    import sys

    from sparkml_platform.storage.files import Storage

    base = Storage().location(str(tmp_path / "trainsets" / "t"))
    first, _ = training_sets._reserve(base, 1)
    second, _ = training_sets._reserve(base, 1)  # the first's builder (this process) still runs
    assert (first, second) == (1, 2)
    # A directory whose builder died on this host is taken over; never a version otherwise.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    owner = base / "v0002" / training_sets.OWNER
    owner.write_text(json.dumps({**json.loads(owner.read_text()), "pid": int(dead)}))
    assert training_sets._reserve(base, 2)[0] == 2
    assert training_sets._reserve(base, 1)[0] == 3
