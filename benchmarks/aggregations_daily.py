"""What a daily build of a window-aggregation table reads and costs: `features build` of a table
of 3 windows up to 30 days x 4 functions over a year of events landed one day at a time, each
run after one more day has landed (incremental: the newest tiles computed from their events,
merged with the older tiles), against a full build from every event (`--full`), alternated in
one session. Prints each side's median time and what each read: the bytes Spark's scans took
in (every input: the events, the tiles, the table), beside the bytes of the events' files, of
one day's and of the newest two days'.

    .venv/bin/python benchmarks/aggregations_daily.py [--events 3750000] [--repeat 3]

The project (a copy of conf/base with one more table) and its lake live under --data; each
run lands and builds the year's first 365 - --repeat days again first. Target (issue 37): a daily build of a 30-day window reads at most
two days of raw events.
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


def input_bytes(spark) -> int:
    """The bytes every scan of this session has read so far (Spark's status store: the input
    metrics of its stages)."""
    store = spark.sparkContext._jsc.sc().statusStore()
    stages = store.stageList(None, True, None, None, None)
    return sum(stages.apply(i).inputBytes() for i in range(stages.size()))


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

    def build(**kw):
        before, started = input_bytes(spark), time.perf_counter()
        built = ws.features.build("bench_daily", **kw)
        return time.perf_counter() - started, input_bytes(spark) - before, built

    daily, full, events_read = [], [], []
    for _ in range(args.repeat):
        land(spark, Path(str(raw)), args.events, args.keys, range(day, day + 1))
        day += 1
        sizes = sorted(lake.file_sizes(raw).values())
        one_day, total = statistics.median(sizes), sum(sizes)
        daily.append(build())
        events_read.append(event_bytes(spark, ws, daily[-1][2]))
        full.append(build(full=True))
        seconds, read, built = daily[-1]
        print(f"  day {day}: daily build ({built.mode} from {built.window[0]}) {seconds:.1f} s, its scans read "
              f"{read / 1e6:.1f} MB, of which events {events_read[-1] / 1e6:.2f} MB; full build "
              f"{full[-1][0]:.1f} s, read {full[-1][1] / 1e6:.1f} MB; events {total / 1e6:.1f} MB in "
              f"{len(sizes)} files, a day {one_day / 1e6:.2f} MB", flush=True)
    if daily:
        d_time, d_read = statistics.median(t for t, _, _ in daily), statistics.median(b for _, b, _ in daily)
        f_time, f_read = statistics.median(t for t, _, _ in full), statistics.median(b for _, b, _ in full)
        e_read = statistics.median(events_read)
        print(f"median: daily {d_time:.1f} s reading {d_read / 1e6:.1f} MB (events {e_read / 1e6:.2f} MB = "
              f"{e_read / one_day:.1f} days of events); full {f_time:.1f} s reading {f_read / 1e6:.1f} MB; "
              f"full / daily: {f_time / d_time:.1f}x in time, {f_read / d_read:.0f}x in bytes")


def event_bytes(spark, ws, built) -> int:
    """The bytes of events a daily build's scan reads: that scan (the events visible from the
    tiles it computed again, window_aggregates.tile_range) run again on its own."""
    import datetime as dt

    from sparkml_platform.storage import window_aggregates as wa
    from sparkml_platform.storage.feature_tables import resolve, source_events

    table = resolve(ws.config, "bench_daily")
    declared = wa.Declared(table.definition.aggregations, tuple(table.definition.keys), "benchmark")
    span = wa.tile_range(declared.spec, (dt.date.fromisoformat(built.window[0]), None))
    events, _, _ = source_events(spark, ws.config, declared, None, span.events_after, span.last)
    before = input_bytes(spark)
    events.write.format("noop").mode("overwrite").save()
    return input_bytes(spark) - before


if __name__ == "__main__":
    main()
