"""Time the platform's MLlib training (`estimators.MllibEstimator.fit`: its feature pipeline
and the model) three ways, side by side: with the native BLAS (OpenBLAS's libblas.so.3,
which set-up installs) as sessions get it (OpenBLAS on one thread per task:
`runtime.spark_conf.BLAS_THREADS`), with OpenBLAS's own default (a thread per core in every task), and
with MLlib's Java BLAS (the same machine with native BLAS refused,
`-Ddev.ludovic.netlib.blas.allowNative=false`: what a machine without OpenBLAS runs). Each fit
runs in a fresh session of its own, the three kinds in turn. Prints each estimator's median
seconds and the ratios to the first (above 1: the first is faster).

    .venv/bin/python benchmarks/training_blas.py [--rows 300000] [--repeat 3] [--only logistic_regression,...]

Data: a seeded synthetic set made in Spark (60 numeric features, two categoricals of 8 and 30
values, a binary label and a numeric target), cached before the clock starts. Every one of the
platform's six MLlib estimator types with its default parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _common import ROOT, session

TYPES = ("logistic_regression", "linear_regression", "random_forest_classifier",
         "gbt_classifier", "random_forest_regressor", "gbt_regressor")
NUMERIC = 60
REFUSE_NATIVE = "-Ddev.ludovic.netlib.blas.allowNative=false"


def data(spark, rows: int):
    from pyspark.sql import functions as F

    numeric = [(F.rand(seed=i) * 2 - 1).alias(f"x{i}") for i in range(NUMERIC)]
    df = spark.range(rows).select(*numeric, (F.rand(seed=101) * 8).cast("int").cast("string").alias("cat_a"),
                                  (F.rand(seed=102) * 30).cast("int").cast("string").alias("cat_b"))
    signal = sum(F.col(f"x{i}") * (1.0 / (i + 1)) for i in range(NUMERIC)) + F.randn(seed=103) * 0.3
    df = df.withColumn("target", signal).withColumn("label", (F.col("target") > 0).cast("int"))
    return df.repartition(4).cache()


def child(kind: str, rows: int) -> None:
    """One fit in this process's fresh session: prints {"seconds", "blas"} as JSON."""
    from sparkml_platform.config import ModelSpec
    from sparkml_platform.config.vocabulary import MLLIB_ESTIMATORS
    from sparkml_platform.modeling.estimators import MllibEstimator

    spark = session(shuffle_partitions=4)
    train = data(spark, rows)
    train.count()
    task = MLLIB_ESTIMATORS[kind][2]
    spec = ModelSpec.model_validate({"training_set": "synthetic", "estimator": {"type": kind}})
    label = "label" if task == "classification" else "target"
    estimator = MllibEstimator(spec, "bench", ["cat_a", "cat_b"], [f"x{i}" for i in range(NUMERIC)], label)
    started = time.perf_counter()
    estimator.prepare(train)
    estimator.fit(train, {})
    seconds = time.perf_counter() - started
    blas = spark._jvm.dev.ludovic.netlib.blas.BLAS.getInstance().getClass().getSimpleName()
    print(json.dumps({"seconds": seconds, "blas": blas}), flush=True)


MODES = ("native", "native, threads", "java")


def run(kind: str, rows: int, mode: str) -> dict:
    env = dict(os.environ)
    if mode == "java":
        env["JDK_JAVA_OPTIONS"] = f"{env.get('JDK_JAVA_OPTIONS', '')} {REFUSE_NATIVE}".strip()
    if mode == "native, threads":
        env["OPENBLAS_NUM_THREADS"] = str(os.cpu_count())  # what OpenBLAS does when not told
    done = subprocess.run([sys.executable, __file__, "--child", kind, "--rows", str(rows)], env=env,
                          cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{kind} ({mode}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default=",".join(TYPES))
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.rows)

    print(f"MLlib training, {args.rows:,} rows x {NUMERIC} numeric + 2 categorical, median of {args.repeat}")
    print(f"  {'estimator':<26} {'native s':>9} {'threads s':>10} {'java s':>8} {'threads/native':>15} "
          f"{'java/native':>12}   BLAS loaded")
    for kind in args.only.split(","):
        times = {mode: [] for mode in MODES}
        loaded = {}
        for _ in range(args.repeat):
            for mode in MODES:
                result = run(kind, args.rows, mode)
                times[mode].append(result["seconds"])
                loaded[mode] = result["blas"]
        native, threads, java = (statistics.median(times[mode]) for mode in MODES)
        print(f"  {kind:<26} {native:9.1f} {threads:10.1f} {java:8.1f} {threads / native:14.2f}x "
              f"{java / native:11.2f}x   {loaded['native']} / {loaded['java']}", flush=True)


if __name__ == "__main__":
    main()
