"""Feature tables: a declared transformation of source tables, computed by Spark into Delta."""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import math

from ..config import Config, FeatureTable, versioned
from ..core import provenance
from ..core.errors import ConfigError, GateFailed, JobFailed, SparkmlError, first_line, raised_where
from ..core.provenance import definition_hash
from ..runtime.project import function_fingerprint, project_of
from ..storage import lake, metastore, places, statistics, window_aggregates
from ..storage.feature_tables import TableVersion, lake_versions, resolve, source_events
from . import plan, validation


def _resolved(config: Config, table: str | TableVersion) -> TableVersion:
    """A name resolved at the edge; a version resolved already is used as it is (its
    definition looked up and its transformation imported once per build)."""
    return table if isinstance(table, TableVersion) else resolve(config, table)


def compute(spark, config: Config, table: TableVersion, sources_at: dict[str, int] | None = None,
            window=None) -> tuple[object, dict[str, int], dict[str, str]]:
    """The feature table's rows as a DataFrame, the Delta versions of the sources read (those
    of `sources_at`, what the caller leased, else the newest), and the definition's hashes
    (its YAML and its transformation's code). `window`: the event days the build replaces
    (an aggregation table built from tiles computes only those; other tables compute every
    row and the build keeps the window's)."""
    definition, where, name = table.definition, table.where, table.name
    if definition.aggregations is not None:
        return _aggregated(spark, config, table, sources_at, window)
    transform = table.transform
    _check_arguments(transform, definition, where)
    inputs, versions = {}, {}
    for arg, ref in definition.sources.items():
        ref = config.source_ref(ref)
        path = places.table(config, ref)
        if not lake.exists(path):
            raise JobFailed(f"{where}.sources.{arg}: table {ref} does not exist yet: load or "
                            "build it first")
        versions[ref] = (sources_at or {}).get(ref, lake.version(spark, path, ref))
        inputs[arg] = lake.read(spark, path, versions[ref], ref)
    try:
        df = transform(**inputs)
    except Exception as exc:  # noqa: BLE001 - the user's code: say whose it is
        raise JobFailed(f"feature table {name}: its transformation {definition.transformation} "
                        f"raised {type(exc).__name__}: {first_line(exc)}{raised_where(exc, transform)}") from exc
    return conform(df, definition, where), versions, definition_hashes(definition, transform, config)


def _aggregated(spark, config: Config, table: TableVersion, sources_at: dict[str, int] | None, window):
    """`compute` for a table of declared aggregations: its snapshot rows from the source's
    events (storage/window_aggregates.py), with what the source cannot feed refused first;
    from tiles when every function merges (`_tiled`)."""
    definition = table.definition
    declared = window_aggregates.Declared(definition.aggregations, tuple(definition.keys),
                                          config.where(f"features.yml: feature_tables.{table.base}"))
    leased = (sources_at or {}).get(config.source_ref(definition.aggregations.source))
    hashes = definition_hashes(definition, None, config)
    if window_aggregates.tiled(definition.aggregations):
        rows, versions = _tiled(spark, config, table, declared, leased, window, hashes)
        return conform(rows, definition, table.where), versions, hashes
    events, ref, version = source_events(spark, config, declared, leased)
    rows = window_aggregates.snapshots(events, declared, definition.event_time)
    return conform(rows, definition, table.where), {ref: version}, hashes


