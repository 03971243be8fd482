"""Training gates, bad model specs, regressors and scoring checks, in-process on the slice
project's training set, with an MLflow store of this module's own (so the slice project's
registry is untouched)."""

from __future__ import annotations

import copy

import pytest

from sparkml_platform.config import Threshold
from sparkml_platform.core.errors import ConfigError, GateFailed
from sparkml_platform.runtime.project import open_project
from sparkml_platform.storage import places
from sparkml_platform.storage import training_sets as trainset_store
from sparkml_platform.tracking import registry
from sparkml_platform.tracking.tracker import Tracker
from sparkml_platform.training import train as training

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict[str, str]:
    """One MLflow store for this module's models (the slice project's registry is untouched)."""
    root = tmp_path_factory.mktemp("training-store")
    return {"SPARKML_MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "SPARKML_MLFLOW_ARTIFACT_ROOT": str(root / "artifacts")}


@pytest.fixture
def trained_config(flights_project, store, monkeypatch):
    """The slice project's config (its lake and training set), with this module's store."""
    from conftest import JARS_DIR

    conf, _ = flights_project
    monkeypatch.setenv("SPARKML_JARS_DIR", str(JARS_DIR))
    for name, value in store.items():
        monkeypatch.setenv(name, value)
    return open_project(conf, "test")


@pytest.fixture(scope="module")
def gbt_champion(spark, flights_project, store) -> dict:
    """A Spark ML model trained without tuning, champion of flight_delays: trained once for
    the gate test (the champion it must not replace) and the scoring test."""
    from conftest import JARS_DIR

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPARKML_JARS_DIR", str(JARS_DIR))
        for name, value in store.items():
            patch.setenv(name, value)
        config = open_project(flights_project[0], "test")
        config.model("flight_delay_gbt").thresholds = {"roc_auc": Threshold(min=0.0, vs_champion=0.0)}
        result = training.train(spark, config, Tracker(config), "flight_delay_gbt", tune=False)
    assert result["aliases"] == ["challenger", "champion"] and result["decision"] == "promoted to champion"
    return result


def versions(config, name: str) -> list:
    from mlflow.exceptions import MlflowException

    try:
        return Tracker(config).client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return []


def test_a_model_below_a_floor_is_registered_but_never_champion(spark, trained_config, gbt_champion):
    config = trained_config
    first = gbt_champion
    spec = config.model("flight_delay_gbt")
    spec.thresholds = {"roc_auc": Threshold(min=0.99), "log_loss": Threshold(max=1.0)}
    with pytest.raises(GateFailed) as err:
        training.train(spark, config, Tracker(config), "flight_delay_gbt", tune=False)
    assert err.value.exit_code == 3
    assert "roc_auc = 0." in str(err.value) and "needs >= 0.99" in str(err.value)
    second = err.value.result["version"]
    assert str(registry.champion(Tracker(config), "flight_delays").version) == first["version"]  # unchanged
    shown = registry.show(Tracker(config), f"flight_delays/{second}")
    assert shown["aliases"] == ["challenger"]
    assert shown["tags"]["gate"] == "failed"
    assert shown["tags"]["decision"].startswith("not promoted: roc_auc = 0.")
    assert shown["tags"]["compared_with"].startswith(f"champion v{first['version']}")


def test_bad_estimator_and_label_fail_before_anything_is_logged(spark, trained_config):
    config = trained_config
    before = len(versions(config, "flight_delays"))
    spec = config.model("flight_delay_sklearn")
    original = copy.deepcopy(spec)
    spec.estimator.class_ = "sklearn.ensemble.NoSuchClassifier"
    with pytest.raises(ConfigError, match=r"models.flight_delay_sklearn.estimator.class: cannot import "
                                          r"estimator class 'sklearn.ensemble.NoSuchClassifier', it does "
                                          "not exist"):
        training.train(spark, config, Tracker(config), "flight_delay_sklearn")
    spec.estimator = original.estimator
    spec.label = "arrived_late"
    with pytest.raises(ConfigError, match=r"models.flight_delay_sklearn.label: column 'arrived_late' is "
                                          r"not in training set flight_delays@\d+"):
        training.train(spark, config, Tracker(config), "flight_delay_sklearn")
    assert len(versions(config, "flight_delays")) == before  # nothing registered


def test_regressors_are_evaluated_with_regression_metrics(spark, trained_config):
    from sparkml_platform.config import Estimator

    config = trained_config
    spec = config.model("flight_delay_gbt")
    spec.estimator = Estimator(type="gbt_regressor", params={"maxIter": 3, "maxDepth": 3})
    spec.thresholds = {"rmse": Threshold(max=1.0)}
    spec.tuning.metric = "rmse"
    spec.registered_model = "flight_delay_regressor"
    result = training.train(spark, config, Tracker(config), "flight_delay_gbt", tune=False)
    assert set(result["metrics"]) == {"rmse", "mae", "r2"}
    assert 0 < result["metrics"]["rmse"] < 1.0 and result["gate"]["passed"]


def test_sklearn_scoring_through_spark_udf_equals_the_models_own_predictions(spark, trained_config):
    import numpy as np

    from sparkml_platform.modeling import estimators
    from sparkml_platform.serving import scoring

    config = trained_config
    config.model("flight_delay_sklearn").thresholds = {"roc_auc": Threshold(min=0.0)}  # any model will do
    result = training.train(spark, config, Tracker(config), "flight_delay_sklearn", tune=False)
    tracker = Tracker(config)
    mv = registry.resolve(tracker, f"flight_delays/{result['version']}")
    spec = registry.load_feature_spec(tracker, mv.run_id)
    assert spec["flavor"] == "sklearn"
    rows = trainset_store.read_version(spark, config, trainset_store.manifest(config, "flight_delays")) \
        .where("split = 'test'").limit(300)
    rows = rows.select(*spec["feature_columns"], "label", "flight_id").persist()
    with tracker.bound():
        scored = scoring.predict(spark, mv, spec, rows).select("flight_id", "score").toPandas()
        own = estimators.predict_registered(mv, spec, rows, "label", "classification")
    order = rows.select("flight_id").toPandas()["flight_id"]
    by_id = dict(zip(scored["flight_id"], scored["score"]))
    np.testing.assert_allclose([by_id[i] for i in order], own["score"].to_numpy(), rtol=1e-9)
    rows.unpersist()


def test_scoring_checks_keys_and_environment_and_matches_the_training_set_path(spark, trained_config,
                                                                              gbt_champion):
    import json
    from pathlib import Path

    import mlflow
    from pyspark.sql import functions as F

    from sparkml_platform.serving import scoring
    from sparkml_platform.storage import lake

    config = trained_config
    ref = f"flight_delays/{gbt_champion['version']}"
    tracker = Tracker(config)
    mv = registry.resolve(tracker, ref)
    manifest = trainset_store.manifest(config, "flight_delays")
    sample = trainset_store.read_version(spark, config, manifest).where("split = 'test'").limit(200).persist()
    ids = [r.flight_id for r in sample.select("flight_id").collect()]

    # Entity rows for the sampled flights, a few with a null carrier (a join key).
    entities = lake.read(spark, places.table(config, "entities.flights"))
    rows = entities.where(F.col("flight_id").isin(ids)).withColumn(
        "carrier", F.when(F.col("flight_id") == ids[0], None).otherwise(F.col("carrier")))
    lake.write(rows, places.table(config, "entities.scoring_check"))
    output = places.table(config, "predictions.scoring_check")

    config.platform.scoring.null_keys = "refuse"
    with pytest.raises(ConfigError, match=r"has entity rows with null keys \(carrier: 1\)"):
        scoring.score(spark, config, tracker, ref, "entities.scoring_check", "predictions.scoring_check", "2013-12-31")
    assert not lake.exists(output)
    config.platform.scoring.null_keys = "score"
    scored = scoring.score(spark, config, tracker, ref, "entities.scoring_check", "predictions.scoring_check", "2013-12-31")
    assert scored["rows"] == len(ids) and scored["rows_with_null_keys"]["carrier"] == 1

    # The same rows through the training-set code path give the same probabilities.
    written = lake.read(spark, output).where(F.col("flight_id") != ids[0])
    with tracker.bound():
        model = mlflow.spark.load_model(f"models:/flight_delays/{mv.version}")
    from pyspark.ml.functions import vector_to_array

    expected = model.transform(sample.where(F.col("flight_id") != ids[0])).select(
        "flight_id", vector_to_array("probability")[1].alias("expected"))
    compared = written.join(expected, "flight_id").select(F.max(F.abs(F.col("probability") - F.col("expected"))),
                                                          F.count("*")).collect()[0]
    assert compared[1] == len(ids) - 1 and compared[0] < 1e-12

    # A model trained elsewhere (its recorded environment says Python 3.10): strict refuses.
    recorded = Path(mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path="environment.json",
                                                        tracking_uri=tracker.uri))
    source = Path(config.artifact_root.removeprefix("file://")).rglob(f"{mv.run_id}/artifacts/environment.json")
    stored = next(source)
    env = json.loads(recorded.read_text())
    stored.write_text(json.dumps({**env, "python": "3.10.14"}))
    config.platform.scoring.environment_check = "strict"
    before = lake.version(spark, output)
    with pytest.raises(ConfigError, match=r"Python 3\.11\.\d+ here, the model was trained on 3\.10\.14"):
        scoring.score(spark, config, tracker, ref, "entities.scoring_check", "predictions.scoring_check", "2013-12-31")
    assert lake.version(spark, output) == before
    config.platform.scoring.environment_check = "warn"
    warned = scoring.score(spark, config, tracker, ref, "entities.scoring_check", "predictions.scoring_check", "2013-12-31")
    assert warned["environment_mismatch"] and lake.read(spark, output).count() == len(ids)  # replaced, once
