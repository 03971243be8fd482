"""Shared fixtures: one SparkSession for the whole run (Delta on, UI off, UTC, few partitions),
and throw-away projects (conf + lake + MLflow) under a temporary directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

# The suite runs in a process time zone other than UTC (the session's): nothing the platform
# records or compares may depend on it. Python-side datetimes that Spark collects are local
# wall-clock values: tests compare them through `utc()`.
os.environ["TZ"] = os.environ.get("SPARKML_TEST_TZ", "Asia/Tokyo")
time.tzset()


def utc(value):
    """A datetime collected from Spark (local wall-clock time, naive) as naive UTC."""
    import datetime as dt

    return value.astimezone(dt.timezone.utc).replace(tzinfo=None)

REPO = Path(__file__).resolve().parent.parent
from sparkml_platform.runtime.delta_jars import default_dir  # noqa: E402
from sparkml_platform.runtime.session import JIT_OPTIONS  # noqa: E402

JARS_DIR = Path(os.environ.get("SPARKML_JARS_DIR") or default_dir())

# Hypothesis keeps no example database, and its other files (a cache of constants) in a
# temporary folder: none in the folder the tests run from.
import tempfile  # noqa: E402

from hypothesis import configuration as _hypothesis_home  # noqa: E402
from hypothesis import settings as _hypothesis  # noqa: E402

_hypothesis.register_profile("sparkml", database=None)
_hypothesis.load_profile("sparkml")
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="sparkml-hypothesis-")
_hypothesis_home.set_hypothesis_home_dir(_HYPOTHESIS_HOME)

# What the repository's root holds when the run starts: a test, or a command it runs, that
# leaves something else there (a stray mlflow.db, spark-warehouse/, metastore_db/) ran
# without its project's settings, and fails the run (pytest_sessionfinish).
_ROOT_BEFORE: set[str] = set()


def pytest_sessionstart(session):
    _ROOT_BEFORE.update(p.name for p in REPO.iterdir())


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HYPOTHESIS_HOME, ignore_errors=True)
    left = sorted(p.name for p in REPO.iterdir() if p.name not in _ROOT_BEFORE and p.name != ".sparkml")
    if left:
        print(f"\nerror: the run wrote into the repository's root: {', '.join(left)} (a command ran "
              "without its project's settings; everything belongs in a project or a temporary folder)",
              file=sys.stderr)
        session.exitstatus = 1
# Every test JVM's Spark: no web UI (nobody looks, and it costs each JVM a Jetty server).
TEST_SPARK_CONF = {"spark.ui.enabled": "false"}
# JVMs that live for one command, job or notebook use the client JIT only: C2's compiles do
# not pay off in minutes (`sparkml run` of the slice's data steps in a fresh JVM took 165 s of
# CPU instead of 318 s on two cores). Drivers get it from SPARK_SUBMIT_OPTS (cli_env: every
# `sparkml` and spark-submit.sh process), a cluster's executors from the slice's settings.
# The tests' own session lives through the whole run and keeps the default (tests/integration/test_features.py:
# 523 s of CPU with it, 538 s with the client JIT only).
# With the client JIT only, the JVM reserves a 48 MB code cache (240 MB otherwise): Spark's
# generated classes filled it during the slice run, and a full cache stops all compiling.
SHORT_JVM_OPTS = JIT_OPTIONS["client"]  # the platform's client-JIT options (runtime/session.py)
SHORT_JVM_CONF = {**TEST_SPARK_CONF, "spark.executor.extraJavaOptions": SHORT_JVM_OPTS}
SLICE = {  # a small slice of the reference data for end-to-end runs: one day a month
    "sources.yml": {"sources": {
        "flights": {"filter": "day = 5"},
        "weather": {"filter": "day IN (4, 5)"},
    }},
    # One day a month: a time split would test on days the model never saw (AUC near 0.5);
    # a seeded hash split keeps the slice's models measurably better than chance.
    "training_sets.yml": {"training_sets": {"flight_delays": {"split": {
        "type": "random", "test_fraction": 0.25, "validation_fraction": 0.15, "seed": 7}}}},
    "models.yml": {"models": {
        "flight_delay_gbt": {
            "estimator": {"type": "gbt_classifier", "params": {"maxIter": 8, "seed": 7}},
            "search_space": {"maxDepth": {"quniform": [3, 4, 1]}},
            "tuning": {"max_evals": 2, "parallelism": 2},
            "thresholds": {"roc_auc": {"min": 0.5}, "log_loss": {"max": 1.0}}},
        "flight_delay_sklearn": {
            "estimator": {"type": "sklearn", "class": "sklearn.ensemble.HistGradientBoostingClassifier",
                          "params": {"max_iter": 30, "random_state": 7}},
            "tuning": {"max_evals": 2, "parallelism": 2},
            "thresholds": {"roc_auc": {"min": 0.5}, "log_loss": {"max": 1.0}}}}},
    "platform.yml": {"spark": {"driver_memory": "2g", "shuffle_partitions": 4, "conf": SHORT_JVM_CONF}},
    # The reference pipeline again without its training steps: a second run must rewrite the
    # same rows (data steps and scoring are what could duplicate them).
    "pipelines.yml": {"pipelines": {"flights_data": {"steps": [
        {"load_sources": ["flights", "weather", "planes", "airlines", "airports"]},
        {"build_entities": ["flights", "flights_to_score"]},
        {"build_features": ["origin_weather_hourly", "plane_attributes", "carrier_delays",
                            "route_delays"]},
        {"score": {"model": "flight_delays@champion", "input": "entities.flights_to_score",
                   "output": "predictions.flight_delays", "run_date": "2013-12-31"}}]}}},
}


def make_project(root: Path, overlay: dict | None = None, env: str = "test") -> Path:
    """A copy of conf/base under `root`, plus an overlay conf/ENV/ from `overlay`."""
    conf = root / "conf"
    shutil.copytree(REPO / "conf" / "base", conf / "base")
    (conf / env).mkdir()
    for filename, data in (overlay or {}).items():
        (conf / env / filename).parent.mkdir(parents=True, exist_ok=True)
        (conf / env / filename).write_text(yaml.safe_dump(data))
    return conf


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKML_")}
    env.update({"SPARKML_JARS_DIR": str(JARS_DIR), "PYSPARK_PYTHON": sys.executable,
                "SPARK_SUBMIT_OPTS": SHORT_JVM_OPTS}, **extra)
    return env


def submitted(result: subprocess.CompletedProcess, chars: int = 3000) -> str:
    """What a spark-submit.sh job printed, for a failed assertion: Spark runs the Python driver
    with its stderr merged into stdout, so the job's own error line is on stdout."""
    return f"{result.stderr[-chars:]}\n--- stdout:\n{result.stdout[-chars:]}"