def _tiled(spark, config: Config, table: TableVersion, declared, leased: int | None, window, hashes: dict):
    """The rows of `window` (None: every row) from the table's tiles (places.tiles): the tiles
    of the window's periods computed again from their events alone and written first (one
    commit replacing exactly those periods, so a rerun after a kill writes the same), then
    merged with the older tiles the windows reach. Events landed late since the tiles were
    computed (older than the window) move the tiles computed again back to their period.
    Every tile is computed from every event without tiles of this definition (a first or full
    build, a changed definition), or when the source lost files since (an overwrite, a
    delete), or its log cannot say how old the new events are."""
    spec = declared.spec
    path = places.tiles(config, table.ref)
    source = config.source_ref(spec.source)
    source_path = places.table(config, source)
    if not lake.exists(source_path):
        raise JobFailed(f"{declared.where}.aggregations.source: table {source} does not exist yet: "
                        "load or build it first")
    version = leased if leased is not None else lake.version(spark, source_path, source)
    last = (lake.last_commit(path, "tiles") or {}).get("metadata") or {} if lake.exists(path) else {}
    tiled_from = (last.get("sources") or {}).get(source)
    reuse = window is not None and last.get("definition_hash") == hashes["definition_hash"] and tiled_from is not None
    landed_from = None
    if reuse and tiled_from != version:
        try:
            landed = lake.landed_since(source_path, tiled_from, version, spec.event_time, source)
        except Exception:  # noqa: BLE001 - that version's log was cleaned up: compute every tile
            landed = {"removed": True, "unknown": True, "least": None}
        reuse = not landed["removed"] and not landed["unknown"]
        if landed["least"] is not None:
            landed_from = window_aggregates.visible_micros(landed["least"], spec)
    span = window_aggregates.tile_range(spec, window if reuse else None, landed_from)
    events, ref, version = source_events(spark, config, declared, version, span.events_after, span.last)
    replace = None
    if reuse:
        end = window_aggregates.TILE_END
        replace = f"`{end}` >= timestamp_micros({span.first})" + (
            f" AND `{end}` <= timestamp_micros({span.last})" if span.last is not None else "")
    written = lake.write(window_aggregates.tiles_of(events, declared), path, replace_where=replace,
                         metadata={"kind": "tiles", "table": table.ref, **hashes, "sources": {ref: version},
                                   "run_id": provenance.run_id(),
                                   "periods": [span.first, span.last] if reuse else None},
                         description=f"Partial aggregates per {spec.snapshot} of {table.ref}",
                         properties={"sparkml.tiles_of": table.ref})
    rows = window_aggregates.from_tiles(lake.read(spark, path, written), declared, table.definition.event_time,
                                        span)
    return rows, {ref: version}


def _check_arguments(transform, definition: FeatureTable, where: str) -> None:
    """The function must take the declared sources by name (before any table is read)."""
    try:
        inspect.signature(transform).bind(**{arg: None for arg in definition.sources})
    except TypeError as exc:
        raise ConfigError(f"{where}.transformation: {definition.transformation} does not take the "
                          f"declared sources {sorted(definition.sources)} as arguments: {exc}") from None
    except ValueError:  # no signature to inspect (a builtin): the call will tell
        pass


def definition_hashes(definition: FeatureTable, transform, config: Config) -> dict[str, str]:
    """What a feature table's rows depend on besides its inputs: its YAML definition and its
    transformation's code (the function and what it uses from its own package). A change to
    either is a changed definition, which rebuilds the whole table. A source named
    `features.NAME` is the version features.yml declares: when that is not version 1, the
    version read is part of the definition (a bump of the source changes it)."""
    moved = {ref: config.source_ref(ref) for ref in definition.sources.values()}
    moved = {ref: now for ref, now in moved.items() if now != ref}
    config_hash = definition_hash({"definition": definition_hash(definition), "sources": moved}) if moved \
        else definition_hash(definition)
    # An aggregation table's rows are made by the platform's engine, versioned with it.
    code_hash = window_aggregates.ENGINE if transform is None else function_fingerprint(transform)
    return {"definition_hash": definition_hash({"definition": config_hash, "code": code_hash}),
            "config_hash": config_hash, "code_hash": code_hash}


def expectations_hash(config: Config, table) -> str | None:
    """The hash of the expectation suite the table's rows are validated against (None: none).
    Not part of the definition (a suite changes no row), but of what "up to date" means: rows
    validated against another suite are built again, whole, and validated against this one."""
    suite = config.suite(table.definition.expectations, f"{table.where}.expectations")
    return None if suite is None else definition_hash(suite.model_dump(mode="json"))


