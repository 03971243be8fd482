"""Jobs on real servers started here on 127.0.0.1: a Spark standalone cluster through
spark-submit.sh from the project's own virtualenv, and training against a real `mlflow
server` on SQLite (test_cluster.py has the packed environment and PostgreSQL). Run by `make
test-cluster`: each starts servers and JVMs of its own for a minute or more."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import REPO, cli_env, run_main, submitted
from support.servers import mlflow_server, spark_standalone

pytestmark = pytest.mark.cluster


def submit(conf, *args, **env) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "spark-submit.sh"), "--conf-dir", str(conf), "--env", "test", *args],
                          capture_output=True, text=True, timeout=900, env=cli_env(**env))


def foreign_archive(tmp_path):
    """What `env pack` makes on a machine with Python 3.12: its python links to an
    interpreter that this machine does not have."""
    import io
    import tarfile

    archive = tmp_path / "py312.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        link = tarfile.TarInfo("bin/python")
        link.type, link.linkname = tarfile.SYMTYPE, "/usr/bin/python3.12"
        tar.addfile(link)
        meta = json.dumps({"environment_id": "feedfacecafebeef", "python": "3.12.4"}).encode()
        info = tarfile.TarInfo("sparkml-environment.json")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
    return archive


def test_a_job_runs_on_a_standalone_cluster(spark, flights_project, tmp_path):
    """A windowed feature build submitted to a real master and worker with the project's own
    interpreter (`make test-cluster` runs builds and scoring from a packed environment)."""
    conf, _ = flights_project
    table = conf.parent / ".sparkml" / "lake" / "features" / "route_delays"
    before = spark.read.format("delta").load(str(table)).count()
    with spark_standalone(tmp_path) as master:
        built = submit(conf, "--master", master, "features_build", "route_delays",
                       "--start", "2013-03-01", "--end", "2013-03-31")
        assert built.returncode == 0, submitted(built)
        apps = list((tmp_path / "work").iterdir())

        # An environment packed with a Python this cluster's nodes lack: a clear error before
        # any work, not a worker crash half-way through the job.
        log = sorted(p.name for p in (table / "_delta_log").glob("*.json"))
        foreign = submit(conf, "--master", master, "--archives", str(foreign_archive(tmp_path)),
                         "features_build", "route_delays", "--start", "2013-03-01", "--end", "2013-03-31")
        assert sorted(p.name for p in (table / "_delta_log").glob("*.json")) == log
    # spark-submit merges the Python driver's stderr into its stdout.
    output = foreign.stdout + foreign.stderr
    assert foreign.returncode == 2, output[-3000:]
    assert ("error: the executors cannot run the packed environment feedfacecafebeef (built for Python "
            '3.12.4): Cannot run program "./environment/bin/python"') in output
    assert "install Python 3.12.4 on them" in output
    out = json.loads(built.stdout.strip().splitlines()[-1])
    assert out["table"] == "features.route_delays" and out["window"] == ["2013-03-01", "2013-03-31"]
    assert len(apps) == 1  # the job really ran as an application of the standalone master
    rows = spark.read.format("delta").load(str(table))
    assert rows.count() == before  # the window replaced, nothing duplicated
    assert out["rows_written"] == rows.where("as_of >= '2013-03-01' AND as_of < '2013-04-01'").count() > 0


def test_spark_submit_refuses_unknown_master_and_job(flights_project):
    conf, _ = flights_project
    bad_master = submit(conf, "--master", "mesos://x:5050", "features_build", "plane_attributes")
    assert bad_master.returncode == 2 and "unknown master 'mesos://x:5050'" in bad_master.stderr
    bad_job = submit(conf, "no_such_job")
    assert bad_job.returncode == 2 and "no job named 'no_such_job' under jobs/" in bad_job.stderr
    assert "usage: spark-submit.sh" in bad_job.stderr


def test_training_against_a_real_mlflow_server(spark, flights_project, tmp_path, monkeypatch, capsys):
    import time

    from conftest import JARS_DIR
    from mlflow import MlflowClient

    from sparkml_platform.cli import main

    conf, _ = flights_project
    with mlflow_server(tmp_path) as uri:
        result = run_main(conf, "train", "flight_delay_gbt", SPARKML_MLFLOW_TRACKING_URI=uri)
        assert result.returncode == 0, submitted(result)
        trained = json.loads(result.stdout.strip().splitlines()[-1])
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        champion = client.get_model_version_by_alias("flight_delays", "champion")
        assert str(champion.version) == trained["version"] == "1"  # the server's own registry
        assert champion.tags["training_set"] == "flight_delays"
        run = client.get_run(champion.run_id)
        assert run.data.metrics["roc_auc"] == pytest.approx(trained["metrics"]["roc_auc"], abs=1e-5)
        artifacts = {a.path for a in client.list_artifacts(champion.run_id)}
        assert {"feature_spec.json", "environment.json", "gate.json", "plots"} <= artifacts
        plots = {a.path for a in client.list_artifacts(champion.run_id, "plots")}
        assert {"plots/roc_curve.png", "plots/pr_curve.png", "plots/confusion_matrix.png",
                "plots/feature_importance.png"} <= plots
        # every tuning trial is a nested run with its parameters and validation metrics
        trials = client.search_runs([run.info.experiment_id],
                                    f"tags.mlflow.parentRunId = '{champion.run_id}'")
        assert len(trials) == 2 and all("maxDepth" in t.data.params for t in trials)
        assert all("validation_roc_auc" in t.data.metrics for t in trials)
        assert json.loads(champion.tags["gate_checks"])[0]["metric"] == "roc_auc"
        assert champion.tags["decision"] == "promoted to champion"

    # The server is down now: a clear message within seconds, and nothing trained.
    monkeypatch.setenv("SPARKML_MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SPARKML_JARS_DIR", str(JARS_DIR))
    started = time.monotonic()
    code = main(["--conf", str(conf), "--env", "test", "train", "flight_delay_gbt", "--no-tune"])
    assert code == 1 and time.monotonic() - started < 20
    assert f"the MLflow tracking server at {uri} is not reachable" in capsys.readouterr().err