def run_cli(conf: Path, *args: str, env: str | None = "test", timeout: int = 900,
            **extra_env: str) -> subprocess.CompletedProcess:
    """`sparkml --conf CONF --env ENV ARGS...` in a subprocess (its own JVM), as a user runs it."""
    cmd = [str(Path(sys.executable).parent / "sparkml"), "--conf", str(conf)]
    if env:
        cmd += ["--env", env]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout,
                          env=cli_env(**extra_env), cwd=conf.parent)


def run_main(conf: Path, *args: str, env: str | None = "test", **extra_env: str) -> subprocess.CompletedProcess:
    """What run_cli does, in this process: the CLI's `main` joins the tests' Spark session
    instead of starting a JVM of its own (tens of seconds per command, and a cold JIT). For
    tests of what a command does; run_cli stays for what only a process shows (the installed
    entry point, a SIGKILL, two commands at once). The environment, working directory, the
    session's shuffle partitions and time zone are put back afterwards. (MLflow's settings
    need nothing: the Workspace binds them only while it uses them.)"""
    import contextlib
    import io

    from pyspark.sql import SparkSession

    from sparkml_platform.cli import main

    argv = ["--conf", str(conf), *(["--env", env] if env else []), *args]
    active = SparkSession.getActiveSession()
    session_conf = {key: active.conf.get(key) for key in ("spark.sql.shuffle.partitions",
                                                          "spark.sql.session.timeZone")} if active else {}
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update(cli_env(**extra_env))
    os.environ.pop("SPARK_SUBMIT_OPTS")  # a session started here is the tests' own
    os.chdir(conf.parent)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        for key, value in session_conf.items():
            active.conf.set(key, value)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Path:
    """A project for in-process tests: its conf dir (lake and MLflow beside it)."""
    return make_project(tmp_path_factory.mktemp("project"), {
        "platform.yml": {"spark": {"jars_dir": str(JARS_DIR), "shuffle_partitions": 2,
                                   "driver_memory": "2g", "master": "local[2]", "conf": TEST_SPARK_CONF}},
        # Validation has tests of its own (they switch it on); the others skip its cost.
        "features.yml": {"feature_tables": {"origin_weather_hourly": {"expectations": None}}},
    })


@pytest.fixture(scope="session")
def config(project):
    from sparkml_platform.runtime.project import open_project

    return open_project(project, "test")


@pytest.fixture(scope="session")
def spark(config):
    """The one session of the test run; tests never stop it."""
    from sparkml_platform.runtime.session import get_spark

    return get_spark(config)


@pytest.fixture(scope="session")
def tracker(config):
    """The in-process project's MLflow client, bound to its store."""
    from sparkml_platform.tracking.tracker import Tracker

    return Tracker(config)


@pytest.fixture(scope="session")
def ws(config, spark):
    """The in-process project as a Workspace on the tests' session (and its `config`)."""
    from sparkml_platform import Workspace

    return Workspace.from_config(config, spark=spark)