def conform(df, definition: FeatureTable, where: str):
    """Check the output against the definition and keep only its declared columns."""
    types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    expected = {k: None for k in definition.keys}
    expected[definition.event_time] = "timestamp"
    expected.update(definition.feature_types)
    problems = []
    for column, wanted in expected.items():
        if column not in types:
            problems.append(f"column {column!r} is missing")
        elif wanted is not None and types[column] != wanted:
            problems.append(f"column {column!r} is {types[column]}, declared {wanted}")
    if problems:
        raise ConfigError(f"{where}: the transformation's output does not match the definition: "
                          + "; ".join(problems) + f" (output columns: {types})")
    return df.select(*expected)


def up_to_date(config: Config, name: str | TableVersion) -> dict | None:
    """The table as it is, when its newest build (a whole or incremental one, not a window)
    read every source at the version it has now, with the same definition and code: building
    again would write the same rows. Else None. From the Delta logs alone: no Spark session."""
    table = _resolved(config, name)
    definition, name = table.definition, table.name
    path = table.path(config)
    if not lake.exists(path):
        return None
    transform = table.transform
    commits = lake.commits(path)
    kinds = [c["metadata"].get("kind") if isinstance(c["metadata"], dict) else None for c in commits]
    builds = [c for c, kind in zip(commits, kinds) if kind == "feature_table"]
    last = builds[-1] if builds else None
    now = {"definition_hash": definition_hashes(definition, transform, config)["definition_hash"],
           "expectations_hash": expectations_hash(config, table)}
    versions: dict | None = {}
    for ref in map(config.source_ref, definition.sources.values()):
        source = places.table(config, ref)
        if not lake.exists(source):
            versions = None
            break
        versions[ref] = lake.version(None, source, ref)
    version = lake.version(None, path)
    stats = statistics.load(path, version)
    if not plan.fresh(kinds, last and last["metadata"], now, versions, stats is not None):
        return None
    return {"table": f"features.{name}", "version": version, "mode": plan.UP_TO_DATE,
            "reason": f"nothing new: its sources are at the versions version {last['version']} was "
                      f"built from ({', '.join(f'{r}@{v}' for r, v in versions.items())})",
            "run_id": provenance.run_id(), "chunks": [], "rows": lake.row_count(path, version),
            "event_time_range": stats.get("event_time_range"), "rows_written": 0, "validation": None}


# Sources this small make a job of seconds, which a JVM compiling with the client JIT alone
# finishes sooner (session.driver_java_options).
SMALL_INPUT_BYTES = 256 * 1024 * 1024


def small_inputs(config: Config, name: str | TableVersion) -> bool:
    """Whether the table's sources, all existing, hold at most SMALL_INPUT_BYTES of files
    (from their Delta logs, no JVM)."""
    total = 0
    for ref in map(config.source_ref, _resolved(config, name).definition.sources.values()):
        path = places.table(config, ref)
        if not lake.exists(path):
            return False
        total += lake.size_bytes(path, ref)
    return total <= SMALL_INPUT_BYTES


