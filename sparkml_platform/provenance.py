"""Where an artifact came from: definition hashes, dotted-path imports, run ids. (The code
version is the project's: `Config.project.code_version()`, see project.py.)"""

from __future__ import annotations

import hashlib
import importlib
import json

from .errors import ConfigError


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
