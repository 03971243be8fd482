"""Reading and writing Delta tables under the lake root: the one place that touches storage.

Tables are named `ZONE.NAME` (zones: raw, features, entities, trainsets, predictions) and
live at `LAKE_ROOT/ZONE/NAME`. Names never carry paths, so nothing is written outside the
lake root.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from pathlib import Path

from .errors import ConfigError, JobFailed, NotFoundError

ZONES = ("raw", "features", "entities", "trainsets", "predictions")
REF = re.compile(r"^(%s)\.([a-z][a-z0-9_]*)$" % "|".join(ZONES))


def table_path(lake_root: Path, ref: str, zones: tuple[str, ...] = ZONES) -> Path:
    """`ZONE.NAME` -> its place under the lake root; `zones` are the ones this use may name
    (a step writes only to the zone meant for its output)."""
    match = REF.match(ref)
    if not match:
        raise ConfigError(
            f"table {ref!r} is not a lake table name: use ZONE.NAME with ZONE one of "
            f"{', '.join(ZONES)} and NAME in lower case (paths are not accepted, so that "
            f"nothing is written outside the lake root {lake_root})"
        )
    if match.group(1) not in zones:
        raise ConfigError(f"table {ref!r} is in zone {match.group(1)}, and this output goes only to "
                          f"{' or '.join(z + '.NAME' for z in zones)}")
    path = lake_root / match.group(1) / match.group(2)
    # A symbolic link inside the lake (a zone or a table folder) must not lead out of it.
    resolved, root = path.resolve(), Path(lake_root).resolve()
    if not resolved.is_relative_to(root):
        raise ConfigError(f"table {ref!r}: its location {path} leads to {resolved} (a symbolic "
                          f"link), outside the lake root {root}; nothing is read or written there")
    return path


def exists(path: Path) -> bool:
    return (path / "_delta_log").is_dir()


def read(spark, path: Path, version: int | None = None, ref: str | None = None):
    if not exists(path):
        raise NotFoundError(f"Delta table {ref or path} does not exist (looked in {path})")
    check_log(path, ref)
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(str(path))


def version(spark, path: Path, ref: str | None = None) -> int:
    """The table's newest version, from the names of its commit files (no Spark job).

    Delta keeps the newest commit's JSON file even after a checkpoint; the lake root is a
    POSIX path (see README)."""
    return check_log(path, ref)


# The newest version the platform committed, kept beside the log (Delta ignores `_` paths):
# a log whose newest commit file was removed would otherwise read as the older version.
HEAD = "_sparkml_head.json"


def check_log(path: Path, ref: str | None = None) -> int:
    """The newest version, once the log is known whole: no commit missing (before the newest,
    or the newest the platform recorded) and every commit file Delta reads is JSON.

    A damaged log is refused with one line naming the table and the file, instead of Delta
    silently reading an older version or failing with a parser's trace."""
    log, name = path / "_delta_log", ref or str(path)
    versions = sorted(int(p.stem) for p in _commit_files(log))
    head = _read_head(path)
    if not versions and head is None:
        raise NotFoundError(f"Delta table {name} has no commits (looked in {log})")
    missing = sorted(set(range(versions[0], versions[-1] + 1)) - set(versions)) if versions else []
    if head is not None and head > (versions or [-1])[-1]:
        missing.append(head)
    if missing:
        held = f"it holds {versions[0]}..{versions[-1]}" if versions else "it holds none"
        raise JobFailed(f"Delta table {name}: commit {missing[0]} is missing from its log {log} "
                        f"({held}); the table cannot be read as written: restore the file from "
                        "a backup, or rebuild the table")
    checkpoint = _checkpoint(log)
    for number in (v for v in versions if v >= checkpoint):
        _commit_actions(log / f"{number:020d}.json", name)
    return versions[-1]


def _commit_files(log: Path) -> list[Path]:
    """The log's commit files, NNNN.json (not checkpoints, compactions or checksums)."""
    return sorted(p for p in log.glob("[0-9]*.json") if COMMIT_FILE.match(p.name))


COMMIT_FILE = re.compile(r"^\d{20}\.json$")