def build(spark, config: Config, name: str | TableVersion, start: str | None = None, end: str | None = None,
          *, chunk_days: int | None = None, full: bool = False, force: bool = False,
          users=lambda: [], retire: bool = False, checked: tuple | None = None,
          sources_at: dict[str, int] | None = None) -> dict:
    """Compute the table (or one window of it) and replace exactly that part, one commit per chunk.

    `name` is NAME (the version features.yml declares) or NAME@N (an older version, built
    from the definition its builds recorded, while its transformation's code is unchanged),
    or that version resolved (a TableVersion: what the Workspace passes, resolved once).
    No window: the whole table on the first build (or with `full`, or when the definition
    changed), else incrementally from the day of the newest event time already built.
    A chunked backfill records each chunk's commit under a backfill id, so running the same
    command again after a failure skips the chunks already committed (resume). Without a
    window, a table whose sources have not changed since its last build is "up to date"
    (see `up_to_date`) unless `force`, which computes it incrementally anyway.

    A changed definition is refused (ConfigError, nothing written) while a model version under
    an alias (`users()`, registry.feature_users, asked only then) was trained on the table's old one, unless
    `retire`: then it is rebuilt in place and the result names those models (`retired`).
    `checked`: what `check_change` returned to a caller that ran it already (before its session).
    """
    window = plan.parse_window(start, end)
    plan.check_chunk_days(chunk_days)
    if window is None and not full and not force and (done := up_to_date(config, name)) is not None:
        return done
    table, retired = checked or check_change(config, name, users, retire)
    definition, name = table.definition, table.name
    path = table.path(config)
    hashes = definition_hashes(definition, table.transform, config)
    run_id = provenance.run_id()
    base = {"kind": "feature_table", "name": name, **hashes,
            "expectations_hash": expectations_hash(config, table),
            "definition": definition.model_dump(mode="json"),
            "sources": None, "code": project_of(config).code_version(), "run_id": run_id,
            "spark_app_id": spark.sparkContext.applicationId,
            **({"retired": retired} if retired else {})}
    if lake.exists(path) and statistics.load(path, newest := lake.version(spark, path)) is None:
        # A build killed between its commit and its statistics: record them now (the
        # incremental window starts from the newest event time they hold).
        statistics.for_version(spark, path, newest, definition.feature_types, definition.event_time,
                               config.local_read_max_bytes)
    last = _last_build(path) or None
    incremental = window is None and plan.mode(last, base, full=full)[0] == plan.INCREMENTAL
    decided = plan.plan(last, base, window=window, full=full, chunk_days=chunk_days,
                        newest_day=_newest_day(spark, path, definition) if incremental else None)
    mode, window, reason, chunks = decided.mode, decided.window, decided.reason, decided.chunks
    if reason:
        base["reason"] = reason
    try:  # an aggregation table's tiles are computed and written here, before its rows
        computed, base["sources"], _ = compute(spark, config, table, sources_at, window)
    except SparkmlError:
        raise
    except Exception as exc:
        raise JobFailed(f"feature table {name}: computing its {definition.computed_by} failed, nothing "
                        f"written: {type(exc).__name__}: {first_line(exc)}") from exc
    # A backfill resumes after its suite was fixed (the suite is no part of what it computes).
    backfill = definition_hash({**base, "run_id": None, "spark_app_id": None, "code": None,
                                "reason": None, "expectations_hash": None,
                                "window": [str(d) for d in window] if window else None,
                                "chunk_days": chunk_days}) if len(chunks) > 1 else None
    done = _committed_chunks(path, backfill, chunks) if backfill else set()
    if len(chunks) > 1:
        computed = _persist(computed)  # every chunk filters the same computed rows
    results = []
    try:
        for index, chunk in enumerate(chunks):
            label = [str(d) if d else None for d in chunk] if chunk else None
            if index in done:
                results.append({"window": label, "skipped": "committed by an earlier run"})
                continue
            meta = {**base, "window": label, "mode": mode}
            if backfill:
                meta.update(backfill=backfill, chunk=label)
            results.append(_write_part(spark, config, table, computed, path, chunk,
                                       explicit=mode == plan.WINDOW, metadata=meta,
                                       step=(BACKFILL_APP + backfill, index) if backfill else None))
    except SparkmlError:
        raise
    except Exception as exc:  # the transformation's rows fail when Spark computes them
        raise JobFailed(f"feature table {name}: computing the rows of its {definition.computed_by} "
                        f"failed, nothing written: "
                        f"{type(exc).__name__}: {first_line(exc)}") from exc
    finally:
        if len(chunks) > 1:
            computed.unpersist()
    written = [r for r in results if "version" in r]
    version = written[-1]["version"] if written else lake.version(spark, path)
    if mode == plan.INCREMENTAL and not written:
        mode = plan.UP_TO_DATE
    registered = metastore.register_table(spark, config, table.ref)
    stats = statistics.load(path, version) or {}
    if window and window[1] is None:  # open-ended: up to the newest event time now in the table
        newest = (stats.get("event_time_range") or [None, None])[1]
        window = (window[0], max(window[0], dt.date.fromisoformat(str(newest)[:10])) if newest else window[0])
    return {"table": table.ref, "version": version, "mode": mode, "reason": reason,
            "run_id": run_id, "window": [str(d) for d in window] if window else None,
            "rows": stats.get("rows"), "event_time_range": stats.get("event_time_range"),
            "rows_written": sum(r.get("rows_written", 0) for r in results),
            "registered_as": registered,
            "validation": written[-1]["validation"] if written else None,
            "chunks": results if len(chunks) > 1 else [],
            **({"retired": retired} if retired else {})}


