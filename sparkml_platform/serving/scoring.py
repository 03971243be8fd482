"""Batch scoring: entity rows + point-in-time feature lookup + the registered model -> Delta."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging

from ..config import Config
from ..core import refs
from ..core.errors import ConfigError, JobFailed
from ..modeling.estimators import DECISION_THRESHOLD, spark_score
from ..runtime import environments as environment
from ..storage import lake, leases, places
from ..storage.pit import join_features
from ..tracking import registry
from ..tracking import tracker as tracking
from ..tracking.model_versions import ScoringModel, resolve

RUN_DATE = "run_date"
OUTPUT_ZONES = ("predictions",)  # predictions never land among features or training sets


# An MLflow signature's column type -> the Spark type that feeds it (`any`: integers, as they are).
SPARK_TYPE_OF = {"double": "double", "float": "float", "long": "bigint", "integer": "int",
                 "string": "string", "boolean": "boolean", "datetime": "timestamp"}


def score_frame(spark, model: ScoringModel, rows, tables):
    """The pure core: entity rows (at least `model.needed`) and the feature tables read ->
    the rows with `prediction` and `probability` (a classifier) or `value` (a regressor).
    Features are looked up as of each row's event time; nothing is read or written."""
    from pyspark.sql import functions as F

    joined, flags = join_features(rows, model.spec["entity"]["event_time"], tables)
    joined = joined.drop(*flags)
    scored = predict(spark, model.version, model.spec, joined)
    # The rows and their features, then the answer (not the model's own vectors and stages).
    return scored.select(*[F.col(f"`{c}`") for c in joined.columns],
                         F.col("prediction").cast("int" if model.classifier else "double").alias("prediction"),
                         F.col("score").alias("probability" if model.classifier else "value"))


def score_batch(spark, config: Config, tracker, model_ref: str, df, where: str = "df"):
    """`df`'s rows scored by `model_ref`, each with its features looked up as of its own event
    time in the feature tables as they are now: a DataFrame, nothing written. Columns: those
    of `df`, the looked-up features, `prediction`, `probability` (or `value`), the model."""
    from pyspark.sql import functions as F

    with tracker.bound():
        model = resolve(tracker, model_ref)
        mv = model.version
        missing = model.missing(df.columns)
        if missing:
            raise ConfigError(f"{where} lacks column {', '.join(missing)} that model {mv.name} "
                              f"version {mv.version} needs (it has {', '.join(df.columns)}); "
                              "nothing scored")
        tables = model.read_features(spark, config)
        produced = {*[c for lk, _ in tables for c in lk.columns.values()], "prediction", "probability",
                    "value", "score", "model_name", "model_version"}
        rows = df.select(*model.needed, *[c for c in df.columns if c not in model.needed and c not in produced])
        return score_frame(spark, model, rows, tables).withColumn(
            "model_name", F.lit(mv.name)).withColumn("model_version", F.lit(int(mv.version)))


def score(spark, config: Config, tracker, model_ref: str, input_ref: str, output_ref: str,
          run_date: str | None = None) -> dict:
    """Score `input_ref` with `model_ref` into partition `run_date` of `output_ref`, in one commit."""
    with tracker.bound(), contextlib.ExitStack() as leased:
        return _score(spark, config, tracker, model_ref, input_ref, output_ref, run_date, leased)


