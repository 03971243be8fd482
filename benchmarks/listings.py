"""How fast the listings answer (`sparkml features list`, `sparkml trainset list`: no JVM) with
the lake on a local disk and with the same lake on an S3 API server (moto's, on 127.0.0.1),
side by side in one run, runs interleaved.

    .venv/bin/python benchmarks/listings.py PROJECT_DIR [--runs 7]

PROJECT_DIR is a project whose lake is built (e.g. the slice project the tests build with
SPARKML_TEST_REUSE=/tmp/slice, or the reference project after `make demo`). Its lake's files
are copied to the S3 server; nothing in the project is changed.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}


def upload(lake: Path, endpoint: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
    for path in sorted(lake.rglob("*")):
        if path.is_file():
            client.put_object(Bucket="lake", Key=f"lake/{path.relative_to(lake)}", Body=path.read_bytes())


def s3_overlay(conf: Path, endpoint: str) -> None:
    import yaml

    overlay = conf / "bench_s3"
    overlay.mkdir(exist_ok=True)
    base = yaml.safe_load((conf / "test" / "platform.yml").read_text()) if (conf / "test" / "platform.yml").is_file() else {}
    spark = dict(base.get("spark") or {})
    spark["conf"] = {**spark.get("conf", {}), "spark.hadoop.fs.s3a.endpoint": endpoint,
                     "spark.hadoop.fs.s3a.path.style.access": "true"}
    (overlay / "platform.yml").write_text(yaml.safe_dump({**base, "lake_root": "s3a://lake/lake", "spark": spark}))
    for name in (conf / "test").glob("*.yml") if (conf / "test").is_dir() else []:
        if name.name != "platform.yml":
            (overlay / name.name).write_text(name.read_text())


def timed(cmd: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env={**os.environ, **CREDENTIALS})
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    from servers import s3_server

    parser = argparse.ArgumentParser()
    parser.add_argument("project", type=Path)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    conf = args.project.resolve() / "conf"
    lake = args.project.resolve() / ".sparkml" / "lake"
    if not lake.is_dir():
        raise SystemExit(f"{lake} does not exist: build the project's lake first")
    sparkml = str(Path(sys.executable).parent / "sparkml")
    env_local = ["--env", "test"] if (conf / "test").is_dir() else []
    with tempfile.TemporaryDirectory() as work, s3_server(Path(work), buckets=("lake",)) as endpoint:
        upload(lake, endpoint)
        s3_overlay(conf, endpoint)
        try:
            print(f"median of {args.runs} runs, interleaved (lake: {lake})")
            for listing in (["features", "list"], ["trainset", "list"]):
                times: dict[str, list[float]] = {"local": [], "s3": []}
                for _ in range(args.runs):
                    times["local"].append(timed([sparkml, "--conf", str(conf), *env_local, *listing], args.project))
                    times["s3"].append(timed([sparkml, "--conf", str(conf), "--env", "bench_s3", *listing], args.project))
                local, s3 = (statistics.median(times[k]) for k in ("local", "s3"))
                print(f"  sparkml {' '.join(listing):16s} local {local:6.3f} s   S3 {s3:6.3f} s   "
                      f"({s3 / local:4.2f}x local)")
        finally:
            for path in (conf / "bench_s3").glob("*"):
                path.unlink()
            (conf / "bench_s3").rmdir()


if __name__ == "__main__":
    main()
