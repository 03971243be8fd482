"""The JVM jars the platform adds to Spark: fetched from Maven Central at set-up (and its own,
compiled from `sparkml_platform/jvm`), cached once per user.

The delta-spark wheel on PyPI ships no JVM code, and pyspark's Hadoop has no S3 connector, so
every SparkSession and spark-submit points at this cache (`spark.jars`): the Delta jars
always, Hadoop's S3A connector (`hadoop-aws`, matching pyspark's Hadoop, and the AWS SDK
bundle it is built against) when a configured place is on `s3a://`. It lives in the user's cache directory
(`$XDG_CACHE_HOME/sparkml/jars`, else `~/.cache/sparkml/jars`), so every project of the
user shares it; `platform.yml` `spark.jars_dir` (or SPARKML_JARS_DIR) picks another.
`python -m sparkml_platform.runtime.setup fetch [DIR]` fills it (setup.py: the jars, then the
class archive made from them); `check` tells how to fix a missing or broken cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..core.errors import SetupError

DELTA_VERSION = "4.4.0"  # the Delta release built for Spark 4.2 (pyspark==4.2.0)
SPARK_BINARY = "4.2"
SCALA_BINARY = "2.13"
ARTIFACTS = [
    f"io.delta:delta-spark_{SPARK_BINARY}_{SCALA_BINARY}:{DELTA_VERSION}",
    f"io.delta:delta-storage:{DELTA_VERSION}",
]
# By the scheme of a place that needs them (the lake root, the environments folder, a source).
HADOOP_VERSION = "3.5.0"  # pyspark 4.2's hadoop-client-api
# What hadoop-aws 3.5.0's pom names as compile dependencies.
AWS_SDK_VERSION = "2.35.4"
ANALYTICS_ACCELERATOR_VERSION = "1.3.1"
SCHEME_ARTIFACTS = {
    "s3a": [f"org.apache.hadoop:hadoop-aws:{HADOOP_VERSION}",
            f"software.amazon.awssdk:bundle:{AWS_SDK_VERSION}",
            f"software.amazon.s3.analyticsaccelerator:analyticsaccelerator-s3:{ANALYTICS_ACCELERATOR_VERSION}"],
}
FIX = "run `make setup` (or `python -m sparkml_platform.runtime.setup fetch {dir}`)"
# The platform's own JVM code (the point-in-time join's merge scan), compiled at set-up from
# the sources shipped with the package, against pyspark's jars, into the same cache; named
# by a digest of its sources, so changed sources are compiled again.
JVM_SOURCES = Path(__file__).resolve().parents[1] / "jvm"


def default_dir() -> Path:
    """The user's shared cache: one download serves every project."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "sparkml" / "jars"


def jars_dir(config) -> Path:
    """The project's jars folder: platform.yml `spark.jars_dir`, else the user's shared cache."""
    configured = config.platform.spark.jars_dir
    return config.path(configured) if configured else default_dir()


def _name(artifact: str) -> str:
    return f"{artifact.split(':')[1]}-{artifact.split(':')[2]}.jar"


def jar_names(schemes=()) -> list[str]:
    """The jars a session needs: Delta's, and those of the storage schemes it uses."""
    return [_name(a) for a in ARTIFACTS + [a for s in sorted(schemes) for a in SCHEME_ARTIFACTS.get(s, [])]]


def _jvm_sources() -> list[Path]:
    return sorted(JVM_SOURCES.rglob("*.java"))


def platform_jar_name() -> str:
    digest = hashlib.sha256()
    for source in _jvm_sources():
        digest.update(str(source.relative_to(JVM_SOURCES)).encode() + b"\0" + source.read_bytes())
    return f"sparkml-platform-jvm-{digest.hexdigest()[:12]}.jar"


