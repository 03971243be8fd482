"""Online scoring on a copy of the slice project: features published to SQLite and to a real
Redis, `sparkml serve` as its own process answering over HTTP, its predictions equal to
`sparkml score` on the same rows, and the bad input the issue lists."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import prerequisites
import pytest
from conftest import cli_env, run_cli, run_main
from support.online_server import Served, get, post
from support.servers import LOOPBACK, free_port, redis_server, wait_for

from sparkml_platform.storage import places

pytestmark = pytest.mark.slow
TABLES = ["origin_weather_hourly", "plane_attributes", "carrier_delays", "route_delays"]
# What the store holds for the slice's models: the delay tables are looked up with temporal
# accuracy, so from their keys' recent events (NAME~events).
STORED = ["origin_weather_hourly", "plane_attributes", "carrier_delays~events", "route_delays~events"]


@pytest.fixture(scope="module")
def online_project(flights_project, tmp_path_factory):
    """A copy of the slice project (its registry, lake and online store are this module's)."""
    root = tmp_path_factory.mktemp("online") / "project"
    shutil.copytree(flights_project[0].parent, root, symlinks=True)
    for left in (root / ".sparkml").glob("online.db*"):  # a reused project's earlier publishes
        left.unlink()
    # The two delay tables keep a day of recent events online, so requests up to a day before
    # a key's newest landing are answered as of their time (not part of the definition: the
    # models trained on them stay servable).
    features_yml = root / "conf" / "base" / "features.yml"
    text = features_yml.read_text()
    for table in ("carrier_delays", "route_delays"):
        text = text.replace(f"  {table}:\n", f"  {table}:\n    online: {{keep: 1d}}\n", 1)
    features_yml.write_text(text)
    return root / "conf"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("redis")) as (url, _):
        yield url


def sklearn_version(conf: Path, spec: str = "flight_delay_sklearn") -> str:
    from mlflow import MlflowClient

    uri = f"sqlite:///{conf.parent / '.sparkml' / 'mlflow.db'}"
    versions = MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions("name = 'flight_delays'")
    return str(max((v.version for v in versions if v.tags.get("model_spec") == spec), key=int))


def spark_model_logged_before_compiled_predictors(conf: Path, tmp: Path) -> str:
    """A new version of the slice's Spark ML model as a platform version before compiled
    predictors logged it: the same model and feature spec, in a run without the record."""
    import mlflow

    from sparkml_platform.runtime.project import open_project
    from sparkml_platform.tracking.tracker import Tracker

    with Tracker(open_project(conf, "test")).bound():
        client = mlflow.MlflowClient()
        gbt = client.get_model_version("flight_delays", sklearn_version(conf, "flight_delay_gbt"))
        spec = client.download_artifacts(gbt.run_id, "feature_spec.json", str(tmp))
        run = client.create_run(client.get_run(gbt.run_id).info.experiment_id)
        client.log_artifact(run.info.run_id, spec)
        client.set_terminated(run.info.run_id)
        return client.create_model_version("flight_delays", gbt.source, run_id=run.info.run_id,
                                           tags={"model_spec": "flight_delay_gbt_before"}).version


def publish(conf: Path, store: str | None = None, *args: str) -> list[dict]:
    extra = {"SPARKML_ONLINE_STORE": store} if store else {}
    out = []
    for table in TABLES:
        done = run_main(conf, "features", "publish", table, *args, **extra)
        assert done.returncode == 0, done.stderr[-3000:]
        out.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


def newest_keys(spark, conf: Path, table: str) -> int:
    from pyspark.sql import functions as F

    from sparkml_platform.runtime.project import open_project

    definition = open_project(conf, "test").feature_table(table)
    df = spark.read.format("delta").load(str(conf.parent / ".sparkml" / "lake" / "features" / table))
    return df.where(F.col(definition.event_time).isNotNull()).select(*definition.keys).distinct().count()




