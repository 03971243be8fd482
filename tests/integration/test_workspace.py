"""The Workspace, the Python API notebooks use: training sets from a DataFrame, the session it
joins, MLflow's settings left as they were, and the bad input each verb refuses."""

from __future__ import annotations

import os

import pytest
from conftest import make_project

from sparkml_platform import FeatureLookup, Workspace
from sparkml_platform.core.errors import ConfigError, NotFoundError
from sparkml_platform.storage import lake, places
from sparkml_platform.storage import training_sets as trainset_store
from sparkml_platform.storage.pit import content_digest
from sparkml_platform.trainsets import build as training_sets

from .test_training_sets import synthetic  # noqa: F401 - the synthetic tables and training set

LOOKUPS = [  # ts_set's lookups (training_sets.yml form), one of them as a FeatureLookup object
    {"table": "ts_a", "features": ["x", "y"], "key_map": {"k": "kk"}, "rename": {"x": "a_x"}},
    FeatureLookup(table="ts_b", features=["z"], key_map={"k": "kk"}, lookback="6h"),
]
SPLIT = {"type": "random", "test_fraction": 0.3, "seed": 3}


def trainset_files(config) -> list[str]:
    root = places.lake_root(config) / "trainsets"
    return sorted(f"{n}/{m}" for n in root.names() for m in (root / n).names())


def test_a_training_set_from_a_dataframe_has_the_rows_of_the_yaml_built_one(ws, spark, config, synthetic):  # noqa: F811
    labels, _, _ = synthetic
    built = training_sets.build(spark, config, "ts_set")
    made = ws.create_training_set(labels, LOOKUPS, label="outcome", keys=["id"], split=SPLIT)
    assert made.manifest is None and made.name is None  # nothing written yet
    assert content_digest(made.df.drop(*made._flags)) == built["digest"]
    assert made.feature_columns == built["feature_columns"] == ["a_x", "y", "z"]
    pdf = made.to_pandas(limit=5)
    assert len(pdf) == 5 and "label" in pdf and not any(c.startswith("__matched") for c in pdf)

    saved = made.save("df_set")
    assert (saved.name, saved.version) == ("df_set", max(trainset_store.list_versions(config, "df_set")))
    man = saved.manifest
    assert man["digest"] == built["digest"] and man["rows"] == built["rows"]
    assert man["label_source"]["dataframe"] and man["label_source"]["digest"] == content_digest(
        labels.select("id", "t", "kk", "outcome"))
    assert man["definition"]["label"] == {"keys": ["id"], "event_time": "t", "label": "outcome",
                                          "passthrough": [], "split_keys": ["id"]}
    again = ws.training_set("df_set", saved.version)
    assert content_digest(again.df) == built["digest"]
    listed = {(t["name"], t["version"]) for t in ws.training_sets()}
    assert ("df_set", saved.version) in listed and ("ts_set", built["version"]) in listed
    with pytest.raises(ConfigError, match=r"was made from a DataFrame .*cannot be recomputed"):
        ws.rebuild_training_set(f"df_set@{saved.version}")
    with pytest.raises(ConfigError, match=r"training set ts_set is defined in training_sets.yml"):
        made.save("ts_set")


def test_the_event_time_is_the_labels_only_timestamp_column_unless_named(ws, synthetic):  # noqa: F811
    labels, _, _ = synthetic
    made = ws.create_training_set(labels, LOOKUPS, label="outcome", exclude=["id"])
    assert made._facts["entity"]["event_time"] == "t" and made._facts["entity"]["keys"] == ["kk"]
    two = labels.withColumn("t2", labels.t)
    with pytest.raises(ConfigError, match=r"labels_df has 2 timestamp columns \(t, t2\): give event_time="):
        ws.create_training_set(two, LOOKUPS, label="outcome")


def test_bad_labels_and_lookups_are_refused_naming_the_argument(ws, config, synthetic):  # noqa: F811
    labels, _, _ = synthetic
    before = trainset_files(config)
    with pytest.raises(ConfigError, match=r"create_training_set: lookups.0.key_map: column kk is not in "
                                          r"the labels DataFrame \(columns: id, t, outcome\)"):
        ws.create_training_set(labels.drop("kk"), LOOKUPS, label="outcome", event_time="t")
    with pytest.raises(ConfigError, match=r"labels_df has no timestamp columns \(columns: id, kk, outcome\): "
                                          "give event_time="):
        ws.create_training_set(labels.drop("t"), LOOKUPS, label="outcome")
    with pytest.raises(ConfigError, match=r"create_training_set: labels_df: column t is not in the labels "
                                          "DataFrame"):
        ws.create_training_set(labels.drop("t"), LOOKUPS, label="outcome", event_time="t")
    with pytest.raises(ConfigError, match=r"create_training_set: lookups.1.features: feature table ts_b has "
                                          r"no feature nope \(it has z\)"):
        ws.create_training_set(labels, [LOOKUPS[0], {"table": "ts_b", "features": ["nope"]}], label="outcome")
    with pytest.raises(NotFoundError, match=r"create_training_set: lookups.0.table: no feature table named "
                                            "'no_table'"):
        ws.create_training_set(labels, [{"table": "no_table"}], label="outcome")
    with pytest.raises(ConfigError, match=r"label='late' is not a column of labels_df"):
        ws.create_training_set(labels, LOOKUPS, label="late")
    with pytest.raises(ConfigError, match=r"labels_df is a list, not a Spark DataFrame"):
        ws.create_training_set([1, 2], LOOKUPS, label="outcome")
    assert trainset_files(config) == before  # nothing written


