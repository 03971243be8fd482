"""Credentials in a tracking URI never reach a message or a log."""

from __future__ import annotations

import pytest

from sparkml_platform.config import redact_uri
from sparkml_platform.core.errors import JobFailed
from sparkml_platform.tracking import tracker as tracking


@pytest.mark.parametrize("uri, shown", [
    ("http://bob:s3cret-pw@mlflow.internal:5000", "http://bob:***@mlflow.internal:5000"),
    ("https://mlflow.example.com/?token=s3cret-pw&x=1", "https://mlflow.example.com/?token=***&x=1"),
    ("sqlite:////srv/mlflow.db", "sqlite:////srv/mlflow.db"),
])
def test_a_password_or_token_in_a_uri_is_masked(uri, shown):
    assert redact_uri(uri) == shown


def test_an_unreachable_server_is_named_without_its_password():
    with pytest.raises(JobFailed) as err:
        tracking.check_reachable("http://bob:s3cret-pw@127.0.0.1:9/", timeout=2)
    assert "http://bob:***@127.0.0.1:9/ is not reachable" in str(err.value)
    assert "s3cret-pw" not in str(err.value)
