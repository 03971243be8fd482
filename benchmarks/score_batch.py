"""Time batch scoring through the framework (`scoring.score`: input and signature checks,
model resolution, feature spec from the model's run, point-in-time join, prediction, Delta
write with replaceWhere, an MLflow run) against a hand-written Spark job that loads the same
model version, joins the same features with the same library function and writes the same
table the same way, without checks or tracking. One run, one session, same input; the two
sides alternate, after one untimed warm-up of each.

    .venv/bin/python benchmarks/score_batch.py [--model flight_delays@champion] [--rows 1000000] [--repeat 2]

In the demo, the champion is the scikit-learn version (scored through spark_udf) and
`--model flight_delays/1` is the Spark ML one (scored with its native transform).

Uses the demo project (`make demo`): its lake and MLflow store. The input, a copy of
entities.flights repeated to --rows rows, is built once as entities.bench_score_input; the
outputs are predictions.bench_framework and predictions.bench_handwritten (partition
2013-12-31). The framework's scoring runs go to their own experiment, `sparkml-benchmarks`.
Target: framework / hand-written <= 1.15x.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import statistics
from functools import partial

from _common import ROOT, session, timed
from sparkml_platform.storage import places

SOURCE = "entities.flights"
INPUT = "entities.bench_score_input"
FRAMEWORK_OUT = "predictions.bench_framework"
HANDWRITTEN_OUT = "predictions.bench_handwritten"
RUN_DATE = "2013-12-31"
FALLBACK_MODEL = "flight_delays"  # its latest version, when no version is champion
SHIFT_MINUTES = 5  # each copy of the source rows happens this much later than the previous one
TARGET = 1.15


def bench_workspace(spark):
    from sparkml_platform import Workspace

    ws = Workspace(ROOT / "conf", spark=spark)
    # Same store and registry; the benchmark's scoring runs stay out of the demo experiment.
    ws.tracker.experiment = "sparkml-benchmarks"
    return ws


def resolve_model(ws, wanted: str):
    from sparkml_platform.tracking import registry
    from sparkml_platform.core.errors import NotFoundError

    try:
        return wanted, registry.resolve(ws.tracker, wanted)
    except NotFoundError as exc:
        if wanted == FALLBACK_MODEL:
            raise
        print(f"{wanted} does not resolve ({exc}); using {FALLBACK_MODEL}")
        return FALLBACK_MODEL, registry.resolve(ws.tracker, FALLBACK_MODEL)


def ensure_input(spark, config, rows: int) -> None:
    """entities.bench_score_input with exactly `rows` rows, rebuilt only when missing or resized."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from sparkml_platform.storage import lake

    path = places.table(config, INPUT)
    if lake.exists(path) and lake.read(spark, path).count() == rows:
        return
    source = lake.read(spark, places.table(config, SOURCE), ref=SOURCE)
    n = source.count()
    copies = math.ceil(rows / n)
    # Whole copies, then the first flights of the last one by flight_id: the same rows every build.
    numbered = source.withColumn("__i", F.row_number().over(Window.orderBy("flight_id")) - 1)
    repeated = (
        numbered.crossJoin(spark.range(copies).withColumnRenamed("id", "__copy"))
        .where(F.col("__copy") * n + F.col("__i") < rows)
        .withColumn("flight_id", F.concat("flight_id", F.lit("-c"), F.col("__copy").cast("string")))
        .withColumn("sched_dep_ts", F.col("sched_dep_ts")
                    + F.make_dt_interval(mins=F.col("__copy").cast("int") * SHIFT_MINUTES))
        .drop("__i", "__copy")
        .repartition(max(2, spark.sparkContext.defaultParallelism))
    )
    lake.write(repeated, path)
    print(f"built {INPUT}: {rows:,} rows from {copies} shifted cop{'ies' if copies > 1 else 'y'} "
          f"of {SOURCE}", flush=True)


