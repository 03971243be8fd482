"""The one SparkSession builder: CLI, jobs, notebooks and tests all get their session here."""

from __future__ import annotations

import logging
import os
import platform
import re
import sys

from ..config import Config
from ..core.errors import ConfigError, SetupError
from . import class_archive
from .delta_jars import check, jars_dir
from .project import project_of
from .spark_conf import BLAS_THREADS, DELTA_CONF, spark_conf

log = logging.getLogger(__name__)

# C1 only reserves a 48 MB code cache, which Spark's generated classes can fill in one long
# command (then nothing more is compiled): the default's 240 MB.
JIT_OPTIONS = {"client": "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m", "server": ""}


def check_jars(config: Config) -> list[str]:
    """The jars a session started here needs (the Delta jars, and the S3 connector's for an
    s3a:// place), or a SetupError saying how to fetch them. Cheap: it only looks at files.
    spark-submit.sh ships the jars with --jars: none to check under it."""
    if "PYSPARK_GATEWAY_PORT" in os.environ:
        return []
    return [str(p) for p in check(jars_dir(config), config.storage_schemes)]


# Spark's own ERROR logs that only repeat, as a Java trace, a failure the platform reports
# itself in one line (a row failing in a task; an MLlib step failing: MLflow tries to save a
# model straight to an s3:// artifact root, which Hadoop cannot, then saves it another way),
# or that Spark recovers from (Janino's "Code grows beyond 64 KB": the plan runs interpreted).
QUIET_LOGGERS = ("org.apache.spark.executor.Executor", "org.apache.spark.scheduler.TaskSetManager",
                 "org.apache.spark.ml.util.Instrumentation",
                 "org.apache.spark.sql.catalyst.expressions.codegen.CodeGenerator",
                 "org.apache.spark.sql.execution.WholeStageCodegenExec")


def quiet_spark_errors(spark) -> None:
    """Silence QUIET_LOGGERS in a session the platform started, unless -v asked for more."""
    if logging.getLogger().isEnabledFor(logging.INFO):
        return
    jvm = spark.sparkContext._jvm
    off = jvm.org.apache.logging.log4j.Level.OFF
    for name in QUIET_LOGGERS:
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(name, off)


def get_spark(config: Config, spark=None, small_inputs: bool = False):
    """Build (or join) the session configured from platform.yml, with Delta on.

    A running session (`spark`, else the active one: a managed notebook's) is joined when it
    has Delta on, whatever jars it was started with; one without Delta is refused with what
    to add. Never silently reused: a session without Delta would write plain Parquet.
    """
    from pyspark.sql import SparkSession

    settings = config.platform.spark
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # the JVM was started by spark-submit
    active = spark or SparkSession.getActiveSession()
    if active is not None:
        _check_compatible(active, spark_conf(settings, []))
        if not submitted:
            ship_project(active, config)
        return active

    jars = check_jars(config)
    conf = spark_conf(settings, jars)
    if config.platform.metastore.database is None and "spark.sql.warehouse.dir" not in settings.conf:
        # No catalog is used: Spark's warehouse folder, made when SQL first runs, goes in the
        # project's .sparkml/ rather than in whatever folder the command ran from.
        conf["spark.sql.warehouse.dir"] = config.path(".sparkml/spark-warehouse").resolve().as_uri()
    if submitted:
        for key in ("spark.jars", "spark.driver.memory"):  # fixed at JVM launch
            conf.pop(key)
    elif options := driver_java_options(config, conf.get("spark.driver.extraJavaOptions"), small_inputs):
        conf["spark.driver.extraJavaOptions"] = options
    if settings.master.startswith("local") and not submitted:
        # Python workers must run the interpreter that has the project's packages (a local
        # session only: a cluster's executors run the packed environment's).
        os.environ["PYSPARK_PYTHON"] = sys.executable
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        # Local mode serves nothing to other machines: bind the driver to loopback.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    if not submitted:  # a local master's tasks run in this driver JVM, started from here
        os.environ.setdefault(BLAS_THREADS, conf[f"spark.executorEnv.{BLAS_THREADS}"])

    builder = SparkSession.builder.appName(settings.app_name)
    # Under spark-submit the master comes from its command line.
    if not submitted:
        builder = builder.master(settings.master)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    _check_compatible(spark, conf)
    spark.sparkContext.setLogLevel("ERROR")
    quiet_spark_errors(spark)
    if submitted:
        check_packed_environment(spark)
    else:  # spark-submit.sh ships the project with --py-files
        ship_project(spark, config)
    return spark