def check_change(config: Config, name: str | TableVersion, users=lambda: [], retire: bool = False
                 ) -> tuple[TableVersion, list[str]]:
    """What `build` refuses before it computes anything, from the Delta logs and the code
    alone (no Spark): a skipped version, an older version whose code changed, a changed
    definition under aliased models (see `build`). Returns the version and the MODEL/VERSION
    a `retire` marks stale."""
    table = _resolved(config, name)
    definition, path = table.definition, table.path(config)
    if not table.buildable:
        raise ConfigError(f"feature table {table.name} was built before builds recorded their "
                          "definition, and features.yml now declares another version: it is kept as it "
                          "is (it can still be read, looked up and published)")
    _refuse_skipped_version(config, table)
    hashes = definition_hashes(definition, table.transform, config)
    if not table.declared and not retire and _last_build(path).get("code_hash") not in (None, hashes["code_hash"]):
        raise ConfigError(f"feature table {table.name}: its transformation {definition.transformation} is no "
                          f"longer the code version {table.number} was built with, so it is kept as it "
                          "is and not built further (keep the old function under its name to keep "
                          "that version current, or rebuild it with the code as it is with --retire)")
    return table, _dependents_of_a_change(table, path, hashes, users, retire)


def _last_build(path) -> dict:
    """The metadata of the table's newest build commit ({} before its first)."""
    if not lake.exists(path):
        return {}
    return (lake.last_commit(path, "feature_table") or {}).get("metadata") or {}


def _refuse_skipped_version(config: Config, table: TableVersion) -> None:
    """Versions go up one at a time: declaring N while the lake holds versions of the table
    but not N - 1 is a typo or a lost table, never a new version to build."""
    if not table.declared or table.number == 1:
        return
    held = lake_versions(config, table.base)
    if held and table.number not in held and table.number - 1 not in held:
        raise ConfigError(f"{table.where}.version: {table.number} follows no version in the lake, "
                          f"which holds {', '.join(versioned(table.base, n) for n in held)} but not "
                          f"{versioned(table.base, table.number - 1)}; nothing written (bump the version "
                          f"by one, from {versioned(table.base, held[-1])})")


def _dependents_of_a_change(table: TableVersion, path, hashes: dict, users, retire: bool) -> list[str]:
    """The aliased model versions (`users`) trained on this table version's current
    definition, when the build would replace it with another one: refused unless `retire`
    (then returned, to be marked stale)."""
    last = _last_build(path)
    if not last or last.get("definition_hash") in (None, hashes["definition_hash"]):
        return []
    dependents = [u for u in users() if table.name in u["definitions"]
                  and u["definitions"][table.name] != hashes["definition_hash"]]
    if not dependents:
        return []
    named = [f"{u['model']} version {u['version']} ({', '.join(u['aliases'])})" for u in dependents]
    if retire:
        return [f"{u['model']}/{u['version']}" for u in dependents]
    nxt = versioned(table.base, table.number + 1)
    raise ConfigError(
        f"feature table {table.name}: {plan.why_changed(last, hashes)}, and model versions under an alias "
        f"were trained on its current definition: {'; '.join(named)}. Nothing written. Either bump "
        f"{table.where}.version to {table.number + 1} (the new definition is built as {nxt} beside "
        f"this one, which keeps serving those models), or rebuild it in place with --retire "
        f"(retire=True): those model versions are then marked stale and refuse to score")


