"""Reading and writing Delta tables under the lake root: Spark writes their rows, Delta's own
log reader (delta-rs) answers versions and history, and every other byte beside a table goes
through the storage layer (`files.py`), so the lake root may be a local path, HDFS or S3.

Tables are named `ZONE.NAME` (zones: raw, features, entities, trainsets, predictions,
monitoring) and
live at `LAKE_ROOT/ZONE/NAME`. Names never carry paths, so nothing is written outside the
lake root. A feature table's version N > 1 (`features.NAME@N`, features.yml `version:`)
lives beside version 1 at `LAKE_ROOT/features/NAME__vN`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import re
import time
from urllib.parse import unquote, urlparse

from ..config import parse_instant
from ..core.errors import ConfigError, JobFailed, NotFoundError
from .files import Location

ZONES = ("raw", "features", "entities", "trainsets", "predictions", "monitoring")
REF = re.compile(r"^(%s)\.([a-z][a-z0-9_]*)(?:@([1-9][0-9]*))?$" % "|".join(ZONES))


def table_path(lake_root: Location, ref: str, zones: tuple[str, ...] = ZONES) -> Location:
    """`ZONE.NAME` -> its place under the lake root; `zones` are the ones this use may name
    (a step writes only to the zone meant for its output)."""
    match = REF.match(ref)
    if not match or (match.group(3) and match.group(1) != "features"):
        raise ConfigError(
            f"table {ref!r} is not a lake table name: use ZONE.NAME with ZONE one of "
            f"{', '.join(ZONES)} and NAME in lower case, or features.NAME@N for version N of a "
            f"feature table (paths are not accepted, so that nothing is written outside the "
            f"lake root {lake_root})"
        )
    if match.group(1) not in zones:
        raise ConfigError(f"table {ref!r} is in zone {match.group(1)}, and this output goes only to "
                          f"{' or '.join(z + '.NAME' for z in zones)}")
    if match.group(1) == "features" and re.search(r"__v[0-9]+$", match.group(2)):
        raise ConfigError(f"table {ref!r}: a feature table's version N is named NAME@N, not by its folder")
    number = int(match.group(3) or 1)
    path = lake_root / match.group(1) / (match.group(2) + (f"__v{number}" if number > 1 else ""))
    # A symbolic link inside a local lake (a zone or a table folder) must not lead out of it.
    if (resolved := path.escapes(lake_root)) is not None:
        raise ConfigError(f"table {ref!r}: its location {path} leads to {resolved} (a symbolic "
                          f"link), outside the lake root {lake_root}; nothing is read or written there")
    return path


def exists(path: Location) -> bool:
    return (path / "_delta_log").is_dir()


def read(spark, path: Location, version: int | None = None, ref: str | None = None):
    if not exists(path):
        raise NotFoundError(f"Delta table {ref or path} does not exist (looked in {path})")
    check_log(path, ref)
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(str(path))


def read_arrow(path: Location, version: int | None = None, ref: str | None = None,
               columns: list[str] | None = None):
    """The rows of the newest version (or `version`) as an Arrow table, read by this process
    through delta-rs: for tables small enough to need no Spark job (`local_reads`)."""
    if not exists(path):
        raise NotFoundError(f"Delta table {ref or path} does not exist (looked in {path})")
    check_log(path, ref)
    return _delta_table(path, ref or str(path), version).to_pyarrow_dataset().to_table(columns=columns)


def local_reads(path: Location, max_bytes: int, version: int | None = None, ref: str | None = None) -> bool:
    """Whether the version's data files hold at most `max_bytes` (platform.yml
    `local_read_max_mb`): then a command that only reads it does so without a JVM."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if max_bytes <= 0:
        return False
    table = _delta_table(path, ref or str(path), version)
    protocol = table.protocol()
    # What delta-rs reads as Arrow as Spark does: no column mapping (reader version 2, or the
    # feature), no deletion vectors, no other reader feature; else Spark reads it.
    if protocol.min_reader_version == 2 or (protocol.min_reader_version >= 3 and not set(
            protocol.reader_features or ()) <= LOCAL_READER_FEATURES) or protocol.min_reader_version > 3:
        return False
    sizes = pa.table(table.get_add_actions(flatten=True)).column("size_bytes")
    return int(pc.sum(sizes).as_py() or 0) <= max_bytes


