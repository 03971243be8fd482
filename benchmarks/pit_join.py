"""Time the framework's point-in-time join against the floor, a plain equi-join of the same
inputs on key and exact event time, and against the physical floor of any join by key (every
input read and hash-shuffled by key once, nothing joined), at several sizes and on skewed
keys; optionally against
the naive approach that joins every label row with every earlier feature row of its key and
then picks the newest. Results are forced with Spark's `noop` sink (full computation, no
write cost); each measurement is repeated, interleaved, and the median printed.

    .venv/bin/python benchmarks/pit_join.py --scale 1,2,4 [--repeat 3] [--window] [--naive]

Scale N is N x (--labels labels, --tables x --rows feature rows) over the same --keys keys,
generated once (Delta, under --data) and reused. The skewed case gives one key --skew of
every feature table's rows at the largest scale and is compared with the uniform case there.
Targets (issue 19, 2 cores): framework <= 1.15x floor at every scale, time per doubling
<= 2.2x, skewed <= 1.5x uniform; (issue 37) framework <= 1.3x the read-and-shuffle baseline.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from _common import session, timed
from pit_generate import generate


def dataset(spark, root: str, scale: int, skew: float, args) -> str:
    """The inputs for one case, generated unless already there with the same parameters."""
    params = {"labels": args.labels * scale, "rows": args.rows * scale, "keys": args.keys,
              "tables": args.tables, "features": args.features, "skew": skew}
    path = Path(root) / f"scale{scale}{'-skew' if skew else ''}"
    marker = path / "params.json"
    if not marker.exists() or json.loads(marker.read_text()) != params:
        print(f"generating {path} ({params['labels']:,} labels, {args.tables} x {params['rows']:,} rows)",
              flush=True)
        generate(spark, str(path), params["labels"], args.keys, args.tables, params["rows"],
                 args.features, skew=skew)
        marker.write_text(json.dumps(params))
    return str(path)


def load(spark, data: str):
    labels = spark.read.format("delta").load(f"{data}/labels")
    tables = [spark.read.format("delta").load(str(p))
              for p in sorted(Path(data).glob("features_*"))]
    return labels, tables


def framework(labels, tables):
    from sparkml_platform.storage.pit import FeatureLookup, join_features

    lookups = [(FeatureLookup(f"t{i}", {"key": "key"}, "ts",
                              {c: c for c in t.columns if c not in ("key", "ts")}), t)
               for i, t in enumerate(tables)]
    joined, flags = join_features(labels, "ts", lookups)
    return joined.drop(*flags)


def framework_window(labels, tables):
    """The framework's join as a session without the platform's jar runs it (a window)."""
    from sparkml_platform.storage import pit

    scan, pit._merge_scan = pit._merge_scan, lambda spark: None
    try:
        return framework(labels, tables)
    finally:
        pit._merge_scan = scan


def equi_join_floor(labels, tables):
    out = labels
    for t in tables:
        out = out.join(t, ["key", "ts"], "left")
    return out


def read_and_shuffle(labels, tables):
    """The physical floor of any join by key: every input read and hash-partitioned by its key
    once (as many partitions as the join's shuffles), nothing joined or sorted."""
    out = labels.repartition("key")
    for t in tables:
        out = out.unionByName(t.repartition("key"), allowMissingColumns=True)
    return out


def naive(labels, tables):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    out = labels
    for t in tables:
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
    parser.add_argument("--scale", default="1,2,4", help="comma-separated multiples of the base sizes")
    parser.add_argument("--labels", type=int, default=250_000)
    parser.add_argument("--rows", type=int, default=1_250_000, help="rows per feature table")
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--tables", type=int, default=3)
    parser.add_argument("--features", type=int, default=4)
    parser.add_argument("--skew", type=float, default=0.2, help="0 skips the skewed case")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--naive", action="store_true", help="also time the naive join (slow)")
    parser.add_argument("--window", action="store_true",
                        help="also time the window join (what a session without the platform's jar runs)")
    parser.add_argument("--driver-jit", choices=["client", "server"],
                        help="the driver JVM's JIT (default: platform.yml's spark.driver_jit)")
    args = parser.parse_args()
    scales = [int(s) for s in args.scale.split(",")]
    spark = session(driver_jit=args.driver_jit)
    cases = [(s, 0.0) for s in scales] + ([(max(scales), args.skew)] if args.skew else [])
    inputs = {case: load(spark, dataset(spark, args.data, *case, args)) for case in cases}
    from sparkml_platform.storage import pit

    if pit._merge_scan(spark) is None:
        print("note: this session lacks the platform's jar (make setup): the framework runs its window join")
    approaches = {"floor": equi_join_floor, "shuffle": read_and_shuffle, "framework": framework,
                  **({"window": framework_window} if args.window else {}),
                  **({"naive": naive} if args.naive else {})}

    def run(df):
        df.write.format("noop").mode("overwrite").save()

    times: dict[tuple, list[float]] = {}
    for round_ in range(args.repeat):  # interleaved, so drift on a busy machine hits all alike
        print(f"round {round_ + 1}/{args.repeat}", flush=True)
        for case, (labels, tables) in inputs.items():
            for name, build in approaches.items():
                label = f"scale {case[0]}{' skewed' if case[1] else ''} {name}"
                times.setdefault((*case, name), []).append(timed(label, lambda: run(build(labels, tables))))
    med = {k: statistics.median(v) for k, v in times.items()}

    print(f"\nmedians of {args.repeat} ({args.keys:,} keys, {args.tables} feature tables of "
          f"{args.features} columns)")
    print(f"{'scale':>5} {'labels':>10} {'feature rows':>13} {'floor s':>8} {'framework s':>12} {'ratio':>6}"
          f" {'shuffle s':>10} {'ratio':>6}"
          + ("  window s  ratio" if args.window else "") + ("  naive s" if args.naive else ""))
    for s in scales:
        floor = med[(s, 0.0, 'floor')]
        line = (f"{s:>5} {args.labels * s:>10,} {args.tables * args.rows * s:>13,} {floor:>8.1f} "
                f"{med[(s, 0.0, 'framework')]:>12.1f} {med[(s, 0.0, 'framework')] / floor:>5.2f}x"
                f" {med[(s, 0.0, 'shuffle')]:>10.1f} {med[(s, 0.0, 'framework')] / med[(s, 0.0, 'shuffle')]:>5.2f}x")
        if args.window:
            line += f" {med[(s, 0.0, 'window')]:>9.1f} {med[(s, 0.0, 'window')] / floor:>5.2f}x"
        print(line + (f" {med[(s, 0.0, 'naive')]:>8.1f}" if args.naive else ""))
    for a, b in zip(scales, scales[1:]):
        per_doubling = (med[(b, 0.0, "framework")] / med[(a, 0.0, "framework")]) ** (1 / math.log2(b / a))
        print(f"framework time per doubling, scale {a} -> {b}: {per_doubling:.2f}x")
    if args.skew:
        top = max(scales)
        skewed, uniform = med[(top, args.skew, "framework")], med[(top, 0.0, "framework")]
        print(f"skewed ({args.skew:.0%} of feature rows on one key) at scale {top}: framework "
              f"{skewed:.1f} s = {skewed / uniform:.2f}x uniform; floor {med[(top, args.skew, 'floor')]:.1f} s")


if __name__ == "__main__":
    main()
