"""Synthetic inputs for the point-in-time join benchmark, written as Delta tables.

    .venv/bin/python benchmarks/pit_generate.py --out .sparkml/bench/pit \
        --labels 1000000 --keys 10000 --tables 3 --rows 5000000 --features 4

Labels: (label_id, key, ts, label). Feature table i: (key, ts, f_i_0 .. f_i_{n-1}). Event
times are uniform over 2023 at one-second resolution, so keys carry many rows and ties.
`--skew 0.2` gives key 0 a fifth of every feature table's rows (the rest stay uniform).
"""

from __future__ import annotations

import argparse

from _common import session

YEAR_START = 1672531200  # 2023-01-01 UTC
YEAR_SECONDS = 365 * 86400


def generate(spark, out: str, labels: int, keys: int, tables: int, rows: int, features: int,
             seed: int = 1, skew: float = 0.0) -> None:
    from pyspark.sql import functions as F

    def when(salt: int):
        return (F.lit(YEAR_START) + (F.abs(F.xxhash64("id", F.lit(salt))) % YEAR_SECONDS)).cast("timestamp")

    (spark.range(labels)
        .select(F.col("id").alias("label_id"),
                (F.abs(F.xxhash64("id", F.lit(seed))) % keys).alias("key"),
                when(seed + 1).alias("ts"),
                (F.rand(seed) > 0.5).cast("int").alias("label"))
        .write.format("delta").mode("overwrite").save(f"{out}/labels"))
    for t in range(tables):
        salt = seed + 10 * (t + 1)
        uniform_key = F.abs(F.xxhash64("id", F.lit(salt))) % keys
        hot = (F.abs(F.xxhash64("id", F.lit(salt + 2))) % 1_000_000) < int(skew * 1_000_000)
        (spark.range(rows)
            .select(F.when(hot, F.lit(0).cast("long")).otherwise(uniform_key).alias("key"),
                    when(salt + 1).alias("ts"),
                    *[F.rand(salt + j).alias(f"f{t}_{j}") for j in range(features)])
            .write.format("delta").mode("overwrite").save(f"{out}/features_{t}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=".sparkml/bench/pit")
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--tables", type=int, default=3)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--features", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skew", type=float, default=0.0, help="share of feature rows on key 0")
    args = parser.parse_args()
    spark = session()
    generate(spark, args.out, args.labels, args.keys, args.tables, args.rows, args.features, args.seed,
             args.skew)
    print(f"wrote {args.labels:,} labels and {args.tables} x {args.rows:,} feature rows "
          f"over {args.keys:,} keys to {args.out}")


if __name__ == "__main__":
    main()
