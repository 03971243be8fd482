"""The classes a session loads, archived once at set-up for the JVM to map (class-data sharing).

A fresh JVM running Spark with Delta reads, parses and verifies some ten thousand classes
from jars before and during its first jobs; on two cores that is a large part of every
cron-started command. `make setup` runs one small session (Delta writes, reads, a merge,
the point-in-time scan, Arrow both ways) with `-XX:ArchiveClassesAtExit`, into the jar
cache; every session the platform starts from Python (a local master or a client-mode
driver) then maps that archive with `-XX:SharedArchiveFile`. Classes it lacks load as
usual. The archive is named by the JVM binary and Spark's jars it was made with: another
JDK or pyspark looks for another name, and the JVM itself checks the archive against its
own version and class path (a mismatched one is not used, never an error).

    python -m sparkml_platform.runtime.class_archive build [JARS_DIR]
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..config import SparkSettings
from ..storage.pit import FeatureLookup, join_features
from .delta_jars import check, default_dir
from .spark_conf import spark_conf

PREFIX = "sparkml-classes-"
# A JVM that cannot use the archive says so on stdout otherwise; it just runs without.
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"


def _java() -> Path | None:
    """The `java` pyspark launches: $JAVA_HOME/bin/java, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = Path(home) / "bin" / "java" if home else (Path(p) if (p := shutil.which("java")) else None)
    return found.resolve() if found is not None and found.is_file() else None


def _spark_jars() -> Path:
    home = os.environ.get("SPARK_HOME")
    if not home:
        import pyspark

        home = str(Path(pyspark.__file__).parent)
    return Path(home).resolve() / "jars"


def archive_name() -> str | None:
    """The archive's file name for this JVM and these Spark jars (stat calls only), or None
    without a JVM."""
    java = _java()
    if java is None:
        return None
    jars = _spark_jars()
    found = sorted(jars.glob("*.jar")) if jars.is_dir() else []
    # The JVM maps an archive only for the very jar files it was made from (it checks their
    # times): pyspark installed again at the same place (a new clone, a rebuilt venv) is
    # another archive, not the old one refused at every start.
    newest = max((p.stat().st_mtime_ns for p in found), default=0)
    stat, listing = java.stat(), [p.name for p in found]
    key = f"{java}\0{stat.st_size}\0{stat.st_mtime_ns}\0{jars}\0{newest}\0" + "\0".join(listing)
    return f"{PREFIX}{hashlib.sha256(key.encode()).hexdigest()[:12]}.jsa"


def java_options(jars_dir: Path) -> str:
    """The driver's JVM options that map the archive, or "" when there is none for this JVM."""
    name = archive_name()
    if name is None or not (jars_dir / name).is_file():
        return ""
    return f"-XX:SharedArchiveFile={jars_dir / name} -Xshare:auto {QUIET}"


def build(jars_dir: Path) -> Path | None:
    """Make the archive in `jars_dir` (once per JVM and Spark); None where the JVM made none."""
    name = archive_name()
    if name is None:
        return None
    target = jars_dir / name
    if target.is_file():
        return target
    part = target.with_suffix(".part")
    part.unlink(missing_ok=True)
    # The session's JVM writes the archive as it exits, after this child's Python: the child's
    # output pipe, which the JVM holds too, closes only then.
    result = subprocess.run([sys.executable, "-m", "sparkml_platform.runtime.class_archive", "train",
                             str(jars_dir), str(part)], capture_output=True, text=True, timeout=900)
    if result.returncode != 0 or not part.is_file() or part.stat().st_size == 0:
        part.unlink(missing_ok=True)
        print(f"note: no class archive made (sessions start without one, slower):\n"
              f"{(result.stderr or result.stdout)[-2000:]}", file=sys.stderr)
        return None
    part.rename(target)
    target.with_suffix(".source").write_text(str(_spark_jars()))
    remove_superseded(target)
    return target


def remove_superseded(target: Path) -> None:
    """Another installation's archive (a second checkout sharing the cache) stays; one made for
    the same Spark jars as `target` (before another JVM or pyspark), for jars gone, or of
    unknown origin, is removed. Each archive's `.source` names the Spark jars it was made for."""
    spark_jars = target.with_suffix(".source").read_text()
    for old in target.parent.glob(f"{PREFIX}*.jsa"):
        source = old.with_suffix(".source")
        made_for = source.read_text() if source.is_file() else None
        if old != target and (made_for is None or made_for == spark_jars or not Path(made_for).is_dir()):
            old.unlink()
            source.unlink(missing_ok=True)


def train(jars_dir: Path, part: Path) -> None:
    """One small session through what the platform's commands do, its JVM archiving at exit."""
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    conf = spark_conf(SparkSettings(shuffle_partitions=2, driver_memory="1g"),
                      [str(p) for p in check(jars_dir)])
    conf["spark.driver.extraJavaOptions"] = f"-XX:ArchiveClassesAtExit={part} {QUIET}"
    with tempfile.TemporaryDirectory() as tmp:
        conf["spark.sql.warehouse.dir"] = f"{tmp}/warehouse"  # not in the folder set-up ran from
        builder = SparkSession.builder.master("local[2]").appName("sparkml-class-archive")
        for key, value in conf.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        path = f"{tmp}/t"
        rows = spark.range(2000).select(F.col("id"), (F.col("id") % 13).alias("k"),
                                        (F.lit(1_700_000_000) + F.col("id") * 60).cast("timestamp").alias("ts"),
                                        F.rand(1).alias("x"), F.concat(F.lit("s"), F.col("id").cast("string")).alias("s"))
        rows.writeTo(f"delta.`{path}`").using("delta").partitionedBy(F.col("k")).create()
        (rows.where("id < 100").write.format("delta").mode("overwrite").option("replaceWhere", "id < 100")
         .option("txnAppId", "archive").option("txnVersion", 1).save(path))
        table = spark.read.format("delta").load(path)
        spark.sql(f"MERGE INTO delta.`{path}` t USING (SELECT * FROM delta.`{path}` WHERE id < 10) u "
                  "ON t.id = u.id WHEN MATCHED THEN UPDATE SET *")
        spark.sql(f"DESCRIBE HISTORY delta.`{path}`").collect()
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('sparkml.archive' = '1')")
        from pyspark.sql import Window

        newest = Window.partitionBy("k").orderBy("ts")
        summary = (table.withColumn("r", F.row_number().over(newest)).groupBy("k")
                   .agg(F.count("*"), F.avg("x"), F.max("ts"), F.approx_count_distinct("s")))
        arrow = summary.toArrow()
        spark.createDataFrame(arrow).join(table, "k").write.format("noop").mode("overwrite").save()

        labels = table.select("k", (F.col("ts") + F.expr("INTERVAL 30 SECONDS")).alias("ts"), "id")
        lookup = FeatureLookup("t", {"k": "k"}, "ts", {"x": "x_feature"}, lookback_seconds=3600)
        joined, _ = join_features(labels, "ts", [(lookup, table)])
        joined.toPandas()
        spark.stop()


def main(argv: list[str]) -> int:
    if argv[:1] == ["train"] and len(argv) == 3:
        train(Path(argv[1]), Path(argv[2]))
        return 0
    if argv[:1] == ["build"] and len(argv) in (1, 2):
        built = build(Path(argv[1]) if len(argv) == 2 else default_dir())
        print(built or "no class archive made")
        return 0
    print("usage: python -m sparkml_platform.runtime.class_archive build [JARS_DIR]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