def test_publish_writes_each_keys_newest_row_then_only_what_changed(spark, online_project):
    from pyspark.sql import functions as F

    from sparkml_platform import Workspace
    from sparkml_platform.storage import lake

    conf = online_project
    first = publish(conf)
    assert [p["mode"] for p in first] == ["full"] * 4
    assert [p["written"] for p in first] == [newest_keys(spark, conf, t) for t in TABLES]
    assert {p["mode"] for p in publish(conf)} == {"up to date"}  # idempotent

    # The table moves on: one carrier's newest row changes, another carrier disappears.
    ws = Workspace(conf, "test", spark=spark)
    path = places.table(ws.config, "features.carrier_delays")
    rows = ws.features.read("carrier_delays")
    carriers = sorted(r.carrier for r in rows.select("carrier").distinct().collect())
    changed, gone = carriers[0], carriers[1]
    newest = rows.where(F.col("carrier") == changed).agg(F.max("as_of")).collect()[0][0]
    moved = rows.where(F.col("carrier") != gone).withColumn(
        "carrier_late_rate_7d", F.when((F.col("carrier") == changed) & (F.col("as_of") == newest),
                                    F.lit(0.999)).otherwise(F.col("carrier_late_rate_7d")))
    lake.write(moved.localCheckpoint(), path)
    done = run_main(conf, "features", "publish", "carrier_delays")
    assert json.loads(done.stdout.strip().splitlines()[-1])["mode"] == "incremental"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["written"], result["deleted"]) == (1, 1)
    store = ws.online_store
    from sparkml_platform.storage.online_stores import as_of, key_json

    generation, (kept, missing) = store.lookup("carrier_delays", [key_json(["carrier"], [changed]),
                                                                       key_json(["carrier"], [gone])])
    assert as_of(kept, 1 << 62, None)[0]["carrier_late_rate_7d"] == 0.999 and missing is None
    shown = ws.features.show("carrier_delays")["online"]
    assert shown["version"] == lake.version(spark, path) and not shown["behind"] and shown["age_seconds"] < 600
    assert shown["rows"] == shown["rows_held"] == len(carriers) - 1

    # A table larger than local_read_max_mb is reduced by Spark: the same incremental publish.
    third = carriers[2]
    newest = rows.where(F.col("carrier") == third).agg(F.max("as_of")).collect()[0][0]
    lake.write(moved.withColumn("carrier_late_rate_7d", F.when((F.col("carrier") == third) & (F.col("as_of") == newest),
                                                            F.lit(0.5)).otherwise(F.col("carrier_late_rate_7d")))
               .localCheckpoint(), path)
    ws.config.platform.local_read_max_mb = 0
    by_spark = ws.features.publish("carrier_delays").to_dict()
    assert (by_spark["mode"], by_spark["written"], by_spark["deleted"]) == ("incremental", 1, 0)
    generation, (kept,) = store.lookup("carrier_delays", [key_json(["carrier"], [third])])
    assert as_of(kept, 1 << 62, None)[0]["carrier_late_rate_7d"] == 0.5


def test_commands_that_compute_nothing_start_no_jvm(online_project):
    """Each in a process where a JVM cannot start (JAVA_HOME leads nowhere): shown, listed and
    published from Delta logs, statistics records and delta-rs reads."""
    from sparkml_platform.runtime.project import open_project
    from sparkml_platform.storage import lake, statistics

    conf = online_project
    config = open_project(conf, "test")
    weather = places.table(config, "features.origin_weather_hourly")
    if (recorded := statistics.stats_path(weather, lake.version(None, weather))).exists():
        recorded.unlink()  # computed when shown
    model = f"flight_delays/{sklearn_version(conf)}"
    report = conf.parent / "no-jvm-report.html"
    no_jvm = {"JAVA_HOME": str(conf.parent / "no-jvm")}
    for args in (["features", "show", "origin_weather_hourly", "--json"], ["features", "publish", "plane_attributes", "--full"],
                 ["trainset", "show", "flight_delays"], ["trainset", "list"], ["models", "list"],
                 ["models", "show", model], ["lineage", model], ["sources", "show", "weather"],
                 ["report", model, "--output", str(report)]):
        done = run_cli(conf, *args, timeout=300, **no_jvm)
        assert done.returncode == 0, (args, done.stderr[-3000:])
        if args[:2] == ["features", "show"]:
            shown = json.loads(done.stdout)
            assert shown["latest_statistics"]["rows"] == shown["rows"] > 0 and shown["latest_statistics"]["features"]
        if args[:2] == ["features", "publish"]:
            assert json.loads(done.stdout.strip().splitlines()[-1])["mode"] == "full"
    assert statistics.load(weather, lake.version(None, weather))["features"]
    assert report.stat().st_size > 10_000
    newest = lake.version(None, weather)
    compared = run_cli(conf, "features", "show", "origin_weather_hourly", "--compare", "0", str(newest), "--json",
                       timeout=300, **no_jvm)
    assert compared.returncode == 0 and "temp" in json.loads(compared.stdout)["features"], compared.stderr[-3000:]


