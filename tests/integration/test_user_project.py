"""A user's own project, as a new user makes one: `sparkml init`, a regression pipeline on a
small dataset written here, the project's own transformations and estimator, run twice,
a transformation edited, one job through spark-submit.sh, and the model loaded elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, cli_env, run_main, submitted

from sparkml_platform.cli import main
from sparkml_platform.storage import online_stores, places
from sparkml_platform.storage import training_sets as trainset_store

PACKAGE = "stockproj"

SECRETS = ("planted-s3a-secret-4f1c9e", "planted-env-secret-8d2b7a")

SYMBOLS = ("AAA", "BBB", "CCC")

DAYS = 120


def write_prices(path: Path) -> None:
    """Daily closes and volumes of three symbols: seeded random walks."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    dates = pd.bdate_range("2009-01-01", periods=DAYS)
    frames = []
    for i, symbol in enumerate(SYMBOLS):
        close = 50 + 20 * i + np.cumsum(rng.normal(0, 1, DAYS))
        frames.append(pd.DataFrame({"symbol": symbol, "date": dates.strftime("%Y-%m-%d"),
                                    "close": close.round(2),
                                    "volume": rng.integers(1_000, 9_000, DAYS)}))
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(frames).to_csv(path, index=False)


CONF = {
    "sources.yml": {
        "sources": {"prices": {"path": "data/prices.csv", "description": "Daily closes."}},
        "entity_tables": {"price_days": {
            "source": "raw.prices", "transform": f"{PACKAGE}.transformations.price_days",
            "description": "One row per symbol and day, with tomorrow's close."}},
    },
    "features.yml": {"feature_tables": {"price_stats": {
        "description": "Trailing price statistics per symbol.", "owner": "tests", "keys": ["symbol"],
        "event_time": "at", "sources": {"prices": "raw.prices"},
        "transformation": f"{PACKAGE}.transformations.price_stats", "lookback": "7d",
        "features": {"mean_5d": {"type": "double"}, "change_1d": {"type": "double"},
                     "days_seen": {"type": "bigint"}}}}},
    "training_sets.yml": {"training_sets": {"next_close": {
        "label": {"table": "entities.price_days", "keys": ["symbol", "at"], "event_time": "at",
                  "label": "next_close", "filter": "next_close IS NOT NULL",
                  "passthrough": ["close", "volume"]},
        "features": [{"table": "price_stats", "features": ["mean_5d", "change_1d", "days_seen"]}],
        "split": {"type": "time", "validation_start": "2009-04-01", "test_start": "2009-05-01"}}}},
    "models.yml": {"models": {
        # Deterministic (normal equations): run again on the same rows, it equals the champion.
        "close_linear": {
            "training_set": "next_close", "registered_model": "next_close",
            "estimator": {"type": "linear_regression", "params": {"regParam": 0.01}},
            "thresholds": {"rmse": {"max": 20.0, "vs_champion": 0.0},
                           "mae": {"vs_champion": 0.0}, "r2": {"min": 0.5, "vs_champion": 0.0}}},
        # The project's own estimator, tuned as Spark tasks that import the project's package;
        # shrunk towards the mean, it loses to the linear champion (a normal outcome).
        "close_ridge": {
            "training_set": "next_close", "registered_model": "next_close",
            "estimator": {"type": "sklearn", "class": f"{PACKAGE}.estimators.ShrunkRidge",
                          "task": "regression", "params": {"shrink": 0.9}},
            "search_space": {"alpha": {"loguniform": [0.1, 10.0]}},
            "tuning": {"max_evals": 2, "parallelism": 2, "seed": 7},
            "thresholds": {"rmse": {"vs_champion": 0.0}}},
    }},
    "pipelines.yml": {"pipelines": {"daily": {"steps": [
        {"load_sources": ["prices"]},
        {"build_entities": ["price_days"]},
        {"build_features": ["price_stats"]},
        {"build_trainset": "next_close"},
        {"train": "close_linear"},
        {"train": "close_ridge"},
        {"score": {"model": "next_close@champion", "input": "entities.price_days",
                   "output": "predictions.next_close", "run_date": "2009-06-30"}}]},
        # Scores the version the versions test pins (an alias it sets).
        "score_pinned": {"steps": [
            {"score": {"model": "next_close@pinned", "input": "entities.price_days",
                       "output": "predictions.next_close", "run_date": "2009-07-02"}}]}}},
}


