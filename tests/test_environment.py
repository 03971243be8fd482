"""Environment capture: a content-hash id, a diff, and a clear error for an unknown reference."""

from __future__ import annotations

from sparkml_platform import environment
from sparkml_platform.cli import main
from conftest import make_project


def test_capture_is_stable_and_complete(spark):
    first, second = environment.capture(spark), environment.capture(spark)
    assert first["id"] == second["id"] == environment.environment_id(first)
    assert first["packages"]["pyspark"] == spark.version == first["spark"]
    assert first["java"] and first["scala"].startswith("2.13") and first["delta"]


def test_diff_lists_added_removed_and_changed():
    a = {"python": "3.11.7", "packages": {"numpy": "2.0", "pandas": "2.2", "six": "1.0"}}
    b = {"python": "3.11.9", "packages": {"numpy": "2.1", "pandas": "2.2", "rich": "13"}}
    assert environment.diff(a, b) == {
        "added": {"rich": "13"},
        "removed": {"six": "1.0"},
        "changed": {"numpy": ["2.0", "2.1"], "python": ["3.11.7", "3.11.9"]},
    }


def test_saved_environment_round_trips(tmp_path, spark):
    env = environment.capture(spark)
    environment.save(env, tmp_path)
    assert environment.load(tmp_path, env["id"]) == env


def test_unknown_environment_exits_2(tmp_path, capsys):
    conf = make_project(tmp_path)
    assert main(["--conf", str(conf), "env", "show", "0123456789abcdef"]) == 2
    assert "no environment '0123456789abcdef'" in capsys.readouterr().err