def entity_rows(spark, conf: Path, count: int, seed: int):
    """`count` flights to score, each at a random time between 3 hours before the newest weather
    row and 30 minutes after the newest landing: inside what the store keeps of the weather (its
    3-hour lookback), so the online as-of lookup must find the row the batch point-in-time join
    finds, and of the delay tables' recent events (a day before each key's newest landing), so
    it must compute the windows batch scoring computes from the same events."""
    from pyspark.sql import functions as F

    lake_dir = conf.parent / ".sparkml" / "lake"

    def newest(table, column):
        return spark.read.format("delta").load(str(lake_dir / "features" / table)).agg(F.max(column)).collect()[0][0]

    weather = newest("origin_weather_hourly", "observed_at")
    landed = spark.read.format("delta").load(str(lake_dir / "entities" / "flights")).agg(F.max("landed_at"))
    latest = max(weather, landed.collect()[0][0])
    start = weather - dt.timedelta(hours=3)
    span = int((latest - start).total_seconds()) + 1800
    rows = (spark.read.format("delta").load(str(lake_dir / "entities" / "flights_to_score"))
            .orderBy("flight_id").limit(count)
            .withColumn("sched_dep_ts", F.lit(start).cast("timestamp")
                        + F.make_dt_interval(secs=(F.rand(seed) * span).cast("decimal(18,6)"))))
    return rows.localCheckpoint()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_online_predictions_equal_batch_scoring_as_of_each_requests_time(spark, online_project, redis_url,
                                                                          backend, monkeypatch):
    """Both of the slice's models: the scikit-learn one as it is, the Spark ML gradient-boosted
    trees by their compiled form (no JVM in the server); and `score_batch` on a pandas frame
    (the small-data path: the same lookups and model in-process, without Spark)."""
    import pandas as pd
    from conftest import utc

    from sparkml_platform import Workspace

    from sparkml_platform.runtime.project import open_project
    from sparkml_platform.storage import lake

    conf = online_project
    store = redis_url if backend == "redis" else None
    publish(conf, store)
    rows = entity_rows(spark, conf, 300, seed=11 if backend == "redis" else 5)
    lake.write(rows, places.table(open_project(conf, "test"), f"entities.online_check_{backend}"))
    requests = [{k: utc(v).isoformat() + "Z" if isinstance(v, dt.datetime) else v for k, v in r.asDict().items()}
                for r in rows.collect()]
    assert len({r["sched_dep_ts"] for r in requests}) == 300  # 300 different request times
    for spec in ("flight_delay_sklearn", "flight_delay_gbt"):
        version = sklearn_version(conf, spec)
        output = f"online_check_{backend}_{spec}"
        done = run_main(conf, "score", f"flight_delays/{version}", "--input", f"entities.online_check_{backend}",
                        "--output", f"predictions.{output}", "--run-date", "2013-12-31")
        assert done.returncode == 0, done.stderr[-3000:]
        batch = {r.flight_id: (r.probability, r.prediction) for r in spark.read.format("delta").load(
            str(conf.parent / ".sparkml" / "lake" / "predictions" / output)).collect()}
        served = Served(conf, f"flight_delays/{version}", store)
        try:
            online, outside = {}, 0
            for start in range(0, len(requests), 100):
                status, body = served.predict({"rows": requests[start:start + 100]})
                assert status == 200 and "degraded" not in body, body
                assert body["version"] == version
                outside += sum(body.get("rows_before_kept_window", {}).values())
                online.update((r["flight_id"], (p["probability"], p["prediction"], p["tables_without_row"]))
                              for r, p in zip(requests[start:start + 100], body["predictions"]))
        finally:
            served.stop()
        assert len(online) == len(batch) == 300 and outside == 0, spec
        worst = max(abs(online[f][0] - batch[f][0]) for f in batch)
        assert worst < 1e-9, spec
        assert all(online[f][1] == batch[f][1] for f in batch), spec
        with monkeypatch.context() as patched:  # the small-data path never asks for a session
            patched.setattr(Workspace, "spark", property(lambda _: pytest.fail("score_batch started Spark")))
            ws = Workspace(conf, "test")
            if store:
                ws.config.platform.online_store.url = store
            frame = pd.DataFrame(requests).assign(sched_dep_ts=lambda d: pd.to_datetime(d["sched_dep_ts"]))
            small = ws.score_batch(f"flight_delays/{version}", frame)
            from sparkml_platform.core.errors import ConfigError

            with pytest.raises(ConfigError, match="score_batch: row 0 lacks column origin .*; nothing scored"):
                ws.score_batch(f"flight_delays/{version}", frame.drop(columns=["origin"]))
        assert list(small["flight_id"]) == [r["flight_id"] for r in requests]
        assert set(small["model_version"]) == {int(version)}
        assert [online[f][2] for f in small["flight_id"]] == list(small["tables_without_row"])  # as served
        assert max(abs(p - batch[f][0]) for f, p in zip(small["flight_id"], small["probability"])) < 1e-9, spec
        assert all(c == batch[f][1] for f, c in zip(small["flight_id"], small["prediction"])), spec


