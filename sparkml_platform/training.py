"""Training: fit a Spark MLlib pipeline on a training-set version, evaluate, log, register, gate."""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

from . import environment, registry, tracking, training_sets
from .config import Config, ModelSpec
from .errors import ConfigError, GateFailed, JobFailed
from .provenance import code_version, definition_hash
from .training_sets import LABEL, SPLIT

ESTIMATORS = {
    "gbt_classifier": "GBTClassifier",
    "random_forest_classifier": "RandomForestClassifier",
    "logistic_regression": "LogisticRegression",
}
FEATURES_VECTOR = "features"


def build_pipeline(spec: ModelSpec, feature_columns: list[str], types: dict[str, str],
                   max_categories: int = 0):
    """Index categoricals, impute numerics, assemble, then the configured estimator."""
    from pyspark.ml import Pipeline, classification
    from pyspark.ml.feature import Imputer, SQLTransformer, StringIndexer, VectorAssembler

    categorical = [c for c in feature_columns if c in spec.categorical or types[c] == "string"]
    numeric = [c for c in feature_columns if c not in categorical]
    # Cast numerics to double so that the imputer and the assembler see one type.
    select = ", ".join(
        [f"CAST(`{c}` AS DOUBLE) AS `__num_{c}`" for c in numeric] + ["*"]
    )
    stages = [
        SQLTransformer(statement=f"SELECT {select} FROM __THIS__"),
        StringIndexer(inputCols=categorical, outputCols=[f"__idx_{c}" for c in categorical],
                      handleInvalid="keep"),
        Imputer(inputCols=[f"__num_{c}" for c in numeric],
                outputCols=[f"__imp_{c}" for c in numeric], strategy="median"),
        VectorAssembler(inputCols=[f"__idx_{c}" for c in categorical] + [f"__imp_{c}" for c in numeric],
                        outputCol=FEATURES_VECTOR, handleInvalid="keep"),
    ]
    estimator_class = getattr(classification, ESTIMATORS[spec.estimator.type])
    try:
        estimator = estimator_class(featuresCol=FEATURES_VECTOR, labelCol=LABEL, **spec.estimator.params)
    except TypeError as exc:
        raise ConfigError(f"models.yml: estimator.params: {exc}") from None
    if spec.estimator.type != "logistic_regression" and categorical:
        # Trees need a bin per category (plus the unseen and null buckets of the indexer).
        estimator.setMaxBins(max(estimator.getMaxBins(), max_categories + 2))
    return Pipeline(stages=[*stages, estimator])


def evaluate(predictions) -> dict[str, float]:
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    scored = predictions.select(
        F.col(LABEL).cast("double").alias(LABEL),
        vector_to_array("probability")[1].alias("p"),
        F.col("prediction"),
    ).cache()
    metrics = {}
    for name, metric in (("roc_auc", "areaUnderROC"), ("pr_auc", "areaUnderPR")):
        metrics[name] = BinaryClassificationEvaluator(
            rawPredictionCol="p", labelCol=LABEL, metricName=metric).evaluate(scored)
    row = scored.select(
        F.avg((F.col("prediction") == F.col(LABEL)).cast("double")).alias("accuracy"),
        F.count("*").alias("n"),
    ).collect()[0]
    metrics["accuracy"] = row["accuracy"]
    metrics["test_rows"] = float(row["n"])
    scored.unpersist()
    return metrics


def gate(thresholds: dict[str, float], metrics: dict[str, float]) -> dict:
    checks = [{"metric": m, "floor": floor, "value": metrics.get(m),
               "passed": metrics.get(m) is not None and metrics[m] >= floor}
              for m, floor in thresholds.items()]
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