@pytest.fixture(scope="module")
def stock_project(tmp_path_factory, spark) -> Path:
    """`sparkml init`, then the configuration and data of a regression pipeline; returns conf/."""
    root = tmp_path_factory.mktemp("users") / "stock-prices"
    assert main(["init", str(root), "--package", PACKAGE]) == 0
    for filename, data in CONF.items():
        (root / "conf" / "base" / filename).write_text(yaml.safe_dump(data, sort_keys=False))
    platform = yaml.safe_load((root / "conf" / "base" / "platform.yml").read_text())
    platform["spark"].update(master="local[2]", shuffle_partitions=2, driver_memory="2g")
    (root / "conf" / "base" / "platform.yml").write_text(yaml.safe_dump(platform))
    # A planted secret, as a user's S3 credentials would be in the git-ignored conf/local/
    # (committed files may not hold one): it must never be recorded.
    (root / "conf" / "local").mkdir(exist_ok=True)
    (root / "conf" / "local" / "platform.yml").write_text(yaml.safe_dump(
        {"spark": {"conf": {"spark.hadoop.fs.s3a.secret.key": SECRETS[0]}}}))
    write_prices(root / "data" / "prices.csv")
    return root / "conf"


def lake_counts(spark, conf: Path) -> dict[str, int]:
    lake = conf.parent / ".sparkml" / "lake"
    return {f"{zone.name}.{table.name}": spark.read.format("delta").load(str(table)).count()
            for zone in sorted(lake.iterdir()) if zone.name != "trainsets"
            for table in sorted(zone.iterdir())}


