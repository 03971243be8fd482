"""The slice pipeline with its lake on a real HDFS (Hadoop's MiniDFSCluster) and on a real S3 API
(moto's server), both on 127.0.0.1: feature builds, a training-set build, training with its
MLflow artifacts on S3, and scoring. Rows are checked with a reader that shares no code with
the writer (delta-rs) against the same pipeline on a local disk (the `flights_project`)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from conftest import REPO, cli_env, remote_project, run_cli, submitted
from support.servers import S3_CREDENTIALS

pytestmark = [pytest.mark.cluster, pytest.mark.remote_lake]

WINDOW = ["--start", "2013-03-01", "--end", "2013-03-31"]
COMPARED = ["features.route_delays", "features.origin_weather_hourly", "entities.flights_to_score"]


@pytest.fixture(scope="module", params=["hdfs", "s3"])
def remote(request, tmp_path_factory):
    """(conf, lake root, environment for commands, delta-rs storage options, the run's result)."""
    if request.param == "hdfs":
        conf, lake_root, result = request.getfixturevalue("hdfs_project")
        yield conf, lake_root, {}, {}, result
        return
    from support.servers import s3_server

    root = tmp_path_factory.mktemp("lake-on-s3")
    with s3_server(root, buckets=("lake",)) as endpoint:
        conf = remote_project(root, "s3a://lake/lake", {
            "spark.hadoop.fs.s3a.endpoint": endpoint, "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": "false"}, artifact_root="s3a://lake/mlflow")
        options = {"AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
                   "AWS_ACCESS_KEY_ID": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                   "AWS_SECRET_ACCESS_KEY": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}
        yield (conf, "s3a://lake/lake", S3_CREDENTIALS, options,
               run_cli(conf, "run", "flights", timeout=1800, **S3_CREDENTIALS))


def rows(uri: str, options: dict | None = None) -> list[tuple]:
    """Every row of a Delta table read by delta-rs, as sorted tuples of text."""
    from deltalake import DeltaTable

    data = DeltaTable(uri, storage_options=options or None).to_pyarrow_table()
    names = sorted(data.column_names)
    return sorted(tuple(str(v) for v in row) for row in zip(*(data.column(n).to_pylist() for n in names)))


def table_uri(lake_root: str, ref: str) -> str:
    return f"{lake_root}/{ref.replace('.', '/')}"


def test_the_slice_pipeline_runs_with_its_lake_on_a_remote_store(remote, flights_project):
    conf, lake_root, env, options, result = remote
    assert result.returncode == 0, result.stderr[-4000:] + result.stdout[-2000:]
    assert f"lake root: {lake_root}" in result.stdout
    # Nothing of the lake on the project's disk: every table, statistic and manifest is remote.
    assert not (conf.parent / ".sparkml" / "lake").exists()
    local_conf, _ = flights_project
    local_lake = str(local_conf.parent / ".sparkml" / "lake")
    for ref in COMPARED:  # the same rows as the same pipeline on a local disk
        assert rows(table_uri(lake_root, ref), options) == rows(table_uri(local_lake, ref)), ref
    scored = rows(table_uri(lake_root, "predictions.flight_delays"), options)
    assert len(scored) == len(rows(table_uri(lake_root, "entities.flights_to_score"), options)) > 0


def test_a_rerun_on_a_remote_lake_duplicates_nothing_and_a_rebuild_matches(remote):
    conf, lake_root, env, options, result = remote
    assert result.returncode == 0, result.stderr[-4000:]
    from deltalake import DeltaTable

    table = table_uri(lake_root, "features.route_delays")
    before = rows(table, options)
    version = DeltaTable(table, storage_options=options or None).version()
    # Through spark-submit.sh, which ships the jars the lake's scheme needs (S3's for s3a://).
    built = subprocess.run([str(REPO / "spark-submit.sh"), "--conf-dir", str(conf), "--env", "test",
                            "features_build", "route_delays", *WINDOW], capture_output=True,
                           text=True, timeout=1200, env=cli_env(**env))
    assert built.returncode == 0, submitted(built)
    assert json.loads(built.stdout.strip().splitlines()[-1])["rows_written"] > 0
    assert rows(table, options) == before  # the window replaced by the same rows
    listed = run_cli(conf, "features", "list", "--json", **env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    versions = {t["name"]: t["version"] for t in json.loads(listed.stdout)}
    assert versions["route_delays"] == version + 1  # one commit: the window
    rebuilt = run_cli(conf, "trainset", "rebuild", "flight_delays", **env)
    assert rebuilt.returncode == 0, submitted(rebuilt)
    assert json.loads(rebuilt.stdout.strip().splitlines()[-1])["matches"] is True


@pytest.mark.parametrize("remote", ["s3"], indirect=True)
def test_mlflow_artifacts_live_on_s3_and_no_secret_is_written(remote):
    conf, lake_root, env, options, result = remote
    from mlflow import MlflowClient

    assert result.returncode == 0, result.stderr[-4000:]
    uri = f"sqlite:///{conf.parent / '.sparkml' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = client.search_model_versions("name = 'flight_delays'")
    assert versions and all(client.get_run(v.run_id).info.artifact_uri.startswith("s3://lake/mlflow/")
                            for v in versions)
    # The champion was loaded back from S3 to score (the pipeline's last step).
    assert re.search(r"scored [0-9,]+ rows into predictions.flight_delays", result.stdout)
    secret = S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    assert secret not in result.stdout + result.stderr
    for ref in COMPARED + ["predictions.flight_delays"]:
        from deltalake import DeltaTable

        assert secret not in json.dumps(DeltaTable(table_uri(lake_root, ref), storage_options=options).history())
    for version in versions:
        run = client.get_run(version.run_id)
        assert secret not in json.dumps([run.data.params, run.data.tags, dict(version.tags)])


def test_the_storage_contract_on_hdfs(hdfs, tmp_path):
    from support.storage_contract import check_contract

    from sparkml_platform.storage.files import Storage

    check_contract(Storage().location(f"{hdfs.uri}/contract/{tmp_path.name}"))
