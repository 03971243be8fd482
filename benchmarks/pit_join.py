"""Time the framework's point-in-time join against (a) the floor, a plain equi-join of the
same inputs on key and exact event time, and (b) the naive approach that joins every label
row with every earlier feature row of its key and then picks the newest. One run, same
inputs, results forced with Spark's `noop` sink (full computation, no write cost).

    .venv/bin/python benchmarks/pit_generate.py      # once: 1M labels, 3 x 5M feature rows
    .venv/bin/python benchmarks/pit_join.py [--data .sparkml/bench/pit] [--skip-naive]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import session, timed


def load(spark, data: str):
    labels = spark.read.format("delta").load(f"{data}/labels")
    tables = [spark.read.format("delta").load(str(p))
              for p in sorted(Path(data).glob("features_*"))]
    return labels, tables


def framework(labels, tables):
    from sparkml_platform.pit import FeatureLookup, join_features

    lookups = [(FeatureLookup(f"t{i}", {"key": "key"}, "ts",
                              {c: c for c in t.columns if c not in ("key", "ts")}), t)
               for i, t in enumerate(tables)]
    joined, flags = join_features(labels, "ts", lookups)
    return joined.drop(*flags)


def equi_join_floor(labels, tables):
    out = labels
    for t in tables:
        out = out.join(t, ["key", "ts"], "left")
    return out


def naive(labels, tables):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    out = labels
    for i, t in enumerate(tables):
        cols = [c for c in t.columns if c not in ("key", "ts")]
        right = t.select(F.col("key").alias("_k"), F.col("ts").alias("_ts"), *cols)
        pairs = labels.select("label_id", "key", "ts").join(
            right, (F.col("key") == F.col("_k")) & (F.col("_ts") <= F.col("ts")))
        newest = Window.partitionBy("label_id").orderBy(F.col("_ts").desc())
        picked = (pairs.withColumn("_rn", F.row_number().over(newest)).where("_rn = 1")
                  .select("label_id", *cols))
        out = out.join(picked, "label_id", "left")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=".sparkml/bench/pit")
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    spark = session()
    labels, tables = load(spark, args.data)
    n_labels = labels.count()
    sizes = [t.count() for t in tables]
    print(f"{n_labels:,} labels, feature tables of {', '.join(f'{s:,}' for s in sizes)} rows")

    def run(df):
        df.write.format("noop").mode("overwrite").save()

    times = {}
    times["floor"] = timed("equi-join floor (key, exact time)", lambda: run(equi_join_floor(labels, tables)))
    times["framework"] = timed("framework point-in-time join", lambda: run(framework(labels, tables)))
    if not args.skip_naive:
        times["naive"] = timed("naive join-all-earlier-then-pick", lambda: run(naive(labels, tables)))
    print(f"framework / floor = {times['framework'] / times['floor']:.2f}x")
    if "naive" in times:
        print(f"naive / framework = {times['naive'] / times['framework']:.1f}x")


if __name__ == "__main__":
    main()
