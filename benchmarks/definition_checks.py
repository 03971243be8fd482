"""What checking feature definitions costs a batch scoring run: the whole of `scoring.score`
(the demo's champion on the demo's entity rows, into a predictions table of the benchmark's
own) against the checks it makes (issue 33): for each of the model's lookups, the table's
commit list read once more (delta-rs, no Spark job) to find the definition of the Delta
version read, then the comparison with what the model recorded. One session; the score runs
and the checks alternate, after one untimed score. Prints each side's median and the checks'
share of a run. Target: under 2 %.

    .venv/bin/python benchmarks/definition_checks.py [--model flight_delays@champion] [--repeat 3]

Uses the demo project (`make demo`): its lake and MLflow store. The scoring runs go to their
own experiment, `sparkml-benchmarks`, and write predictions.bench_definitions.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import ROOT, session
from sparkml_platform.storage import places

INPUT = "entities.flights"
OUTPUT = "predictions.bench_definitions"
TARGET = 0.02


def checks(ws, model) -> None:
    """The work the definition checks add to one scoring run (see the module doc)."""
    from sparkml_platform.storage import feature_definitions
    from sparkml_platform.storage import lake
    from sparkml_platform.storage.training_sets import feature_commits

    read = []
    for lk in model.lookups:
        path = places.table(ws.config, f"features.{lk.table}")
        version = lake.version(None, path)
        built = feature_definitions.definition_at(lake.commits(path, f"features.{lk.table}"), version)
        read.append({"table": lk.table, "version": version, "definition": built.definition if built else None})
    mv = model.version
    feature_definitions.verify(f"{mv.name} version {mv.version}", model.spec["lookups"], read,
                               feature_commits(ws.config))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flight_delays@champion")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from sparkml_platform import Workspace
    from sparkml_platform.serving import scoring

    spark = session()
    ws = Workspace(ROOT / "conf", spark=spark)
    ws.tracker.experiment = "sparkml-benchmarks"
    with ws.tracker.bound():
        model = scoring.resolve(ws.tracker, args.model)
    print(f"model {model.version.name} version {model.version.version}, "
          f"{len(model.lookups)} lookups: {', '.join(lk.table for lk in model.lookups)}")

    def score(day: int) -> tuple[float, int]:
        started = time.perf_counter()
        done = ws.score(args.model, INPUT, OUTPUT, f"2013-12-{day:02d}")
        return time.perf_counter() - started, done.rows

    score(1)  # untimed: the first run compiles and caches what the others reuse
    runs, checked = [], []
    for i in range(args.repeat):
        seconds, rows = score(2 + i)
        runs.append(seconds)
        started = time.perf_counter()
        for _ in range(10):  # ten at a time: one is a few milliseconds
            checks(ws, model)
        checked.append((time.perf_counter() - started) / 10)
        print(f"  run {i + 1}: score {seconds:.1f} s ({rows} rows), checks {checked[-1] * 1000:.1f} ms", flush=True)
    run, check = statistics.median(runs), statistics.median(checked)
    share = check / run
    print(f"median: score {run:.1f} s, checks {check * 1000:.1f} ms = {share:.3%} of a run "
          f"(target < {TARGET:.0%}: {'met' if share < TARGET else 'NOT met'})")


if __name__ == "__main__":
    main()
