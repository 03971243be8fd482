"""A soak: the slice pipeline (the tests' slice of the reference data, every step from loading
sources to training two tuned models and scoring) run N times, each killed with SIGKILL at a
random moment, then once to the end; beside it, the same pipeline run once, never killed.
Each moment is a step drawn at random (or start-up), then a random time within how long that
step took in the never-killed run: every step is hit, training and scoring included.

After every kill: every table passes the platform's log check and is read whole by delta-rs
(a reader that shares no code with Spark), and every training-set manifest's version is
readable. After the final run: the killed project's tables equal the never-killed one's
(raw, entities and features row for row, the newest training set's digest, the predictions'
keys), no training-set version without its manifest, every feature table's newest version
has statistics, every model version has its tags, and no MLflow run is left RUNNING.

    .venv/bin/python benchmarks/soak.py [--kills 20] [--seed 7] [--workdir /tmp/sparkml-soak]

Not part of `make test` (tens of minutes). Prints one line per kill and a verdict; exits 1 if
anything was lost, half-written or left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT

sys.path.insert(0, str(ROOT / "tests"))
from conftest import SLICE, cli_env, make_project  # noqa: E402  the tests' slice project

from sparkml_platform.storage import lake  # noqa: E402
from sparkml_platform.storage.files import Storage  # noqa: E402

PIPELINE = ["run", "flights"]


def start(conf: Path) -> subprocess.Popen:
    log = open(conf.parent / "pipeline.log", "a")
    return subprocess.Popen([str(Path(sys.executable).parent / "sparkml"), "--conf", str(conf),
                             "--env", "test", *PIPELINE], env=cli_env(PYTHONUNBUFFERED="1"), cwd=conf.parent,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def tables(root: Path) -> list[Path]:
    zones = root / ".sparkml" / "lake"
    return sorted(t for zone in zones.iterdir() if zone.name != "trainsets"
                  for t in zone.iterdir()) if zones.is_dir() else []


def rows(table: Path) -> list[tuple]:
    from deltalake import DeltaTable

    data = DeltaTable(str(table)).to_pyarrow_table()
    names = sorted(data.column_names)
    return sorted(tuple(str(v) for v in r) for r in zip(*(data.column(n).to_pylist() for n in names)))


def trainset_versions(root: Path) -> tuple[list[Path], list[Path]]:
    """(versions with a manifest, version directories without one) of every training set."""
    base = root / ".sparkml" / "lake" / "trainsets"
    whole, orphans = [], []
    for folder in sorted(base.glob("*/v[0-9]*")) if base.is_dir() else []:
        if folder.is_dir():
            (whole if folder.with_name(folder.name + ".json").exists() else orphans).append(folder)
    return whole, orphans


def check_readable(root: Path) -> list[str]:
    """What is wrong with the lake right now (after a kill): unreadable tables or versions."""
    problems = []
    for table in tables(root) + trainset_versions(root)[0]:
        try:
            lake.check_log(Storage().location(str(table)))
            rows(table)
        except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
            problems.append(f"{table.relative_to(root)}: {type(exc).__name__}: {exc}")
    return problems


def final_differences(killed: Path, clean: Path) -> list[str]:
    problems = []
    for table in tables(clean):
        other = killed / table.relative_to(clean)
        name = f"{table.parent.name}.{table.name}"
        if table.parent.name == "predictions":
            keys = lambda t: sorted({(r["flight_id"], str(r["run_date"]))  # noqa: E731
                                     for r in _dicts(t)})
            if keys(other) != keys(table):
                problems.append(f"{name}: predictions for other flights or run dates")
        elif rows(other) != rows(table):
            problems.append(f"{name}: rows differ from the never-killed run")
    newest = lambda root: json.loads(sorted(  # noqa: E731
        (root / ".sparkml/lake/trainsets/flight_delays").glob("v*.json"))[-1].read_text())
    if newest(killed)["digest"] != newest(clean)["digest"]:
        problems.append("trainsets.flight_delays: the newest version's digest differs")
    orphans = trainset_versions(killed)[1]
    problems += [f"{o.relative_to(killed)}: a training-set version without its manifest" for o in orphans]
    for table in (killed / ".sparkml/lake/features").iterdir():
        newest_version = lake.version(None, Storage().location(str(table)))
        if not (table / "_sparkml_stats" / f"v{newest_version:06d}.json").exists():
            problems.append(f"features.{table.name}: no statistics for version {newest_version}")
    with sqlite3.connect(killed / ".sparkml" / "mlflow.db") as db:
        running = db.execute("SELECT count(*) FROM runs WHERE status = 'RUNNING'").fetchone()[0]
        untagged = db.execute(
            "SELECT name, version FROM model_versions v WHERE NOT EXISTS (SELECT 1 FROM "
            "model_version_tags t WHERE t.name = v.name AND t.version = v.version AND "
            "t.key = 'decision')").fetchall()
        aliases = {a for (a,) in db.execute("SELECT alias FROM registered_model_aliases")}
    if running:
        problems.append(f"{running} MLflow run(s) left RUNNING")
    problems += [f"model {n} version {v} has no tags" for n, v in untagged]
    if "champion" not in aliases:
        problems.append("no champion")
    return problems


def _dicts(table: Path) -> list[dict]:
    from deltalake import DeltaTable

    return DeltaTable(str(table)).to_pyarrow_table().to_pylist()


def log_size(conf: Path) -> int:
    log = conf.parent / "pipeline.log"
    return log.stat().st_size if log.exists() else 0


def last_step(conf: Path, since: int) -> str:
    """The last step this run started (its output from byte `since` of the log on)."""
    import re

    with open(conf.parent / "pipeline.log", "rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    started = re.findall(r"^\[\d+/\d+\] (\w+)", text, flags=re.M)  # "[3/6] build_features ..."
    return started[-1] if started else "start-up"


def step_durations(conf: Path) -> list[tuple[str, float]]:
    """(step, seconds) of each step of a finished run, from its `[i/n] step` and `(Ns)` lines."""
    import re

    steps: list[tuple[str, float]] = []
    for line in (conf.parent / "pipeline.log").read_text(errors="replace").splitlines():
        if started := re.match(r"^\[\d+/\d+\] (\w+)", line):
            steps.append((started.group(1), 0.0))
        elif (took := re.match(r"^\s+\((\d+(?:\.\d+)?)s\)$", line)) and steps:
            steps[-1] = (steps[-1][0], float(took.group(1)))
    return steps


def kill_during(conf: Path, since: int, step: int, seconds: float) -> bool:
    """Start a run, and SIGKILL it `seconds` after it starts step number `step` (1-based; 0:
    after it starts). True if it finished first."""
    run = start(conf)
    marker = f"[{step}/"
    while step and run.poll() is None:
        with open(conf.parent / "pipeline.log", "rb") as log:
            log.seek(since)
            if any(line.startswith(marker) for line in log.read().decode(errors="replace").splitlines()):
                break
        time.sleep(0.2)
    try:
        run.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/sparkml-soak"))
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    clean, killed = (make_project(args.workdir / name, SLICE) for name in ("clean", "killed"))

    started = time.monotonic()
    if start(clean).wait() != 0:
        print(f"the never-killed run failed: see {clean.parent / 'pipeline.log'}")
        return 1
    steps = step_durations(clean)
    print(f"never-killed run: {time.monotonic() - started:.0f} s, steps "
          + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in steps), flush=True)

    # Each kill: a step chosen at random, then a random moment within that step's duration
    # in the never-killed run (start-up included: up to 20 s before the first step).
    rng = random.Random(args.seed)
    failures = []
    for kill in range(1, args.kills + 1):
        step = rng.randrange(len(steps) + 1)  # 0: during start-up
        seconds = rng.uniform(0, steps[step - 1][1] if step else 20)
        since = log_size(killed)
        finished = kill_during(killed, since, step, seconds)
        problems = check_readable(killed.parent)
        failures += [f"kill {kill}: {p}" for p in problems]
        where = "finished first" if finished else f"{last_step(killed, since)} +{seconds:.0f} s"
        print(f"kill {kill:2d} ({where}): "
              f"{'every table readable' if not problems else '; '.join(problems)}", flush=True)

    final = start(killed)
    if final.wait() != 0:
        failures.append(f"the final run failed: see {killed.parent / 'pipeline.log'}")
    else:
        failures += [f"final: {p}" for p in final_differences(killed.parent, clean.parent)]
    print(f"{args.kills} kills, then one run to the end: "
          + ("nothing lost, nothing half-written, nothing left behind" if not failures
             else f"{len(failures)} problem(s):\n  " + "\n  ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