def test_bad_requests_missing_rows_a_store_that_is_down_and_an_alias_that_moves(spark, online_project,
                                                                                tmp_path):
    from deltalake import DeltaTable
    from mlflow import MlflowClient

    conf = online_project
    began = dt.datetime.now(dt.timezone.utc)  # the parity tests logged to the same table before
    uri = f"sqlite:///{conf.parent / '.sparkml' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    first = sklearn_version(conf)
    client.set_registered_model_alias("flight_delays", "online", first)
    from conftest import utc

    weather = spark.read.format("delta").load(str(conf.parent / ".sparkml" / "lake" / "features" /
                                                  "origin_weather_hourly"))
    newest = weather.where("origin = 'EWR'").agg({"observed_at": "max"}).collect()[0][0]
    when = (utc(newest) + dt.timedelta(minutes=1)).isoformat() + "Z"  # within the weather lookback
    with redis_server(tmp_path) as (url, redis_proc):
        publish(conf, url)
        served = Served(conf, "flight_delays@online", url, "--poll-seconds", "1")
        try:
            row = {"flight_id": "f1", "carrier": "UA", "origin": "EWR", "dest": "ORD", "tailnum": "N12345",
                   "distance": 719.0, "dep_hour": 9, "dep_weekday": 3, "sched_dep_ts": when}
            status, body = served.predict(row)  # one row, as it is
            assert status == 200 and "origin_weather_hourly" not in body["rows_missing_features"]
            answered = [body["predictions"][0]["tables_without_row"]]
            # Without an event time a row is scored as of now: weather older than its lookback
            # (3 hours) is not served.
            now = served.predict([{k: v for k, v in row.items() if k != "sched_dep_ts"}])[1]
            assert now["rows_missing_features"].get("origin_weather_hourly") == 1
            answered.append(now["predictions"][0]["tables_without_row"])
            status, body = post(served.url + "/predict", None, raw=b'{"rows": [')
            assert status == 400 and body["error"].startswith("malformed JSON")
            status, body = served.predict({"rows": [row, {k: v for k, v in row.items() if k != "origin"}]})
            assert status == 400 and "row 1 lacks column origin" in body["error"]
            # What a client sends wrong is 400 or 413 with a message, never 500.
            hostile = [(b'{"distance": Infinity}', 400, "Infinity is not a number JSON allows"),
                       (json.dumps({**row, "distance": "abc"}).encode(), 400,
                        "row 0: column 'distance' is \"abc\", expected a number"),
                       (json.dumps([row, {**row, "carrier": ["UA"]}]).encode(), 400,
                        "row 1: column 'carrier' is [\"UA\"], expected a single string, not a list"),
                       (json.dumps({**row, "origin": {"a": 1}}).encode(), 400, "not a object"),
                       (json.dumps({**row, "tailnum": "\ud800"}).encode(), 400, "lone UTF-16 surrogate"),
                       (b"[" * 50_000 + b"]" * 50_000, 400, "nests deeper than"),
                       (json.dumps({"rows": [row] * 1001}).encode(), 413, "1001 rows in one request"),
                       # dep_hour's type is not in this model's signature (Any): the model raises
                       (json.dumps({**row, "dep_hour": "abc"}).encode(), 422, "could not score these rows")]
            for raw, code, message in hostile:
                status, body = post(served.url + "/predict", None, raw=raw)
                assert (status, message in body.get("error", "")) == (code, True), (raw[:80], status, body)
            # A body announced larger than the limit is refused before it is read.
            import http.client

            connection = http.client.HTTPConnection(LOOPBACK, served.port, timeout=10)
            connection.putrequest("POST", "/predict")
            connection.putheader("Content-Length", "50000000")
            connection.endheaders()
            refused = connection.getresponse()
            assert refused.status == 413 and "more than the 1048576" in json.loads(refused.read())["error"]
            connection.close()
            # A key with no online row: null features, scored (as batch scoring does) and counted.
            status, body = served.predict([{**row, "tailnum": "NO-SUCH-PLANE", "carrier": "ZZ"}])
            assert status == 200 and body["rows_missing_features"] == {"plane_attributes": 1,
                                                                      "carrier_delays": 1,
                                                                      "route_delays": 1}
            assert 0 <= body["predictions"][0]["probability"] <= 1
            answered.append(body["predictions"][0]["tables_without_row"])
            assert get(served.url + "/metadata")[1]["counts"]["rows_missing_features"] >= 4
            # A null key is no missing column: scored with null features, as batch scoring does.
            status, body = served.predict([{**row, "tailnum": None}])
            assert status == 200 and body["rows_missing_features"].get("plane_attributes") == 1
            answered.append(body["predictions"][0]["tables_without_row"])

            # The alias moves to another version: served within the poll, no restart.
            import mlflow

            from sparkml_platform.runtime.project import open_project
            from sparkml_platform.tracking.tracker import Tracker

            with Tracker(open_project(conf, "test")).bound():  # the same model again, a new version
                second = mlflow.register_model(client.get_model_version("flight_delays", first).source,
                                               "flight_delays", tags={"model_spec": "flight_delay_sklearn"}).version
            client.set_registered_model_alias("flight_delays", "online", second)
            wait_for(lambda: get(served.url + "/metadata")[1]["version"] == str(second), "alias followed",
                     timeout=30)
            moved = served.predict(row)[1]
            assert moved["version"] == str(second)
            answered.append(moved["predictions"][0]["tables_without_row"])
            # To a version it cannot load (a Spark ML model logged without a compiled predictor):
            # it keeps serving the one it has, and /ready and /metadata say which version was not
            # loaded and why.
            old = spark_model_logged_before_compiled_predictors(conf, tmp_path)
            client.set_registered_model_alias("flight_delays", "online", old)
            wait_for(lambda: "not_loaded" in get(served.url + "/ready")[1], "refusal shown", timeout=30)
            status, ready = get(served.url + "/ready")
            assert status == 200 and ready["version"] == str(second), ready
            assert ready["not_loaded"]["version"] == str(old)
            assert "logged before compiled predictors" in ready["not_loaded"]["reason"]
            assert get(served.url + "/metadata")[1]["not_loaded"] == ready["not_loaded"]

            # Redis restarts empty (no persistence): /ready says so at once, and answers say which
            # tables they were scored without (body and header) instead of a silent 200.
            port = url.rsplit(":", 1)[1].split("/")[0]
            redis_proc.terminate()
            redis_proc.wait(timeout=30)
            empty = subprocess.Popen([prerequisites.find("redis-server"), "--port", port, "--bind", LOOPBACK,
                                      "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_for(lambda: "degraded" in get(served.url + "/ready")[1], "ready flips", timeout=30)
                status, ready = get(served.url + "/ready")
                assert ready["degraded"].keys() == set(STORED) and "holds no marker" in ready["reason"]
                answer = urllib.request.urlopen(urllib.request.Request(
                    served.url + "/predict", data=json.dumps(row).encode(),
                    headers={"Content-Type": "application/json"}), timeout=10)
                body = json.loads(answer.read())
                assert answer.status == 200 and set(body["degraded"]) == set(STORED)
                assert sorted(answer.headers["X-Sparkml-Degraded"].split(",")) == sorted(STORED)
                assert body["predictions"][0]["tables_without_row"] == 4
                answered.append(4)
                publish(conf, url)  # published again: served again within a poll
                wait_for(lambda: get(served.url + "/ready")[0] == 200, "ready again", timeout=30)
                assert "degraded" not in served.predict(row)[1]
                answered.append(answered[0])
            finally:
                empty.terminate()
                empty.wait(timeout=30)
            # The store goes down: 503 within a second, and the server stays up.
            started = time.monotonic()
            status, body = served.predict(row)
            assert status == 503 and "does not answer" in body["error"]
            assert time.monotonic() - started < 1.5
            assert get(served.url + "/health")[0] == 200 and get(served.url + "/ready")[0] == 503
        finally:
            served.stop()
    log = DeltaTable(str(conf.parent / ".sparkml" / "lake" / "predictions" / "online_flight_delays"))
    logged = [r for r in log.to_pyarrow_table().to_pylist() if r["received_at"] >= began]
    # Every answered row (the refused requests answered none), written at shutdown.
    assert [r["model_version"] for r in logged].count(int(second)) == 3 and len(logged) == 7
    assert sorted(r["missing_features"] for r in logged) == sorted(answered)


def test_a_publish_under_load_and_a_killed_one_never_serve_fewer_rows_and_a_killed_server_logs_all(
        spark, online_project):
    """Requests from 4 clients during a full publish and during one killed (SIGKILL) once its new
    generation is half written: never a table missing that was there before. Then the server
    itself is SIGKILLed under load, and the next start writes every answered request to the log."""
    import sqlite3
    import threading

    from deltalake import DeltaTable

    conf = online_project
    publish(conf)
    db = conf.parent / ".sparkml" / "online.db"

    def generations() -> list[str]:
        with sqlite3.connect(db) as con:
            return [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                              "AND name LIKE 'gen:origin_weather_hourly:%'")]

    began = dt.datetime.now(dt.timezone.utc)
    weather = spark.read.format("delta").load(str(conf.parent / ".sparkml" / "lake" / "features" /
                                                  "origin_weather_hourly"))
    from conftest import utc

    newest = weather.where("origin = 'EWR'").agg({"observed_at": "max"}).collect()[0][0]
    row = {"flight_id": "f1", "carrier": "UA", "origin": "EWR", "dest": "ORD", "tailnum": "N12345",
           "distance": 719.0, "dep_hour": 9, "dep_weekday": 3,
           "sched_dep_ts": (utc(newest) + dt.timedelta(minutes=1)).isoformat() + "Z"}
    served = Served(conf, f"flight_delays/{sklearn_version(conf)}")
    answers, stop = [], threading.Event()

    def client():
        while not stop.is_set():
            answers.append(served.predict(row))

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        assert run_main(conf, "features", "publish", "origin_weather_hourly", "--full").returncode == 0
        # A publish of a table this small takes a fraction of a second: this one waits after
        # each batch of 50 rows it writes into its new generation, so it is killed before it switches.
        slowed = ("import sys, time\n"
                  "from sparkml_platform.serving import publish\n"
                  "from sparkml_platform.storage import online_stores\n"
                  "fill = online_stores.SqliteStore.fill\n"
                  "online_stores.SqliteStore.fill = lambda self, g, rows: (fill(self, g, rows), time.sleep(2))[0]\n"
                  "write_full = publish.write_full\n"
                  "publish.write_full = lambda store, table, rows, marker: write_full(store, table, rows, marker, 50)\n"
                  "from sparkml_platform.cli import main\n"
                  "sys.exit(main(sys.argv[1:]))\n")
        killed = subprocess.Popen([sys.executable, "-c", slowed, "--conf", str(conf), "--env", "test",
                                   "features", "publish", "origin_weather_hourly", "--full"], env=cli_env(),
                                  cwd=conf.parent, start_new_session=True, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        wait_for(lambda: len(generations()) == 2, "a new generation", procs=[killed], timeout=300, interval=0.05)
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(timeout=30)
        time.sleep(1)
    finally:
        stop.set()
        for thread in clients:
            thread.join()
    assert len(answers) > 50 and {status for status, _ in answers} == {200}
    assert not [b for _, b in answers if "origin_weather_hourly" in b["rows_missing_features"] or "degraded" in b]
    shown = json.loads(run_main(conf, "features", "show", "origin_weather_hourly").stdout)["online"]
    assert not shown["behind"] and shown["rows"] == shown["rows_held"]
    again = run_main(conf, "features", "publish", "origin_weather_hourly")
    assert json.loads(again.stdout.strip().splitlines()[-1])["mode"] == "up to date"
    assert len(generations()) == 1  # what the killed publish left is dropped

    # The server killed under load: what it answered is in the log once the next one starts.
    logged_answers = []
    stop.clear()

    def logged_client():
        while not stop.is_set():
            try:
                status, body = served.predict(row)
            except OSError:  # the server is killed under this request
                return
            if status == 200:
                logged_answers.append(body)

    clients = [threading.Thread(target=logged_client) for _ in range(4)]
    for thread in clients:
        thread.start()
    # Killed once it has answered enough (a count, not a sleep: a busy machine answers fewer per second).
    wait_for(lambda: len(logged_answers) > 20, "answers before the kill", timeout=120, interval=0.05)
    served.proc.send_signal(signal.SIGKILL)
    served.proc.wait(timeout=30)
    stop.set()
    for thread in clients:
        thread.join()
    Served(conf, f"flight_delays/{sklearn_version(conf)}").stop()  # replays what the killed one left
    log = DeltaTable(str(conf.parent / ".sparkml" / "lake" / "predictions" / "online_flight_delays"))
    logged = [r for r in log.to_pyarrow_table().to_pylist() if r["received_at"] >= began]
    ids = [r["request_id"] for r in logged]
    assert len(set(ids)) == len(ids)  # none written twice
    # Every answered request is logged (a request cut by the kill may be logged unanswered).
    answered = {b["request_id"] + "-0" for _, b in answers} | {b["request_id"] + "-0" for b in logged_answers}
    assert len(logged_answers) > 20 and answered <= set(ids) and len(ids) - len(answered) <= 4


def test_serve_refuses_at_start_what_it_cannot_serve(online_project, tmp_path):
    from sparkml_platform.core.errors import ConfigError  # noqa: F401 - exit 2 is its code

    conf = online_project
    empty = f"sqlite:///{tmp_path / 'empty.db'}"

    def serve(ref: str, store: str | None = None):
        return subprocess.run([str(Path(sys.executable).parent / "sparkml"), "--conf", str(conf), "--env", "test",
                               "serve", ref, "--port", str(free_port())], capture_output=True, text=True,
                              timeout=300, env=cli_env(**({"SPARKML_ONLINE_STORE": store} if store else {})),
                              cwd=conf.parent)

    done = serve(f"flight_delays/{sklearn_version(conf)}", empty)
    assert done.returncode == 2, done.stderr
    named, said, _ = done.stderr.partition(" were never published to the online store")
    assert said and all(t in named.rsplit("feature tables ", 1)[-1] for t in TABLES)  # every one named
    assert all(f"sparkml features publish {t}" in done.stderr for t in TABLES)
    assert "serving" not in done.stderr and not (tmp_path / "empty.db").exists()  # refused: nothing made
    done = serve("no_such_model@champion")
    assert done.returncode == 2 and "no registered model named 'no_such_model'" in done.stderr
    done = serve("flight_delays@no_such_alias")
    assert done.returncode == 2 and "model flight_delays has no alias 'no_such_alias'" in done.stderr
    old = spark_model_logged_before_compiled_predictors(conf, tmp_path)
    done = serve(f"flight_delays/{old}")
    assert done.returncode == 2 and (f"model flight_delays version {old} is a Spark ML model logged before "
                                     "compiled predictors") in done.stderr
    assert "train it again to serve it online (sparkml train flight_delay_gbt_before)" in done.stderr

    # A store published from another definition of a table than the model was trained on.
    import sqlite3

    if not (conf.parent / ".sparkml" / "online.db").exists():
        publish(conf)
    other = tmp_path / "other.db"
    with sqlite3.connect(conf.parent / ".sparkml" / "online.db") as source, sqlite3.connect(other) as copy:
        source.backup(copy)
    with sqlite3.connect(other) as copy:
        info = json.loads(copy.execute("SELECT marker FROM sparkml_markers WHERE name = ?",
                                       ("origin_weather_hourly",)).fetchone()[0])
        trained = info["definition"]  # this slice's models were trained on the published version
        copy.execute("UPDATE sparkml_markers SET marker = ? WHERE name = ?",
                     (json.dumps({**info, "definition": "0123456789abcdef"}), "origin_weather_hourly"))
    done = serve(f"flight_delays/{sklearn_version(conf)}", f"sqlite:///{other}")
    assert done.returncode == 2, done.stderr
    assert (f"was trained on feature table origin_weather_hourly with definition {trained} "
            f"(Delta version ") in done.stderr
    assert "holds definition 0123456789abcdef" in done.stderr and "it is not served" in done.stderr
