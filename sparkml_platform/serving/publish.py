"""Publishing a feature table to the online store: each key's recent rows, as of which a request is answered.

What a key holds (`kept_rows`): its rows within the table's `online.keep` of its newest row
(by default the table's lookback; without one, the newest row only), plus the newest row
before that span, so a lookup at any time from the oldest kept row on finds exactly the row
batch scoring's point-in-time join finds: the newest at or before the request's time, no
older than the lookback (`as_of`). A request older than what is kept is answered with null
features and said to be outside the kept window, never with a newer row.

A full publish writes a new generation of the table (a SQLite table, a Redis
hash) beside the one serving, then switches the table's marker to it in one write, then
drops the old one; a kill at any moment leaves the previous generation serving, and the next
publish drops what was left half-written. An incremental publish (only keys whose kept rows
changed since the published Delta version) is one transaction: all of it or none.

The stores, their generations and markers, and the as-of lookup: storage/online_stores.py.
"""

from __future__ import annotations

import datetime as dt
import json
import re

from ..core.errors import NotFoundError
from ..storage import feature_definitions
from ..storage import feature_tables
from ..storage import lake, recent_events, window_aggregates
from ..storage.lake import arrow_type_names
from ..storage.online_stores import Store, write_full, write_incremental
from .online_requests import EPOCH, spark_key

# --- what a key holds (pure; the as-of lookup in it is storage/online_stores.py's as_of) -------
# A key's value is `[FROM_US, [[EVENT_US, {features}], ...]]`, rows oldest first; FROM_US is the
# oldest kept row's time when older rows were dropped (earlier requests cannot be answered
# exactly), else null. Times are microseconds since 1970 (the lake's precision).


