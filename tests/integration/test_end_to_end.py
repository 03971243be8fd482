"""`sparkml run flights` end to end through the CLI on a slice of the reference data."""

from __future__ import annotations

import json

import pytest
from conftest import JARS_DIR, run_main

from sparkml_platform.cli import main

pytestmark = pytest.mark.slow


def count(spark, path) -> int:
    return spark.read.format("delta").load(str(path)).count()


def lake_counts(spark, lake_root) -> dict[str, int]:
    counts = {}
    for zone in ("raw", "entities", "features", "predictions"):
        for path in sorted((lake_root / zone).iterdir()):
            counts[f"{zone}.{path.name}"] = count(spark, path)
    return counts


def test_pipeline_leaves_tables_a_model_and_predictions(spark, flights_project):
    from mlflow import MlflowClient

    conf, result = flights_project
    lake_root = conf.parent / ".sparkml" / "lake"
    counts = lake_counts(spark, lake_root)
    assert {"raw.flights", "raw.weather", "raw.planes", "entities.flights",
            "entities.flights_to_score", "features.origin_weather_hourly",
            "features.plane_attributes", "features.carrier_delays",
            "features.route_delays", "predictions.flight_delays"} <= set(counts)
    assert all(n > 0 for n in counts.values()), counts
    # every flight to score got exactly one prediction, with model name, version and run id
    preds = spark.read.format("delta").load(str(lake_root / "predictions" / "flight_delays"))
    assert preds.count() == counts["entities.flights_to_score"]
    assert preds.select("flight_id").distinct().count() == preds.count()
    row = preds.select("model_name", "model_version", "run_id", "run_date").distinct().collect()
    champion = MlflowClient(tracking_uri=f"sqlite:///{conf.parent / '.sparkml' / 'mlflow.db'}") \
        .get_model_version_by_alias("flight_delays", "champion")
    assert len(row) == 1 and row[0].model_name == "flight_delays"
    assert row[0].model_version == int(champion.version)
    assert str(row[0].run_date) == "2013-12-31"
    assert preds.where("sched_dep_ts < '2013-10-01'").count() == 0
    # the summary names the AUC, the model version and how to open the UI
    assert "ROC AUC" in result.stdout and "model flight_delays version 1 (flight_delay_gbt)" in result.stdout
    assert "model flight_delays version 2 (flight_delay_sklearn)" in result.stdout
    assert "mlflow ui --backend-store-uri sqlite:///" in result.stdout
    # Each version lists what loading it needs, pinned to what is installed here (given, not
    # inferred by MLflow reloading the model, which also picked up pytest).
    from importlib.metadata import version as installed
    from pathlib import Path
    from urllib.parse import urlparse

    uri = f"sqlite:///{conf.parent / '.sparkml' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for version, needs in (("1", {"pyspark"}), ("2", {"scikit-learn", "skops", "scipy"})):
        folder = Path(urlparse(client.get_model_version_download_uri("flight_delays", version)).path)
        pins = dict(line.split("==") for line in (folder / "requirements.txt").read_text().split())
        assert set(pins) == needs | {"mlflow", "numpy", "pandas"}, pins
        assert all(pins[name] == installed(name) for name in pins)


def test_training_set_is_point_in_time_and_versioned(spark, flights_project):
    conf, _ = flights_project
    result = run_main(conf, "trainset", "show", "flight_delays@1")
    assert result.returncode == 0, result.stderr
    man = json.loads(result.stdout)
    assert man["rows"]["train"] > 0 and man["rows"]["test"] > 0
    assert {lk["table"] for lk in man["lookups"]} == {
        "origin_weather_hourly", "plane_attributes", "carrier_delays", "route_delays"}
    assert man["label_source"]["table"] == "entities.flights"


