"""The JVM jars the platform adds to Spark: fetched from Maven Central at set-up, cached once
per user.

The delta-spark wheel on PyPI ships no JVM code, and pyspark's Hadoop has no S3 connector, so
every SparkSession and spark-submit points at this cache (`spark.jars`): the Delta jars
always, Hadoop's S3A connector (`hadoop-aws`, matching pyspark's Hadoop, and the AWS SDK
bundle it is built against) when a configured place is on `s3a://`. It lives in the user's cache directory
(`$XDG_CACHE_HOME/sparkml/jars`, else `~/.cache/sparkml/jars`), so every project of the
user shares it; `platform.yml` `spark.jars_dir` (or SPARKML_JARS_DIR) picks another.
`python -m sparkml_platform.delta_jars fetch [DIR]` fills it; `check` tells how to fix a
missing or broken cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from .errors import SetupError

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
FIX = "run `make setup` (or `python -m sparkml_platform.delta_jars fetch {dir}`)"


def default_dir() -> Path:
    """The user's shared cache: one download serves every project."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "sparkml" / "jars"


def _name(artifact: str) -> str:
    return f"{artifact.split(':')[1]}-{artifact.split(':')[2]}.jar"


def jar_names(schemes=()) -> list[str]:
    """The jars a session needs: Delta's, and those of the storage schemes it uses."""
    return [_name(a) for a in ARTIFACTS + [a for s in sorted(schemes) for a in SCHEME_ARTIFACTS.get(s, [])]]


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
    return paths


def fetch(jars_dir: Path) -> list[Path]:
    """Download every jar (Delta's and the S3 connector's) with Maven into `jars_dir`; a no-op
    when the cache is whole."""
    try:
        return check(jars_dir, SCHEME_ARTIFACTS)
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
    return check(jars_dir, SCHEME_ARTIFACTS, whole=True)


def _whole(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as jar:
            return jar.testzip() is None
    except (zipfile.BadZipFile, OSError):
        return False


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or argv[0] not in ("fetch", "check"):
        print("usage: python -m sparkml_platform.delta_jars fetch|check [DIR] "
              f"(default: {default_dir()})", file=sys.stderr)
        return 2
    try:
        paths = (fetch if argv[0] == "fetch" else check)(Path(argv[1]) if len(argv) == 2 else default_dir())
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print("\n".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
