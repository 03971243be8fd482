"""Time declared window aggregations with temporal accuracy (each label's values exactly as of
its own time, from the events) against (a) the plain point-in-time join of an equally wide
precomputed table (one row per event, as many feature columns) and (b) the range join users
write by hand (labels joined to their key's events within the longest window, then grouped).
Results are forced with Spark's `noop` sink; each measurement is repeated, interleaved, and
the median printed with the ratios.

    .venv/bin/python benchmarks/aggregations.py --scale 1,2,4 [--repeat 3]

Scale N: N x --labels labels and N x --events events over the same --keys keys in one year,
3 windows x 4 functions (count, sum, mean, max) of one column. Generated once under --data.
Targets (issue 37, 2 cores): within 2x of (a) and at least 10x faster than (b) at scale 4,
time per doubling <= 2.2x.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from _common import session, timed

YEAR_START = 1672531200  # 2023-01-01 UTC
YEAR_SECONDS = 365 * 86400
WINDOWS = ["1d", "7d", "30d"]
FUNCTIONS = ["count", "sum", "mean", "max"]


def spec():
    from sparkml_platform.config.aggregations import Aggregations
    from sparkml_platform.storage.window_aggregates import Declared

    return Declared(Aggregations.model_validate({
        "source": "raw.events", "event_time": "ts",
        "aggregate": [{"column": "amount", "functions": FUNCTIONS, "windows": WINDOWS}]}), ("key",), "benchmark")


def generate(spark, path: Path, labels: int, events: int, keys: int) -> None:
    from pyspark.sql import functions as F

    def when(salt: int):
        return (F.lit(YEAR_START) + (F.abs(F.xxhash64("id", F.lit(salt))) % YEAR_SECONDS)).cast("timestamp")

    (spark.range(labels).select(F.col("id").alias("label_id"), (F.abs(F.xxhash64("id", F.lit(1))) % keys).alias("key"),
                                when(2).alias("ts"))
        .write.format("delta").mode("overwrite").save(str(path / "labels")))
    (spark.range(events).select((F.abs(F.xxhash64("id", F.lit(3))) % keys).alias("key"), when(4).alias("ts"),
                                (F.abs(F.xxhash64("id", F.lit(5))) % 10_000 / 100.0).alias("amount"))
        .write.format("delta").mode("overwrite").save(str(path / "events")))
    # (a)'s input: as wide as the aggregates, one row per event (what a precomputed table holds).
    events_df = spark.read.format("delta").load(str(path / "events"))
    (events_df.select("key", "ts", *[(F.col("amount") * (i + 1)).alias(f"f{i}")
                                     for i in range(len(WINDOWS) * len(FUNCTIONS))])
        .write.format("delta").mode("overwrite").save(str(path / "wide")))


def dataset(spark, root: Path, scale: int, args) -> Path:
    params = {"labels": args.labels * scale, "events": args.events * scale, "keys": args.keys}
    path = root / f"scale{scale}"
    marker = path / "params.json"
    if not marker.exists() or json.loads(marker.read_text()) != params:
        print(f"generating {path} ({params['labels']:,} labels, {params['events']:,} events)", flush=True)
        generate(spark, path, params["labels"], params["events"], params["keys"])
        marker.write_text(json.dumps(params))
    return path


def temporal(spark, path: Path):
    from sparkml_platform.storage import window_aggregates as wa

    declared = spec()
    events = wa.events_of(spark.read.format("delta").load(str(path / "events")), declared)
    labels = spark.read.format("delta").load(str(path / "labels"))
    return wa.as_of(labels, "ts", {"key": "key"}, events, declared)


def point_in_time(spark, path: Path):
    from sparkml_platform.storage.pit import FeatureLookup, join_features

    wide = spark.read.format("delta").load(str(path / "wide"))
    labels = spark.read.format("delta").load(str(path / "labels"))
    lookup = FeatureLookup("wide", {"key": "key"}, "ts", {c: c for c in wide.columns if c not in ("key", "ts")})
    joined, flags = join_features(labels, "ts", [(lookup, wide)])
    return joined.drop(*flags)


def range_join(spark, path: Path):
    """What users write by hand: every label row with its key's events of the longest
    window, then one group per label row with conditional aggregates per window."""
    from pyspark.sql import functions as F

    from sparkml_platform.config.aggregations import window_seconds

    labels = spark.read.format("delta").load(str(path / "labels")).alias("l")
    events = spark.read.format("delta").load(str(path / "events")).alias("e")
    longest = max(window_seconds(w) for w in WINDOWS)
    age = F.col("l.ts").cast("long") - F.col("e.ts").cast("long")
    joined = labels.join(events, (F.col("l.key") == F.col("e.key")) & (age >= 0) & (age < longest), "left")
    values = []
    for window in WINDOWS:
        inside = F.when(age < window_seconds(window), F.col("e.amount"))
        values += [F.count(inside).alias(f"count_{window}"), F.sum(inside).alias(f"sum_{window}"),
                   F.avg(inside).alias(f"mean_{window}"), F.max(inside).alias(f"max_{window}")]
    return joined.groupBy("l.label_id", "l.key", "l.ts").agg(*values)


def run(frame) -> None:
    frame.write.format("noop").mode("overwrite").save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", default="1,2,4")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--labels", type=int, default=250_000)
    parser.add_argument("--events", type=int, default=3_750_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--data", default=".sparkml/bench/aggregations")
    parser.add_argument("--no-range-join", action="store_true", help="skip (b), the slowest")
    args = parser.parse_args()
    spark = session()
    cases = {"temporal": temporal, "(a) point-in-time": point_in_time}
    if not args.no_range_join:
        cases["(b) range join"] = range_join
    medians: dict[int, dict[str, float]] = {}
    for scale in [int(s) for s in args.scale.split(",")]:
        path = dataset(spark, Path(args.data), scale, args)
        print(f"scale {scale}:", flush=True)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeat):
            for name, case in cases.items():
                times[name].append(timed(name, lambda: run(case(spark, path))))
        medians[scale] = {name: statistics.median(t) for name, t in times.items()}
        line = ", ".join(f"{name} {m:.1f} s" for name, m in medians[scale].items())
        ratios = f"temporal / (a) {medians[scale]['temporal'] / medians[scale]['(a) point-in-time']:.2f}x"
        if "(b) range join" in medians[scale]:
            ratios += f", (b) / temporal {medians[scale]['(b) range join'] / medians[scale]['temporal']:.1f}x"
        print(f"  median: {line}; {ratios}", flush=True)
    scales = sorted(medians)
    for before, after in zip(scales, scales[1:]):
        growth = medians[after]["temporal"] / medians[before]["temporal"]
        print(f"temporal, scale {before} -> {after}: {growth:.2f}x")


if __name__ == "__main__":
    main()
