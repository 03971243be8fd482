"""Spark ML pipelines compiled to numpy (modeling/compiled.py) against Spark's own `transform`:
every model the platform offers, both encodings, on random rows with nulls in every input,
categories never seen in training, NaN and edge values; and what is refused (a stage that is
not compiled, a pipeline whose compiled answer differs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sparkml_platform.config.schema import ModelSpec
from sparkml_platform.config.vocabulary import MLLIB_ESTIMATORS
from sparkml_platform.modeling import compiled, compiled_parity, estimators

PARAMS = {"gbt_classifier": {"maxIter": 6, "maxDepth": 4, "seed": 3},
          "gbt_regressor": {"maxIter": 6, "maxDepth": 4, "seed": 3},
          "random_forest_classifier": {"numTrees": 6, "maxDepth": 5, "seed": 3},
          "random_forest_regressor": {"numTrees": 6, "maxDepth": 5, "seed": 3},
          "decision_tree_classifier": {"maxDepth": 6, "seed": 3},
          "decision_tree_regressor": {"maxDepth": 6, "seed": 3},
          "logistic_regression": {"maxIter": 30, "regParam": 0.01},
          "linear_regression": {"maxIter": 30, "regParam": 0.01}}
SCHEMA = "id long, shop string, kind string, n int, x double, y double, flag boolean, label double"


def frame(seed: int, n: int, shops: list[str]) -> pd.DataFrame:
    """Random rows: a score made from every input, so every model learns splits on each; a
    tenth of each input null; two columns more frequent at some values (ties at thresholds)."""
    rng = np.random.default_rng(seed)

    def nulls(values):
        values = pd.Series(values, dtype=object)
        values[rng.random(n) < 0.1] = None
        return values

    shop = rng.choice(shops, n)
    x = rng.normal(0, 1, n).round(2)
    count = rng.integers(0, 20, n)
    y = rng.exponential(2.0, n)
    flag = rng.random(n) < 0.4
    kind = rng.choice(["a", "b", "c"], n)
    score = (x + 0.1 * count - 0.3 * y + np.where(flag, 0.8, 0) + np.array([int(s[1:]) % 5 if s[1:].isdigit() else 2 for s in shop]) * 0.3
             + np.where(kind == "a", 0.5, 0) + rng.normal(0, 0.5, n))
    return pd.DataFrame({"id": np.arange(n), "shop": nulls(shop), "kind": nulls(kind), "n": nulls(count),
                         "x": nulls(x), "y": nulls(y), "flag": nulls(flag), "label": score})


@pytest.fixture(scope="module")
def rows(spark):
    """Training rows, and test rows with shops training never saw and a row null everywhere."""
    shops = [f"s{i}" for i in range(12)]
    train = frame(1, 3000, shops)
    test = pd.concat([frame(2, 800, shops + ["new1", "new2"]),
                      pd.DataFrame([{"id": 10_000, "shop": None, "kind": None, "n": None, "x": None,
                                     "y": None, "flag": None, "label": 0.0}])], ignore_index=True)
    def plain(v):
        return None if v is None or (not isinstance(v, str) and pd.isna(v)) else v.item() if hasattr(v, "item") else v

    return [spark.createDataFrame([tuple(plain(v) for v in row) for row in df.itertuples(index=False)], SCHEMA)
            for df in (train, test)]


def fitted_pipeline(rows, kind: str, encoding: str):
    from pyspark.sql import functions as F

    task = MLLIB_ESTIMATORS[kind][0]
    train, test = rows
    label = (F.col("label") > 0.7).cast("double") if task == "classification" else F.col("label")
    spec = ModelSpec.model_validate({"training_set": "t", "estimator": {"type": kind, "params": PARAMS[kind]},
                                     "preprocessing": {"categorical": ["shop"], "encoding": encoding,
                                                       "impute": "mean"}})
    estimator = estimators.for_spec(spec, "m", ["shop", "kind", "n", "x", "y", "flag"],
                                    {"shop": "string", "kind": "string", "n": "int", "x": "double",
                                     "y": "double", "flag": "boolean"}, "target")
    train = train.withColumn("target", label)
    estimator.prepare(train)
    return estimator.fit(train, PARAMS[kind]), test.withColumn("target", label)


# Every model with indexed categories (trees split on them as categories), and one of each
# family with one-hot vectors (continuous splits on their parts, coefficients per category).
CASES = [(kind, "index") for kind in sorted(MLLIB_ESTIMATORS)] + [
    ("logistic_regression", "onehot"), ("linear_regression", "onehot"),
    ("random_forest_classifier", "onehot"), ("gbt_regressor", "onehot")]


@pytest.mark.parametrize(("kind", "encoding"), CASES)
def test_every_model_compiled_equals_spark_stage_by_stage(rows, tmp_path, kind, encoding):
    model, test = fitted_pipeline(rows, kind, encoding)
    model.write().save(str(tmp_path / "model"))
    record = compiled_parity.check(str(tmp_path / "model"), model, test, ["id"])
    assert record["exact"] and record["rows_compared"] == 801, record
    # The trees split on the categorical column (index) or its one-hot parts: the unseen
    # shops and the all-null row took the paths Spark took, for every stage's columns.
    predictor = compiled.load(str(tmp_path / "model"))
    ordered = test.orderBy("id").toPandas()
    score, predicted = predictor.predict(ordered[predictor.inputs])
    from pyspark.ml.functions import vector_to_array

    out = model.transform(test.orderBy("id"))
    column = vector_to_array("probability")[1] if MLLIB_ESTIMATORS[kind][0] == "classification" else "prediction"
    spark_scores = out.select(column).toPandas().iloc[:, 0].to_numpy()
    assert np.max(np.abs(score - spark_scores)) < 1e-9
    spark_predicted = out.select("prediction").toPandas()["prediction"].to_numpy()
    assert np.max(np.abs(predicted - spark_predicted)) < 1e-9  # the class itself for a classifier
    assert np.isfinite(score[-1])  # the row null everywhere is scored, as Spark scores it


def test_a_stage_that_is_not_compiled_is_refused_by_name_with_what_is(rows, spark, tmp_path):
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import Bucketizer, VectorAssembler

    train, test = rows
    data = train.na.fill({"x": 0.0, "y": 0.0}).withColumn("target", (train["label"] > 0.7).cast("double"))
    model = Pipeline(stages=[Bucketizer(splits=[-float("inf"), 0, float("inf")], inputCol="x", outputCol="xb"),
                             VectorAssembler(inputCols=["xb", "y"], outputCol="features", handleInvalid="keep"),
                             LogisticRegression(labelCol="target")]).fit(data)
    model.write().save(str(tmp_path / "model"))
    record = compiled_parity.check(str(tmp_path / "model"), model, test, ["id"])
    assert not record["exact"]
    assert record["refused"].startswith("stage 0 (Bucketizer, Bucketizer_")
    assert "is not supported online; supported stages: SQLTransformer" in record["refused"]
    why = compiled_parity.refusal("model m version 3", record, "sparkml train m")
    assert "model m version 3 has no compiled predictor: stage 0 (Bucketizer" in why
