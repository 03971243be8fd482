"""The slice pipeline fixture stops the session once, with the pipeline's own error, when its
run fails or does not finish, instead of erroring every test that reads the slice."""

import subprocess

import conftest
import pytest


def test_a_failed_slice_run_stops_the_session_with_the_pipelines_own_error(tmp_path, monkeypatch):
    failed = subprocess.CompletedProcess([], 1, "", "Traceback ...\nerror: feature table x: its transformation raised\n")
    monkeypatch.setattr(conftest, "run_cli", lambda *args, **kwargs: failed)
    with pytest.raises(pytest.exit.Exception) as stopped:
        conftest._slice_run(tmp_path)
    assert stopped.value.returncode == 1
    assert str(stopped.value.msg).endswith("failed with exit 1: error: feature table x: its transformation raised")


def test_a_slice_run_that_does_not_finish_stops_the_session_naming_the_limit(tmp_path, monkeypatch):
    def slow(*args, timeout, **kwargs):
        raise subprocess.TimeoutExpired(["sparkml"], timeout)

    monkeypatch.setattr(conftest, "run_cli", slow)
    with pytest.raises(pytest.exit.Exception, match=f"did not finish within {conftest.SLICE_TIMEOUT} s"):
        conftest._slice_run(tmp_path)
