"""Locations, the places the platform refuses, and S3 settings, without a server (the contract
every store keeps is run on a real S3 API server in integration/test_storage.py and on HDFS in
cluster/test_remote_lake.py: support/storage_contract.py)."""

from __future__ import annotations

import pytest
from support.servers import S3_CREDENTIALS
from support.storage_contract import s3_storage

from sparkml_platform.core.errors import ConfigError, JobFailed
from sparkml_platform.storage.files import Storage


@pytest.fixture
def aws_env(monkeypatch):
    for key, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(key, value)


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


def test_an_endpoint_that_does_not_answer_fails_within_seconds(aws_env):
    import time

    from support.servers import free_port

    lake = s3_storage(f"http://127.0.0.1:{free_port()}").location("s3a://lake/lake")
    started = time.monotonic()
    with pytest.raises(JobFailed, match=r"S3 bucket lake at http://127.0.0.1:\d+ does not answer"):
        (lake / "features").names()
    assert time.monotonic() - started < 30
