"""Real servers for tests, on 127.0.0.1 only: a Spark standalone master and worker, and an
`mlflow server`. Each is started by a fixture and stopped after."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import prerequisites

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_for(check, what: str, timeout: float = 120.0, procs=(), interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout}s")


def _http_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _stop(procs) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def spark_standalone(workdir: Path, cores: int = 2, memory: str = "3g"):
    """A master and one worker from the pyspark wheel; yields the master URL."""
    import pyspark

    home = Path(pyspark.__file__).parent
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": LOOPBACK,
           "SPARK_LOG_DIR": str(workdir / "logs"), "PYSPARK_PYTHON": sys.executable}
    port, ui, worker_ui = free_port(), free_port(), free_port()
    spark_class = [str(home / "bin" / "spark-class")]
    logs = open(workdir / "standalone.log", "w")
    master = subprocess.Popen(
        [*spark_class, "org.apache.spark.deploy.master.Master", "--host", LOOPBACK,
         "--port", str(port), "--webui-port", str(ui)], env=env, stdout=logs, stderr=logs)
    procs = [master]
    try:
        wait_for(lambda: _http_json(f"http://{LOOPBACK}:{ui}/json/")["status"] == "ALIVE",
                 "spark master", procs=procs)
        worker = subprocess.Popen(
            [*spark_class, "org.apache.spark.deploy.worker.Worker", f"spark://{LOOPBACK}:{port}",
             "--host", LOOPBACK, "--cores", str(cores), "--memory", memory,
             "--webui-port", str(worker_ui), "--work-dir", str(workdir / "work")],
            env=env, stdout=logs, stderr=logs)
        procs.append(worker)
        wait_for(lambda: _http_json(f"http://{LOOPBACK}:{ui}/json/")["aliveworkers"] >= 1,
                 "spark worker", procs=procs)
        yield f"spark://{LOOPBACK}:{port}"
    finally:
        _stop(procs)
        logs.close()


def postgres_bin() -> Path:
    """PostgreSQL's server programs (initdb, pg_ctl), where `make test-cluster`'s check found them."""
    found = prerequisites.postgres_bin()
    assert found, "PostgreSQL is missing: `make test-cluster` installs it or names the command that does"
    return Path(found)


@contextmanager
def postgresql():
    """A PostgreSQL cluster of its own (initdb in a new temporary directory, 127.0.0.1 only,
    a database `mlflow`); yields its SQLAlchemy URI, then stops and removes it. As root, it
    runs as the `postgres` user (PostgreSQL refuses root), in a directory that user owns."""
    import pwd
    import shutil
    import tempfile

    bin_dir = postgres_bin()
    workdir = Path(tempfile.mkdtemp(prefix="sparkml-postgresql-"))
    data, sockets = workdir / "data", workdir / "sockets"
    sockets.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (workdir, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
        as_user = [shutil.which("runuser") or "runuser", "-u", "postgres", "--"]
    port = free_port()

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, text=True, timeout=120)

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(workdir / "postgresql.log"), "-w",
        "-o", f"-p {port} -k {sockets} -c listen_addresses={LOOPBACK}", "start")
    try:
        run(str(bin_dir / "createdb"), "-h", LOOPBACK, "-p", str(port), "-U", "postgres", "mlflow")
        yield f"postgresql+psycopg2://postgres@{LOOPBACK}:{port}/mlflow"
    finally:
        try:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def mlflow_server(workdir: Path, backend: str | None = None):
    """`mlflow server` with a SQLite store (or `backend`) and served artifacts; yields its URI."""
    port = free_port()
    logs = open(workdir / "mlflow-server.log", "w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server",
         "--backend-store-uri", backend or f"sqlite:///{workdir / 'server.db'}",
         "--artifacts-destination", str(workdir / "server-artifacts"),
         "--host", LOOPBACK, "--port", str(port), "--workers", "1"],
        stdout=logs, stderr=logs, cwd=workdir)
    uri = f"http://{LOOPBACK}:{port}"
    try:
        wait_for(lambda: urllib.request.urlopen(f"{uri}/health", timeout=5).status == 200,
                 "mlflow server", procs=[proc])
        yield uri
    finally:
        _stop([proc])
        logs.close()


# Credentials the S3 server accepts; tests hand them to commands through the environment,
# as a user would (never in a configuration file).
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "sparkml-test-key", "AWS_SECRET_ACCESS_KEY": "sparkml-test-s3cret",
                  "AWS_REGION": "us-east-1"}


@contextmanager
def s3_server(workdir: Path, buckets: tuple[str, ...] = ("lake",)):
    """A real S3 API (the `moto` package's server mode) with `buckets` made; yields its
    endpoint URL. Objects live in its memory and go with it."""
    import boto3

    port = free_port()
    logs = open(workdir / "s3-server.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", LOOPBACK, "-p", str(port)],
                            stdout=logs, stderr=logs, cwd=workdir)
    endpoint = f"http://{LOOPBACK}:{port}"
    try:
        wait_for(lambda: urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=5).status == 200,
                 "S3 server", procs=[proc], timeout=60)
        client = boto3.client("s3", endpoint_url=endpoint, region_name=S3_CREDENTIALS["AWS_REGION"],
                              aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        _stop([proc])
        logs.close()


@contextmanager
def redis_server(workdir: Path):
    """A real Redis (Debian's redis-server) on 127.0.0.1, nothing saved to disk; yields
    (url, process) so a test can stop it to see what a store that is down does."""
    import redis

    port = free_port()
    logs = open(workdir / "redis.log", "w")
    command = prerequisites.find("redis-server")
    assert command, "redis-server is missing: `make test` installs it or names the command that does"
    proc = subprocess.Popen([command, "--port", str(port), "--bind", LOOPBACK, "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)], stdout=logs, stderr=logs)
    url = f"redis://{LOOPBACK}:{port}/0"

    def answers() -> bool:
        try:
            return redis.Redis.from_url(url, socket_timeout=1).ping()
        except redis.exceptions.ConnectionError:
            return False

    try:
        wait_for(answers, "Redis", procs=[proc], timeout=30)
        yield url, proc
    finally:
        _stop([proc])
        logs.close()