def _score(spark, config: Config, tracker, model_ref: str, input_ref: str, output_ref: str,
           run_date: str | None, leased: contextlib.ExitStack) -> dict:
    import mlflow
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    day = refs.parse_run_date(run_date)
    output_path = places.table(config, output_ref, OUTPUT_ZONES)
    input_path = places.table(config, input_ref)
    model = resolve(tracker, model_ref)
    mv, entity = model.version, model.spec["entity"]
    tracker.close_abandoned_runs()
    # The input and feature tables at the versions they have now, leased until the scoring
    # ends: a VACUUM meanwhile keeps their files.
    pinned = lake.current_versions(places.lake_root(config), [input_ref, *[f"features.{lk.table}" for lk in model.lookups]])
    leased.enter_context(leases.reading_tables(config, f"scoring {mv.name}/{mv.version} into {output_ref}", pinned))
    input_version = pinned.get(input_ref)
    entities = lake.read(spark, input_path, input_version, input_ref)
    missing = model.missing(entities.columns)
    if missing:
        raise ConfigError(f"input table {input_ref} lacks column {', '.join(missing)} that model "
                          f"{mv.name} version {mv.version} needs (it has {', '.join(entities.columns)})")
    _check_signature(mv, spark, entities.select(*model.needed), entity["passthrough"], input_ref)
    env, env_problems = _check_environment(spark, config, tracker, mv)
    key_columns = model.key_columns
    if config.platform.scoring.null_keys == "refuse":
        _refuse_null_keys(entities, key_columns, input_ref)  # a pass of its own, before any write
    # Counted in the write's own pass: no second read of the input or the output. The entity
    # rows are observed after the point-in-time join, which keeps every row once (an
    # observation before it would never report: the join's scan runs its inputs as RDDs).
    seen, written = Observation("entity rows"), Observation("predictions")
    tables = model.read_features(spark, config, pinned)
    scored_at = dt.datetime.now(dt.timezone.utc)
    scored = score_frame(spark, model, entities.select(*model.needed), tables).observe(
        seen, *[F.sum(F.col(f"`{c}`").isNull().cast("int")).alias(c) for c in key_columns])
    classifier = model.classifier
    # A classifier's count of positive predictions; a regressor has none (its sum means nothing).
    observed = [F.count(F.lit(1)).alias("rows"),
                *([F.sum("prediction").alias("positive")] if classifier else [])]
    predictions = scored.select(
        *dict.fromkeys([*entity["keys"], entity["event_time"]]),  # the event time may be a key
        "prediction", "probability" if classifier else "value",
        F.lit(mv.name).alias("model_name"),
        F.lit(int(mv.version)).alias("model_version"),
        F.lit(mv.run_id).alias("run_id"),
        F.lit(scored_at).cast("timestamp").alias("scored_at"),
        F.lit(day).alias(RUN_DATE),
    ).observe(written, *observed)
    with mlflow.start_run(experiment_id=tracker.experiment_id,
                          run_name=f"score {mv.name}/{mv.version} {day}") as run:
        mlflow.set_tags({"sparkml.kind": "score", "sparkml.model": mv.name,
                         "sparkml.model_version": mv.version, "sparkml.model_run_id": mv.run_id,
                         "sparkml.environment_id": env["id"], **tracking.owner_tags()})
        try:
            version = lake.write(
                predictions, output_path, partition_by=[RUN_DATE],
                replace_where=f"{RUN_DATE} = '{day}'" if lake.exists(output_path) else None,
                metadata={"kind": "predictions", "model": mv.name, "model_version": mv.version,
                          "input": {input_ref: input_version}, "run_date": str(day),
                          "features": {f"features.{lk.table}": lk.version for lk, _ in tables},
                          "mlflow_run_id": run.info.run_id})
        except Exception as exc:
            raise JobFailed(f"scoring into {output_ref} failed; the table is unchanged: {exc}") from exc
        stats = written.get
        null_keys = {c: int(n or 0) for c, n in seen.get.items()}
        mlflow.log_params({"input_table": input_ref, "input_version": input_version,
                           "output_table": output_ref, "output_version": version,
                           "run_date": str(day)})
        positive = int(stats["positive"] or 0) if classifier else None
        mlflow.log_metrics({"rows_scored": stats["rows"],
                            **({"predicted_positive": positive} if classifier else {}),
                            **{f"null_{c}": n for c, n in null_keys.items()}})
        mlflow.set_tag("sparkml.environment_mismatch", "; ".join(env_problems) or "none")
    return {"model": mv.name, "version": mv.version, "run_id": mv.run_id,
            "scoring_run_id": run.info.run_id, "output": output_ref, "output_version": version,
            "run_date": str(day), "rows": stats["rows"], "predicted_positive": positive,
            "rows_with_null_keys": null_keys, "environment_id": env["id"],
            "environment_mismatch": env_problems}


def up_to_date(config: Config, tracker, model_ref: str, input_ref: str, output_ref: str,
               run_date: str | None = None) -> dict | None:
    """What `score` reports, for the partition `run_date` of `output_ref` as it is, when the
    last scoring into it used the version `model_ref` names now, on `input_ref` and the
    feature tables at the versions they have now: scoring again would write the same
    predictions. Else None. From the Delta logs and the registry: no Spark session."""
    day = refs.parse_run_date(run_date)
    output_path = places.table(config, output_ref, OUTPUT_ZONES)
    input_path = places.table(config, input_ref)
    if not lake.exists(output_path) or not lake.exists(input_path):
        return None
    last = lake.last_commit(output_path, "predictions", run_date=str(day))
    meta = (last or {}).get("metadata") or {}
    if not meta.get("features") or meta.get("input") != {input_ref: lake.version(None, input_path)}:
        return None
    for ref, version in meta["features"].items():
        path = places.table(config, ref)
        if not lake.exists(path) or lake.version(None, path) != version:
            return None
    with tracker.bound():
        mv = registry.resolve(tracker, model_ref)
        if (meta.get("model"), str(meta.get("model_version"))) != (mv.name, str(mv.version)):
            return None
        scored = tracker.client.get_run(meta["mlflow_run_id"]).data.metrics
    positive = scored.get("predicted_positive")
    return {"model": mv.name, "version": mv.version, "run_id": mv.run_id, "mode": "up to date",
            "scoring_run_id": meta["mlflow_run_id"], "output": output_ref,
            "output_version": lake.version(None, output_path), "run_date": str(day),
            "rows": int(scored.get("rows_scored", last["rows_written"] or 0)),
            "predicted_positive": int(positive) if positive is not None else None,
            "rows_with_null_keys": {k[len("null_"):]: int(v) for k, v in scored.items() if k.startswith("null_")},
            "reason": f"nothing new: output version {last['version']} scored this run date with model "
                      f"{mv.name} version {mv.version} from the same input and feature versions"}


