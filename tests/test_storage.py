"""The storage layer's contract, the same on every store: a local disk here and a real S3 API
server (moto's server mode on 127.0.0.1); HDFS in test_remote_lake.py with its mini-cluster
(`check_contract` from here)."""

from __future__ import annotations

import threading

import pytest

from servers import S3_CREDENTIALS, s3_server
from sparkml_platform.core.errors import ConfigError, JobFailed
from sparkml_platform.storage.files import Storage


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3_server(tmp_path_factory.mktemp("s3"), buckets=("contract",)) as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(monkeypatch):
    for key, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(key, value)


def s3_storage(endpoint: str) -> Storage:
    return Storage({"spark.hadoop.fs.s3a.endpoint": endpoint,
                    "spark.hadoop.fs.s3a.path.style.access": "true"})


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path, aws_env):
    if request.param == "local":
        return Storage().location(str(tmp_path / "root"))
    endpoint = request.getfixturevalue("s3")
    return s3_storage(endpoint).location(f"s3a://contract/{tmp_path.name}")


def check_contract(root) -> None:
    """What every store must do, as the platform uses it."""
    folder = root / "zone" / "table"
    assert not folder.exists() and folder.names() == [] and folder.read_or_none() is None
    (folder / "a.json").write_text('{"v": 1}')
    (folder / "sub" / "b.json").write_text("b")
    assert folder.is_dir() and (folder / "a.json").exists() and not (folder / "a.json").is_dir()
    assert folder.names() == ["a.json", "sub"] and (root / "zone").names() == ["table"]
    (folder / "a.json").write_text('{"v": 2}')  # replaced whole
    assert (folder / "a.json").read_text() == '{"v": 2}'
    with pytest.raises(FileNotFoundError):
        (folder / "missing.json").read_text()
    # Published once: the second create loses and leaves the first's content.
    assert (folder / "once.json").create("first") is True
    assert (folder / "once.json").create("second") is False
    assert (folder / "once.json").read_text() == "first"
    # Eight creators at once: exactly one wins.
    wins = []
    threads = [threading.Thread(target=lambda i=i: wins.append((folder / "race.json").create(str(i))))
               for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(wins) == [False] * 7 + [True]
    assert (folder / "race.json").read_text() in {str(i) for i in range(8)}
    (folder / "once.json").unlink()
    assert not (folder / "once.json").exists()
    folder.remove_tree()
    assert not folder.exists() and (root / "zone").names() == []


def test_the_same_contract_on_every_store(root):
    check_contract(root)


def test_locations_name_their_place(tmp_path):
    storage = Storage()
    here = storage.location("lake", base=tmp_path)
    assert here.local == tmp_path / "lake" and str(here / "features" / "t") == f"{tmp_path}/lake/features/t"
    assert storage.location(f"file://{tmp_path}/lake") == here
    assert (here / "a").parent == here and (here / "a" / "b").relative_to(here) == "a/b"
    remote = Storage().location("s3a://bucket/lake/")
    assert str(remote) == "s3a://bucket/lake" and remote.local is None
    assert str(remote.parent) == "s3a://bucket" and remote.parent.parent == remote.parent
    assert str(Storage().location("/lake").parent) == "/"
    assert str(Storage().location("hdfs://nn:8020/data/lake").parent) == "hdfs://nn:8020/data"


@pytest.mark.parametrize("value, message", [
    ("gs://bucket/lake", "the scheme gs:// is not supported for the lake; use a local path, "
                         "file://, hdfs:// or s3a://"),
    ("s3://bucket/lake", "use s3a:// for a lake on S3"),
    ("hdfs:///lake", "a hdfs:// location needs a NameNode host:port"),
    ("s3a:///lake", "a s3a:// location needs a bucket"),
    ("file://otherhost/data/lake", "a file:// location is on this machine"),
    ("s3a://AKIAEXAMPLE:s3cret@bucket/lake", "may not carry credentials"),
])
def test_a_place_the_platform_cannot_reach_is_refused(value, message):
    with pytest.raises(ConfigError, match=message):
        Storage().location(value)


def test_a_location_with_credentials_is_refused_without_showing_them():
    with pytest.raises(ConfigError) as refused:
        Storage().location("s3a://AKIAEXAMPLE:s3cret@bucket/lake")
    assert "s3cret" not in str(refused.value) and "AKIAEXAMPLE" not in str(refused.value)


@pytest.mark.parametrize("key", [
    "spark.hadoop.fs.s3a.secret.key", "spark.hadoop.fs.s3a.access.key",
    "spark.hadoop.fs.s3a.bucket.acme.ml.secret.key", "spark.hadoop.fs.s3a.encryption.key",
    "spark.executorEnv.AWS_SECRET_ACCESS_KEY", "spark.yarn.appMasterEnv.AWS_SESSION_TOKEN",
])
def test_a_secret_in_a_committed_file_is_refused(key):
    from sparkml_platform.storage.files import refuse_committed_secrets

    with pytest.raises(ConfigError, match=f"spark.conf.{key} holds a secret in a committed file"):
        refuse_committed_secrets({key: "x"}, "conf/base/platform.yml")
    refuse_committed_secrets({"spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000"}, "conf/base/platform.yml")


def test_an_endpoint_that_is_not_one_is_a_configuration_error(aws_env):
    lake = s3_storage("http://minio host:9000").location("s3a://lake/lake")
    with pytest.raises(ConfigError, match="is not an endpoint like"):
        (lake / "features").names()


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


def test_an_endpoint_that_does_not_answer_fails_within_seconds(aws_env):
    import time

    from servers import free_port

    lake = s3_storage(f"http://127.0.0.1:{free_port()}").location("s3a://lake/lake")
    started = time.monotonic()
    with pytest.raises(JobFailed, match=r"S3 bucket lake at http://127.0.0.1:\d+ does not answer"):
        (lake / "features").names()
    assert time.monotonic() - started < 30


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
