"""The few error classes the platform raises; the CLI maps them to exit codes."""

import traceback
from contextlib import contextmanager


class SparkmlError(Exception):
    """Base class. `exit_code` is what the CLI exits with (see docs/reference/exit-codes.md)."""

    exit_code = 1

    def __init__(self, message: str, result: dict | None = None):
        super().__init__(message)
        self.result = result  # what was done before the error (e.g. the rejected model version)


class ConfigError(SparkmlError):
    """Invalid configuration or bad usage: names the file and the key."""

    exit_code = 2


class NotFoundError(SparkmlError):
    """A named feature table, training set, model, environment or table does not exist."""

    exit_code = 2


class SetupError(SparkmlError):
    """The project is not set up (e.g. the Delta jar cache is missing); says how to fix it."""

    exit_code = 2


class JobFailed(SparkmlError):
    """A job ran and failed."""

    exit_code = 1


class GateFailed(SparkmlError):
    """A gate said no: data validation or metric thresholds."""

    exit_code = 3


class JobLocked(SparkmlError):
    """The same scheduled job is still running (its lock in the lake is held): this run does
    nothing."""

    exit_code = 4


@contextmanager
def sql_from_config(where: str):
    """Spark's parse and analysis errors in SQL written in the configuration -> a ConfigError
    that names the file and key (exit 2), instead of a raw Spark trace (exit 1)."""
    from pyspark.errors import AnalysisException

    try:
        yield
    except AnalysisException as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{where}: {first}") from None


def raised_where(exc: BaseException, function) -> str:
    """Where in the user's code `exc` was raised: the innermost frame in the module that
    defines `function` (else the innermost frame outside this package and Spark), as
    ` (at FILE:LINE in NAME)`; empty when none is found."""
    module_file = getattr(getattr(function, "__code__", None), "co_filename", None)
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if module_file and f.filename == module_file]
    theirs = [f for f in frames if "/sparkml_platform/" not in f.filename and "/pyspark/" not in f.filename
              and "/py4j/" not in f.filename]
    frame = (own or theirs or [None])[-1]
    return f" (at {frame.filename}:{frame.lineno} in {frame.name})" if frame else ""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a Spark error runs to pages), or its repr."""
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else repr(exc)