def predict(spark, mv, spec: dict, rows):
    """`rows` with `score` and `prediction`: Spark ML models with their native `transform`,
    single-machine models through `mlflow.pyfunc.spark_udf` (Arrow batches in Python workers)."""
    import mlflow
    from pyspark.sql import functions as F

    uri = f"models:/{mv.name}/{mv.version}"
    task = spec.get("task", "classification")
    classifier = task == "classification"
    if spec.get("flavor", "spark") == "spark":
        return mlflow.spark.load_model(uri).transform(rows).withColumn("score", spark_score(task))
    from mlflow.models import get_model_info

    # The signature's column types by name; `any` (integers) goes as it is: the model casts it.
    inputs = get_model_info(uri).signature.inputs.inputs
    columns = [F.col(i.name).cast(SPARK_TYPE_OF.get(_type_name(i), "string")).alias(i.name)
               if _type_name(i) != "any" else F.col(i.name) for i in inputs]
    udf = mlflow.pyfunc.spark_udf(spark, uri, result_type="array<double>" if classifier else "double",
                                  env_manager="local")
    out = rows.withColumn("__out", udf(*columns))
    score = F.col("__out")[1] if classifier else F.col("__out")
    prediction = (score >= DECISION_THRESHOLD).cast("double") if classifier else score
    return out.withColumn("score", score).withColumn("prediction", prediction).drop("__out")


def _check_environment(spark, config: Config, tracker, mv) -> tuple[dict, list[str]]:
    """The running environment (captured and saved, for the run to link) against the one the
    model was trained in: its differences warn, or refuse under `strict`."""
    running = environment.capture(spark)
    environment.save(running, places.environments_dir(config))
    try:
        recorded = registry.load_json_artifact(tracker, mv.run_id, "environment.json")
    except Exception:  # noqa: BLE001 - a model logged without one: nothing to compare
        return running, []
    problems = environment.compatibility(recorded, running)
    if problems and config.platform.scoring.environment_check == "strict":
        raise ConfigError(f"model {mv.name} version {mv.version} was trained in environment "
                          f"{recorded['id']}, and this one differs: " + "; ".join(problems)
                          + " (platform.yml: scoring.environment_check is strict; nothing written)")
    for problem in problems:
        logging.getLogger(__name__).warning("model %s/%s: %s", mv.name, mv.version, problem)
    return running, problems


def _refuse_null_keys(entities, columns: list[str], input_ref: str) -> None:
    """platform.yml scoring.null_keys: refuse -> rows with a null key fail the run (exit 2)."""
    from pyspark.sql import functions as F

    row = entities.agg(*[F.sum(F.col(c).isNull().cast("int")).alias(c) for c in columns]).collect()[0]
    found = ", ".join(f"{c}: {row[c]}" for c in columns if row[c])
    if found:
        raise ConfigError(f"input table {input_ref} has entity rows with null keys ({found}); "
                          "platform.yml: scoring.null_keys is refuse, so nothing was scored or written "
                          "(set it to score to score them with null features)")


NUMBERS = ("tinyint", "smallint", "int", "bigint", "float", "double")


def _type_name(column) -> str:
    """An MLflow column spec's type name (`any` has no DataType)."""
    return getattr(column.type, "name", None) or "any"


def _check_signature(mv, spark, entities, passthrough: list[str], input_ref: str) -> None:
    """The passthrough columns must have the types the model was trained on."""
    from mlflow.models import get_model_info

    info = get_model_info(f"models:/{mv.name}/{mv.version}")
    if info.signature is None:
        return
    declared = {col.name: _type_name(col) for col in info.signature.inputs.inputs}
    actual = {f.name: f.dataType.simpleString() for f in entities.schema.fields}
    wrong = []
    for column in passthrough:
        want = SPARK_TYPE_OF.get(declared.get(column, ""), None)
        if declared.get(column) == "any" and actual.get(column) not in NUMBERS:
            want = "a number"  # integers in the training set: any number will do
        elif want == "double" and actual.get(column) in NUMBERS:
            continue  # numbers widen to double exactly (single-machine models take doubles)
        if want and actual.get(column) != want:
            wrong.append(f"{column} is {actual.get(column)}, the model expects {want}")
    if wrong:
        raise ConfigError(f"input table {input_ref} does not match the signature of model "
                          f"{mv.name} version {mv.version}: " + "; ".join(wrong))
