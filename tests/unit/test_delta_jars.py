"""The jar cache (Delta's jars, and the S3 connector's): a missing or broken cache says how to
fix it, and nothing is written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import JARS_DIR

from sparkml_platform.core.errors import SetupError
from sparkml_platform.runtime import class_archive, delta_jars


def test_the_project_cache_is_whole():
    paths = delta_jars.check(JARS_DIR)
    # Delta's jars, then the platform's own (compiled at set-up from sparkml_platform/jvm).
    assert [p.name for p in paths] == [*delta_jars.jar_names(), delta_jars.platform_jar_name()]
    # Set-up fetched the S3 connector too; only sessions with s3a:// places load it.
    with_s3 = [p.name for p in delta_jars.check(JARS_DIR, {"s3a"})]
    assert with_s3[:2] == delta_jars.jar_names() and "hadoop-aws-3.5.0.jar" in with_s3


def test_without_a_jdk_compiler_set_up_says_so_and_builds_nothing(tmp_path, monkeypatch, capsys):
    jars = tmp_path / "jars"
    jars.mkdir()
    monkeypatch.setenv("PATH", str(tmp_path))  # no javac, no jar on it
    assert delta_jars.build_platform_jar(jars) is None
    assert "no JDK compiler (javac) found: the point-in-time join will run as a window" in capsys.readouterr().err
    assert list(jars.iterdir()) == []


def test_missing_cache_says_how_to_fix(tmp_path):
    with pytest.raises(SetupError, match="does not exist: run `make setup`"):
        delta_jars.check(tmp_path / "jars")


def test_broken_jar_says_how_to_fix(tmp_path):
    jars = tmp_path / "jars"
    shutil.copytree(JARS_DIR, jars)
    (jars / delta_jars.jar_names()[0]).write_bytes(b"not a jar")
    with pytest.raises(SetupError, match="is broken .*delete it and run `make setup`"):
        delta_jars.check(jars)


def test_a_new_class_archive_replaces_its_own_kind_only(tmp_path):
    """Two installations (checkouts, virtual environments) may share one jar cache: a new
    archive removes the one made before for the same Spark jars, one for jars that are gone and
    one of unknown origin, and keeps another installation's."""
    other_spark = tmp_path / "other-venv" / "jars"
    other_spark.mkdir(parents=True)
    cache = tmp_path / "cache"
    cache.mkdir()

    def archive(name: str, made_for: Path | None) -> Path:
        path = cache / f"{class_archive.PREFIX}{name}.jsa"
        path.write_bytes(b"archive")
        if made_for is not None:
            path.with_suffix(".source").write_text(str(made_for))
        return path

    mine = tmp_path / "venv" / "jars"
    mine.mkdir(parents=True)
    new = archive("new", mine)
    before = archive("before", mine)
    gone = archive("gone", tmp_path / "removed-venv" / "jars")
    unknown = archive("unknown", None)
    other = archive("other", other_spark)
    class_archive.remove_superseded(new)
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        p.name for p in (new, new.with_suffix(".source"), other, other.with_suffix(".source")))
    assert not before.exists() and not gone.exists() and not unknown.exists()
