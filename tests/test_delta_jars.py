"""The Delta jar cache: a missing or broken cache says how to fix it, and nothing is written."""

from __future__ import annotations

import shutil

import pytest

from conftest import JARS_DIR, make_project
from sparkml_platform import delta_jars
from sparkml_platform.cli import main
from sparkml_platform.errors import SetupError


def test_the_project_cache_is_whole():
    paths = delta_jars.check(JARS_DIR)
    assert [p.name for p in paths] == delta_jars.jar_names()


def test_missing_cache_says_how_to_fix(tmp_path):
    with pytest.raises(SetupError, match="does not exist: run `make setup`"):
        delta_jars.check(tmp_path / "jars")


def test_broken_jar_says_how_to_fix(tmp_path):
    jars = tmp_path / "jars"
    shutil.copytree(JARS_DIR, jars)
    (jars / delta_jars.jar_names()[0]).write_bytes(b"not a jar")
    with pytest.raises(SetupError, match="is broken .*delete it and run `make setup`"):
        delta_jars.check(jars)


def test_cli_without_cache_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SPARKML_JARS_DIR", raising=False)
    conf = make_project(tmp_path, {"platform.yml": {"spark": {"jars_dir": str(tmp_path / "nojars")}}})
    code = main(["--conf", str(conf), "--env", "test", "features", "build", "plane_attributes"])
    assert code == 2
    assert f"Delta jar cache {tmp_path / 'nojars'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / ".sparkml" / "lake").exists()
