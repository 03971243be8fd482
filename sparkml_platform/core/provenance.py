"""Where an artifact came from: definition hashes, dotted-path imports, run ids. (The code
version is the project's: `project_of(config).code_version()`, see runtime/project.py.)"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import uuid

from .envvars import SPARKML_RUN_ID
from .errors import ConfigError


def definition_hash(definition) -> str:
    """A stable hash of a config model (pydantic) or plain data."""
    data = definition.model_dump(mode="json") if hasattr(definition, "model_dump") else definition
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_loaded: dict[str, float] = {}  # module -> its file's modification time when (re)loaded


def import_object(dotted: str, where: str, what: str = "object"):
    """`pkg.module.name` -> the object (a transformation, an entity function, an estimator
    class); a ConfigError naming `where` when it is not there. The one dotted-path importer.

    A module whose file changed since this process loaded it is loaded again: in a notebook,
    an edited transformation is what runs (and what its definition hash covers)."""
    module_name, _, attr = dotted.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        source = getattr(module, "__file__", None)
        if source and os.path.exists(source):
            mtime = os.stat(source).st_mtime
            if _loaded.setdefault(module_name, mtime) != mtime:
                module = importlib.reload(module)
                _loaded[module_name] = mtime
        return getattr(module, attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot import {what} {dotted!r}, it does not exist: {exc}") from None


def import_function(dotted: str, where: str):
    func = import_object(dotted, where, "function")
    if not callable(func):
        raise ConfigError(f"{where}: {dotted!r} is not a function")
    return func


def run_id() -> str:
    """This run's id: the scheduler's (SPARKML_RUN_ID, e.g. an Oozie or cron job id) or a new one."""
    return SPARKML_RUN_ID.get() or uuid.uuid4().hex[:16]