def _read_head(path: Path) -> int | None:
    try:
        return int(json.loads((path / HEAD).read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no record (a table written by another tool) or a damaged one: no claim


def _record_head(path: Path, version: int) -> None:
    """Record `version` as committed (atomically; never lowers the record)."""
    head = _read_head(path)
    if head is not None and head >= version:
        return
    tmp = path / f".{HEAD}.{os.getpid()}"
    tmp.write_text(json.dumps({"version": version}))
    os.replace(tmp, path / HEAD)


def _checkpoint(log: Path) -> int:
    """The version of the newest checkpoint (commits before it are not read), else 0."""
    try:
        return int(json.loads((log / "_last_checkpoint").read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _commit_actions(entry: Path, name: str) -> list[dict]:
    actions = []
    for number, line in enumerate(entry.read_text(errors="replace").splitlines(), 1):
        try:
            actions.append(json.loads(line))
        except ValueError:
            raise JobFailed(f"Delta table {name}: its commit file {entry} is damaged (line {number} "
                            "is not JSON, the file was cut short or edited): restore it from a "
                            "backup, or rebuild the table") from None
    return actions


def history(spark, path: Path, limit: int = 20) -> list[dict]:
    from delta.tables import DeltaTable

    rows = (
        DeltaTable.forPath(spark, str(path))
        .history(limit)
        .select("version", "timestamp", "operation", "operationMetrics", "userMetadata")
        .collect()
    )
    out = []
    for row in rows:
        meta = row["userMetadata"]
        try:
            meta = json.loads(meta) if meta else None
        except ValueError:
            pass
        out.append({
            "version": row["version"],
            "timestamp": row["timestamp"].isoformat(),
            "operation": row["operation"],
            "rows_written": (row["operationMetrics"] or {}).get("numOutputRows"),
            "metadata": meta,
        })
    return out


def write(
    df,
    path: Path,
    *,
    replace_where: str | None = None,
    partition_by: list[str] | None = None,
    metadata: dict | None = None,
    description: str | None = None,
    properties: dict[str, str] | None = None,
) -> int:
    """Overwrite the table (or only the rows matching `replace_where`) in one Delta commit.

    One commit means a failed or killed run leaves the previous version in place, and a
    re-run replaces instead of appending: no duplicates. A new table is created with its rows,
    `description`, `properties` and column comments in that one commit (never empty first).
    Returns the new table version.
    """
    for attempt in range(CONFLICT_RETRIES + 1):
        try:
            if not exists(path) and (description is not None or properties):
                committed = _create(df, path, partition_by, metadata, description, properties or {})
            else:
                committed = _overwrite(df, path, replace_where, partition_by, metadata)
            _record_head(path, committed)
            return committed
        except Exception as exc:  # noqa: BLE001 - only Delta's write conflicts are handled
            if not _conflict(exc):
                raise
            if attempt == CONFLICT_RETRIES:
                other = (commits(path)[-1]["metadata"] or {}) if exists(path) else {}
                raise JobFailed(
                    f"table {path}: another writer committed to it at the same time "
                    f"({type(exc).__name__}), {CONFLICT_RETRIES + 1} tries in a row; the last "
                    f"commit is run {other.get('run_id', 'unknown')}. Nothing of this run was "
                    "written: run it again when the other writer is done") from None
            # Exponential back-off with full jitter: two writers that keep colliding drift apart.
            time.sleep(random.uniform(0, min(8.0, 0.5 * 2 ** attempt)))


# Delta's optimistic-concurrency conflicts. Every write here replaces a whole table or a
# well-defined part of it, so doing it again on the new snapshot is safe: retried.
CONFLICTS = {"ConcurrentAppendException", "ConcurrentDeleteReadException",
             "ConcurrentDeleteDeleteException", "ConcurrentTransactionException",
             "ConcurrentWriteException", "MetadataChangedException", "ProtocolChangedException",
             "DeltaConcurrentModificationException"}
CONFLICT_RETRIES = 6


def _conflict(exc: BaseException) -> bool:
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & CONFLICTS) or any(name in str(exc)[:3000] for name in CONFLICTS)


def _overwrite(df, path: Path, replace_where, partition_by, metadata) -> int:
    writer = df.write.format("delta").mode("overwrite")
    if replace_where:
        writer = writer.option("replaceWhere", replace_where)
    else:
        writer = writer.option("overwriteSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if metadata:
        writer = writer.option("userMetadata", json.dumps(metadata, sort_keys=True, default=str))
    writer.save(str(path))
    return version(df.sparkSession, path)


def _create(df, path: Path, partition_by, metadata, description, properties) -> int:
    """A new table and its first rows in one commit (DataFrameWriterV2 on the path)."""
    from pyspark.sql import functions as F

    spark = df.sparkSession
    key = "spark.databricks.delta.commitInfo.userMetadata"
    if metadata:
        spark.conf.set(key, json.dumps(metadata, sort_keys=True, default=str))
    try:
        writer = df.writeTo(f"delta.`{path}`").using("delta")
        for name, value in {**properties, **({"comment": description} if description else {})}.items():
            writer = writer.tableProperty(name, value)
        if partition_by:
            writer = writer.partitionedBy(*[F.col(c) for c in partition_by])
        writer.createOrReplace()  # another first build at the same moment: the last one wins
    finally:
        if metadata:
            spark.conf.unset(key)
    return version(spark, path)


def describe(spark, path: Path, description: str, properties: dict[str, str], schema,
             partition_by: list[str] | None = None, metadata: dict | None = None) -> None:
    """Put the table's description, properties and column comments in its own Delta metadata.

    Any Spark reader then sees them with DESCRIBE. A table that does not exist yet gets them
    with its first rows (`write` with `description` and `properties`); an existing one is
    altered only where they differ, so a build whose definition did not change adds no commit.
    """
    import hashlib

    from delta.tables import DeltaTable

    wanted_hash = hashlib.sha256(json.dumps(
        [description, properties, {f.name: f.metadata.get("comment") for f in schema.fields},
         partition_by], sort_keys=True, default=str).encode()).hexdigest()
    applied = path / "_sparkml_table_metadata"  # Delta ignores paths starting with `_`
    if not exists(path) or (applied.exists() and applied.read_text() == wanted_hash):
        return  # created with its first rows, or nothing changed: no Spark job, no commit
    key = "spark.databricks.delta.commitInfo.userMetadata"
    if metadata:
        spark.conf.set(key, json.dumps(metadata, sort_keys=True, default=str))
    try:
        table = DeltaTable.forPath(spark, str(path))
        detail = table.detail().select("description", "properties").collect()[0]
        wanted = {**properties, "comment": description}
        have = {**(detail["properties"] or {}), "comment": detail["description"] or ""}
        changed = {k: v for k, v in wanted.items() if have.get(k) != v}
        if changed:
            pairs = ", ".join(f"{_quote(k)} = {_quote(v)}" for k, v in sorted(changed.items()))
            spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({pairs})")
        current = {f.name: f.metadata.get("comment") for f in table.toDF().schema.fields}
        for field in schema.fields:
            comment = field.metadata.get("comment")
            if comment and field.name in current and current[field.name] != comment:
                spark.sql(f"ALTER TABLE delta.`{path}` ALTER COLUMN `{field.name}` "
                          f"COMMENT {_quote(comment)}")
        applied.write_text(wanted_hash)
    finally:
        if metadata:
            spark.conf.unset(key)


def _quote(text: str) -> str:
    return "'" + str(text).replace("\\", "\\\\").replace("'", "\\'") + "'"


def commits(path: Path) -> list[dict]:
    """Each commit's version, time and user metadata, read from the Delta log without Spark.

    Cheap enough for listings and lineage; `history` (through Spark) is the full record.
    """
    log_dir = path / "_delta_log"
    out = []
    for entry in _commit_files(log_dir):
        info = {}
        for action in _commit_actions(entry, str(path)):
            if "commitInfo" in action:
                info = action["commitInfo"]
        meta = info.get("userMetadata")
        try:
            meta = json.loads(meta) if meta else None
        except ValueError:
            pass
        out.append({"version": int(entry.stem), "timestamp": info.get("timestamp"),
                    "operation": info.get("operation"), "metadata": meta})
    return out