def framework(spark, ws, model_ref: str) -> None:
    ws.score(model_ref, INPUT, FRAMEWORK_OUT, RUN_DATE)


def hand_written(spark, config, mv, sklearn_inputs) -> None:
    """What an engineer would write for this one model: no checks, no tracking."""
    import mlflow
    from pyspark.sql import functions as F

    from sparkml_platform.storage.pit import FeatureLookup, join_features

    lake_root = places.lake_root(config)
    spec_file = mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path="feature_spec.json")
    with open(spec_file) as handle:
        spec = json.load(handle)
    entity = spec["entity"]
    lookups = [FeatureLookup.from_dict({**lk, "version": None}) for lk in spec["lookups"]]
    columns = list(dict.fromkeys([*entity["keys"], entity["event_time"],
                                  *[c for lk in lookups for c in lk.key_map.values()],
                                  *entity["passthrough"]]))
    entities = spark.read.format("delta").load(str(lake_root / "entities" / "bench_score_input"))
    tables = [(lk, spark.read.format("delta").load(str(lake_root / "features" / lk.table)))
              for lk in lookups]
    joined, flags = join_features(entities.select(*columns), entity["event_time"], tables)
    rows = joined.drop(*flags)

    uri = f"models:/{mv.name}/{mv.version}"
    classifier = spec.get("task", "classification") == "classification"
    if spec.get("flavor", "spark") == "spark":
        from pyspark.ml.functions import vector_to_array

        scored = mlflow.spark.load_model(uri).transform(rows)
        score = vector_to_array("probability")[1] if classifier else F.col("prediction")
        prediction = F.col("prediction")
    else:
        udf = mlflow.pyfunc.spark_udf(spark, uri, result_type="array<double>" if classifier else "double",
                                      env_manager="local")
        scored = rows.withColumn("__out", udf(*[F.col(n).cast(t).alias(n) for n, t in sklearn_inputs]))
        score = F.col("__out")[1] if classifier else F.col("__out")
        prediction = (score >= 0.5) if classifier else score

    out = scored.select(
        *entity["keys"],
        entity["event_time"],
        prediction.cast("int" if classifier else "double").alias("prediction"),
        score.alias("probability" if classifier else "value"),
        F.lit(mv.name).alias("model_name"),
        F.lit(int(mv.version)).alias("model_version"),
        F.lit(mv.run_id).alias("run_id"),
        F.lit(dt.datetime.now(dt.timezone.utc)).cast("timestamp").alias("scored_at"),
        F.lit(dt.date.fromisoformat(RUN_DATE)).alias("run_date"),
    )
    target = lake_root / "predictions" / "bench_handwritten"
    writer = out.write.format("delta").mode("overwrite").partitionBy("run_date")
    if (target / "_delta_log").is_dir():  # the first run creates the table
        writer = writer.option("replaceWhere", f"run_date = '{RUN_DATE}'")
    writer.save(str(target))


def sklearn_signature(ws, mv) -> list[tuple[str, str]] | None:
    """The (column, Spark type) pairs a hand-written job would hard-code for a scikit-learn model."""
    from mlflow.models import get_model_info

    from sparkml_platform.tracking import registry

    if registry.load_feature_spec(ws.tracker, mv.run_id).get("flavor", "spark") == "spark":
        return None
    spark_type = {"double": "double", "float": "float", "long": "bigint", "integer": "int",
                  "string": "string", "boolean": "boolean"}
    inputs = get_model_info(f"models:/{mv.name}/{mv.version}").signature.inputs.inputs
    return [(i.name, spark_type.get(i.type.name, "string")) for i in inputs]


