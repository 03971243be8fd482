"""Unit tests run without a JVM: a test here that asks for a Spark session (the `spark`, `ws`
or slice fixtures, or a command that starts one) fails and belongs in tests/integration."""

import pytest

SPARK_FIXTURES = {"spark", "ws", "flights_project", "hdfs", "hdfs_project"}


def pytest_collection_modifyitems(items):
    for item in items:
        needed = SPARK_FIXTURES & set(getattr(item, "fixturenames", ()))
        if needed and "tests/unit/" in str(item.fspath):
            raise pytest.UsageError(f"{item.nodeid} needs {', '.join(sorted(needed))}: "
                                    "it belongs in tests/integration")


@pytest.fixture(autouse=True)
def no_spark_session(monkeypatch):
    from pyspark.sql import SparkSession

    def refuse(builder):
        raise AssertionError("a unit test started a Spark session: it belongs in tests/integration")

    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", refuse)


JVM_PROGRAMS = {"java", "javac", "jar", "spark-submit", "spark-submit.sh", "sparkml"}


@pytest.fixture(autouse=True)
def no_jvm_process(monkeypatch):
    """Nor a Java program (the JDK's, spark-submit, a `sparkml` command that would start one)."""
    import os
    import subprocess

    popen = subprocess.Popen.__init__

    def refuse_java(self, args, *rest, **kwargs):
        program = os.path.basename(str(args[0] if isinstance(args, (list, tuple)) else str(args).split()[0]))
        if program in JVM_PROGRAMS:
            raise AssertionError(f"a unit test ran {program}: it belongs in tests/integration")
        return popen(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse_java)
