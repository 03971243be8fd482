"""Where an artifact came from: code version, definition hashes, dotted-path imports."""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import subprocess
from pathlib import Path

from . import __version__
from .errors import ConfigError


@functools.lru_cache(maxsize=None)
def code_version() -> dict:
    """The git commit and whether the tree was dirty; the package version outside a checkout."""
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                                text=True, timeout=10)
        if commit.returncode == 0:
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    cwd=repo, capture_output=True, text=True, timeout=10)
            return {"git_commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip()),
                    "package_version": __version__}
    except (OSError, subprocess.SubprocessError):
        pass
    return {"git_commit": None, "dirty": None, "package_version": __version__}


def definition_hash(definition) -> str:
    """A stable hash of a config model (pydantic) or plain data."""
    data = definition.model_dump(mode="json") if hasattr(definition, "model_dump") else definition
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def import_function(dotted: str, where: str):
    """`pkg.module.func` -> the function; a ConfigError naming `where` when it is not there."""
    module_name, _, attr = dotted.rpartition(".")
    try:
        func = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot import {dotted!r}: {exc}") from None
    if not callable(func):
        raise ConfigError(f"{where}: {dotted!r} is not a function")
    return func


def run_id() -> str:
    """This run's id: the scheduler's (SPARKML_RUN_ID, e.g. an Oozie or cron job id) or a new one."""
    import uuid

    from .envvars import SPARKML_RUN_ID

    return SPARKML_RUN_ID.get() or uuid.uuid4().hex[:16]
