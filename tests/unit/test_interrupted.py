"""What a killed command leaves behind is finished or closed by the next one (MLflow runs left
RUNNING, a registered version whose aliases were never set), and what two commands at once
on a new tracking server race for (its experiment)."""

from __future__ import annotations

from conftest import make_project

from sparkml_platform.runtime.project import open_project
from sparkml_platform.tracking import registry
from sparkml_platform.tracking import tracker as tracking


def test_a_version_registered_by_a_killed_training_gets_its_aliases_next_time(tmp_path, monkeypatch):
    import mlflow
    from sklearn.dummy import DummyClassifier

    conf = make_project(tmp_path)
    monkeypatch.setenv("SPARKML_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracker = tracking.Tracker(open_project(conf, "test"))
    client = tracker.client
    with tracker.bound(), mlflow.start_run(experiment_id=tracker.experiment_id):
        logged = mlflow.sklearn.log_model(DummyClassifier().fit([[0], [1]], [0, 1]), name="model")

    def version(decision: str, finished: bool) -> str:
        tags = {"decision": decision, **({registry.ALIASES_SET: "by its training"} if finished else {})}
        with tracker.bound():
            return mlflow.register_model(logged.model_uri, "m", tags=tags).version

    first = version("promoted to champion", finished=False)  # killed after "Created version"
    assert registry.finish_interrupted(tracker, "m") == first
    assert set(client.get_model_version("m", first).aliases) == {"challenger", "champion"}
    assert registry.finish_interrupted(tracker, "m") is None  # finished now

    second = version("not promoted: roc_auc below 0.9", finished=False)
    assert registry.finish_interrupted(tracker, "m") == second
    assert set(client.get_model_version("m", second).aliases) == {"challenger"}
    assert client.get_model_version_by_alias("m", "champion").version == first

    # A training that finished, then a champion moved back by hand: the user's choice stays.
    third = version("promoted to champion", finished=True)
    client.set_registered_model_alias("m", "champion", first)
    assert registry.finish_interrupted(tracker, "m") is None
    assert client.get_model_version_by_alias("m", "champion").version == first
    assert third != first


def test_an_experiment_created_by_another_command_meanwhile_is_used(tmp_path, monkeypatch):
    """Two commands at once on a new tracking server: both find no experiment, one creates it
    first; the other's create fails as existing, and it uses that one (was: exit 1)."""
    conf = make_project(tmp_path)
    monkeypatch.setenv("SPARKML_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = open_project(conf, "test")
    first = tracking.Tracker(config).experiment_id
    other = tracking.Tracker(config)  # the other command
    client, looked = other.client, []
    seen = client.get_experiment_by_name

    def not_yet(name):  # what the other command saw, a moment before the first created it
        looked.append(name)
        return None if len(looked) == 1 else seen(name)

    monkeypatch.setattr(client, "get_experiment_by_name", not_yet)
    assert other.experiment_id == first
    assert looked == [config.platform.mlflow.experiment] * 2