def kept_rows(df, keys: list[str], event_time: str, features: list[str], keep_seconds: int | None,
              keep_rows: int | None):
    """(key, value) per key: the rows the store keeps of it (see `as_of` for the value's form).
    A feature table holds one row per key and event time, so the order is total."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    at = F.unix_micros(F.col(event_time).cast("timestamp"))
    rows = (df.where(F.col(event_time).isNotNull())
            .select(F.to_json(F.struct(*keys)).alias("key"), at.alias("t"),
                    F.to_json(F.struct(*[_plain(df, c) for c in features]),
                              {"ignoreNullFields": "false"}).alias("f")))
    key = Window.partitionBy("key")
    rows = rows.withColumn("n", F.row_number().over(key.orderBy(F.col("t").desc())))
    if keep_rows is not None:
        rows = rows.withColumn("limit", F.lit(keep_rows))
    else:  # every row within the span of the newest, and the one before it
        rows = rows.withColumn("newest", F.max("t").over(key)).withColumn(
            "limit", F.sum(F.when(F.col("t") > F.col("newest") - F.lit(keep_seconds * 1_000_000), 1)
                           .otherwise(0)).over(key) + 1)
    rows = rows.withColumn("total", F.count(F.lit(1)).over(key)).where(F.col("n") <= F.col("limit"))
    kept = rows.groupBy("key").agg(F.sort_array(F.collect_list(F.struct("t", "f"))).alias("rows"),
                                   F.max("total").alias("total"), F.count(F.lit(1)).alias("kept"),
                                   F.min("t").alias("oldest"))
    start = F.when(F.col("total") > F.col("kept"), F.col("oldest").cast("string")).otherwise(F.lit("null"))
    listed = F.array_join(F.transform("rows", lambda r: F.concat(F.lit("["), r["t"].cast("string"), F.lit(","),
                                                                   r["f"], F.lit("]"))), ",")
    return kept.select("key", F.concat(F.lit("["), start, F.lit(",["), listed, F.lit("]]")).alias("value"))


def _plain(df, column: str):
    """A feature as JSON carries it: instants as ISO text in UTC (the session's zone)."""
    from pyspark.sql import functions as F

    kind = df.schema[column].dataType.simpleString()
    if kind.startswith("timestamp") or kind == "date":
        return F.date_format(F.col(column), "yyyy-MM-dd'T'HH:mm:ss.SSSSSS").alias(column)
    if kind == "float":  # as the double a batch scorer widens it to (JSON text of a float is not)
        return F.col(column).cast("double").alias(column)
    return F.col(column)


# Key types whose JSON text this process writes exactly as Spark's to_json does (a double's
# text differs: Java writes 1.0E10); a table keyed otherwise is published through Spark.
CONTROL = re.compile("[\x00-\x1f]")  # escaped by Jackson in upper-case hex, by json.dumps in lower
LOCAL_KEY_TYPES = ("string", "int", "bigint", "smallint", "tinyint", "boolean", "timestamp", "date")


def kept_rows_arrow(table, keys: list[str], event_time: str, features: list[str], keep_seconds: int | None,
                    keep_rows: int | None) -> dict[str, str]:
    """`kept_rows` in this process, for a table small enough to read whole (an Arrow table
    from delta-rs): {key: value} with the same keys, and values that parse to the same rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def as_micros(column):
        if pa.types.is_date(column.type):
            column = pc.cast(column, pa.timestamp("us"))
        if not pa.types.is_timestamp(column.type):
            raise TypeError(f"{column.type} is not an instant")
        return pc.cast(pc.cast(column, pa.timestamp("us", column.type.tz)), pa.int64()).to_pylist()

    def plain(table, name):
        column = table.column(name)
        if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
            return [None if t is None else _iso_micros(t) for t in as_micros(column)]
        return column.to_pylist()  # a float widened to the double it holds, as Spark casts it

    times = as_micros(table.column(event_time))
    kinds = arrow_type_names(table.select(keys).schema)
    key_values = []
    for name in keys:
        column, kind = table.column(name), kinds[name]
        if kind not in LOCAL_KEY_TYPES:
            raise TypeError(f"key {name} of type {kind}")
        values = as_micros(column) if kind in ("timestamp", "date") else column.to_pylist()
        if kind == "string" and any(v is not None and CONTROL.search(v) for v in values):
            raise TypeError(f"key {name} holds control characters")  # escaped otherwise by Spark
        key_values.append([spark_key(v, kind) for v in values])
    per_key: dict[tuple, list[int]] = {}
    for row, (at, *values) in enumerate(zip(times, *key_values)):
        if at is not None:
            per_key.setdefault(tuple(values), []).append(row)
    chosen: list[tuple[str, int | None, list[int]]] = []
    for values, rows in per_key.items():
        # to_json leaves a null key field out, as Spark's does by default
        key = json.dumps({k: v for k, v in zip(keys, values) if v is not None}, separators=(",", ":"),
                         ensure_ascii=False)
        rows.sort(key=times.__getitem__)  # one row per key and time: the order is total
        if keep_rows is not None:
            limit = keep_rows
        else:  # every row within the span of the newest, and the one before it
            newest = times[rows[-1]]
            limit = sum(1 for r in rows if times[r] > newest - keep_seconds * 1_000_000) + 1
        chosen.append((key, times[rows[-limit]] if len(rows) > limit else None, rows[-limit:]))
    # Only the kept rows' features become Python values.
    if not chosen:  # no row with an event time
        return {}
    taken = table.select(features).take(pa.array([r for _, _, rows in chosen for r in rows], pa.int64()))
    columns = {name: plain(taken, name) for name in features}
    kept, at = {}, 0
    for key, start, rows in chosen:
        listed = [[times[r], {name: columns[name][at + i] for name in features}] for i, r in enumerate(rows)]
        at += len(rows)
        kept[key] = json.dumps([start, listed], separators=(",", ":"), ensure_ascii=False)
    return kept


def _iso_micros(at_us: int) -> str:
    """An instant as `_plain` writes it: ISO text in UTC to the microsecond."""
    return (EPOCH + dt.timedelta(microseconds=at_us)).replace(tzinfo=None).isoformat(timespec="microseconds")


# --- publishing ----------------------------------------------------------------------------


def up_to_date(config, store: Store, name: str) -> dict | None:
    """What `publish` reports when the store already holds the table's newest version in its
    current shape (nothing to do), else None: from the table's log, the markers, and a count
    of what the store really holds (of an aggregation table's recent events too)."""
    definition, ref, path = _built_table(config, name)
    version = lake.version(None, path, ref)
    done = _rows_current(store, ref, version, definition)
    if done is None or definition.aggregations is None:
        return done
    events = _events_current(store, ref, version, definition)
    return None if events is None else {**done, "recent_events": events}


def _rows_current(store: Store, ref: str, version: int, definition) -> dict | None:
    if not _holds(store, ref.removeprefix("features."), version, _shape(definition)):
        return None
    return {"table": ref, "version": version, "mode": "up to date", "written": 0, "deleted": 0}


def _events_current(store: Store, ref: str, version: int, definition) -> dict | None:
    stored = recent_events.store_table(ref.removeprefix("features."))
    if not _holds(store, stored, version, _events_shape(definition, (store.marker(stored) or {}).get("shape"))):
        return None
    return {"table": stored, "version": version, "mode": "up to date", "written": 0}


def _holds(store: Store, name: str, version: int, shape) -> bool:
    """Whether the store's generation of `name` is whole, of `version`, in `shape`."""
    last, held = store.state(name)
    if last and last.get("version") == version and last.get("shape") == shape and held == last.get("rows"):
        store.discard_unfinished(name)  # what a publish cut short left beside it
        return True
    return False


def _built_table(config, name: str):
    """(definition, lake reference, path) of feature table `name` (NAME: the declared version,
    or NAME@N), refused if not built yet. Each version is stored apart, under its own name
    (NAME@N), so models trained on different versions are each served their own."""
    table = feature_tables.resolve(config, name)
    path = table.path(config)
    if not lake.exists(path):
        raise NotFoundError(f"feature table {table.name} has not been built yet (build it: "
                            f"features build {table.name})")
    return table.definition, table.ref, path


def _shape(definition) -> dict:
    """What the stored values depend on besides the rows: a change publishes everything again."""
    seconds, rows = definition.online_keep()
    return {"keys": definition.keys, "event_time": definition.event_time, "features": list(definition.features),
            "keep_seconds": seconds, "keep_rows": rows, "format": "as-of/1"}


def publish(spark, config, store: Store, name: str, full: bool = False) -> dict:
    """Publish feature table `name`'s kept rows per key; returns what was done. A table of at
    most `local_read_max_mb` is read and reduced in this process (delta-rs, no JVM); a larger
    one by Spark (`spark`: a session, or a callable giving one, called only then)."""
    definition, ref, path = _built_table(config, name)
    version = lake.version(None, path, ref)
    if not full and (done := _rows_current(store, ref, version, definition)):
        return done
    name = ref.removeprefix("features.")
    last, held = store.state(name)
    shape = _shape(definition)
    built = feature_definitions.definition_at(lake.commits(path, ref), version)
    marker = {"table": name, "version": version, "definition": built.definition if built else None,
              "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "shape": shape, "lookback": definition.lookback,
              # requests' key values are checked against these types
              "key_types": {c["name"]: c["type"] for c in lake.schema(path, ref) if c["name"] in definition.keys}}
    # Incremental only onto a generation that holds all its marker says (else: a new one).
    since = last["version"] if last and not full and last.get("shape") == shape \
        and last.get("version", -1) < version and held == last.get("rows") else None
    reader = current = None
    if lake.local_reads(path, config.local_read_max_bytes, version, ref):
        reader = _LocalKept(path, ref, definition, shape)
        try:
            current = reader.rows(version)
        except TypeError:  # a type this process does not write as Spark does
            reader = None
    if reader is None:
        reader = _SparkKept(spark, path, ref, definition, shape)
        current = reader.rows(version)
    if since is not None:
        try:
            changed, removed = reader.changes(current, reader.rows(since))
        except Exception:  # noqa: BLE001 - the published version is vacuumed away: publish it all
            changed = None
        if changed is not None:
            rows = last["rows"] + sum(1 for _, _, existed in changed if not existed) - len(removed)
            if write_incremental(store, name, [(k, v) for k, v, _ in changed], removed,
                                 {**marker, "generation": last["generation"], "rows": rows}):
                return {"table": ref, "version": version, "mode": "incremental", "written": len(changed),
                        "deleted": len(removed)}
    written = write_full(store, name, reader.pairs(current), marker)
    return {"table": ref, "version": version, "mode": "full", "written": written, "deleted": 0}


def publish_table(spark, config, store: Store, name: str, full: bool = False) -> dict:
    """`publish`, and for an aggregation table its recent events per key too (what serving a
    model trained with temporal accuracy computes its values from, storage/recent_events.py)."""
    done = publish(spark, config, store, name, full)
    definition, ref, _ = _built_table(config, name)
    if definition.aggregations is not None:
        current = None if full else _events_current(store, ref, done["version"], definition)
        done["recent_events"] = current or publish_recent_events(spark, config, store, name, done["version"])
    return done


def _events_shape(definition, stored: dict | None) -> dict | None:
    """The shape of an aggregation table's recent events, with the fields `stored` (a marker's
    shape) lists: they follow from the declaration and the source's column types."""
    if stored is None:
        return None
    return {"format": recent_events.FORMAT, "fields": stored.get("fields"), "keys": definition.keys,
            "spec": definition.aggregations.model_dump(mode="json"), "keep_seconds": events_keep(definition)}


def events_keep(definition) -> int:
    """How far before a key's newest event requests are answered from its recent events: what
    the table keeps online as a duration (`online_keep`; a count of rows means nothing for
    events: 0)."""
    seconds, _ = definition.online_keep()
    return seconds or 0


def publish_recent_events(spark, config, store: Store, name: str, version: int) -> dict:
    """An aggregation table's recent events per key, read from its source at the Delta version
    the table's `version` was built from, written whole as a new generation of NAME~events."""
    table = feature_tables.resolve(config, name)
    definition, path = table.definition, table.path(config)
    spec = definition.aggregations
    declared = window_aggregates.Declared(spec, tuple(definition.keys),
                                          config.where(f"features.yml: feature_tables.{table.base}"))
    commits = lake.commits(path, table.ref)  # read once: the sources and the definition built
    built = next((c["metadata"].get("sources") or {} for c in reversed(commits)
                  if c["version"] <= version and isinstance(c["metadata"], dict)
                  and c["metadata"].get("kind") == "feature_table"), {})
    spark = spark() if callable(spark) else spark
    events, ref, read = feature_tables.source_events(spark, config, declared, built.get(config.source_ref(spec.source)))
    types = dict(events.dtypes)
    fields = recent_events.fields(spec, {c: types[window_aggregates.input_column(c)] in window_aggregates.NUMBERS
                                         for c in spec.inputs})
    recorded = feature_definitions.definition_at(commits, version)
    stored = recent_events.store_table(table.name)
    marker = {"table": stored, "version": version, "sources": {ref: read},
              "definition": recorded.definition if recorded else None,
              "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "shape": _events_shape(definition, {"fields": [list(f) for f in fields]}),
              "key_types": {k: t for k, t in events.dtypes if k in definition.keys}}
    pairs = _recent_events(events, declared, fields, events_keep(definition))
    written = write_full(store, stored, ((r.key, r.value) for r in pairs.toLocalIterator()), marker)
    return {"table": stored, "version": version, "mode": "full", "written": written}


def _recent_events(events, declared, fields: list[tuple[str, str]], keep_seconds: int):
    """(key, value) per key in recent_events' format: the visible time of its newest event
    (the cut), the earliest request time answered (`keep_seconds` before the cut), its events
    visible within the longest finite window before that, up to the cut, and its lifetime
    windows' values at the cut (computed by the batch engine)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    spec = declared.spec
    at = window_aggregates.AT
    keys = [F.col(f"`{k}`") for k in declared.keys]
    cuts = events.groupBy(*keys).agg(F.max(at).alias("__cut"))
    longest = spec.longest_seconds
    keep_us = keep_seconds * 1_000_000
    values = [(F.col(window_aggregates.input_column(c)).cast("double" if kind == recent_events.NUMBER else "string")
               .alias(recent_events.field_name(c, kind))) for c, kind in fields]
    cut = F.max(at).over(Window.partitionBy(*keys))
    kept = (events.withColumn("__cut", cut).where(F.col(at) > F.col("__cut") - F.lit((longest or 0) * 1_000_000 + keep_us))
            .where(F.lit(longest is not None))
            .select(*keys, F.struct(F.col(at).alias("t"), F.to_json(F.struct(*values), {"ignoreNullFields": "false"})
                                    .alias("f")).alias("e"))
            .groupBy(*keys).agg(F.sort_array(F.collect_list("e")).alias("rows")))
    lifetime = [c for c, (_, _, w) in spec.output_columns().items() if w == window_aggregates.LIFETIME]
    rows = cuts.withColumn("__t", F.timestamp_micros(F.col("__cut")))
    if lifetime:
        rows = window_aggregates.as_of(rows, "__t", {k: k for k in declared.keys}, events, declared,
                                       {c: c for c in lifetime})
        standing = F.to_json(F.struct(*[F.col(f"`{c}`") for c in lifetime]), {"ignoreNullFields": "false"})
    else:
        standing = F.lit("{}")
    listed = F.coalesce(F.array_join(F.transform("rows", lambda r: F.concat(F.lit("["), r["t"].cast("string"),
                                                                             F.lit(","), r["f"], F.lit("]"))), ","),
                        F.lit(""))
    return (rows.join(kept, list(declared.keys), "left")
            .select(F.to_json(F.struct(*keys)).alias("key"),
                    F.concat(F.lit("["), F.col("__cut").cast("string"), F.lit(","),
                             (F.col("__cut") - F.lit(keep_us)).cast("string"), F.lit(",["), listed, F.lit("],"), standing,
                             F.lit("]")).alias("value")))


class _SparkKept:
    """The kept rows of a version of the table, and what changed between two, by Spark."""

    def __init__(self, spark, path, ref, definition, shape):
        self.spark = spark() if callable(spark) else spark
        self.path, self.ref, self.definition, self.shape = path, ref, definition, shape

    def rows(self, version: int):
        return kept_rows(lake.read(self.spark, self.path, version, self.ref), self.definition.keys,
                         self.definition.event_time, list(self.definition.features),
                         self.shape["keep_seconds"], self.shape["keep_rows"])

    @staticmethod
    def changes(current, before) -> tuple[list, list]:
        """([(key, value, existed before)], [keys removed])."""
        from pyspark.sql import functions as F

        changed = current.subtract(before).join(before.select("key", F.lit(True).alias("existed")),
                                                "key", "left").collect()
        removed = [r.key for r in before.select("key").subtract(current.select("key")).collect()]
        return [(r.key, r.value, bool(r.existed)) for r in changed], removed

    @staticmethod
    def pairs(current):
        return ((r.key, r.value) for r in current.toLocalIterator())


class _LocalKept:
    """The same, in this process: a version read whole through delta-rs."""

    def __init__(self, path, ref, definition, shape):
        self.path, self.ref, self.definition, self.shape = path, ref, definition, shape

    def rows(self, version: int) -> dict[str, str]:
        columns = list(dict.fromkeys([*self.definition.keys, self.definition.event_time, *self.definition.features]))
        return kept_rows_arrow(lake.read_arrow(self.path, version, self.ref, columns), self.definition.keys,
                               self.definition.event_time, list(self.definition.features),
                               self.shape["keep_seconds"], self.shape["keep_rows"])

    @staticmethod
    def changes(current, before) -> tuple[list, list]:
        return ([(k, v, k in before) for k, v in current.items() if before.get(k) != v],
                [k for k in before if k not in current])

    @staticmethod
    def pairs(current):
        return iter(current.items())