LOCAL_READER_FEATURES = {"timestampNtz"}


def current_versions(lake_root: Location, refs: list[str]) -> dict[str, int]:
    """{ref: newest version} of each table in `refs` that exists (from the Delta logs)."""
    out = {}
    for ref in dict.fromkeys(refs):
        path = table_path(lake_root, ref)
        if exists(path):
            out[ref] = version(None, path, ref)
    return out


def version_at(path: Location, when, ref: str | None = None) -> int:
    """The newest version committed at or before `when` (a datetime, or text like
    2013-08-01 or 2013-08-01 12:00:00, UTC): read from Delta's log, no Spark job."""
    try:
        at = when if isinstance(when, dt.datetime) else parse_instant(str(when))
    except ValueError as exc:
        raise ConfigError(f"as_of: {exc}") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.timezone.utc)
    millis = at.timestamp() * 1000
    found = commits(path, ref)
    before = [c["version"] for c in found if c["timestamp"] <= millis]
    if not before:
        first = iso_time(found[0]["timestamp"]) if found else None
        raise NotFoundError(f"{ref or path} has no version at or before {at.isoformat()} "
                            f"(its oldest retained commit is from {first})")
    return max(before)


def version(spark, path: Location, ref: str | None = None) -> int:
    """The table's newest version, from Delta's log through delta-rs (no Spark job)."""
    return check_log(path, ref)


# The newest version the platform committed, kept beside the log (Delta ignores `_` paths):
# a log whose newest commit file was removed would otherwise read as the older version.
HEAD = "_sparkml_head.json"


def check_log(path: Location, ref: str | None = None) -> int:
    """The newest version, once the log is known whole: no commit missing (between the newest
    checkpoint and the newest commit, or the newest the platform recorded) and every commit
    Delta reads is whole.

    A damaged log is refused with one line naming the table, instead of Delta silently
    reading an older version or failing with a parser's trace."""
    name = ref or str(path)
    said = _missing_commit(path, name)
    if said:
        raise JobFailed(said)
    return _delta_table(path, name).version()


def _missing_commit(path: Location, name: str) -> str | None:
    """Why the log is not whole (a commit missing), or None."""
    log = path / "_delta_log"
    names = log.names()
    versions = sorted(int(n[:20]) for n in names if COMMIT_FILE.match(n))
    checkpoint = _checkpoint(log, names)
    head = _read_head(path)
    # A commit's checksum file outlives its removed commit file: that version was written.
    checksums = [int(n[:20]) for n in names if CHECKSUM_FILE.match(n)]
    if not versions and head is None and not checksums:
        raise NotFoundError(f"Delta table {name} has no commits (looked in {log})")
    # Commits folded into a checkpoint may have been cleaned up: only later ones must be there.
    first = max(checkpoint + 1, versions[0]) if versions else 0
    missing = sorted(set(range(first, versions[-1] + 1)) - set(versions)) if versions else []
    newest = (versions or [-1])[-1]
    missing += [v for v in {head, max(checksums, default=None)} if v is not None and v > newest
                and not (log / f"{v:020d}.json").exists()]  # listed between a writer's two files
    if not missing:
        return None
    held = f"it holds {versions[0]}..{versions[-1]}" if versions else "it holds none"
    return (f"Delta table {name}: commit {min(missing)} is missing from its log {log} ({held}); the "
            "table cannot be read as written: restore the file from a backup, or rebuild the table")


COMMIT_FILE = re.compile(r"^\d{20}\.json$")
CHECKSUM_FILE = re.compile(r"^\d{20}\.crc$")


