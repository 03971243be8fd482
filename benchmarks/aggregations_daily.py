"""What a daily build of a window-aggregation table reads and costs: `features build` of a table
of 3 windows up to 30 days x 4 functions over a year of events landed one day at a time, each
run after one more day has landed (incremental: the newest tiles computed from their events,
merged with the older tiles), against a full build from every event (`--full`), alternated in
one session. Prints each build's time, the event files its event scan opens (Spark's scan
metrics, after Delta's data skipping: the files and their bytes), and the bytes all its
scans read (Spark's status store: events, tiles and the table's own rows).

    .venv/bin/python benchmarks/aggregations_daily.py [--events 3750000] [--repeat 3]

The project (a copy of conf/base with one more table) and its lake live under --data; each
run lands and builds the year's first 365 - --repeat days again first. Target (issue 37): a
daily build of a 30-day window reads at most two days of raw events.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import yaml
from _common import ROOT, session

DAY = 86400
YEAR_START = 1672531200  # 2023-01-01 UTC
TABLE = {"description": "Per key over 1, 7 and 30 days (benchmark).", "owner": "benchmarks", "keys": ["key"],
         "event_time": "as_of", "aggregations": {
             "source": "raw.bench_events", "event_time": "ts",
             "aggregate": [{"column": "amount", "functions": ["count", "sum", "mean", "max"],
                            "windows": ["1d", "7d", "30d"]}]}}


def project(root: Path) -> Path:
    conf = root / "conf"
    if not conf.exists():
        shutil.copytree(ROOT / "conf" / "base", conf / "base")
        (conf / "bench").mkdir()
        (conf / "bench" / "features.yml").write_text(yaml.safe_dump({"feature_tables": {"bench_daily": TABLE}}))
    return conf


def land(spark, path: Path, events: int, keys: int, days: range) -> None:
    """The events of `days` (day 0 is 2023-01-01), one Delta commit, one file per day."""
    from pyspark.sql import functions as F

    per_day = events // 365
    rows = spark.range(days.start * per_day, days.stop * per_day)
    when = (F.lit(YEAR_START) + F.floor(F.col("id") / per_day) * DAY
            + F.abs(F.xxhash64("id", F.lit(4))) % DAY).cast("timestamp")
    (rows.select((F.abs(F.xxhash64("id", F.lit(3))) % keys).alias("key"), when.alias("ts"),
                 (F.abs(F.xxhash64("id", F.lit(5))) % 10_000 / 100.0).alias("amount"))
        .repartitionByRange(len(days), "ts").write.format("delta").mode("append").save(str(path)))


class ScanBytes:
    """The bytes the scans of this session's stages read, stage by stage (Spark's status
    store: the input metrics of each completed stage), counted from a mark on."""

    def __init__(self, spark):
        self.spark = spark
        self.seen = self._stages()[1]

    def _stages(self) -> tuple[dict[int, int], int]:
        jvm = self.spark.sparkContext._jvm
        store = self.spark.sparkContext._jsc.sc().statusStore()
        listed = store.stageList(None, False, False, self.spark.sparkContext._gateway.new_array(jvm.double, 0), None)
        stages = {}
        for i in range(listed.size()):
            stage = listed.apply(i)
            stages[stage.stageId()] = stages.get(stage.stageId(), 0) + stage.inputBytes()
        return stages, max(stages, default=-1)

    def since_mark(self) -> int:
        """The bytes read by the stages after the mark; moves the mark."""
        stages, newest = self._stages()
        read = sum(b for stage, b in stages.items() if stage > self.seen)
        self.seen = newest
        return read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3_750_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", default=".sparkml/bench/aggregations_daily")
    args = parser.parse_args()

    from sparkml_platform import Workspace
    from sparkml_platform.config import load_config
    from sparkml_platform.storage import lake, places

    root = Path(args.data).resolve()
    conf = project(root)
    spark = session()
    ws = Workspace.from_config(load_config(conf, "bench"), spark=spark)
    raw = places.table(ws.config, "raw.bench_events")
    # Every run starts from the same lake: all but the last --repeat days landed and built.
    shutil.rmtree(root / ".sparkml", ignore_errors=True)
    print(f"landing {365 - args.repeat} days of {args.events:,} events a year, then a full build", flush=True)
    land(spark, Path(str(raw)), args.events, args.keys, range(0, 365 - args.repeat))
    ws.features.build("bench_daily")
    day = 365 - args.repeat  # the next day to land

    scans = ScanBytes(spark)

    def build(**kw):
        scans.since_mark()
        started = time.perf_counter()
        built = ws.features.build("bench_daily", **kw)
        return time.perf_counter() - started, scans.since_mark(), built

    daily, full = [], []
    for _ in range(args.repeat):
        land(spark, Path(str(raw)), args.events, args.keys, range(day, day + 1))
        day += 1
        sizes = sorted(lake.file_sizes(raw).values())
        total = sum(sizes)
        seconds, read, built = build()
        daily.append((seconds, read, built, event_files(spark, ws, built)))
        seconds, read, built = build(full=True)
        full.append((seconds, read, built, event_files(spark, ws, built)))
        for name, (seconds, read, built, (files, size)) in (("daily", daily[-1]), ("full", full[-1])):
            print(f"  day {day}, {name} build ({built.mode}{' from ' + built.window[0] if built.window else ''}): "
                  f"{seconds:.1f} s; its event scan opens {files} files, {size / 1e6:.2f} MB (of {len(sizes)} files, "
                  f"{total / 1e6:.1f} MB); all its scans read {read / 1e6:.1f} MB", flush=True)
    median = statistics.median
    d_time, f_time = median(r[0] for r in daily), median(r[0] for r in full)
    d_files, d_bytes = median(r[3][0] for r in daily), median(r[3][1] for r in daily)
    f_bytes = median(r[3][1] for r in full)
    print(f"median: daily {d_time:.1f} s, its event scan {d_files:.0f} files ({d_bytes / 1e6:.2f} MB: "
          f"{d_bytes / median(sizes):.1f} days of event files); full {f_time:.1f} s, {f_bytes / 1e6:.1f} MB of "
          f"events; full / daily: {f_time / d_time:.1f}x in time, {f_bytes / d_bytes:.0f}x in event bytes")


def event_files(spark, ws, built) -> tuple[int, int]:
    """(files, bytes) of events a build's scan opens: that scan (the events visible from the
    tiles it computed again, window_aggregates.tile_range; every event for a full build)
    planned again on its own, as Spark's scan metrics count them after Delta's data skipping."""
    import datetime as dt

    from sparkml_platform.storage import window_aggregates as wa
    from sparkml_platform.storage.feature_tables import resolve, source_events

    table = resolve(ws.config, "bench_daily")
    declared = wa.Declared(table.definition.aggregations, tuple(table.definition.keys), "benchmark")
    window = None if built.mode == "full" else (dt.date.fromisoformat(built.window[0]), None)
    span = wa.tile_range(declared.spec, window)
    events, _, _ = source_events(spark, ws.config, declared, None, span.events_after, span.last)
    plan = events._jdf.queryExecution().executedPlan()
    plan.execute()  # plans the scan (its file listing), runs no job
    leaves = plan.collectLeaves()
    metrics = [leaves.apply(i).metrics() for i in range(leaves.size())]
    scans = [m for m in metrics if m.contains("filesSize")]
    return (sum(m.apply("numFiles").value() for m in scans), sum(m.apply("filesSize").value() for m in scans))


if __name__ == "__main__":
    main()