def test_model_version_records_its_inputs(spark, flights_project):
    conf, _ = flights_project
    result = run_main(conf, "models", "show", "flight_delays@champion", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["version"] in ("1", "2") and "champion" in shown["aliases"]
    tags = shown["tags"]
    assert tags["training_set"] == "flight_delays" and tags["training_set_version"] == "1"
    # the feature tables at exactly the Delta versions its training set read
    manifest = json.loads(run_main(conf, "trainset", "show", "flight_delays@1").stdout)
    assert json.loads(tags["feature_tables"]) == {lk["table"]: lk["version"] for lk in manifest["lookups"]}
    assert float(shown["metrics"]["roc_auc"]) > 0.5
    # the run's dataset input is the training set version, with the manifest's digest
    from mlflow import MlflowClient

    uri = f"sqlite:///{conf.parent / '.sparkml' / 'mlflow.db'}"
    inputs = MlflowClient(tracking_uri=uri).get_run(shown["run_id"]).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [
        ("flight_delays@1", tags["training_set_digest"])]
    source = json.loads(inputs[0].dataset.source)
    assert source["path"].endswith("/trainsets/flight_delays/v0001")  # MLflow omits version 0
    profile = json.loads(inputs[0].dataset.profile)  # exact counts, from the manifest
    splits = profile["rows_per_split"]
    assert profile["num_rows"] == splits["train"] + splits["validation"] + splits["test"] > 0
    # The environment it was trained in is the one here; the scoring run links its own.
    diffed = run_main(conf, "env", "diff", "flight_delays@champion")
    assert diffed.returncode == 0 and diffed.stdout.startswith(f"{tags['environment_id']} -> "), diffed.stderr
    assert diffed.stdout.splitlines()[0].endswith(": identical"), diffed.stdout[:3000]
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_run(shown["run_id"]).info.experiment_id
    scoring_runs = client.search_runs([experiment], "tags.`sparkml.kind` = 'score'")
    assert scoring_runs and all(r.data.tags["sparkml.environment_id"] == tags["environment_id"]
                                for r in scoring_runs)
    shown_env = json.loads(run_main(conf, "env", "show", scoring_runs[0].info.run_id, "--json").stdout)
    assert shown_env["id"] == tags["environment_id"]
    lineage = json.loads(run_main(conf, "lineage", "flight_delays@champion", "--json").stdout)
    assert lineage["root"] == f"model:flight_delays/{shown['version']}"
    assert ["trainset:flight_delays@1", lineage["root"]] in lineage["edges"]
    lineage = json.loads(run_main(conf, "lineage", "route_delays", "--format", "json").stdout)
    nodes = {n["id"]: n for n in lineage["nodes"]}
    assert [a for a, b in lineage["edges"] if b == "features.route_delays"] == ["entities.flights"]
    assert nodes["entities.flights"]["detail"]["read_at"] == {"features.route_delays": 0}
    assert ["raw.flights", "entities.flights"] in lineage["edges"]
    assert ["features.route_delays", "trainset:flight_delays@1"] in lineage["edges"]


def test_a_run_with_nothing_new_writes_nothing_and_starts_no_spark(spark, flights_project, tmp_path):
    """Each step sees from the Delta logs, manifests and the registry that its inputs are
    those it last ran on: nothing is written, no MLflow run or model version is added, and
    the command (its own process, as cron starts it) never starts a JVM."""
    import shutil
    import sqlite3

    from conftest import run_cli

    conf, _ = flights_project
    copy = tmp_path / "project"  # earlier tests may have changed the original: brought up to date here
    shutil.copytree(conf.parent, copy, symlinks=True)
    conf = copy / "conf"
    first = run_main(conf, "run", "flights")
    assert first.returncode == 0, first.stderr[-3000:]

    def state():
        files = {str(p.relative_to(copy)): (p.stat().st_size, p.stat().st_mtime_ns)
                 for p in (copy / ".sparkml").rglob("*") if p.is_file() and "locks" not in p.parts}
        with sqlite3.connect(copy / ".sparkml" / "mlflow.db") as db:
            counts = [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                      for t in ("runs", "model_versions", "tags", "model_version_tags")]
        return files, counts

    before = state()
    result = run_cli(conf, "run", "flights")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "nothing new: every step of flights was up to date; nothing was written, and Spark was not " \
           "started" in result.stdout, result.stdout
    steps = [line for line in result.stdout.splitlines() if line.startswith("    ") and "=" in line]
    assert len(steps) == 19 and all("mode=up to date" in line for line in steps), steps
    assert "Using Spark's default log4j profile" not in result.stderr
    assert state() == before
    assert "model flight_delays version" in result.stdout  # the summary still names what is there


def test_a_copied_project_runs_again_without_duplicating_rows_and_writes_only_its_copy(
        spark, flights_project, tmp_path):
    """A copy of the project, with the original moved aside (nothing of it can be read or
    written meanwhile), runs the data steps and the scoring again, forced (nothing is new, so
    they would be skipped as up to date): they rewrite the same rows, never add any. The
    metadata holds places relative to the project (the lake, validation results) or
    re-anchored (MLflow's artifact locations), so the copy works with the original gone; the
    first training-set version still rebuilds to its digest from its manifest. One run for
    both checks: on the copy, the shared project is left as the slice run made it."""
    import shutil
    import sqlite3

    from mlflow import MlflowClient

    conf, _ = flights_project
    original = conf.parent / ".sparkml"
    copy = tmp_path / "copied"
    shutil.copytree(conf.parent, copy, symlinks=True)
    lake_root = copy / ".sparkml" / "lake"
    before = lake_counts(spark, lake_root)
    aside = conf.parent / ".sparkml-aside"
    original.rename(aside)
    try:
        result = run_main(copy / "conf", "run", "flights_data", "--force")
        rebuilt = run_main(copy / "conf", "trainset", "rebuild", "flight_delays@1")
        wrote_to_original = original.exists()
    finally:
        if original.exists():
            shutil.rmtree(original)
        aside.rename(original)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not wrote_to_original
    assert lake_counts(spark, lake_root) == before
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert json.loads(rebuilt.stdout.strip().splitlines()[-1])["matches"] is True
    # The slice run's second candidate recorded its comparison with the first.
    client = MlflowClient(tracking_uri=f"sqlite:///{copy / '.sparkml' / 'mlflow.db'}")
    tags = client.get_model_version("flight_delays", "2").tags
    assert tags["compared_with"].startswith("champion v1"), tags
    assert tags["decision"] == "promoted to champion" or tags["decision"].startswith("not promoted: ")
    # Every place MLflow recorded (the scoring run's too) is under the copy's artifacts.
    artifacts = (copy / ".sparkml" / "mlartifacts").as_uri()
    with sqlite3.connect(copy / ".sparkml" / "mlflow.db") as db:
        places = [row[0] for query in ("SELECT artifact_location FROM experiments WHERE name != "
                                       "'Default'", "SELECT artifact_uri FROM runs",
                                       "SELECT storage_location FROM model_versions")
                  for row in db.execute(query)]
    assert places and all(p.startswith(artifacts + "/") for p in places), places


@pytest.mark.parametrize("args, message", [
    (["score", "flight_delays@nosuchalias", "--input", "entities.flights_to_score",
      "--output", "predictions.flight_delays"], "model flight_delays has no alias 'nosuchalias'"),
    (["score", "no_such_model", "--input", "entities.flights_to_score",
      "--output", "predictions.flight_delays"], "no registered model named 'no_such_model'"),
    (["score", "flight_delays@champion", "--input", "entities.flights_to_score",
      "--output", "../outside"], "is not a lake table name"),
    (["score", "flight_delays@champion", "--input", "entities.flights_to_score",
      "--output", "trainsets.flight_delays"], "is in zone trainsets, and this output goes only to predictions.NAME"),
    (["score", "flight_delays@champion", "--input", "raw.weather",
      "--output", "predictions.flight_delays"], "input table raw.weather lacks column flight_id"),
    (["score", "flight_delays@champion", "--input", "entities.flights_to_score",
      "--output", "predictions.flight_delays", "--run-date", "yesterday"], "run_date 'yesterday' is not a date"),
])
def test_bad_scoring_input_exits_2_and_leaves_output_unchanged(spark, flights_project, args, message,
                                                               capsys, monkeypatch):
    conf, _ = flights_project
    log = conf.parent / ".sparkml" / "lake" / "predictions" / "flight_delays" / "_delta_log"
    before = sorted(p.name for p in log.iterdir())
    monkeypatch.setenv("SPARKML_JARS_DIR", str(JARS_DIR))
    # In-process (the shared session) to spare a JVM start per case; same code path as the CLI.
    assert main(["--conf", str(conf), "--env", "test", *args]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in log.iterdir()) == before


def test_listing_commands_answer_in_json(spark, flights_project):
    conf, _ = flights_project
    expected = {
        ("features", "list"): {"origin_weather_hourly", "plane_attributes", "carrier_delays",
                               "route_delays"},
        ("trainset", "list"): {"flight_delays"},
        ("models", "list"): {"flight_delays"},
        ("features", "search", "weather"): {"origin_weather_hourly"},
    }
    for args, names in expected.items():
        result = run_main(conf, *args, "--json")
        assert result.returncode == 0, result.stderr
        assert {row["name"] for row in json.loads(result.stdout)} == names, args
    hits = json.loads(run_main(conf, "features", "search", "landed", "--json").stdout)
    assert {h["name"] for h in hits} == {"carrier_delays", "route_delays"}


def test_build_killed_half_way_leaves_the_previous_version(spark, flights_project):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from conftest import cli_env

    conf, _ = flights_project
    table = conf.parent / ".sparkml" / "lake" / "features" / "route_delays"
    before_files = set(table.rglob("*.parquet"))
    before_log = sorted(p.name for p in (table / "_delta_log").glob("*.json"))
    before_rows = count(spark, table)
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "sparkml"), "--conf", str(conf), "--env", "test",
         "features", "build", "route_delays", "--full"],  # its sources are unchanged
        env=cli_env(), cwd=conf.parent, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill it as soon as it has written data files that are not committed yet, or else well
    # into the build (JVM up, computing and validating).
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and proc.poll() is None:
        if set(table.rglob("*.parquet")) - before_files:
            break
        time.sleep(0.05)
    still_running = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert still_running, "the build finished before it could be killed"
    assert sorted(p.name for p in (table / "_delta_log").glob("*.json")) == before_log
    assert count(spark, table) == before_rows  # readable, at the previous version
    # The next build completes it, while a second command builds another table at the same
    # time: no embedded (Derby) metastore is involved, so the two do not fight over one.
    cmd = [str(Path(sys.executable).parent / "sparkml"), "--conf", str(conf), "--env", "test",
           "features", "build"]
    both = [subprocess.Popen([*cmd, name, "--full"], env=cli_env(), cwd=conf.parent, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for name in ("route_delays", "plane_attributes")]
    outputs = [proc.communicate(timeout=600) for proc in both]
    assert [proc.returncode for proc in both] == [0, 0], [err[-2000:] for _, err in outputs]
    assert count(spark, table) == before_rows
    assert not (conf.parent / "metastore_db").exists() and not (conf.parent / "derby.log").exists()