def _newest_day(spark, path, definition: FeatureTable) -> dt.date:
    """The newest event day the table holds: from its statistics, else from its rows."""
    from pyspark.sql import functions as F

    newest = (statistics.latest(path) or {}).get("event_time_range", [None, None])[1]
    if newest in (None, "None"):
        # Days as text in the session's time zone (UTC), never collected timestamps (local time).
        newest = lake.read(spark, path).agg(F.date_format(F.max(definition.event_time), "yyyy-MM-dd")) \
            .collect()[0][0]
    return dt.date.fromisoformat(str(newest)[:10])


BACKFILL_APP = "sparkml-backfill-"  # + the backfill id: Delta's transaction app id


def _committed_chunks(path, backfill: str, chunks: list) -> set[int]:
    """The indices of the chunks an earlier run of this backfill committed: from Delta's
    transaction record of the backfill (carried by checkpoints, so it outlives log clean-up),
    and from the retained commits' metadata (a first chunk that created the table has no
    transaction record; redoing it would only replace its rows with the same ones)."""
    if not lake.exists(path):
        return set()
    last = lake.done_steps(path, BACKFILL_APP + backfill)
    done = set(range(last + 1)) if last is not None else set()
    labels = {tuple(c["metadata"]["chunk"]) for c in lake.commits(path)
              if (c["metadata"] or {}).get("backfill") == backfill}
    return done | {i for i, chunk in enumerate(chunks) if tuple(str(d) for d in chunk) in labels}


def _write_part(spark, config: Config, table: TableVersion, computed, path, window, *, explicit: bool,
                metadata: dict, step: tuple[str, int] | None = None) -> dict:
    """Check, validate and write one window (or the whole table) in one commit, then its stats."""
    from pyspark.sql import Observation

    definition, name = table.definition, table.name
    replace_where = None
    df = computed
    if window is not None:
        first, last = window
        replace_where = f"`{definition.event_time}` >= '{first}'" + (
            f" AND `{definition.event_time}` < '{last + dt.timedelta(days=1)}'" if last else "")
        df = df.where(replace_where)
    df, collected, cached = _rows_to_write(spark, _with_comments(df, definition))
    checked = df if collected is None else collected  # what the checks read
    feature_types = definition.feature_types
    try:
        # The statistics of the rows written come from the write's own pass.
        observed = Observation(f"statistics of {name}")
        observing = statistics.aggregates(feature_types, definition.event_time)
        rows = _count_refusing_duplicates(checked, definition, name)
        if rows == 0 and window is not None and explicit:
            _refuse_window_outside_sources(computed, definition, name, window)
        if rows == 0 and window is not None and window[1] is None:
            # Nothing from the newest day on: writing would only delete that day's rows.
            return {"window": metadata["window"], "skipped": "no rows from the newest day on"}
        validated = _validate(spark, config, table, checked)
        whole_table = replace_where is None or not lake.exists(path)
        if not lake.exists(path):
            replace_where = None  # the first write creates the table
        lake.describe(spark, path, definition.description, table_properties(definition),
                      df.schema, definition.partition_by or None,
                      metadata={**metadata, "kind": "table_metadata"})
        new = not lake.exists(path)
        # A new table is created with its rows in one commit (DataFrameWriterV2), where an
        # observation does not report: its statistics are read back from the one version.
        version = lake.write(df if new else df.observe(observed, *observing), path,
                             replace_where=replace_where, partition_by=definition.partition_by or None,
                             metadata={**metadata, "validation": validated},
                             description=definition.description,
                             properties=table_properties(definition), step=step)
        if step and lake.commit_metadata(path, version).get("run_id") != metadata["run_id"]:
            # Delta skipped the write: another run committed this step meanwhile (its
            # transaction record says so), and the observation will never report.
            return {"window": metadata["window"], "skipped": "committed by another run meanwhile"}
        written = (statistics.summarize(lake.read(spark, path, version), feature_types,
                                        definition.event_time) if new
                   else statistics.from_aggregates(observed.get, feature_types))
    finally:
        if cached:
            df.unpersist()
    statistics.record(path, version, written, whole_table)
    return {"window": metadata["window"], "version": version, "rows_written": rows,
            "validation": validated}


