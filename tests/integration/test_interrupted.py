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

from sparkml_platform.runtime.project import open_project
from sparkml_platform.tracking import tracker as tracking

# A training's process, cut short: its run and a tuning trial's nested run are RUNNING when
# it is killed (a real process, a real SIGKILL).
KILLED_TRAINING = textwrap.dedent("""
    import sys, time
    from mlflow import MlflowClient
    from sparkml_platform.tracking import tracker as tracking
    client = MlflowClient(tracking_uri=sys.argv[1])
    experiment = client.create_experiment("killed")
    run = client.create_run(experiment, tags=tracking.owner_tags())
    client.create_run(experiment, tags={"mlflow.parentRunId": run.info.run_id})
    print(experiment, flush=True)
    time.sleep(600)
""")


@pytest.fixture
def store(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_runs_left_running_by_a_killed_process_are_closed(store):
    from mlflow import MlflowClient

    proc = subprocess.Popen([sys.executable, "-c", KILLED_TRAINING, store], stdout=subprocess.PIPE,
                            text=True)
    experiment = proc.stdout.readline().strip()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # And a run of a process that is still alive (this one): never touched.
    client = MlflowClient(tracking_uri=store)
    alive = client.create_run(experiment, tags=tracking.owner_tags())
    running = {r.info.run_id for r in client.search_runs([experiment], "attributes.status = 'RUNNING'")}
    assert len(running) == 3
    closed = tracking.close_abandoned_runs(client, experiment)
    assert set(closed) == running - {alive.info.run_id}
    for run_id in closed:
        run = client.get_run(run_id)
        assert run.info.status == "KILLED"
        assert run.data.tags["sparkml.ended"].startswith("killed")
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"
    assert tracking.close_abandoned_runs(client, experiment) == []


def test_a_store_whose_creation_was_killed_is_created_whole_next_time(tmp_path):
    """MLflow builds a new store's tables with some fifty migrations: killed among them, the
    store was left half-built and every later command failed (found by benchmarks/soak.py).
    It is built in a temporary file and moved into place once whole."""

    conf = make_project(tmp_path)
    store = tmp_path / ".sparkml" / "mlflow.db"
    creating = [sys.executable, "-c", "import sys; from sparkml_platform.tracking import tracker as tracking; "
                "from sparkml_platform.runtime.project import open_project; "
                "tracking.Tracker(open_project(sys.argv[1], 'test')).experiment_id", str(conf)]
    proc = subprocess.Popen(creating, cwd=tmp_path)
    while proc.poll() is None and not list(store.parent.glob(".mlflow.db.creating-*")):
        time.sleep(0.02)
    time.sleep(0.5)  # among the migrations
    assert proc.poll() is None, "the creation finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not store.exists()  # nothing half-built in the store's place

    tracker = tracking.Tracker(open_project(conf, "test"))
    experiment = tracker.experiment_id
    assert store.exists() and not list(store.parent.glob(".mlflow.db.creating-*"))
    run = tracker.client.create_run(experiment)
    tracker.client.log_metric(run.info.run_id, "m", 1.0)
    assert tracker.client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
