"""Shared by the benchmark scripts: the platform's own session, and a wall-clock timer."""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def session(shuffle_partitions: int | None = None, driver_jit: str | None = None):
    from sparkml_platform.runtime.project import open_project
    from sparkml_platform.runtime.session import get_spark

    config = open_project(ROOT / "conf")
    if shuffle_partitions:
        config.platform.spark.shuffle_partitions = shuffle_partitions
    if driver_jit:
        config.platform.spark.driver_jit = driver_jit
    return get_spark(config)


def timed(label: str, action) -> float:
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    print(f"  {label:<38} {seconds:8.1f} s", flush=True)
    return seconds
