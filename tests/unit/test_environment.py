"""Environment artifacts: capture with a content-hash id, references, diffs, and the runtime
environments built from the metadata (conda file, Dockerfile), with their bad inputs."""

from __future__ import annotations


import pytest
from conftest import make_project

from sparkml_platform.cli import main
from sparkml_platform.runtime import environments as environment


def test_diff_lists_added_removed_and_changed():
    a = {"id": "a", "python": "3.11.7", "packages": {"numpy": "2.0", "pandas": "2.2", "six": "1.0"}}
    b = {"id": "b", "python": "3.11.9", "packages": {"numpy": "2.1", "pandas": "2.2", "rich": "13"}}
    assert environment.diff(a, b) == {
        "from": "a", "to": "b", "identical": False,
        "added": {"rich": "13"},
        "removed": {"six": "1.0"},
        "changed": {"numpy": ["2.0", "2.1"], "python": ["3.11.7", "3.11.9"]},
    }
    assert environment.diff(a, a)["identical"] is True


@pytest.mark.parametrize("ref, message", [
    ("0123456789abcdef", "no environment '0123456789abcdef'"),
    ("0123456789abcdef0123456789abcdef", "no environment, model or MLflow run '0123456789abcdef0123456789abcdef'"),
    ("no_such_model@champion", "no registered model named 'no_such_model'"),
])
def test_unknown_environment_reference_exits_2(tmp_path, capsys, ref, message):
    conf = make_project(tmp_path)
    assert main(["--conf", str(conf), "env", "show", ref]) == 2
    assert message in capsys.readouterr().err