@pytest.fixture(scope="session")
def flights_project(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The reference pipeline run once end to end through the CLI on a slice of the data.

    With SPARKML_TEST_SLICE_CACHE=DIR (the Makefile's test targets), the run is kept in DIR
    under a key of everything it depends on, and each test session gets a copy of it: `make
    test` builds it, `make test-cluster` after it copies it (minutes saved, the same run).
    While working on one test, SPARKML_TEST_REUSE=DIR keeps the slice project in DIR and
    reuses it on the next run (DIR/conf exists): minutes saved per run, never used by CI."""
    reuse = os.environ.get("SPARKML_TEST_REUSE")
    if reuse and (Path(reuse) / "conf").is_dir():
        return Path(reuse) / "conf", subprocess.CompletedProcess([], 0, "", "")
    cache = os.environ.get("SPARKML_TEST_SLICE_CACHE")
    if cache and not reuse:
        return _slice_copy(REPO / cache, tmp_path_factory.mktemp("flights") / "project")
    root = Path(reuse) if reuse else tmp_path_factory.mktemp("flights")
    root.mkdir(parents=True, exist_ok=True)
    return _slice_run(root)


SLICE_TIMEOUT = 3600  # seconds: the run takes about 3 minutes; a busy machine may take several times that


def _slice_run(root: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """The slice pipeline run; if it fails, the test session stops here with the pipeline's own
    error, rather than every test that reads the slice erroring with the same trace."""
    conf = make_project(root, SLICE)
    try:
        result = run_cli(conf, "run", "flights", timeout=SLICE_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.exit(f"the slice pipeline (sparkml run flights in {root}) did not finish within "
                    f"{SLICE_TIMEOUT} s", returncode=1)
    if result.returncode != 0:
        said = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        pytest.exit(f"the slice pipeline (sparkml run flights in {root}) failed with exit "
                    f"{result.returncode}: {' '.join(said) or result.stderr[-2000:]}", returncode=1)
    return conf, result


def slice_key() -> str:
    """A digest of what the slice run's outcome depends on: the platform's code and reference
    configuration, this file (SLICE), the installed distributions and the Python."""
    import hashlib
    from importlib.metadata import distributions

    digest = hashlib.sha256(sys.version.encode())
    files = [*(REPO / "sparkml_platform").rglob("*"), *(REPO / "conf" / "base").rglob("*"), Path(__file__)]
    for path in sorted(p for p in files if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    for dist in sorted(f"{d.metadata['Name']}=={d.version}" for d in distributions()):
        digest.update(dist.encode() + b"\n")
    return digest.hexdigest()[:16]


def _slice_copy(cache: Path, root: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """A copy of the cached slice run, made first if the cache lacks this key's (a lock keeps
    two sessions from making it at once; older keys are removed)."""
    import fcntl
    import json

    cache.mkdir(parents=True, exist_ok=True)
    built = cache / slice_key()
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (built / "result.json").exists():
            for old in cache.iterdir():
                if old.is_dir():
                    shutil.rmtree(old)
            built.mkdir()
            _, result = _slice_run(built)
            (built / "result.json").write_text(json.dumps(
                {"args": result.args, "stdout": result.stdout, "stderr": result.stderr}))
    shutil.copytree(built, root, symlinks=True, ignore=shutil.ignore_patterns("result.json"))
    kept = json.loads((built / "result.json").read_text())
    return root / "conf", subprocess.CompletedProcess(kept["args"], 0, kept["stdout"], kept["stderr"])


def remote_project(root: Path, lake_root: str, spark_conf: dict, artifact_root: str | None = None) -> Path:
    """The slice project's configuration with its lake at `lake_root` (hdfs:// or s3a://)."""
    platform = {**SLICE["platform.yml"], "lake_root": lake_root,
                "spark": {**SLICE["platform.yml"]["spark"], "conf": {**SHORT_JVM_CONF, **spark_conf}}}
    if artifact_root:
        platform["mlflow"] = {"artifact_root": artifact_root}
    return make_project(root, {**SLICE, "platform.yml": platform})


@pytest.fixture(scope="session")
def hdfs_project(tmp_path_factory, hdfs) -> tuple[Path, str, subprocess.CompletedProcess]:
    """The slice pipeline run once with its lake on the test HDFS: (conf, lake root, result).
    Shared by the remote-lake tests and the YARN test (whose jobs write there)."""
    root = tmp_path_factory.mktemp("lake-on-hdfs")
    lake_root = f"{hdfs.uri}/projects/{root.name}/lake"
    conf = remote_project(root, lake_root, {"spark.hadoop.dfs.replication": "1"})
    return conf, lake_root, run_cli(conf, "run", "flights", timeout=1800)


@pytest.fixture(scope="session")
def hdfs(tmp_path_factory):
    """One real single-node HDFS for the run (tests/hdfs.py), shared by the tests that need it."""
    from support.hdfs import hdfs_minicluster

    with hdfs_minicluster(tmp_path_factory.mktemp("hdfs")) as cluster:
        yield cluster
