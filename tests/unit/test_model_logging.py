"""What a training run records about its model and data, without training one."""

from __future__ import annotations

import importlib.metadata

from sparkml_platform.modeling import estimators


def test_requirements_are_pinned_as_pip_can_install_them(monkeypatch):
    real = importlib.metadata.version
    fake = {"torch": "2.5.1+cpu", "pyspark": "4.3.0.dev2"}
    monkeypatch.setattr(importlib.metadata, "version", lambda name: fake.get(name) or real(name))
    assert estimators.pinned(["torch", "pyspark", "numpy", "no-such-distribution"]) == [
        "torch==2.5.1", "pyspark==4.3.0", f"numpy=={real('numpy')}", "no-such-distribution"]
