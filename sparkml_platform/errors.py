"""The few error classes the platform raises; the CLI maps them to exit codes."""


class SparkmlError(Exception):
    """Base class. `exit_code` is what the CLI exits with (see README, "Exit codes")."""

    exit_code = 1


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
