"""`sparkml monitor` on the slice project's champion against the flights' known outcomes, checked
against an independent computation (delta-rs, pandas, scikit-learn, scipy), its bad inputs, and
a schedule's cron runner like the weekly one: a floor breach chains the re-training, and a
second run started at the same time finds the job's lock and does nothing."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, cli_env, run_main

from sparkml_platform.storage import training_sets as trainset_store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def monitored(flights_project, tmp_path_factory):
    """A copy of the slice project (its registry and lake are this module's), on today's
    conf/base (a reused slice may predate it); the champion's spec gets the reference floors."""
    root = tmp_path_factory.mktemp("monitoring") / "project"
    shutil.copytree(flights_project[0].parent, root, symlinks=True)
    shutil.rmtree(root / "conf" / "base")
    shutil.copytree(REPO / "conf" / "base", root / "conf" / "base")
    return root / "conf"


def delta(conf: Path, ref: str):
    from deltalake import DeltaTable

    zone, name = ref.split(".")
    return DeltaTable(str(conf.parent / ".sparkml" / "lake" / zone / name)).to_pandas()


def champion(conf: Path):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{conf.parent / '.sparkml' / 'mlflow.db'}")
    return client, client.get_model_version_by_alias("flight_delays", "champion")


def psi(expected: dict, actual: dict) -> float:
    keys = set(expected) | set(actual)
    return sum((max(actual.get(k, 0), 1e-4) - max(expected.get(k, 0), 1e-4))
               * math.log(max(actual.get(k, 0), 1e-4) / max(expected.get(k, 0), 1e-4)) for k in keys)


def test_monitor_by_month_matches_an_independent_computation_and_breaches_exit_3(monitored):
    import pandas as pd
    from scipy.stats import ks_2samp
    from sklearn.metrics import log_loss, roc_auc_score

    client, mv = champion(monitored)
    result = run_main(monitored, "monitor", "flight_delays@champion", "--outcomes", "entities.flights", "--by", "month")
    # The slice's champion (trained on one day a month) is below the reference floors.
    assert result.returncode == 3, result.stderr
    assert f"model flight_delays version {mv.version}: 2013-1" in result.stderr
    assert "roc_auc" in result.stderr and "is below its floor 0.62" in result.stderr

    # The same numbers computed apart: the predictions joined with the outcomes by flight.
    predictions = delta(monitored, "predictions.flight_delays")
    predictions = predictions[predictions.model_version == int(mv.version)]
    flights = delta(monitored, "entities.flights")
    joined = predictions.merge(flights[["flight_id", "arr_delay"]], on="flight_id")
    joined = joined[joined.arr_delay.notna()]
    joined["label"] = (joined.arr_delay > 15).astype(int)
    joined["month"] = joined.sched_dep_ts.dt.strftime("%Y-%m")
    kept = delta(monitored, "monitoring.flight_delays")
    assert set(kept.model_version) == {int(mv.version)} and set(kept.by) == {"month"}
    metric = kept[kept.kind == "metric"].set_index(["period", "name"])
    assert sorted(joined.month.unique()) == ["2013-10", "2013-11", "2013-12"]
    for month, rows in joined.groupby("month"):
        assert metric.loc[(month, "roc_auc"), "value"] == pytest.approx(roc_auc_score(rows.label, rows.probability), abs=1e-9)
        assert metric.loc[(month, "log_loss"), "value"] == pytest.approx(
            log_loss(rows.label, rows.probability.clip(1e-15, 1 - 1e-15), labels=[0, 1]), abs=1e-9)
        assert metric.loc[(month, "roc_auc"), "rows"] == len(rows)
        assert metric.loc[(month, "roc_auc"), "threshold"] == 0.62
        assert metric.loc[(month, "roc_auc"), "breached"] == (roc_auc_score(rows.label, rows.probability) < 0.62)
    assert f"{metric.loc[('2013-10', 'roc_auc'), 'value']:.4f}" in result.stdout

    # Drift: the training set version the champion learned from against the rows scored.
    from deltalake import DeltaTable

    tags = mv.tags
    train = DeltaTable(str(monitored.parent / ".sparkml" / "lake" / "trainsets" / "flight_delays"
                           / f"v{int(tags['training_set_version']):04d}")).to_pandas()
    scored = predictions.merge(delta(monitored, "entities.flights_to_score"), on=["flight_id", "sched_dep_ts"])
    scored["month"] = scored.sched_dep_ts.dt.strftime("%Y-%m")
    drift = kept[kept.kind == "drift"].set_index(["period", "name", "measure"])
    october = scored[scored.month == "2013-10"]
    # A category: PSI over the carriers (the training set has fewer than 20 of them).
    expected = train.carrier.value_counts(normalize=True).to_dict()
    actual = october.carrier.value_counts(normalize=True).to_dict()
    assert drift.loc[("2013-10", "carrier", "psi"), "value"] == pytest.approx(psi(expected, actual), abs=1e-6)
    assert pd.isna(drift.loc[("2013-10", "carrier", "ks"), "value"])  # no order among categories
    # A number: KS on a 2 % quantile grid, close to the exact two-sample statistic.
    exact = ks_2samp(train.distance, october.distance).statistic
    assert drift.loc[("2013-10", "distance", "ks"), "value"] == pytest.approx(exact, abs=0.03)
    assert {n for (_, n, _) in drift.index} == set(train.columns) - {"flight_id", "sched_dep_ts", "tailnum", "dest",
                                                                      "label", "split"}

    # The MLflow run, linked both ways with the model version.
    client, mv = champion(monitored)
    run = client.get_run(mv.tags["last_monitor_run"])
    assert run.data.tags["sparkml.kind"] == "monitor"
    assert run.data.tags["sparkml.model_version"] == str(mv.version)
    assert run.data.metrics["roc_auc"] == pytest.approx(metric.loc[("2013-12", "roc_auc"), "value"])  # last step
    assert [m.step for m in client.get_metric_history(run.info.run_id, "roc_auc")] == [0, 1, 2]

    # Monitoring the same periods again replaces their rows.
    again = run_main(monitored, "monitor", "flight_delays@champion", "--outcomes", "entities.flights", "--by", "month")
    assert again.returncode == 3
    assert len(delta(monitored, "monitoring.flight_delays")) == len(kept)


def test_monitor_bad_inputs_exit_2_and_write_nothing(monitored, spark):
    from deltalake import DeltaTable

    path = monitored.parent / ".sparkml" / "lake" / "monitoring" / "flight_delays"
    before = DeltaTable(str(path)).version() if path.exists() else None

    result = run_main(monitored, "monitor", "flight_delays@champion", "--outcomes", "raw.weather")
    assert result.returncode == 2
    assert "outcomes table raw.weather lacks key column flight_id of the model's entity" in result.stderr

    # The keys, but nothing the label expression needs.
    lake = monitored.parent / ".sparkml" / "lake"
    spark.read.format("delta").load(str(lake / "entities" / "flights")).select("flight_id", "sched_dep_ts") \
        .write.format("delta").mode("overwrite").save(str(lake / "entities" / "flights_no_outcome"))
    result = run_main(monitored, "monitor", "flight_delays@champion", "--outcomes", "entities.flights_no_outcome")
    assert result.returncode == 2
    assert "outcomes table entities.flights_no_outcome lacks the label" in result.stderr
    assert "'CAST(arr_delay > 15 AS INT)'" in result.stderr

    result = run_main(monitored, "monitor", "no_such_model@champion", "--outcomes", "entities.flights")
    assert result.returncode == 2 and "no_such_model" in result.stderr
    result = run_main(monitored, "monitor", "flight_delays@champion", "--outcomes", "entities.nope")
    assert result.returncode == 2 and "outcomes table entities.nope does not exist" in result.stderr
    assert (DeltaTable(str(path)).version() if path.exists() else None) == before


def test_a_schedules_runner_started_twice_at_once_retrains_after_a_floor_breach_and_locks_out_the_second(monitored):
    """A schedule like the reference weekly one (monitor, then a re-training on its gate
    failure; one candidate here, to save minutes), rendered for cron and started twice at the
    same moment: one run takes the monitor job's lock, breaches a floor (exit 3) and so
    re-trains; the other finds the lock, exits 4 and runs nothing."""
    import yaml

    (monitored / "test" / "schedules.yml").write_text(yaml.safe_dump({"schedules": {"drill": {
        "cron": "0 6 * * 1",
        "jobs": {"monitor": {"job": "monitor", "args": ["flight_delays@champion", "--outcomes", "entities.flights",
                                                        "--by", "month"]},
                 "retrain": {"job": "retrain", "args": ["flight_delay_sklearn"], "after": ["monitor"],
                             "when": "gate_failed"}}}}}))
    client, mv = champion(monitored)
    versions = {v.version for v in client.search_model_versions("name = 'flight_delays'")}
    from sparkml_platform.runtime.project import open_project
    from sparkml_platform.trainsets import build as training_sets

    config = open_project(monitored, "test")
    fresh = training_sets.up_to_date(config, "flight_delays")
    sets = trainset_store.list_versions(config, "flight_delays")
    rendered = run_main(monitored, "schedule", "render", "--target", "cron", "--schedule", "drill",
                        "--output", str(monitored.parent / "schedules"))
    assert rendered.returncode == 0, rendered.stderr
    command = rendered.stdout.strip().split(None, 5)[5]  # what cron runs: the script, its log appended
    runs = [subprocess.Popen(["bash", "-c", command], env=cli_env()) for _ in range(2)]
    codes = sorted(r.wait(timeout=1800) for r in runs)
    logs = monitored.parent / ".sparkml" / "logs"
    log = (logs / "drill.cron.log").read_text()
    assert codes[1] == 4, log  # the second run: locked out
    assert codes[0] in (0, 3), log  # the first: 3 only if the re-trained candidate was not promoted
    assert log.count("drill.monitor: exit 3") == 1 and log.count("drill.monitor: exit 4") == 1, log
    assert log.count("drill.retrain: exit") == 1, log
    assert log.count("drill.retrain: skipped, runs when monitor exits 3 (gate_failed)") == 1, log
    job_logs = [p.read_text() for p in (logs / "drill").glob("*/monitor.log")]
    assert len(job_logs) == 2 and sum("job drill.monitor is still running: run" in t for t in job_logs) == 1
    after = {v.version for v in client.search_model_versions("name = 'flight_delays'")}
    assert len(after - versions) == 1  # re-trained and registered
    # The re-training trains on the newest training-set version again when nothing changed since
    # (earlier tests may have changed an input: then it builds exactly one new version).
    now = trainset_store.list_versions(config, "flight_delays")
    assert now == sets if fresh else len(now) == len(sets) + 1, (fresh, sets, now)
    assert not list((monitored.parent / ".sparkml" / "lake" / "_locks").glob("*.json"))  # all released