def _refuse_window_outside_sources(computed, definition: FeatureTable, name: str, window) -> None:
    """An empty window is fine inside the data (a quiet day); outside it, it is a mistake."""
    from pyspark.sql import functions as F

    shown = "yyyy-MM-dd HH:mm:ss"  # in the session's time zone (UTC), not the process's
    row = computed.agg(F.date_format(F.min(definition.event_time), shown).alias("first"),
                       F.date_format(F.max(definition.event_time), shown).alias("last")).collect()[0]
    first, last = window
    if row["first"] is None or last < dt.date.fromisoformat(row["first"][:10]) \
            or first > dt.date.fromisoformat(row["last"][:10]):
        covered = (f"{row['first']} to {row['last']}" if row["first"] is not None
                   else "nothing (the sources are empty)")
        raise ConfigError(f"feature table {name}: the window {first} to {last} is outside the source "
                          f"data, whose event times ({definition.event_time}) cover {covered}; "
                          "nothing written")


def table_properties(definition: FeatureTable) -> dict[str, str]:
    """What any Spark reader sees with DESCRIBE / SHOW TBLPROPERTIES on the Delta table."""
    return {
        "sparkml.owner": definition.owner,
        "sparkml.tags": ",".join(definition.tags),
        "sparkml.keys": ",".join(definition.keys),
        "sparkml.event_time": definition.event_time,
        "sparkml.lookback": definition.lookback or "",
        "sparkml.transformation": definition.transformation or definition.computed_by,
    }


def _with_comments(df, definition: FeatureTable):
    """Column comments from the definition travel in the schema of the rows written."""
    from pyspark.sql.types import StructField, StructType

    comments = {n: f.description for n, f in definition.features.items() if f.description}
    comments[definition.event_time] = "event time: when these feature values became known"
    for key in definition.keys:
        comments.setdefault(key, "entity key")
    # One projection to the same schema with comments: a call to the JVM, where a withMetadata
    # per column costs a few calls and an analysis of the plan each.
    return df.to(StructType([StructField(f.name, f.dataType, f.nullable,
                                         {"comment": comments[f.name]} if f.name in comments else f.metadata)
                             for f in df.schema.fields]))


def _rows_to_write(spark, df):
    """(rows to write, their Arrow copy or None, whether the rows are cached): computed once.

    Rows Spark estimates small (validation.LOCAL_MAX_BYTES, from the plan, without a job) are
    collected to the driver once, as Arrow: their count and duplicate check run on that Arrow
    table (exact keys and instants, nulls grouped as Spark does), their suite on a pandas copy,
    and the write reads the collected rows (types kept exactly), so they are neither cached
    nor recomputed. Larger ones, or a collection far above the estimate (the estimate comes
    from compressed files), are cached and checked with Spark.
    """
    try:
        estimate = int(str(df._jdf.queryExecution().optimizedPlan().stats().sizeInBytes()))
    except AttributeError:  # Spark Connect has no plan statistics here: the large path
        estimate = None
    if estimate is not None and estimate <= validation.LOCAL_MAX_BYTES:
        collected = df.toArrow()
        if collected.nbytes <= 4 * validation.LOCAL_MAX_BYTES:
            # Spark splits local rows into default-parallelism slices: on a cluster that would
            # be hundreds of tiny files per window. At most 4 writers, or one per 128 MB (a
            # single writer made small windows' writes slower on two cores).
            slices = max(4, math.ceil(collected.nbytes / (128 * 1024 * 1024)))
            return spark.createDataFrame(collected, schema=df.schema).coalesce(slices), collected, False
        del collected
    df = _persist(df)
    return df, None, True