def _delta_table(path: Location, name: str, version: int | None = None):
    """The table's snapshot (the newest, or `version`) through delta-rs, which reads
    checkpoints and the log as Delta defines them; a damaged commit is one clear line naming
    its file."""
    from deltalake import DeltaTable

    try:
        return DeltaTable(str(path), version=version, storage_options=path.store.delta_options() or None)
    except Exception as exc:  # noqa: BLE001 - delta-rs raises its own DeltaError and OSError
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log = path / "_delta_log"
        try:
            said = _missing_commit(path, name)  # e.g. delta-rs's "newer than log segment"
        except Exception:  # noqa: BLE001 - the log cannot even be listed: the error as it is
            said = None
        if said:
            raise JobFailed(said) from None
        damaged = _damaged_commit(log) if "json" in text.lower() else None
        if damaged:
            raise JobFailed(f"Delta table {name}: its commit file {damaged[0]} is damaged (line "
                            f"{damaged[1]} is not JSON, the file was cut short or edited): "
                            "restore it from a backup, or rebuild the table") from None
        raise JobFailed(f"Delta table {name} at {path} cannot be read: {text[:300]}") from None


def _damaged_commit(log: Location) -> tuple[Location, int] | None:
    """The first commit file after the newest checkpoint that is not JSON lines, and the line
    (asked only once delta-rs has failed to parse the log)."""
    names = log.names()
    checkpoint = _checkpoint(log, names)
    for name in sorted(n for n in names if COMMIT_FILE.match(n) and int(n[:20]) > checkpoint):
        for number, line in enumerate((log / name).read_text().splitlines(), 1):
            try:
                json.loads(line)
            except ValueError:
                return log / name, number
    return None