def check_outputs(spark, config, rows: int) -> None:
    """Same row count in the run date's partition, same predictions on a sample of flights."""
    from pyspark.sql import functions as F

    from sparkml_platform.storage import lake

    def partition(ref):
        return lake.read(spark, places.table(config, ref), ref=ref).where(
            F.col("run_date") == F.lit(dt.date.fromisoformat(RUN_DATE)))

    fw, hw = partition(FRAMEWORK_OUT), partition(HANDWRITTEN_OUT)
    fw_rows, hw_rows = fw.count(), hw.count()
    assert fw_rows == hw_rows == rows, (
        f"rows in {RUN_DATE}: framework {fw_rows:,}, hand-written {hw_rows:,}, input {rows:,}")
    value = "probability" if "probability" in fw.columns else "value"
    sample = fw.where(F.xxhash64("flight_id") % 100 == 0).select(
        "flight_id", F.col("prediction").alias("fw_prediction"), F.col(value).alias("fw_value"))
    pairs = sample.join(hw.select("flight_id", "prediction", value), "flight_id", "left")
    stats = pairs.agg(
        F.count("*").alias("sampled"),
        F.count("prediction").alias("matched"),
        F.sum((F.col("fw_prediction") != F.col("prediction")).cast("int")).alias("differ"),
        F.max(F.abs(F.col("fw_value") - F.col(value))).alias("max_gap"),
    ).collect()[0]
    assert stats["sampled"] > 0, "the sample of flights is empty"
    assert stats["matched"] == stats["sampled"], (
        f"{stats['sampled'] - stats['matched']} sampled flights missing from {HANDWRITTEN_OUT}")
    assert not stats["differ"] and (stats["max_gap"] or 0) <= 1e-9, (
        f"predictions differ on the sample: {stats['differ']} labels, {value} gap {stats['max_gap']}")
    print(f"outputs agree: {fw_rows:,} rows each in run_date={RUN_DATE}; "
          f"{stats['sampled']:,} sampled flights with the same prediction and {value}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="flight_delays@champion")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per side; the median counts")
    args = parser.parse_args()
    if args.repeat < 1 or args.rows < 1:
        parser.error("--repeat and --rows must be at least 1")

    logging.getLogger("mlflow.spark").setLevel(logging.WARNING)  # a DFS-copy notice per model load
    spark = session()
    ws = bench_workspace(spark)
    config = ws.config
    # The hand-written side loads models through MLflow's own settings: point them at the store.
    ws.tracker.bound().__enter__()
    model_ref, mv = resolve_model(ws, args.model)
    print(f"model {model_ref} -> {mv.name} version {mv.version} (run {mv.run_id})")
    ensure_input(spark, config, args.rows)
    sides = {
        "framework": partial(framework, spark, ws, model_ref),
        "hand-written": partial(hand_written, spark, config, mv, sklearn_signature(ws, mv)),
    }
    print(f"{args.rows:,} entity rows, run date {RUN_DATE}, "
          f"{spark.sparkContext.defaultParallelism} cores, median of {args.repeat}")

    print("warm-up (untimed)", flush=True)
    for run in sides.values():
        run()

    times = {side: [] for side in sides}
    for rep in range(1, args.repeat + 1):
        print(f"repetition {rep}/{args.repeat}", flush=True)
        order = list(sides) if rep % 2 else list(reversed(sides))  # neither side always goes first
        for side in order:
            times[side].append(timed(side, sides[side]))

    check_outputs(spark, config, args.rows)
    fw, hw = (statistics.median(times[side]) for side in sides)
    fw_best, hw_best = (min(times[side]) for side in sides)
    print(f"\n{'':<14} {'median':>9} {'best':>9}")
    print(f"{'framework':<14} {fw:>7.1f} s {fw_best:>7.1f} s")
    print(f"{'hand-written':<14} {hw:>7.1f} s {hw_best:>7.1f} s")
    def verdict(ratio):
        return "within" if ratio <= TARGET else "ABOVE"

    print(f"framework / hand-written = {fw / hw:.2f}x median ({verdict(fw / hw)} the {TARGET}x "
          f"target), {fw_best / hw_best:.2f}x best ({verdict(fw_best / hw_best)})")


if __name__ == "__main__":
    main()
