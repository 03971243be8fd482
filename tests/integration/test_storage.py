"""The storage layer's contract, the same on every store: a local disk here and a real S3 API
server (moto's server mode on 127.0.0.1); HDFS in test_remote_lake.py with its mini-cluster
(`check_contract` from here)."""

from __future__ import annotations

import pytest
from support.servers import S3_CREDENTIALS, s3_server
from support.storage_contract import check_contract, s3_storage

from sparkml_platform.core.errors import JobFailed
from sparkml_platform.storage.files import Storage


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3_server(tmp_path_factory.mktemp("s3"), buckets=("contract",)) as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(monkeypatch):
    for key, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path, aws_env):
    if request.param == "local":
        return Storage().location(str(tmp_path / "root"))
    endpoint = request.getfixturevalue("s3")
    return s3_storage(endpoint).location(f"s3a://contract/{tmp_path.name}")


def test_the_same_contract_on_every_store(root):
    check_contract(root)


def test_a_missing_bucket_is_one_clear_error(s3, aws_env):
    lake = s3_storage(s3).location("s3a://no-such-bucket/lake")
    with pytest.raises(JobFailed, match="S3 bucket no-such-bucket at http://127.0.0.1:[0-9]+: "
                                        "the bucket does not exist"):
        (lake / "features").exists()


def test_a_lake_in_a_missing_bucket_is_refused_before_a_jvm_starts(s3, tmp_path):
    """`sources load` on a lake whose bucket does not exist: said from the store itself, in a
    process where a JVM cannot start (JAVA_HOME leads nowhere), with nothing written."""
    from conftest import make_project, run_cli

    conf = make_project(tmp_path, {"platform.yml": {
        "lake_root": "s3a://no-such-bucket/lake",
        "spark": {"conf": {"spark.hadoop.fs.s3a.endpoint": s3, "spark.hadoop.fs.s3a.path.style.access": "true"}}}})
    done = run_cli(conf, "sources", "load", "planes", timeout=120, JAVA_HOME=str(tmp_path / "no-jvm"),
                   **S3_CREDENTIALS)
    assert done.returncode == 1, done.stderr[-3000:]
    assert f"S3 bucket no-such-bucket at {s3}: the bucket does not exist" in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / ".sparkml" / "lake").exists()


def test_missing_credentials_are_named(s3, monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    lake = s3_storage(s3).location("s3a://contract/lake")
    with pytest.raises(JobFailed, match="no credentials .* set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        (lake / "x.json").read_text()


def test_row_count_from_the_log_equals_a_count_at_every_version(spark, tmp_path):
    """The rows a version holds, read from the per-file record counts of the Delta log (what
    the up-to-date checks and a load's report use instead of a count job)."""
    from sparkml_platform.storage import lake

    path = Storage().location(str(tmp_path / "t"))
    spark.range(10).write.format("delta").save(str(path))
    spark.range(5).repartition(3).write.format("delta").mode("append").save(str(path))
    spark.range(7).write.format("delta").mode("overwrite").save(str(path))
    spark.range(0).write.format("delta").mode("overwrite").save(str(path))
    for version, want in enumerate([10, 15, 7, 0]):
        assert lake.row_count(path, version) == want
        assert lake.read(spark, path, version).count() == want
    assert lake.row_count(path) == 0
