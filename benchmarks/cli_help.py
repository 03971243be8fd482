"""How fast `sparkml --help` answers, side by side with a bare `python -c pass` and with
importing pyspark + mlflow (what `--help` avoids by importing them inside commands).

    .venv/bin/python benchmarks/cli_help.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(cmd: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    bare = timed([sys.executable, "-c", "pass"], runs)
    help_ = timed([str(BIN / "sparkml"), "--help"], runs)
    heavy = timed([sys.executable, "-c", "import pyspark.sql, mlflow"], runs)
    print(f"median of {runs} runs")
    print(f"  python -c pass                 {bare:6.3f} s")
    print(f"  sparkml --help                 {help_:6.3f} s   ({help_ / bare:4.1f}x bare python)")
    print(f"  import pyspark.sql, mlflow     {heavy:6.3f} s   ({heavy / help_:4.1f}x sparkml --help)")


if __name__ == "__main__":
    main()