def mlflow_client(conf: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{conf.parent / '.sparkml' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_regression_pipeline_of_a_users_project_end_to_end(spark, stock_project):
    conf = stock_project
    first = run_main(conf, "run", "daily", env="local")
    assert first.returncode == 0, first.stderr[-4000:] + first.stdout[-2000:]
    # A regressor's summary: RMSE, MAE and R², no "predicted positive".
    assert "model next_close version 1 (close_linear): RMSE " in first.stdout
    assert "R² " in first.stdout and "predicted positive" not in first.stdout
    counts = lake_counts(spark, conf)
    assert counts["raw.prices"] == len(SYMBOLS) * DAYS == counts["predictions.next_close"]

    # Forced: with nothing new every step would be skipped as up to date.
    second = run_main(conf, "run", "daily", "--force", env="local", AWS_SECRET_ACCESS_KEY=SECRETS[1])
    assert second.returncode == 0, second.stderr[-4000:]
    check_no_secret_is_recorded(conf, first, second)
    assert lake_counts(spark, conf) == counts  # nothing duplicated
    client = mlflow_client(conf)
    # The same deterministic model on the same rows equals its champion: promoted, not beaten
    # by a rounded copy of its own values.
    v1, v3 = (client.get_model_version("next_close", v).tags for v in ("1", "3"))
    assert (v1["model_spec"], v3["model_spec"]) == ("close_linear", "close_linear")
    assert v3["metric.rmse"] == v1["metric.rmse"]
    assert v3["compared_with"].startswith("champion v1") and v3["decision"] == "promoted to champion", v3
    # The project's estimator lost to the champion: recorded, and the pipeline went on.
    assert client.get_model_version("next_close", "2").tags["decision"].startswith("not promoted: rmse")

    # The code version everywhere is the project's (not a checkout: a hash of its package).
    code = json.loads(v3["code_version"])
    assert code["project"] == "stock-prices" and code["packages"] == [PACKAGE]
    assert code["git_commit"] is None and len(code["content_hash"]) == 16
    assert code["framework"]["version"]
    manifest = json.loads(run_main(conf, "trainset", "show", "next_close", env=None).stdout)
    assert manifest["code"]["content_hash"] == code["content_hash"]
    shown = json.loads(run_main(conf, "models", "show", "next_close@champion", "--json", env=None).stdout)
    assert {"rmse", "mae", "r2"} <= set(shown["metrics"]) and "roc_auc" not in shown["metrics"]

    check_models_load_on_the_training_sets_own_rows(spark, conf)
    check_monitoring_with_the_event_time_among_the_keys(spark, conf)


def check_monitoring_with_the_event_time_among_the_keys(spark, conf: Path) -> None:
    """`sparkml init`'s example keys its labels by (symbol, at), `at` the event time: monitoring
    joins on each column once, counts a row scored on two run dates once, and records for a
    month without outcomes the rows scored in it."""
    from pyspark.sql import functions as F

    from sparkml_platform import Workspace
    from sparkml_platform.storage import lake

    ws = Workspace(str(conf), "local")
    days = places.table(ws.config, "entities.price_days")
    for run_date in ("2009-07-01", "2009-07-03"):  # the champion scores the same rows twice
        ws.score("next_close@champion", "entities.price_days", "predictions.next_close_twice", run_date)
    # Outcomes known up to April only: May and June are scored without them.
    lake.write(lake.read(spark, days).where("at < TIMESTAMP '2009-05-01 00:00:00'"),
               places.table(ws.config, "entities.price_outcomes"))
    result = ws.monitor("next_close@champion", "entities.price_outcomes", by="month",
                        predictions="predictions.next_close_twice")
    month = F.date_format("at", "yyyy-MM")
    rows = lake.read(spark, days)
    known = {r[0]: r[1] for r in rows.where("next_close IS NOT NULL AND at < TIMESTAMP '2009-05-01 00:00:00'")
             .groupBy(month).count().collect()}
    assert {p: v["rows"] for p, v in result["periods"].items()} == known
    scored = {r[0]: r[1] for r in rows.groupBy(month).count().collect()}
    recorded = {(r.period, r.rows) for r in spark.read.format("delta").load(
        str(places.table(ws.config, result["table"]))).where("kind = 'drift' AND by = 'month'").collect()}
    assert {p: n for p, n in recorded if p >= "2009-05"} == {p: n for p, n in scored.items() if p >= "2009-05"}
    # Against the training set's last 30 days instead of all of it: other distances, same periods.
    from sparkml_platform.config import DriftWindow

    spec = ws.config.models.models[ws.models.show("next_close@champion").tags["model_spec"]]
    spec.monitoring.drift_reference = DriftWindow(last="30d")
    recent = ws.monitor("next_close@champion", "entities.price_outcomes", by="month",
                        predictions="predictions.next_close_twice")
    assert recent["drift"].keys() == result["drift"].keys() and recent["drift"] != result["drift"]
    spec.monitoring.drift_reference = "training_set"


def check_no_secret_is_recorded(conf: Path, *outputs) -> None:
    """Nothing the platform wrote (lake, commit metadata, manifests, MLflow store and
    artifacts, environments, validation results, logs) holds a planted secret."""
    # Read in a process of its own: closing a file descriptor of a SQLite database (or its
    # -wal/-shm) drops every POSIX lock this process holds on it, and an open MLflow store here
    # would then be taken for closed by the next process, which deletes its WAL under it.
    scan = ("import sys, pathlib\n"
            "root, conf, secrets = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:]\n"
            "for path in root.rglob('*'):\n"
            "    if path.is_file() and conf not in path.parents and any(\n"
            "            s.encode() in path.read_bytes() for s in secrets):\n"
            "        print(path)\n")
    done = subprocess.run([sys.executable, "-c", scan, str(conf.parent), str(conf), *SECRETS],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    holding = done.stdout.split()
    holding += [" ".join(out.args) for out in outputs
                if any(secret in out.stdout + out.stderr for secret in SECRETS)]
    assert holding == []
    assert (conf.parent / ".sparkml" / "mlflow.db").stat().st_size > 0  # searched a real store


def check_models_load_on_the_training_sets_own_rows(spark, conf: Path) -> None:
    """Plain `mlflow.pyfunc` on the training set's rows (an integer column among them): the
    Spark model here, the project's estimator in a fresh Python without the project's package."""
    import mlflow

    from sparkml_platform.runtime.project import open_project

    config = open_project(conf)
    man = trainset_store.manifest(config, "next_close")
    rows = trainset_store.read_version(spark, config, man).select(*man["feature_columns"]).limit(40).toPandas()
    assert str(rows["days_seen"].dtype) == "int64" and str(rows["volume"].dtype) == "int32"
    from sparkml_platform.tracking.tracker import Tracker

    with Tracker(config).bound():
        linear = mlflow.pyfunc.load_model("models:/next_close/1").predict(rows)
    assert len(linear) == len(rows)
    data = conf.parent / "rows.parquet"
    rows.to_parquet(data)
    script = (
        "import sys, mlflow, pandas as pd\n"
        f"assert not any('{PACKAGE}' in p or 'stock-prices' in p for p in sys.path)\n"
        "out = mlflow.pyfunc.load_model('models:/next_close/2').predict(pd.read_parquet(sys.argv[1]))\n"
        "print(len(out), float(out[0]))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",) and not k.startswith("SPARKML_")}
    env["MLFLOW_TRACKING_URI"] = config.tracking_uri  # plain MLflow, as a user outside the platform
    done = subprocess.run([sys.executable, "-c", script, str(data)], capture_output=True, text=True,
                          cwd=REPO.parent, env=env, timeout=300)
    assert done.returncode == 0, submitted(done)
    assert done.stdout.split()[0] == str(len(rows))


def test_a_changed_feature_definition_becomes_a_new_version_and_each_model_keeps_its_own(spark, stock_project):
    """After the pipeline test, the project's transformation is edited while model versions
    under aliases were trained on it: the build is refused (nothing written); with `version:
    2` (the new code as its own function) a build through spark-submit.sh (no PYTHONPATH, the
    user's shared jar cache) makes price_stats@2 beside price_stats, the champion scores on its
    own version row for row as before, a retrain on @2 is compared with the champion on the
    same test rows through the champion's own features, and the online store serves each
    model its own version. Then the old function is edited in place and retired: the models
    trained on it are refused by score, score_batch and serve."""
    import pandas as pd
    from pyspark.sql import functions as F

    from sparkml_platform import Workspace
    from sparkml_platform.core.errors import ConfigError
    from sparkml_platform.runtime.project import open_project
    from sparkml_platform.serving.online_requests import check_row
    from sparkml_platform.serving.server import ServedModel
    from sparkml_platform.tracking import registry

    conf = stock_project
    root = conf.parent / ".sparkml" / "lake"
    if not (root / "features" / "price_stats").exists():  # run on its own
        assert run_main(conf, "run", "daily", env=None).returncode == 0
    ws = Workspace(str(conf))
    client = ws.tracker.client  # the in-process commands' store, not a second SQLite engine on it
    champion = client.get_model_version_by_alias("next_close", "champion")
    ridge = max((mv for mv in client.search_model_versions("name = 'next_close'")
                 if mv.tags.get("model_spec") == "close_ridge"), key=lambda mv: int(mv.version))
    # Any alias protects what a version was trained on; this one stays whatever a retrain decides.
    client.set_registered_model_alias("next_close", "pinned", champion.version)
    client.set_registered_model_alias("next_close", "online", ridge.version)
    v1_log = root / "features" / "price_stats" / "_delta_log"
    v1_commits = sorted(v1_log.glob("*.json"))
    entity_rows = spark.read.format("delta").load(str(root / "entities" / "price_days"))

    def champion_scores():
        return ws.score_batch(f"next_close/{champion.version}", entity_rows) \
            .select("symbol", "at", "value").orderBy("symbol", "at").toPandas()

    before = champion_scores()

    # 1. Edited in place under aliased models: refused, naming them and the two ways on.
    code = conf.parent / PACKAGE / "transformations.py"
    source = code.read_text()
    assert "rowsBetween(-4, 0)" in source
    code.write_text(source.replace("rowsBetween(-4, 0)", "rowsBetween(-2, 0)"))
    refused = run_main(conf, "features", "build", "price_stats", env=None)
    assert refused.returncode == 2, refused.stderr
    for said in (f"next_close version {champion.version} (", "pinned", f"next_close version {ridge.version} (",
                 "the transformation's code changed", "Nothing written",
                 "feature_tables.price_stats.version to 2", "--retire"):
        assert said in refused.stderr, (said, refused.stderr)
    assert sorted(v1_log.glob("*.json")) == v1_commits

    # 2. Version 2, the new code as a function of its own: built beside version 1.
    body = source[source.index("def price_stats("):]
    body = body[:body.index("\ndef ") if "\ndef " in body else len(body)]
    code.write_text(source + "\n\n" + body.replace("def price_stats(", "def price_stats_v2(")
                    .replace("rowsBetween(-4, 0)", "rowsBetween(-2, 0)"))
    features_yml = conf / "base" / "features.yml"
    declared = yaml.safe_load(features_yml.read_text())
    declared["feature_tables"]["price_stats"].update(
        version=2, transformation=f"{PACKAGE}.transformations.price_stats_v2")
    features_yml.write_text(yaml.safe_dump(declared, sort_keys=False))
    env = {k: v for k, v in cli_env().items() if k not in ("PYTHONPATH", "SPARKML_JARS_DIR")}
    done = subprocess.run([str(REPO / "spark-submit.sh"), "--conf-dir", str(conf), "features_build",
                           "price_stats"], capture_output=True, text=True, timeout=600, env=env,
                          cwd=conf.parent)
    assert done.returncode == 0, submitted(done)
    built = json.loads(done.stdout.strip().splitlines()[-1])
    assert built["table"] == "features.price_stats@2" and built["mode"] == "full", built
    assert [(o["table"], o["mode"]) for o in built["older_versions"]] == [("features.price_stats", "up to date")]
    assert sorted(v1_log.glob("*.json")) == v1_commits
    v2 = root / "features" / "price_stats__v2"
    closes = spark.read.format("delta").load(str(root / "raw" / "prices")).where("symbol = 'AAA'").orderBy("date").collect()
    new_rows = spark.read.format("delta").load(str(v2)).where("symbol = 'AAA'").orderBy("at").collect()
    old_rows = spark.read.format("delta").load(str(v1_log.parent)).where("symbol = 'AAA'").orderBy("at").collect()
    assert new_rows[5].mean_5d == pytest.approx(sum(r.close for r in closes[3:6]) / 3)
    assert old_rows[5].mean_5d == pytest.approx(sum(r.close for r in closes[1:6]) / 5)

    # 3. The champion keeps scoring on its own version: the same predictions, row by row.
    pd.testing.assert_frame_equal(champion_scores(), before)
    shown = json.loads(run_main(conf, "features", "show", "price_stats", "--json", env=None).stdout)
    assert shown["table"] == "features.price_stats@2" and shown["table_version"] == 2
    users = {v["name"]: v["used_by_models"] for v in shown["versions"]}
    assert set(users) == {"price_stats", "price_stats@2"} and users["price_stats@2"] == []
    assert f"next_close/{champion.version} (" in " ".join(users["price_stats"])
    missing = run_main(conf, "features", "show", "price_stats@5", env=None)
    assert missing.returncode == 2 and "has no version 5" in missing.stderr
    assert "the lake holds price_stats, price_stats@2" in missing.stderr

    # 4. A retrain on @2, compared with the champion on the same test rows through its own features.
    assert run_main(conf, "trainset", "build", "next_close", env=None).returncode == 0
    config = open_project(conf)
    man = trainset_store.manifest(config, "next_close")
    assert [lk["table"] for lk in man["lookups"]] == ["price_stats@2"]
    trained = run_main(conf, "train", "close_linear", env=None)
    assert trained.returncode in (0, 3), trained.stderr
    newest = max(client.search_model_versions("name = 'next_close'"), key=lambda mv: int(mv.version))
    gate = registry.load_json_artifact(ws.tracker, newest.run_id, "gate.json")
    compared = gate["champion"]
    assert compared["version"] == champion.version and "skipped" not in compared, compared
    assert compared["features"] == {"features.price_stats": json.loads(champion.tags["feature_tables"])["price_stats"]}
    test_rows = trainset_store.read_version(spark, config, man).where("split = 'test'") \
        .select("symbol", "at", "label", "close", "volume")
    own = ws.score_batch(f"next_close/{champion.version}", test_rows).select("label", "value").toPandas()
    rmse = float(((own["value"] - own["label"]) ** 2).mean() ** 0.5)
    assert compared["metrics"]["rmse"] == pytest.approx(rmse, rel=1e-9)
    # Lineage names the version the new model read, with its definition.
    graph = json.loads(run_main(conf, "lineage", f"next_close/{newest.version}", "--format", "json",
                                env=None).stdout)
    tables = {n["id"]: n for n in graph["nodes"] if n["kind"] == "feature_table"}
    assert list(tables) == ["features.price_stats@2"]
    assert tables["features.price_stats@2"]["detail"]["table_version"] == 2
    assert tables["features.price_stats@2"]["detail"]["transformation"] == f"{PACKAGE}.transformations.price_stats_v2"
    assert "raw.prices" in {n["id"] for n in graph["nodes"]}

    # 5. Online: publishing price_stats publishes @2 and the version 1 an aliased model uses.
    published = run_main(conf, "features", "publish", "price_stats", env=None)
    assert published.returncode == 0, published.stderr
    published = json.loads(published.stdout)
    assert published["table"] == "features.price_stats@2"
    assert [o["table"] for o in published["older_versions"]] == ["features.price_stats"]
    store = online_stores.open_store(config)
    key = online_stores.key_json(["symbol"], ["AAA"])
    far = 1 << 62  # as of a time after every row: each key's newest
    old_online, _ = online_stores.as_of(store.lookup("price_stats", [key])[1][0], far, None)
    new_online, _ = online_stores.as_of(store.lookup("price_stats@2", [key])[1][0], far, None)
    assert (old_online["mean_5d"], new_online["mean_5d"]) == pytest.approx((old_rows[-1].mean_5d, new_rows[-1].mean_5d))
    served = ServedModel(ws.tracker, f"next_close/{ridge.version}", store)
    # The entity row at the time of the newest feature row (the store holds each key's newest).
    last = entity_rows.where(F.col("symbol") == "AAA").where(F.col("at") == old_rows[-1].at)
    assert last.count() == 1
    row = last.collect()[0]
    request = {"symbol": "AAA", "close": row.close, "volume": row.volume, "at": row.at.isoformat()}
    answer, _, degraded = served.answer([check_row(0, request, served.columns, served.required)], store)
    assert degraded == {}
    batch = ws.score_batch(f"next_close/{ridge.version}", last).collect()[0]
    assert answer[0]["tables_without_row"] == 0
    assert answer[0]["value"] == pytest.approx(batch["value"], rel=1e-9)

    # 6. Version 1's function edited in place: kept as it is, until retired explicitly.
    code.write_text(code.read_text().replace("rowsBetween(-4, 0)", "rowsBetween(-1, 0)", 1))
    kept = run_main(conf, "features", "build", "price_stats@1", env=None)
    assert kept.returncode == 2 and "--retire" in kept.stderr and "kept as it is" in kept.stderr
    retired = run_main(conf, "features", "build", "price_stats@1", "--retire", env=None)
    assert retired.returncode == 0, retired.stderr
    assert f"next_close/{champion.version}" in json.loads(retired.stdout)["retired"]
    assert "retired" in client.get_model_version("next_close", champion.version).tags["stale_features"]
    predictions = root / "predictions" / "next_close" / "_delta_log"
    commits_before = sorted(predictions.glob("*.json"))
    scored = run_main(conf, "score", "next_close@pinned", "--input", "entities.price_days",
                      "--output", "predictions.next_close", "--run-date", "2009-07-01", env=None)
    assert scored.returncode == 2, scored.stderr
    assert (f"model next_close version {champion.version} was trained on feature table price_stats with "
            f"definition {json.loads(champion.tags['feature_definitions'])['price_stats']}") in scored.stderr
    assert "--retire" in scored.stderr and "nothing was scored" in scored.stderr
    piped = run_main(conf, "run", "score_pinned", env=None)
    assert piped.returncode == 2 and "--retire" in piped.stderr, piped.stderr
    assert sorted(predictions.glob("*.json")) == commits_before
    with pytest.raises(ConfigError, match="retire"):
        ws.score_batch("next_close@pinned", entity_rows)
    assert run_main(conf, "features", "publish", "price_stats@1", env=None).returncode == 0
    with pytest.raises(ConfigError, match="not served"):
        ServedModel(ws.tracker, "next_close@online", store)


def test_a_transformation_that_raises_names_the_table_and_the_function(spark, stock_project, capsys):
    conf = stock_project
    (conf.parent / PACKAGE / "broken.py").write_text(
        "def stats(prices):\n    raise ValueError('no prices for this market')\n")
    overlay = conf / "broken"
    overlay.mkdir(exist_ok=True)
    # A table of its own: a changed definition of price_stats would be refused first (models
    # under aliases were trained on it).
    table = {**CONF["features.yml"]["feature_tables"]["price_stats"], "transformation": f"{PACKAGE}.broken.stats"}
    (overlay / "features.yml").write_text(yaml.safe_dump({"feature_tables": {"broken_stats": table}}))
    result = run_main(conf, "features", "build", "broken_stats", env="broken")
    assert result.returncode == 1
    assert (f"feature table broken_stats: its transformation {PACKAGE}.broken.stats raised "
            "ValueError: no prices for this market (at "
            f"{conf.parent / PACKAGE / 'broken.py'}:2 in stats)") in result.stderr


def test_tuning_whose_trials_all_fail_shows_the_first_error_and_keeps_each(spark, stock_project, capfd):
    from sparkml_platform.core.errors import JobFailed
    from sparkml_platform.runtime.project import open_project
    from sparkml_platform.tracking.tracker import Tracker
    from sparkml_platform.training import train as training

    conf = stock_project
    config = open_project(conf)
    if not (conf.parent / ".sparkml" / "lake" / "trainsets" / "next_close").exists():
        assert run_main(conf, "run", "daily", env=None).returncode == 0
    spec = config.model("close_ridge")
    spec.estimator.params = {"shrink": "much"}  # the project's estimator fails in every trial
    with pytest.raises(JobFailed) as err:
        training.train(spark, config, Tracker(config), "close_ridge")
    message = str(err.value)
    assert "tuning close_ridge: all 2 trials failed; the first with parameters {'alpha': " in message
    said = capfd.readouterr().err  # the trials counted as trials, not as Spark tasks that ended
    assert "tuning close_ridge: 2 trials, 0 finished, 2 failed" in said and " succeeded, " not in said
    assert "TypeError" in message and "estimators.py" in message  # the user's line, in the traceback
    client = mlflow_client(conf)
    trials = client.search_runs([client.get_experiment_by_name("stock-prices").experiment_id],
                                "tags.`sparkml.kind` = 'trial' AND attributes.status = 'FAILED'")
    assert len(trials) >= 2 and all("TypeError" in t.data.tags["sparkml.error"] for t in trials)


def test_two_trainings_at_once_promote_one_after_the_other(spark, stock_project, tmp_path, monkeypatch):
    """Two candidates for one registered model trained at once, in two processes, on an empty
    registry (untuned: the lock is what is tested, not the search). The test holds the promotion lock until both have measured their test metrics
    (both about to read the champion), then lets go: the lock makes the later one compare with
    the earlier one, so the better (the linear model) ends as champion, and each record says
    what it was compared with."""
    import time

    from conftest import cli_env
    from mlflow import MlflowClient

    from sparkml_platform.runtime.project import open_project
    from sparkml_platform.tracking import registry
    from sparkml_platform.tracking.tracker import Tracker

    conf = stock_project
    if not (conf.parent / ".sparkml" / "lake" / "trainsets" / "next_close").exists():
        assert run_main(conf, "run", "daily", env=None).returncode == 0
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = {"SPARKML_MLFLOW_TRACKING_URI": uri, "SPARKML_MLFLOW_ARTIFACT_ROOT": str(tmp_path / "artifacts")}
    for name, value in store.items():
        monkeypatch.setenv(name, value)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    command = [str(Path(sys.executable).parent / "sparkml"), "--conf", str(conf), "train"]
    with registry.promotion_lock(Tracker(open_project(conf)), "next_close"):
        both = {name: subprocess.Popen([*command, name, "--no-tune"], env=cli_env(**store), cwd=conf.parent,
                                       text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for name in ("close_linear", "close_ridge")}
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and all(p.poll() is None for p in both.values()):
            experiment = client.get_experiment_by_name("stock-prices")
            measured = client.search_runs([experiment.experiment_id], "metrics.test_rmse > -1") \
                if experiment else []
            if len(measured) == 2:
                break
            time.sleep(1)
        time.sleep(2)
    done = {name: (proc.communicate(timeout=600), proc.returncode) for name, proc in both.items()}
    versions = {v.tags["model_spec"]: v for v in client.search_model_versions("name = 'next_close'")}
    assert set(versions) == {"close_linear", "close_ridge"}, {n: e[-2000:] for n, ((_, e), _) in done.items()}
    first, later = sorted(versions.values(), key=lambda v: int(v.version))
    assert first.tags["compared_with"] == "no champion yet"
    assert later.tags["compared_with"].startswith(f"champion v{first.version}"), later.tags
    assert client.get_model_version_by_alias("next_close", "champion").tags["model_spec"] == "close_linear"
    assert done["close_linear"][1] == 0
    assert done["close_ridge"][1] == (3 if later.tags["model_spec"] == "close_ridge" else 0)