def train(spark, config: Config, model_name: str) -> dict:
    """Fit, evaluate on the test split, log to MLflow, register, set aliases, apply the gate."""
    import mlflow
    import mlflow.data
    from mlflow.models import infer_signature

    # Integer columns draw a hint about missing values from MLflow's schema inference; Spark
    # scoring does not enforce it, so it is noise in a job log.
    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
    spec = config.model(model_name)
    manifest = training_sets.manifest(config, spec.training_set)
    data = training_sets.read_version(spark, manifest)
    feature_columns = manifest["feature_columns"]
    unknown = [c for c in spec.categorical if c not in feature_columns]
    if unknown:
        raise ConfigError(f"models.yml: models.{model_name}.categorical: {', '.join(unknown)} is "
                          f"not a feature of training set {spec.training_set}")
    types = {f.name: f.dataType.simpleString() for f in data.schema.fields}
    train_df = data.where(f"{SPLIT} = 'train'").select(*feature_columns, LABEL)
    test_df = data.where(f"{SPLIT} = 'test'").select(*feature_columns, LABEL)
    if not manifest["rows"].get("train") or not manifest["rows"].get("test"):
        raise JobFailed(f"training set {manifest['name']}@{manifest['version']} has an empty "
                        f"train or test split ({manifest['rows']}): check its split in "
                        "training_sets.yml")
    categorical = [c for c in feature_columns if c in spec.categorical or types[c] == "string"]
    max_categories = 0
    if categorical:
        from pyspark.sql import functions as F

        row = train_df.agg(*[F.approx_count_distinct(c).alias(c) for c in categorical]).collect()[0]
        max_categories = int(max(row) * 1.1) + 1  # approximate: leave a margin
    pipeline = build_pipeline(spec, feature_columns, types, max_categories)

    tracking.configure(config)
    env = environment.capture(spark)
    environment.save(env, config.environments_dir)
    with mlflow.start_run(run_name=f"train {model_name}") as run:
        mlflow.set_tags({
            "sparkml.kind": "train",
            "sparkml.model": model_name,
            "sparkml.training_set": spec.training_set,
            "sparkml.training_set_version": str(manifest["version"]),
            "sparkml.training_set_digest": manifest["digest"],
            "sparkml.code_commit": str(code_version()["git_commit"]),
            "sparkml.code_dirty": str(code_version()["dirty"]),
            "sparkml.environment_id": env["id"],
        })
        # The training set as the run's dataset input: name@version, content digest, Delta path.
        dataset = mlflow.data.from_spark(
            data, path=manifest["path"], name=f"{manifest['name']}@{manifest['version']}",
            digest=manifest["digest"], targets=LABEL)
        mlflow.log_input(dataset, context="training")
        mlflow.log_params({"estimator": spec.estimator.type, **spec.estimator.params,
                           "training_set": f"{spec.training_set}@{manifest['version']}",
                           "model_spec_hash": definition_hash(spec)})
        try:
            fitted = pipeline.fit(train_df)
        except Exception as exc:  # a Spark failure inside fit is a failed job
            raise JobFailed(f"training {model_name} failed: {exc}") from exc
        metrics = evaluate(fitted.transform(test_df))
        counts = {f"{split}_rows": float(manifest["rows"].get(split, 0)) for split in ("train", "test")}
        mlflow.log_metrics({**metrics, **counts})
        verdict = gate(spec.thresholds, metrics)

        sample = train_df.drop(LABEL).limit(50).toPandas()
        prediction = fitted.transform(train_df.limit(50)).select("prediction").toPandas()
        signature = infer_signature(sample, prediction)
        feature_spec = {k: manifest[k] for k in ("entity", "lookups", "feature_columns")}
        feature_spec["training_set"] = {"name": manifest["name"], "version": manifest["version"],
                                        "digest": manifest["digest"]}
        with tempfile.TemporaryDirectory() as tmp:
            for name, body in (("feature_spec.json", feature_spec), ("environment.json", env),
                               ("training_set_manifest.json", manifest), ("gate.json", verdict)):
                (Path(tmp) / name).write_text(json.dumps(body, indent=2, default=str))
                mlflow.log_artifact(str(Path(tmp) / name))
        info = mlflow.spark.log_model(fitted, "model", signature=signature,
                                      registered_model_name=model_name)
        version = str(info.registered_model_version)

    registered = registry.record_version(config, model_name, version, run.info.run_id, manifest,
                                         env, metrics, verdict)
    result = {"model": model_name, "version": version, "run_id": run.info.run_id,
              "metrics": metrics, "gate": verdict, "aliases": registered["aliases"],
              "training_set": f"{manifest['name']}@{manifest['version']}"}
    if not verdict["passed"]:
        failed = [f"{c['metric']} = {c['value']:.4f} < {c['floor']}" for c in verdict["checks"]
                  if not c["passed"]]
        raise GateFailed(f"model {model_name} version {version} failed its gate: "
                         + "; ".join(failed) + " (registered as challenger, not champion)",
                         ) from None
    return result