def _read_head(path: Location) -> int | None:
    try:
        return int(json.loads((path / HEAD).read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no record (a table written by another tool) or a damaged one: no claim


def _record_head(path: Location, version: int) -> None:
    """Record `version` as committed (replaced whole; never lowers the record)."""
    head = _read_head(path)
    if head is not None and head >= version:
        return
    (path / HEAD).write_text(json.dumps({"version": version}))


def _checkpoint(log: Location, names: list[str]) -> int:
    """The version of the newest checkpoint (commits before it may be gone), else -1."""
    if "_last_checkpoint" not in names:
        return -1
    try:
        return int(json.loads((log / "_last_checkpoint").read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def history(path: Location, limit: int = 20) -> list[dict]:
    """The newest `limit` commits, newest first (see `commits`), their times in ISO 8601."""
    return [{**c, "timestamp": iso_time(c["timestamp"])} for c in commits(path)[::-1][:limit]]


def iso_time(millis: int | None) -> str | None:
    """A commit's time (milliseconds since the epoch) in ISO 8601, UTC, to the second."""
    if millis is None:
        return None
    return dt.datetime.fromtimestamp(millis / 1000, dt.timezone.utc).isoformat(timespec="seconds")


def write(
    df,
    path: Location,
    *,
    replace_where: str | None = None,
    partition_by: list[str] | None = None,
    metadata: dict | None = None,
    description: str | None = None,
    properties: dict[str, str] | None = None,
    step: tuple[str, int] | None = None,
) -> int:
    """Overwrite the table (or only the rows matching `replace_where`) in one Delta commit.

    One commit means a failed or killed run leaves the previous version in place, and a
    re-run replaces instead of appending: no duplicates. A new table is created with its rows,
    `description`, `properties` and column comments in that one commit (never empty first).
    `step` = (app id, number) records the write as step `number` of `app id` in Delta's own
    transaction record (`done_steps`), in the same commit; Delta skips a step already done.
    Returns the new table version.
    """
    for attempt in range(CONFLICT_RETRIES + 1):
        try:
            if not exists(path) and (description is not None or properties):
                committed = _create(df, path, partition_by, metadata, description, properties or {})
            else:
                committed = _overwrite(df, path, replace_where, partition_by, metadata, step)
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


def _overwrite(df, path: Location, replace_where, partition_by, metadata, step) -> int:
    writer = df.write.format("delta").mode("overwrite")
    if step:
        writer = writer.option("txnAppId", step[0]).option("txnVersion", step[1])
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


def _create(df, path: Location, partition_by, metadata, description, properties) -> int:
    """A new table and its first rows in one commit (DataFrameWriterV2 on the path)."""
    from pyspark.sql import functions as F

    writer = df.writeTo(f"delta.`{path}`").using("delta")
    if metadata:  # this commit's own, not the session's
        writer = writer.option("userMetadata", json.dumps(metadata, sort_keys=True, default=str))
    for name, value in {**properties, **({"comment": description} if description else {})}.items():
        writer = writer.tableProperty(name, value)
    if partition_by:
        writer = writer.partitionedBy(*[F.col(c) for c in partition_by])
    writer.createOrReplace()  # another first build at the same moment: the last one wins
    return version(df.sparkSession, path)


def describe(spark, path: Location, description: str, properties: dict[str, str], schema,
             partition_by: list[str] | None = None, metadata: dict | None = None) -> None:
    """Put the table's description, properties and column comments in its own Delta metadata.

    Any Spark reader then sees them with DESCRIBE. A table that does not exist yet gets them
    with its first rows (`write` with `description` and `properties`); an existing one is
    altered only where they differ, so a build whose definition did not change adds no commit.
    """
    from delta.tables import DeltaTable

    wanted_hash = hashlib.sha256(json.dumps(
        [description, properties, {f.name: f.metadata.get("comment") for f in schema.fields},
         partition_by], sort_keys=True, default=str).encode()).hexdigest()
    applied = path / "_sparkml_table_metadata"  # Delta ignores paths starting with `_`
    if not exists(path) or (applied.exists() and applied.read_text() == wanted_hash):
        return  # created with its first rows, or nothing changed: no Spark job, no commit
    if metadata:
        # SQL commands take commit metadata from the session's settings only: a session of
        # their own (same context, own settings) keeps it off the caller's session.
        spark = spark.newSession()
        spark.conf.set("spark.databricks.delta.commitInfo.userMetadata",
                       json.dumps(metadata, sort_keys=True, default=str))
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


def _quote(text: str) -> str:
    return "'" + str(text).replace("\\", "\\\\").replace("'", "\\'") + "'"


def commits(path: Location, ref: str | None = None) -> list[dict]:
    """Each commit's version, time (milliseconds since the epoch), operation, rows written and user metadata,
    oldest first, from Delta's own log reader (delta-rs: no JVM, cheap enough for listings).

    Commits folded into a checkpoint whose files were cleaned up (`delta.logRetentionDuration`)
    are no longer listed: what builds rely on is kept in state that a checkpoint carries (the
    table's transactions, see `done_steps`) or beside the table (statistics)."""
    out = []
    for info in _delta_table(path, ref or str(path)).history():
        meta = info.get("userMetadata")
        try:
            meta = json.loads(meta) if meta else None
        except ValueError:
            pass
        out.append({
            "version": int(info["version"]),
            "timestamp": info.get("timestamp"),
            "operation": info.get("operation"),
            "rows_written": (info.get("operationMetrics") or {}).get("numOutputRows"),
            "metadata": meta,
        })
    return sorted(out, key=lambda c: c["version"])


def properties(path: Location, ref: str | None = None) -> tuple[str, dict[str, str]]:
    """The table's description and properties (Delta metadata, delta-rs)."""
    meta = _delta_table(path, ref or str(path)).metadata()
    return meta.description or "", dict(meta.configuration or {})


def schema(path: Location, ref: str | None = None) -> list[dict]:
    """The current version's columns (name, type, nullable, comment) from Delta's log (delta-rs)."""
    return [{"name": f.name, "type": _type_name(f.type), "nullable": f.nullable,
             **({"comment": f.metadata["comment"]} if "comment" in (f.metadata or {}) else {})}
            for f in _delta_table(path, ref or str(path)).schema().fields]


def arrow_type_names(schema) -> dict[str, str]:
    """An Arrow schema's columns by their Spark SQL type names (as `schema` gives a table's)."""
    from deltalake import Schema

    return {f.name: _type_name(f.type) for f in Schema.from_arrow(schema).fields}


def _type_name(kind) -> str:
    """A delta-rs type as Spark SQL writes it (bigint, array<string>, struct<a:int>, ...)."""
    if hasattr(kind, "element_type"):
        return f"array<{_type_name(kind.element_type)}>"
    if hasattr(kind, "key_type"):
        return f"map<{_type_name(kind.key_type)},{_type_name(kind.value_type)}>"
    if hasattr(kind, "fields"):
        return "struct<" + ",".join(f"{f.name}:{_type_name(f.type)}" for f in kind.fields) + ">"
    name = str(getattr(kind, "type", kind))
    return SQL_TYPE_NAMES.get(name, name)


# Delta's names for the primitive types that Spark SQL (and features.yml) names otherwise.
SQL_TYPE_NAMES = {"integer": "int", "long": "bigint", "short": "smallint", "byte": "tinyint"}


def distinct_values(path: Location, columns: list[str], ref: str | None = None) -> set[tuple]:
    """The distinct combinations of `columns` in the table's current version, read through
    delta-rs (only those columns, no JVM): for small-valued columns, like a model's versions."""
    table = _delta_table(path, ref or str(path)).to_pyarrow_dataset().to_table(columns=columns)
    return {tuple(row[c] for c in columns) for row in table.group_by(columns).aggregate([]).to_pylist()}


def last_commit(path: Location, kind: str, ref: str | None = None, **match) -> dict | None:
    """The newest retained commit whose user metadata is of `kind` (and has every `match`
    key at its value), as `commits` gives it, else None: what the last build recorded."""
    for commit in reversed(commits(path, ref)):
        meta = commit["metadata"] if isinstance(commit["metadata"], dict) else {}
        if meta.get("kind") == kind and all(meta.get(k) == v for k, v in match.items()):
            return commit
    return None


def row_count(path: Location, version: int | None = None, ref: str | None = None) -> int | None:
    """The rows of the newest version (or `version`), from the record count the log keeps
    for each data file (delta-rs, no Spark job); None when a file was added without one."""
    import pyarrow as pa
    import pyarrow.compute as pc

    actions = pa.table(_delta_table(path, ref or str(path), version).get_add_actions(flatten=True))
    if "num_records" not in actions.column_names:
        return 0 if actions.num_rows == 0 else None
    counts = actions.column("num_records")
    if counts.null_count:
        return None
    return int(pc.sum(counts).as_py() or 0)


def commit_metadata(path: Location, version: int) -> dict:
    """The user metadata of commit `version` (empty when it has none or is no longer kept)."""
    return next((c["metadata"] or {} for c in commits(path) if c["version"] == version), {})


def done_steps(path: Location, app_id: str) -> int | None:
    """The last step committed under `app_id` (Delta's own idempotent-write record, a `txn`
    action: it is carried by every checkpoint, so it outlives log clean-up), or None."""
    if not exists(path):
        return None
    return _delta_table(path, str(path)).transaction_version(app_id)


def _add_actions(path: Location, version: int | None = None, ref: str | None = None):
    """The add actions (data files) of the table's newest version or `version`, from its log
    through delta-rs: no Spark job."""
    import pyarrow as pa

    return pa.table(_delta_table(path, ref or str(path), version).get_add_actions(flatten=True))


def files(path: Location, version: int | None = None, ref: str | None = None) -> dict[str, int]:
    """The data files of the table's newest version (or of `version`), relative to the table's
    folder, with the modification time each add action records (ms since the epoch)."""
    actions = _add_actions(path, version, ref)
    return {unquote(p): int(m) for p, m in zip(actions.column("path").to_pylist(),
                                              actions.column("modification_time").to_pylist())}


def file_sizes(path: Location, version: int | None = None, ref: str | None = None) -> dict[str, int]:
    """The data files of the table's newest version (or of `version`) with their bytes."""
    actions = _add_actions(path, version, ref)
    return {unquote(p): int(b) for p, b in zip(actions.column("path").to_pylist(),
                                              actions.column("size_bytes").to_pylist())}


def landed_since(path: Location, version: int, now: int, column: str, ref: str | None = None) -> dict:
    """What the table's log says changed from `version` to `now`: whether a file was removed
    (an overwrite, a delete, a rewrite), how many were added, and the least `column` among the
    added ones from their statistics (None: none added, or a file without that statistic,
    then `unknown`)."""
    before, after = _add_actions(path, version, ref), _add_actions(path, now, ref)
    old = set(before.column("path").to_pylist())
    paths = after.column("path").to_pylist()
    added = [i for i, p in enumerate(paths) if p not in old]
    stat = f"min.{column}"
    least = after.column(stat).to_pylist() if stat in after.schema.names else [None] * len(paths)
    mins = [least[i] for i in added]
    return {"removed": bool(old - set(paths)), "added": len(added),
            "unknown": any(m is None for m in mins), "least": min((m for m in mins if m is not None), default=None)}


def size_bytes(path: Location, ref: str | None = None) -> int:
    """The bytes of the data files of the table's newest version."""
    import pyarrow.compute as pc

    return int(pc.sum(_add_actions(path, ref=ref).column("size_bytes")).as_py() or 0)


def deleted_file_retention_hours(path: Location) -> float:
    """How long Delta keeps a removed file's record in the table's state
    (`delta.deletedFileRetentionDuration`, default one week): VACUUM protects a removed file
    by that record, and after it only by the file's own age."""
    configured = _delta_table(path, str(path)).metadata().configuration.get(
        "delta.deletedFileRetentionDuration", "interval 1 week")
    match = re.fullmatch(r"\s*interval\s+(\d+)\s+(week|day|hour|minute|second)s?\s*", configured or "",
                         re.IGNORECASE)
    if not match:
        return 168.0  # Delta's default; an unusual spelling is not worth a refusal
    per_unit = {"week": 168, "day": 24, "hour": 1, "minute": 1 / 60, "second": 1 / 3600}
    return int(match.group(1)) * per_unit[match.group(2).lower()]


def vacuum(spark, path: Location, hours: int, dry_run: bool = False) -> list[str]:
    """Delta VACUUM of the table, keeping files removed from it less than `hours` ago; with
    `dry_run`, only the files it would delete (relative to the table's folder).

    It runs in a session of its own (same context, own settings): Delta's refusal of less
    than its default retention is switched off there only, because the caller has checked
    what must stay (training_sets.vacuum), and no VACUUM commits are added to the log, so
    the table's versions stay those that manifests and the online store recorded."""
    session = spark.newSession()
    session.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    session.conf.set("spark.databricks.delta.vacuum.logging.enabled", "false")
    # Delta lists the table in this many tasks (default 10,000: minutes of empty tasks).
    session.conf.set("spark.sql.sources.parallelPartitionDiscovery.parallelism",
                     str(spark.sparkContext.defaultParallelism))
    rows = session.sql(f"VACUUM delta.`{path}` RETAIN {int(hours)} HOURS"
                       f"{' DRY RUN' if dry_run else ''}").collect()
    if not dry_run:
        return []
    root = urlparse(str(path)).path.rstrip("/") + "/"
    listed = [unquote(urlparse(r["path"]).path) for r in rows]
    return sorted(p[len(root):] if p.startswith(root) else p for p in listed)
