"""How long the commands that compute nothing take with this checkout's code and with an
earlier commit's, side by side in one run (runs interleaved, median of each): `features
show`, `features show --compare`, `features publish --full` of a small table, `trainset
show`, `models list`, `models show`, `lineage`, `sources show` and `report`.

    .venv/bin/python benchmarks/show_commands.py [PROJECT_DIR] [--before REV] [--runs 3]

PROJECT_DIR is a project whose lake and registry are built (default: this repository after
`make demo`). REV (default 5d794f2, the last commit before these commands stopped starting
a JVM) is checked out into a temporary worktree, which goes first on PYTHONPATH for its
runs. Before each `features show` run the newest version's statistics record is removed,
so both codes compute it (what a build killed before recording them, or a window build,
leaves). `features publish --full` rewrites that table in the project's online store, and
`report` writes into a temporary folder; nothing else in the project is changed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from sparkml_platform.storage import places

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TABLE, SMALL_TABLE, TRAINSET, MODEL, SOURCE = ("origin_weather_hourly", "plane_attributes", "flight_delays",
                                               "flight_delays@champion", "weather")


def commands(out: Path, newest: int) -> list[list[str]]:
    return [["features", "show", TABLE], ["features", "show", TABLE, "--compare", "0", str(newest)],
            ["features", "publish", SMALL_TABLE, "--full"], ["trainset", "show", TRAINSET],
            ["models", "list"], ["models", "show", MODEL], ["lineage", MODEL], ["sources", "show", SOURCE],
            ["report", MODEL, "--output", str(out / "report.html")]]


def timed(cmd: list[str], cwd: Path, code: Path | None) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKML_")}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({'before' if code else 'now'}):\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def newest_version(project: Path) -> int:
    from sparkml_platform.storage import lake
    from sparkml_platform.runtime.project import open_project

    return lake.version(None, places.table(open_project(project / "conf"), f"features.{TABLE}"))


def forget_statistics(project: Path) -> None:
    from sparkml_platform.storage import lake
    from sparkml_platform.storage import statistics as stats
    from sparkml_platform.runtime.project import open_project

    config = open_project(project / "conf")
    path = places.table(config, f"features.{TABLE}")
    for version in stats.kept_versions(path):
        if version == lake.version(None, path):
            stats.stats_path(path, version).unlink()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("project", type=Path, nargs="?", default=ROOT)
    parser.add_argument("--before", default="5d794f2")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    project = args.project.resolve()
    if not (project / ".sparkml" / "lake" / "features" / TABLE).is_dir():
        raise SystemExit(f"{project} has no built lake: run `make demo` first")
    sparkml = str(Path(sys.executable).parent / "sparkml")
    with tempfile.TemporaryDirectory() as work:
        before = Path(work) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.before],
                       check=True, capture_output=True)
        try:
            print(f"median of {args.runs} runs, interleaved; before = {args.before}, now = the checkout")
            print(f"  {'command':<52} {'before':>8} {'now':>8} {'ratio':>7}")
            for cmd in commands(Path(work), newest_version(project)):
                times: dict[str, list[float]] = {"before": [], "now": []}
                for _ in range(args.runs):
                    for label, code in (("before", before), ("now", None)):
                        if cmd[:2] == ["features", "show"] and "--compare" not in cmd:
                            forget_statistics(project)
                        times[label].append(timed([sparkml, *cmd], project, code))
                b, n = statistics.median(times["before"]), statistics.median(times["now"])
                print(f"  {' '.join(cmd)[:52]:<52} {b:7.2f}s {n:7.2f}s {b / n:6.1f}x", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)],
                           capture_output=True)


if __name__ == "__main__":
    main()
