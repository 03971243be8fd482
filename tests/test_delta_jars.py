"""The jar cache (Delta's jars, and the S3 connector's): a missing or broken cache says how to
fix it, and nothing is written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import JARS_DIR, REPO, SHORT_JVM_OPTS, cli_env, make_project, run_cli, submitted
from sparkml_platform.runtime import class_archive
from sparkml_platform.runtime import delta_jars
from sparkml_platform.runtime.project import open_project
from sparkml_platform.runtime.session import driver_java_options
from sparkml_platform.core.errors import SetupError


def test_the_project_cache_is_whole():
    paths = delta_jars.check(JARS_DIR)
    # Delta's jars, then the platform's own (compiled at set-up from sparkml_platform/jvm).
    assert [p.name for p in paths] == [*delta_jars.jar_names(), delta_jars.platform_jar_name()]
    # Set-up fetched the S3 connector too; only sessions with s3a:// places load it.
    with_s3 = [p.name for p in delta_jars.check(JARS_DIR, {"s3a"})]
    assert with_s3[:2] == delta_jars.jar_names() and "hadoop-aws-3.5.0.jar" in with_s3


def test_the_platform_jar_is_compiled_from_its_sources_and_optional(tmp_path):
    import zipfile

    jars = tmp_path / "jars"
    jars.mkdir()
    for name in delta_jars.jar_names():
        shutil.copyfile(JARS_DIR / name, jars / name)
    # Without it a session still starts (its point-in-time join runs as a window).
    assert [p.name for p in delta_jars.check(jars)] == delta_jars.jar_names()
    (jars / "sparkml-platform-jvm-000000000000.jar").write_bytes(b"from older sources")
    built = delta_jars.build_platform_jar(jars)
    assert built == jars / delta_jars.platform_jar_name()
    with zipfile.ZipFile(built) as jar:
        assert "sparkml/pit/AsOfMerge.class" in jar.namelist()
    assert sorted(p.name for p in jars.glob("sparkml-platform-jvm-*")) == [built.name]  # the old one gone
    assert delta_jars.check(jars)[-1] == built


def test_without_a_jdk_compiler_set_up_says_so_and_builds_nothing(tmp_path, monkeypatch, capsys):
    jars = tmp_path / "jars"
    jars.mkdir()
    monkeypatch.setenv("PATH", str(tmp_path))  # no javac, no jar on it
    assert delta_jars.build_platform_jar(jars) is None
    assert "no JDK compiler (javac) found: the point-in-time join will run as a window" in capsys.readouterr().err
    assert list(jars.iterdir()) == []


def test_missing_cache_says_how_to_fix(tmp_path):
    with pytest.raises(SetupError, match="does not exist: run `make setup`"):
        delta_jars.check(tmp_path / "jars")


def test_broken_jar_says_how_to_fix(tmp_path):
    jars = tmp_path / "jars"
    shutil.copytree(JARS_DIR, jars)
    (jars / delta_jars.jar_names()[0]).write_bytes(b"not a jar")
    with pytest.raises(SetupError, match="is broken .*delete it and run `make setup`"):
        delta_jars.check(jars)


def test_cli_without_cache_exits_2_and_writes_nothing(tmp_path):
    """A command in a fresh process (no Spark running to join) needs the jar cache."""
    conf = make_project(tmp_path, {"platform.yml": {"spark": {"jars_dir": str(tmp_path / "nojars")}}})
    done = run_cli(conf, "features", "build", "plane_attributes", SPARKML_JARS_DIR="")
    assert done.returncode == 2, done.stderr
    assert f"jar cache {tmp_path / 'nojars'} does not exist" in done.stderr
    assert not (tmp_path / ".sparkml" / "lake").exists()


def test_a_lake_on_s3_without_the_s3_jars_exits_2_naming_the_fix(tmp_path):
    jars = tmp_path / "jars"
    jars.mkdir()
    for name in delta_jars.jar_names():  # Delta's jars only
        shutil.copyfile(JARS_DIR / name, jars / name)
    conf = make_project(tmp_path, {"platform.yml": {"lake_root": "s3a://lake/lake",
                                                    "spark": {"jars_dir": str(jars)}}})
    done = run_cli(conf, "features", "build", "plane_attributes", SPARKML_JARS_DIR="")
    assert done.returncode == 2, done.stderr
    assert (f"jar cache {jars} lacks hadoop-aws-3.5.0.jar (needed for s3a:// places): run `make setup`"
            in done.stderr)


def test_sessions_start_from_the_class_archive_set_up_made(tmp_path):
    """Set-up archived the classes a session loads; a session started in a fresh process maps
    that archive: Spark's classes, and Delta's (from spark.jars, a class loader of Spark's own),
    come from it rather than from their jars. A cache without it gives no JVM option."""
    import subprocess
    import sys

    archive = JARS_DIR / class_archive.archive_name()
    assert archive.is_file()
    assert class_archive.java_options(JARS_DIR).startswith(f"-XX:SharedArchiveFile={archive} ")
    assert class_archive.java_options(tmp_path) == ""
    conf = make_project(tmp_path)
    log = tmp_path / "classes.log"
    # The session's own JVM options: its archive and JIT, then the user's, which win.
    config = open_project(conf, "test")
    archived, client = class_archive.java_options(JARS_DIR), "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m"
    assert driver_java_options(config, "-Xss4m") == f"{archived} -Xss4m"  # auto: server for local work
    assert driver_java_options(config, None, small_inputs=True) == f"{archived} {client}"
    # spark-submit.sh's master, not the configured one, decides.
    assert driver_java_options(config, None, master="yarn") == f"{archived} {client}"
    config.platform.spark.master = "yarn"  # a cluster's driver only coordinates
    assert driver_java_options(config, None) == f"{archived} {client}"
    config.platform.spark.driver_jit = "server"
    assert driver_java_options(config, None, small_inputs=True) == archived
    code = ("import sys; from sparkml_platform.runtime.project import open_project; "
            "from sparkml_platform.runtime.session import get_spark; "
            "spark = get_spark(open_project(sys.argv[1], 'test'), small_inputs=True); "
            "spark.range(3).write.format('delta').save(sys.argv[2]); "
            "print(spark._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()); "
            # A row failing in a task, and an MLlib pipeline saved where Hadoop has no file
            # system: each raised here, neither logged by Spark as a Java trace.
            "from pyspark.sql import functions as F; "
            "bad = F.udf(lambda x: 1 // (x - 1), 'int'); "
            "from pyspark.ml import Pipeline; from pyspark.ml.feature import SQLTransformer; "
            "model = Pipeline(stages=[SQLTransformer(statement='SELECT * FROM __THIS__')]).fit(spark.range(2)); "
            "failed = []\n"
            "for step in (lambda: spark.range(3).select(bad('id')).collect(), "
            "             lambda: model.write().save('s3://no-bucket/model')):\n"
            "    try: step()\n"
            "    except Exception as exc: failed.append(type(exc).__name__)\n"
            "print('failed:', failed)")
    done = subprocess.run([sys.executable, "-c", code, str(conf), str(tmp_path / "t")], capture_output=True,
                          text=True, timeout=600,
                          env=cli_env(SPARK_SUBMIT_OPTS=f"{SHORT_JVM_OPTS} -Xlog:class+load=info:file={log}"))
    assert done.returncode == 0, submitted(done)
    # The client JIT for small inputs (spark.driver_jit: auto).
    assert "-XX:TieredStopAtLevel=1" in done.stdout
    assert "failed: ['PythonException', 'Py4JJavaError']" in done.stdout
    for noise in ("Exception in task", "Instrumentation", "\tat org.apache", "aborting job"):
        assert noise not in done.stderr, done.stderr[-3000:]
    assert_from_archive(log)

    # A job through spark-submit.sh (a cron's): its driver maps the archive too, takes
    # platform.yml's own driver options (here the class log), and still logs warnings only
    # (log4j2.properties, now a file rather than a class path entry).
    submit_log = tmp_path / "submit-classes.log"
    own_options = make_project(tmp_path / "submitted", {"platform.yml": {"spark": {"conf": {
        "spark.driver.extraJavaOptions": f"-Xlog:class+load=info:file={submit_log}"}}}})
    done = subprocess.run([str(REPO / "spark-submit.sh"), "--conf-dir", str(own_options), "--env", "test",
                           "load_sources", "planes"], capture_output=True, text=True, timeout=600,
                          env=cli_env())
    assert done.returncode == 0, submitted(done)
    assert (tmp_path / "submitted" / ".sparkml" / "lake" / "raw" / "planes" / "_delta_log").is_dir()
    assert " INFO " not in done.stderr, done.stderr[-2000:]
    assert_from_archive(submit_log)


def assert_from_archive(class_log: Path) -> None:
    sources = {}
    for line in class_log.read_text().splitlines():
        if " source: " in line:
            name, source = line.split("] ", 1)[-1].split(" source: ", 1)
            sources[name] = source
    assert sources["org.apache.spark.SparkContext"] == "shared objects file (top)"
    assert sources["org.apache.spark.sql.delta.DeltaLog"] == "shared objects file (top)"


def test_a_new_class_archive_replaces_its_own_kind_only(tmp_path):
    """Two installations (checkouts, virtual environments) may share one jar cache: a new
    archive removes the one made before for the same Spark jars, one for jars that are gone and
    one of unknown origin, and keeps another installation's."""
    other_spark = tmp_path / "other-venv" / "jars"
    other_spark.mkdir(parents=True)
    cache = tmp_path / "cache"
    cache.mkdir()

    def archive(name: str, made_for: Path | None) -> Path:
        path = cache / f"{class_archive.PREFIX}{name}.jsa"
        path.write_bytes(b"archive")
        if made_for is not None:
            path.with_suffix(".source").write_text(str(made_for))
        return path

    mine = tmp_path / "venv" / "jars"
    mine.mkdir(parents=True)
    new = archive("new", mine)
    before = archive("before", mine)
    gone = archive("gone", tmp_path / "removed-venv" / "jars")
    unknown = archive("unknown", None)
    other = archive("other", other_spark)
    class_archive.remove_superseded(new)
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        p.name for p in (new, new.with_suffix(".source"), other, other.with_suffix(".source")))
    assert not before.exists() and not gone.exists() and not unknown.exists()
