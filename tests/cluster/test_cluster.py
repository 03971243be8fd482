"""Jobs on real clusters from a packed environment built from a captured environment artifact:
a Spark standalone master and worker, and a single-node YARN (Hadoop's mini-cluster), all on
127.0.0.1. `make test-cluster` runs these (minutes of packing and container start-up)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, SLICE, cli_env, make_project, run_cli, slice_key, submitted
from support.servers import spark_standalone

from sparkml_platform.runtime.project import project_of

pytestmark = pytest.mark.cluster

WINDOW = ["--start", "2013-03-01", "--end", "2013-03-31"]


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    """The slice project's environment, captured, then built and packed from that capture, in
    a project of its own: the build (about 2 GB) stays out of the slice project, which other
    tests copy. With SPARKML_TEST_SLICE_CACHE (`make test-cluster`, whose two pytest processes
    both need it) it is made once, beside the cached slice run, under the same key."""
    import fcntl
    import os

    cache = os.environ.get("SPARKML_TEST_SLICE_CACHE")
    if not cache:
        return pack(tmp_path_factory.mktemp("packed"))
    home = (REPO / cache).with_name("test-packed") / slice_key()
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / ".pack-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = home / "archive.txt"
        if not done.exists():
            for old in home.parent.iterdir():
                if old.is_dir():
                    shutil.rmtree(old)
            home.mkdir()
            done.write_text(str(pack(home)))
        return Path(done.read_text())


def pack(root: Path) -> Path:
    conf = make_project(root, SLICE)
    captured = run_cli(conf, "env", "capture", "--json")
    assert captured.returncode == 0, submitted(captured)
    env_id = json.loads(captured.stdout)["id"]
    result = run_cli(conf, "env", "pack", env_id, timeout=1800)
    assert result.returncode == 0, submitted(result)
    built = json.loads(result.stdout.strip().splitlines()[-1])
    assert built["environment_id"] == env_id
    return Path(built["archive"])


def submit(conf, *args, **env) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "spark-submit.sh"), "--conf-dir", str(conf), "--env", "test", *args],
                          capture_output=True, text=True, timeout=1200, env=cli_env(**env))


def last_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, submitted(result)
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_feature_build_and_scoring(spark, conf, run_jobs, output: str) -> None:
    """A windowed feature build and a scoring run through `run_jobs(job, *args)`, checked in
    the Delta tables they wrote."""
    lake = conf.parent / ".sparkml" / "lake"
    table = lake / "features" / "route_delays"
    before = spark.read.format("delta").load(str(table)).count()
    built = last_json(run_jobs("features_build", "route_delays", *WINDOW))
    assert built["window"] == ["2013-03-01", "2013-03-31"]
    rows = spark.read.format("delta").load(str(table))
    assert rows.count() == before  # the window replaced, nothing duplicated
    assert built["rows_written"] == rows.where("as_of >= '2013-03-01' AND as_of < '2013-04-01'").count() > 0

    scored = last_json(run_jobs("score", "flight_delays@champion", "--input", "entities.flights_to_score",
                                "--output", output, "--run-date", "2013-12-31"))
    predictions = spark.read.format("delta").load(str(lake / output.replace(".", "/")))
    expected = spark.read.format("delta").load(str(lake / "entities" / "flights_to_score")).count()
    assert scored["rows"] == predictions.count() == expected
    assert predictions.where("probability IS NULL OR probability < 0 OR probability > 1").count() == 0


def test_feature_build_and_scoring_on_standalone_from_the_packed_environment(spark, flights_project,
                                                                              packed, tmp_path):
    conf, _ = flights_project
    with spark_standalone(tmp_path) as master:
        check_feature_build_and_scoring(
            spark, conf, lambda *job: submit(conf, "--master", master, "--archives", str(packed), *job),
            "predictions.standalone_check")
    # Executors ran the archive's Python: unpacked in each application's working directory.
    unpacked = list((tmp_path / "work").glob("app-*/*/environment/bin/python"))
    assert len(unpacked) >= 2, sorted(p.name for p in (tmp_path / "work").iterdir())


@pytest.mark.remote_lake
def test_feature_build_and_scoring_on_yarn_from_the_packed_environment(spark, hdfs_project, packed,
                                                                        tmp_path):
    """A feature build with the driver in the application master (cluster mode) and a scoring
    job with the driver here (client mode), on a single-node YARN, with the lake on HDFS (as
    on a real cluster: the container shares no disk with this process)."""
    from support.yarn import yarn_minicluster

    from sparkml_platform.storage import lake
    from sparkml_platform.storage.files import Storage

    conf, lake_root, result = hdfs_project
    assert result.returncode == 0, submitted(result)
    table = Storage().location(f"{lake_root}/features/route_delays")
    before = spark.read.format("delta").load(str(table)).count()
    with yarn_minicluster(tmp_path) as cluster:
        settings = cluster.submit_args()[1::2]  # KEY=VALUE after each --conf
        options = [arg for kv in settings for arg in ("--spark-conf", kv)]
        # Absolute, so that a driver in a container finds the same registry.
        env = {**cluster.env,
               "SPARKML_MLFLOW_TRACKING_URI": f"sqlite:///{conf.parent / '.sparkml' / 'mlflow.db'}"}

        built = submit(conf, "--master", "yarn", "--deploy-mode", "cluster", "--archives", str(packed),
                       *options, "features_build", "route_delays", *WINDOW, **env)
        assert built.returncode == 0, submitted(built)
        scored = last_json(submit(conf, "--master", "yarn", "--deploy-mode", "client", "--archives",
                                  str(packed), *options, "score", "flight_delays@champion", "--input",
                                  "entities.flights_to_score", "--output", "predictions.yarn_check",
                                  "--run-date", "2013-12-31", **env))
        apps = sorted(p.name for p in cluster.logs_dir.iterdir())
    assert len(apps) == 2 and all(a.startswith("application_") for a in apps)
    # The cluster-mode build committed its window to HDFS from inside YARN (its output is in
    # the container's log, the commit metadata says which application wrote it).
    last = lake.commits(table)[-1]["metadata"]
    assert last["window"] == ["2013-03-01", "2013-03-31"] and last["spark_app_id"] == apps[0]
    # ... and the project's code version, handed to that driver by spark-submit.sh.
    from sparkml_platform.runtime.project import open_project

    assert last["code"] == project_of(open_project(conf, "test")).code_version()
    assert spark.read.format("delta").load(str(table)).count() == before
    predictions = spark.read.format("delta").load(f"{lake_root}/predictions/yarn_check")
    expected = spark.read.format("delta").load(f"{lake_root}/entities/flights_to_score").count()
    assert scored["rows"] == predictions.count() == expected


def test_two_trainings_at_once_against_an_mlflow_server_on_postgresql(flights_project, tmp_path):
    """The production set-up of the README: `mlflow server` on PostgreSQL. Two trainings of one
    registered model at once both finish; the one promoted second was compared with the first."""
    from mlflow import MlflowClient
    from support.servers import mlflow_server, postgresql

    conf, _ = flights_project
    with postgresql() as database, mlflow_server(tmp_path, database) as uri:
        trainings = [subprocess.Popen(
            [str(Path(cli_env()["PYSPARK_PYTHON"]).parent / "sparkml"), "--conf", str(conf),
             "--env", "test", "train", "flight_delay_gbt", "--no-tune"],
            env=cli_env(SPARKML_MLFLOW_TRACKING_URI=uri), cwd=conf.parent, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
        outputs = [proc.communicate(timeout=1200) for proc in trainings]
        assert [p.returncode for p in trainings] == [0, 0], \
            [[line for line in err.splitlines() if "rror" in line][-6:] for _, err in outputs]
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        versions = sorted(client.search_model_versions("name = 'flight_delays'"),
                          key=lambda v: int(v.version))
        assert [v.version for v in versions] == ["1", "2"]
        compared = [v.tags["compared_with"] for v in versions]
        assert compared[0] == "no champion yet" and compared[1].startswith("champion v1"), compared
        assert all(v.tags["aliases_set"] == "by its training" for v in versions)
        runs = client.search_runs([client.get_experiment_by_name("sparkml-flights").experiment_id])
        assert {r.info.status for r in runs} == {"FINISHED"}