def driver_java_options(config: Config, own: str | None, small_inputs: bool = False,
                        master: str | None = None) -> str:
    """The options of a driver JVM started here: the classes archived at set-up, mapped, and
    the JIT (`spark.driver_jit`; `auto` takes the client JIT for a cluster's driver and for
    `small_inputs`); the user's own options (`own`) last, since the JVM takes a flag's last
    value. `master` is spark-submit.sh's, else the configured one. Measured on two cores: a
    small incremental feature build 22.8 s with the client JIT against 29.3 s, a point-in-time
    join of 16 M rows 38.9 s against 25.8 s."""
    settings = config.platform.spark
    jit = settings.driver_jit
    if jit == "auto":
        jit = "client" if small_inputs or not (master or settings.master).startswith("local") else "server"
    return " ".join(o for o in (class_archive.java_options(jars_dir(config)), JIT_OPTIONS[jit], own) if o)


_shipped: set[tuple[str, str]] = set()


def ship_project(spark, config: Config) -> None:
    """The project's packages, zipped, on the executors' Python path: user-defined functions
    and scikit-learn trials that use the project's code import it there too."""
    zipped = project_of(config).zip(config.root / ".sparkml" / "code")
    if zipped is None:
        return
    key = (spark.sparkContext.applicationId, zipped.name)
    if key not in _shipped:
        spark.sparkContext.addPyFile(str(zipped))
        _shipped.add(key)


# Set by spark-submit.sh from a packed archive's metadata: the Python it was built for.
PACKED_PYTHON, PACKED_ID = "spark.sparkml.environment.python", "spark.sparkml.environment.id"


def check_packed_environment(spark) -> None:
    """Before any work, one task on an executor: can it run the packed environment's Python,
    and is it the version the archive was built for? A clear error instead of a worker crash
    in the middle of a job."""
    want = spark.conf.get(PACKED_PYTHON, None)
    if not want:
        return
    what = f"packed environment {spark.conf.get(PACKED_ID, '?')} (built for Python {want})"
    fix = f"pack it (`sparkml env pack`) with the Python the cluster's nodes have, or install Python {want} on them"

    def probe(_):
        yield platform.python_version()

    try:
        seen = spark.sparkContext.parallelize([0], 1).mapPartitions(probe).collect()[0]
    except Exception as exc:  # noqa: BLE001 - reported as a setup problem below
        text = str(exc)
        found = re.search(r'Cannot run program "[^"]*"[^\n]*|\[PYTHON_VERSION_MISMATCH\][^\n]*', text)
        reason = found.group(0) if found else text.strip().splitlines()[0][:300]
        raise ConfigError(f"the executors cannot run the {what}: {reason}. To fix: {fix}") from None
    if seen.split(".")[:2] != want.split(".")[:2]:
        raise ConfigError(f"the executors run Python {seen}, not the {what}. To fix: {fix}")
    log.info("executors run the %s", what)


def _check_compatible(spark, wanted: dict[str, str]) -> None:
    extensions = [e.strip() for e in (spark.conf.get("spark.sql.extensions", None) or "").split(",")]
    catalog = spark.conf.get("spark.sql.catalog.spark_catalog", None)
    lacking = [f"{key}={value}" for key, value in DELTA_CONF.items()
               if (value not in extensions if key == "spark.sql.extensions" else catalog != value)]
    if lacking:
        raise SetupError(
            "the running SparkSession does not have Delta on (it lacks " + " and ".join(lacking)
            + "): start it with those settings and the delta-spark jars (spark.jars.packages="
            "io.delta:delta-spark_2.13:VERSION, or the cluster's Delta runtime), or stop it "
            "(spark.stop()) and let the Workspace build one from platform.yml")
    for key in ("spark.sql.session.timeZone", "spark.sql.shuffle.partitions"):
        if spark.conf.get(key, None) != wanted[key]:
            log.warning("existing SparkSession has %s=%s; setting %s", key,
                        spark.conf.get(key, None), wanted[key])
            spark.conf.set(key, wanted[key])
