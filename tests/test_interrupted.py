"""What a killed command leaves behind is finished or closed by the next one (MLflow runs left
RUNNING, a registered version whose aliases were never set), and what two commands at once
on a new tracking server race for (its experiment)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import make_project
from sparkml_platform import registry, tracking
from sparkml_platform.config import load_config

# A training's process, cut short: its run and a tuning trial's nested run are RUNNING when
# it is killed (a real process, a real SIGKILL).
KILLED_TRAINING = textwrap.dedent("""
    import sys, time
    import mlflow
    from sparkml_platform import tracking
    mlflow.set_tracking_uri(sys.argv[1])
    experiment = mlflow.set_experiment("killed").experiment_id
    with mlflow.start_run(tags=tracking.owner_tags()) as run:
        client = mlflow.MlflowClient()
        client.create_run(experiment, tags={"mlflow.parentRunId": run.info.run_id})
        print(experiment, flush=True)
        time.sleep(600)
""")


@pytest.fixture(autouse=True)
def own_uris(monkeypatch):
    """MLflow's process-wide URIs, put back after the test (other tests share the process)."""
    import mlflow.tracking._model_registry.utils as registry_uri
    import mlflow.tracking._tracking_service.utils as tracking_uri

    monkeypatch.setattr(tracking_uri, "_tracking_uri", tracking_uri._tracking_uri)
    monkeypatch.setattr(registry_uri, "_registry_uri", registry_uri._registry_uri)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID",
                 "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.setenv(name, os.environ.get(name, "")) if name in os.environ \
            else monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return uri


def test_runs_left_running_by_a_killed_process_are_closed(store):
    import mlflow

    proc = subprocess.Popen([sys.executable, "-c", KILLED_TRAINING, store], stdout=subprocess.PIPE,
                            text=True)
    experiment = proc.stdout.readline().strip()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # And a run of a process that is still alive (this one): never touched.
    with mlflow.start_run(experiment_id=experiment, tags=tracking.owner_tags()) as alive:
        client = mlflow.MlflowClient()
        running = {r.info.run_id for r in client.search_runs(
            [experiment], "attributes.status = 'RUNNING'")}
        assert len(running) == 3
        closed = tracking.close_abandoned_runs(experiment)
        assert set(closed) == running - {alive.info.run_id}
        for run_id in closed:
            run = client.get_run(run_id)
            assert run.info.status == "KILLED"
            assert run.data.tags["sparkml.ended"].startswith("killed")
        assert client.get_run(alive.info.run_id).info.status == "RUNNING"
        assert tracking.close_abandoned_runs(experiment) == []


def test_a_version_registered_by_a_killed_training_gets_its_aliases_next_time(tmp_path, monkeypatch):
    import mlflow
    from sklearn.dummy import DummyClassifier

    conf = make_project(tmp_path)
    monkeypatch.setenv("SPARKML_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = load_config(conf, "test")
    tracking.configure(config)
    client = tracking.client(config)
    with mlflow.start_run():
        logged = mlflow.sklearn.log_model(DummyClassifier().fit([[0], [1]], [0, 1]), name="model")

    def version(decision: str, finished: bool) -> str:
        tags = {"decision": decision, **({registry.ALIASES_SET: "by its training"} if finished else {})}
        return mlflow.register_model(logged.model_uri, "m", tags=tags).version

    first = version("promoted to champion", finished=False)  # killed after "Created version"
    assert registry.finish_interrupted(config, "m") == first
    assert set(client.get_model_version("m", first).aliases) == {"challenger", "champion"}
    assert registry.finish_interrupted(config, "m") is None  # finished now

    second = version("not promoted: roc_auc below 0.9", finished=False)
    assert registry.finish_interrupted(config, "m") == second
    assert set(client.get_model_version("m", second).aliases) == {"challenger"}
    assert client.get_model_version_by_alias("m", "champion").version == first

    # A training that finished, then a champion moved back by hand: the user's choice stays.
    third = version("promoted to champion", finished=True)
    client.set_registered_model_alias("m", "champion", first)
    assert registry.finish_interrupted(config, "m") is None
    assert client.get_model_version_by_alias("m", "champion").version == first
    assert third != first


def test_an_experiment_created_by_another_command_meanwhile_is_used(tmp_path, monkeypatch):
    """Two commands at once on a new tracking server: both find no experiment, one creates it
    first; the other's create fails as existing, and it uses that one (was: exit 1)."""
    import mlflow

    conf = make_project(tmp_path)
    monkeypatch.setenv("SPARKML_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = load_config(conf, "test")
    first = tracking.configure(config)
    looked = []

    def not_yet(name):  # what the other command saw, a moment before the first created it
        looked.append(name)
        return None if len(looked) == 1 else mlflow.tracking.fluent.MlflowClient().get_experiment_by_name(name)

    monkeypatch.setattr(mlflow, "get_experiment_by_name", not_yet)
    assert tracking._experiment(config, config.tracking_uri) == first
    assert looked == [config.platform.mlflow.experiment] * 2


def test_a_store_whose_creation_was_killed_is_created_whole_next_time(tmp_path):
    """MLflow builds a new store's tables with some fifty migrations: killed among them, the
    store was left half-built and every later command failed (found by benchmarks/soak.py).
    It is built in a temporary file and moved into place once whole."""
    import mlflow

    conf = make_project(tmp_path)
    store = tmp_path / ".sparkml" / "mlflow.db"
    creating = [sys.executable, "-c", "import sys; from sparkml_platform import tracking; "
                "from sparkml_platform.config import load_config; "
                "tracking.configure(load_config(sys.argv[1], 'test'))", str(conf)]
    proc = subprocess.Popen(creating, cwd=tmp_path)
    while proc.poll() is None and not list(store.parent.glob(".mlflow.db.creating-*")):
        time.sleep(0.02)
    time.sleep(0.5)  # among the migrations
    assert proc.poll() is None, "the creation finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not store.exists()  # nothing half-built in the store's place

    config = load_config(conf, "test")
    experiment = tracking.configure(config)
    assert store.exists() and not list(store.parent.glob(".mlflow.db.creating-*"))
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_metric("m", 1.0)
    assert mlflow.get_run(run.info.run_id).data.metrics == {"m": 1.0}
