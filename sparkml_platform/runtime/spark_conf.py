"""What every session the platform starts is configured with (also what spark-submit.sh and
the class archive's training workload start with): one dict from platform.yml's settings."""

from __future__ import annotations

from ..config import SparkSettings

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


# OpenBLAS (MLlib's native BLAS) runs a thread per core inside every task that calls it, on
# top of Spark's own task per core. MLlib's logistic regression on two cores
# (benchmarks/training_blas.py): 27.5 s with one thread per task, 30.7 s with OpenBLAS's
# default, 28.8 s on MLlib's Java BLAS. As many threads as a task has cores; the user's wins.
BLAS_THREADS = "OPENBLAS_NUM_THREADS"


def spark_conf(settings: SparkSettings, jars: list[str]) -> dict[str, str]:
    """Every setting the platform puts on a session, as one dict (also used by spark-submit)."""
    conf = {
        **DELTA_CONF,
        "spark.jars": ",".join(jars),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        # Delta rebuilds table state with a shuffle; the default 50 partitions dominate small jobs.
        "spark.databricks.delta.snapshotPartitions": str(max(1, settings.shuffle_partitions)),
        "spark.driver.memory": settings.driver_memory,
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Tuning threads submit jobs at once, each to its own pool: share executors fairly.
        "spark.scheduler.mode": "FAIR",
        f"spark.executorEnv.{BLAS_THREADS}": settings.conf.get("spark.task.cpus", "1"),
    }
    conf.update(settings.conf)
    return conf