def test_log_model_refuses_what_is_not_a_fitted_model(ws, synthetic):  # noqa: F811
    from sklearn.linear_model import LogisticRegression

    labels, _, _ = synthetic
    saved = ws.create_training_set(labels, LOOKUPS, label="outcome", split=SPLIT).save("log_model_refusals")
    runs_before = ws.tracker.client.search_runs([ws.tracker.experiment_id])
    with pytest.raises(ConfigError, match=r"log_model: model is a builtins.dict, neither a fitted "
                                          "scikit-learn estimator nor a Spark ML model; nothing logged"):
        ws.log_model({"weights": [1, 2]}, saved, registered_model="refused")
    with pytest.raises(ConfigError, match=r"log_model: the LogisticRegression is not fitted"):
        ws.log_model(LogisticRegression(), saved, registered_model="refused")
    unsaved = ws.create_training_set(labels, LOOKUPS, label="outcome")
    with pytest.raises(ConfigError, match=r"the training set is not saved: save it first"):
        ws.log_model(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), unsaved, registered_model="refused")
    assert ws.tracker.client.search_runs([ws.tracker.experiment_id]) == runs_before
    assert "refused" not in {m.name for m in ws.models.list()}


def test_mlflow_settings_are_the_callers_after_each_verb(ws):
    import mlflow

    before = (os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("MLFLOW_REGISTRY_URI"))
    ws.models.list()
    with ws.tracker.bound():
        assert mlflow.get_tracking_uri() == ws.config.tracking_uri
    assert (os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("MLFLOW_REGISTRY_URI")) == before


def test_a_running_delta_session_is_joined_without_the_jar_cache(spark, tmp_path):
    conf = make_project(tmp_path, {"platform.yml": {"spark": {"jars_dir": str(tmp_path / "no-jars")}}})
    ws = Workspace(conf, "test")
    assert ws.spark is spark  # the active session; the absent cache is never looked at
    assert Workspace(conf, "test", spark=spark).spark is spark


def test_features_read_as_of_an_event_time_and_by_version_or_commit_time(ws, config, spark):
    """`as_of` is event time (each key's newest row at or before it: the README's example,
    as_of="2013-06-01"); `version` and `commit_time` travel in the table's history."""
    import datetime as dt
    import time

    name = "ws_read"
    path = places.table(config, f"features.{name}")
    day = lambda text: dt.datetime.fromisoformat(text + "+00:00")  # noqa: E731
    lake.write(spark.createDataFrame([(1, day("2013-05-30T00:00"), "a")], "k int, t timestamp, v string"), path)
    first_written = dt.datetime.now(dt.timezone.utc)
    time.sleep(1.1)
    lake.write(spark.createDataFrame([(1, day("2013-05-30T00:00"), "a"), (1, day("2013-06-02T00:00"), "b"),
                                      (2, day("2013-06-01T00:00"), "c"), (3, day("2013-06-05T00:00"), "d")],
                                     "k int, t timestamp, v string"), path)
    from sparkml_platform.config import Feature, FeatureTable

    config.features.feature_tables[name] = FeatureTable(
        description="read test", owner="tests", keys=["k"], event_time="t", sources={"s": "raw.x"},
        transformation="x.y", features={"v": Feature(type="string")})
    try:
        assert ws.features.read(name).count() == 4
        known = ws.features.read(name, as_of="2013-06-01")
        assert sorted((r.k, r.v) for r in known.collect()) == [(1, "a"), (2, "c")]
        assert sorted(r.v for r in ws.features.read(name, as_of="2013-06-03 12:00").collect()) == ["b", "c"]
        assert ws.features.read(name, version=0).count() == 1
        assert ws.features.read(name, commit_time=first_written.replace(tzinfo=None)).count() == 1
        assert [r.v for r in ws.features.read(name, version=0, as_of="2013-06-01").collect()] == ["a"]
        with pytest.raises(NotFoundError, match=r"has no version at or before 2000-01-01"):
            ws.features.read(name, commit_time="2000-01-01")
        with pytest.raises(ConfigError, match="give version or commit_time, not both"):
            ws.features.read(name, version=0, commit_time="2013-06-01")
        with pytest.raises(ConfigError, match="read: as_of: 'June' is not a date or time"):
            ws.features.read(name, as_of="June")
    finally:
        config.features.feature_tables.pop(name)


def test_the_mlflow_ui_hint_runs_from_any_directory(ws):
    import shlex
    import sys
    from pathlib import Path

    command = shlex.split(ws.tracker.ui_command())
    assert Path(command[0]).is_absolute() and Path(command[0]).parent == Path(sys.executable).parent
    assert Path(command[0]).exists() and command[1] == "ui"
    assert command[command.index("--backend-store-uri") + 1] == ws.config.tracking_uri