def _persist(df):
    """`df.persist()`, letting adaptive execution coalesce the cached plan's small shuffle
    partitions as it does for an uncached write: else every window is written as
    spark.sql.shuffle.partitions small files (the same job without the cache writes one or two).

    Spark reads this setting when the cached plan is built, and only these rows' own checks,
    validation and write read that cache, so nothing else depends on its partitioning."""
    key = "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning"
    conf = df.sparkSession.conf
    before = conf.get(key, None)
    conf.set(key, "true")
    try:
        return df.persist()
    finally:
        if before is None:
            conf.unset(key)
        else:
            conf.set(key, before)


def _count_refusing_duplicates(df, definition: FeatureTable, name: str) -> int:
    """The number of rows, refusing two rows for one entity at one event time (they would make
    point-in-time lookups ambiguous) and rows without an event time (they never match).
    `df` is a Spark DataFrame or its collected Arrow table."""
    import pyarrow as pa
    import pyarrow.compute as pc

    key = [*definition.keys, definition.event_time]
    if isinstance(df, pa.Table):
        per_key = df.group_by(key).aggregate([([], "count_all")])
        dupes = per_key.filter(pc.greater(per_key["count_all"], 1))
        rows, count = df.num_rows, dupes.num_rows
        no_time = df[definition.event_time].null_count
        examples = [{**r, "rows": r["count_all"]} for r in dupes.slice(0, 5).to_pylist()]
    else:
        from pyspark.sql import functions as F

        per_key = df.groupBy(*key).agg(F.count("*").alias("rows"))
        total = per_key.agg(
            F.sum("rows").alias("rows"), F.count(F.when(F.col("rows") > 1, True)).alias("dupes"),
            F.sum(F.when(F.col(definition.event_time).isNull(), F.col("rows"))).alias("no_time"),
        ).collect()[0]
        rows, count, no_time = total["rows"] or 0, total["dupes"], total["no_time"] or 0
        examples = per_key.where("rows > 1").limit(5).collect() if count else []  # only then
    if no_time:
        raise GateFailed(f"feature table {name}: {no_time} of {rows} rows have no event time "
                         f"({definition.event_time} is null), nothing written: a point-in-time "
                         f"lookup can never match them; give every row an event time in "
                         f"the {definition.computed_by}")
    if count:
        shown = "; ".join(", ".join(f"{c}={r[c]}" for c in key) + f" ({r['rows']} rows)" for r in examples)
        raise GateFailed(f"feature table {name}: {count} (entity, event time) pairs occur "
                         f"more than once, nothing written; e.g. {shown}")
    return rows


def _validate(spark, config: Config, table: TableVersion, df) -> dict | None:
    """Run the table's expectation suite on the rows about to be written (block or warn):
    a Spark DataFrame with Spark, an Arrow copy as pandas (made only when there is a suite)."""
    definition, name = table.definition, table.name
    suite = config.suite(definition.expectations, f"{table.where}.expectations")
    if suite is None:
        return None
    if not hasattr(df, "sparkSession"):
        df = validation.to_pandas(df, spark.conf.get("spark.sql.session.timeZone"))
    summary = validation.validate(df, definition.expectations, suite.expectations,
                                  f"expectations/{definition.expectations}.yml: expectations")
    kept = validation.keep(summary, places.validation_dir(config), name)
    outcome = {"suite": definition.expectations, "success": summary["success"],
               "failed": len(summary["failed"]), "results": config.relative(kept)}
    if not summary["success"]:
        report = validation.describe_failures(summary)
        if definition.on_failure == "block":
            raise GateFailed(f"feature table {name}: expectation suite {definition.expectations} "
                             f"failed, nothing written (results: {kept}):\n{report}")
        logging.getLogger(__name__).warning("feature table %s: suite %s failed (on_failure: warn), "
                                            "writing anyway:\n%s", name, definition.expectations, report)
    return outcome