def build_platform_jar(jars_dir: Path) -> Path | None:
    """Compile the platform's JVM sources into `jars_dir` (once per version of them). Without a
    JDK's `javac` there is nothing to build with: None, and the point-in-time join runs as a
    window (slower, same rows)."""
    target = jars_dir / platform_jar_name()
    if _whole(target):
        return target
    javac, jar = shutil.which("javac"), shutil.which("jar")
    if javac is None or jar is None:
        print("note: no JDK compiler (javac) found: the point-in-time join will run as a window "
              "join, slower; install a JDK and run the set-up again", file=sys.stderr)
        return None
    import pyspark

    classpath = str(Path(pyspark.__file__).parent / "jars" / "*")
    with tempfile.TemporaryDirectory() as classes:
        sources = [str(p) for p in _jvm_sources()]
        for cmd in ([javac, "--release", "17", "-nowarn", "-d", classes, "-cp", classpath, *sources],
                    [jar, "cf", str(target.with_suffix(".part")), "-C", classes, "."]):
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                raise SetupError(f"building the platform's jar failed ({' '.join(cmd[:2])}):\n"
                                 f"{result.stdout}{result.stderr}")
    target.with_suffix(".part").rename(target)
    for old in jars_dir.glob("sparkml-platform-jvm-*.jar"):
        if old != target:
            old.unlink()
    return target


def all_jar_names() -> list[str]:
    return jar_names(SCHEME_ARTIFACTS)


def check(jars_dir: Path, schemes=(), whole: bool = False) -> list[Path]:
    """The cached jars a session with places on `schemes` needs, or a SetupError saying what
    is wrong and how to fix it. Every session checks each jar's index (a cut-short download
    has none); `whole` also checks every entry's CRC (at set-up: the AWS bundle is 650 MB)."""
    fix = FIX.format(dir=jars_dir)
    if not jars_dir.is_dir():
        raise SetupError(f"jar cache {jars_dir} does not exist: {fix}")
    paths = []
    for name in jar_names(schemes):
        path = jars_dir / name
        needed = next((f" (needed for {s}:// places)" for s in schemes
                       if any(_name(a) == name for a in SCHEME_ARTIFACTS.get(s, []))), "")
        if not path.is_file():
            raise SetupError(f"jar cache {jars_dir} lacks {name}{needed}: {fix}")
        try:
            with zipfile.ZipFile(path) as jar:
                if whole and jar.testzip() is not None:
                    raise zipfile.BadZipFile("corrupt entry")
        except (zipfile.BadZipFile, OSError) as exc:
            raise SetupError(f"jar {path} is broken ({exc}): delete it and {fix}") from None
        paths.append(path)
    platform_jar = jars_dir / platform_jar_name()
    if platform_jar.is_file():  # optional: without it the join runs as a window
        paths.append(platform_jar)
    return paths


def fetch(jars_dir: Path) -> list[Path]:
    """Download every jar (Delta's and the S3 connector's) with Maven into `jars_dir`; a no-op
    when the cache is whole."""
    try:
        jars = check(jars_dir, SCHEME_ARTIFACTS)
        built = build_platform_jar(jars_dir)
        return jars if built is None or built in jars else [*jars, built]
    except SetupError:
        pass
    if shutil.which("mvn") is None:
        raise SetupError("Maven (`mvn`) is needed once to fetch the jars; install it")
    jars_dir.mkdir(parents=True, exist_ok=True)
    for artifact in ARTIFACTS + [a for extra in SCHEME_ARTIFACTS.values() for a in extra]:
        name = _name(artifact)
        if _whole(jars_dir / name):
            continue  # fetched before (the AWS bundle is large: never twice)
        (jars_dir / name).unlink(missing_ok=True)
        cmd = ["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={artifact}",
               f"-DoutputDirectory={jars_dir}"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise SetupError(f"fetching {artifact} failed:\n{result.stdout}{result.stderr}")
    build_platform_jar(jars_dir)
    return check(jars_dir, SCHEME_ARTIFACTS, whole=True)


def _whole(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as jar:
            return jar.testzip() is None
    except (zipfile.BadZipFile, OSError):
        return False

