"""The point-in-time-correct join, as pure DataFrame functions.

Each label row gets, from a feature table, the newest feature row of its key whose event
time is at or before the label's event time and within the lookback; nothing later. Label
rows are never dropped or duplicated: no match gives nulls.

Algorithm (sort-merge, the cost of an equi-join's shuffles and sorts): the label rows and
each feature table are hash-partitioned by the join keys into the same partitions and sorted
on their own, each with only its own columns, by a long holding a hash of the keys and the
time (`sort_merge.sort_order`), then key and time; then, partition by partition,
one pass over the labels and every table beside them keeps the newest feature row at or
before each label row (`jvm/sparkml/pit/AsOfMerge.java`, in the platform's jar; it runs its
inputs as RDDs, where an `Observation` never reports, so observed label rows take the
window). Lookups that share their keys share the labels' shuffle, sort and pass. A session
without that jar gets the same rows from a window: the label rows and the rows of the
lookups sharing keys stacked, sorted once, and a running `last(..., ignorenulls)` per lookup.

Ties: a feature table the platform built has one row per key and event time (its build
refuses duplicates), so its rows need no tie-break. For any other frame, rows with the same
key and event time are ordered by a 64-bit hash of their feature values (and which of them
are null) and the greatest wins, so the result never depends on how the data was
partitioned. The scan hashes only rows that meet such a twin; the window sorts by the hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..core.errors import ConfigError
from . import sort_merge, window_aggregates

TIME_TYPES = ("timestamp", "timestamp_ntz", "date")


@dataclass(frozen=True)
class FeatureLookup:
    """One feature table's contribution to a training set, fully resolved."""

    table: str  # feature table name (lake table features.NAME)
    key_map: dict[str, str]  # feature table key column -> entity column
    event_time: str  # the feature table's event-time column
    columns: dict[str, str]  # feature column -> output column name
    lookback_seconds: int | None = None
    version: int | None = field(default=None, compare=False)
    # The table's definition hash at `version` (feature_definitions): what the rows were made by.
    definition: str | None = field(default=None, compare=False)
    # At most one row per key and event time (a platform-built feature table): no tie-break.
    unique_times: bool = field(default=False, compare=False)
    # An aggregation table looked up with temporal accuracy: its declaration (`aggregations`,
    # `keys`, `where`), computed from its source's events as of each row's time instead of
    # joined from its rows (window_aggregates.py). None: a point-in-time join.
    aggregation: dict | None = field(default=None, compare=False)

    def to_dict(self) -> dict:
        return {"table": self.table, "key_map": self.key_map, "event_time": self.event_time,
                "columns": self.columns, "lookback_seconds": self.lookback_seconds,
                "version": self.version, "definition": self.definition,
                **({"aggregation": self.aggregation} if self.aggregation else {})}

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureLookup":
        # Keys a later platform version records are left out: its manifests and feature specs
        # stay readable here (an older platform failed on the `definition` key).
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def check_time_types(entities, entity_time: str, features, lookup: FeatureLookup) -> None:
    left = entities.schema[entity_time].dataType.simpleString()
    right = features.schema[lookup.event_time].dataType.simpleString()
    if left not in TIME_TYPES or right not in TIME_TYPES or left != right:
        raise ConfigError(
            f"feature table {lookup.table}: event time {lookup.event_time!r} is {right} but the "
            f"entity event time {entity_time!r} is {left}; both must be the same timestamp or "
            "date type"
        )


def as_of_join(entities, entity_time: str, features, lookup: FeatureLookup, matched_flag: str):
    """`entities` plus `lookup.columns` as of each row's `entity_time` (see module doc)."""
    check_time_types(entities, entity_time, features, lookup)
    return _as_of_group(entities, entity_time, [(lookup, features, matched_flag)])


def join_features(entities, entity_time: str, tables: list[tuple[FeatureLookup, object]]):
    """Every lookup's columns as of each row's `entity_time`, one sort per set of join keys;
    returns the frame (entity columns, then each lookup's columns and its matched flag, in
    the order given) and the names of the matched flags."""
    from pyspark.sql import functions as F

    flags = [f"__matched_{i}" for i in range(len(tables))]
    groups: dict[frozenset, list] = {}
    aggregated = []
    for (lookup, features), flag in zip(tables, flags):
        if lookup.aggregation is not None:  # `features`: the source's events
            aggregated.append((lookup, features, flag))
            continue
        check_time_types(entities, entity_time, features, lookup)
        groups.setdefault(frozenset(lookup.key_map.values()), []).append((lookup, features, flag))
    joined = entities
    for members in groups.values():
        joined = _as_of_group(joined, entity_time, members)
    for lookup, events, flag in aggregated:
        joined = window_aggregates.as_of(joined, entity_time, lookup.key_map, events,
                                         window_aggregates.declared_of(lookup.aggregation), lookup.columns)
        # Matched: some window of the key held a value as of the row's time.
        present = [F.col(f"`{c}`").isNotNull() for c in lookup.columns.values()]
        joined = joined.withColumn(flag, present[0] if len(present) == 1 else F.greatest(*present))
    order = [*entities.columns]
    for (lookup, _), flag in zip(tables, flags):
        order += [*lookup.columns.values(), flag]
    return joined.select(*[F.col(f"`{c}`") for c in order]), flags


def _as_of_group(entities, entity_time: str, members: list):
    """The join for lookups that all key on the same entity columns. Label rows that carry an
    `Observation` take the window: the scan runs its inputs as RDDs, where it never reports."""
    scan = _merge_scan(entities.sparkSession)
    if scan is not None and not sort_merge.observed(entities):
        return _merged(scan, entities, entity_time, members)
    return _windowed(entities, entity_time, members)


def _merge_scan(spark):
    """The JVM side of the sort-merge scan (the platform's jar, `sparkml_platform/jvm`), or
    None where the session lacks it: Spark Connect, or a session started without that jar."""
    return sort_merge.jvm_class(spark, "AsOfMerge")


def _feature_rows(lookup: FeatureLookup, features, entity_time: str, keys: dict):
    """The lookup's rows that can ever match (keys and event time set), with the entity's key
    names (`keys`: entity column -> its type, or None to keep the table's) and the event time
    under the entity's time name."""
    from pyspark.sql import functions as F

    by_entity = {ek: fk for fk, ek in lookup.key_map.items()}
    key_cols = [(F.col(f"`{by_entity[k]}`").cast(t) if t is not None else F.col(f"`{by_entity[k]}`")).alias(k)
                for k, t in keys.items()]
    rows = features.where(F.col(f"`{lookup.event_time}`").isNotNull()
                          & F.expr(" AND ".join(f"`{k}` IS NOT NULL" for k in lookup.key_map)))
    return rows, key_cols, F.col(f"`{lookup.event_time}`").alias(entity_time)


def _tie_break(lookup: FeatureLookup) -> list:
    """The tie-break hash column where rows may share a key and event time (the window join
    sorts by it; the sort-merge scan computes the same hash only where such rows meet)."""
    from pyspark.sql import functions as F

    if lookup.unique_times:
        return []
    return [F.xxhash64(*[x for c in lookup.columns for x in (F.col(f"`{c}`"), F.col(f"`{c}`").isNull())])
            .alias("__pit_tie")]


def _merged(scan, entities, entity_time: str, members: list):
    """Sort-merge: the labels and each lookup's rows are hash-partitioned by the keys alike and
    sorted on their own (each with its own columns only: keys, time, then its payload); one
    pass over the labels and all of them, in the JVM, keeps each lookup's newest row at or
    before each label row."""
    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F

    spark = entities.sparkSession
    keys = sorted(members[0][0].key_map.values())
    parts = int(spark.conf.get("spark.sql.shuffle.partitions"))
    key_cols = [F.col(f"`{k}`") for k in keys]
    time_type = entities.schema[entity_time].dataType.simpleString()

    def sorted_by_order(frame, time_order):
        """The scan's input: after the shuffle (no extra bytes in it), the order column first,
        and the partitions sorted by (order, keys, time)."""
        order = sort_merge.sort_order(key_cols, F.col(f"`{entity_time}`"), time_type).alias(sort_merge.ORDER)
        return (frame.repartition(parts, *key_cols).select(order, "*")
                .sortWithinPartitions(F.col(sort_merge.ORDER), *key_cols, time_order))

    labels = sorted_by_order(
        entities.select(*key_cols, F.col(f"`{entity_time}`"),
                        *[F.col(f"`{c}`") for c in entities.columns if c not in (*keys, entity_time)]),
        F.col(f"`{entity_time}`").asc_nulls_last())
    frames, ties, prefixes = [], [], []
    for i, (lookup, features, _) in enumerate(members):
        rows, keyed, when = _feature_rows(lookup, features, entity_time,
                                          {k: entities.schema[k].dataType for k in keys})
        payload = [F.col(f"`{c}`").alias(f"c{j}") for j, c in enumerate(lookup.columns)]
        if lookup.lookback_seconds is not None:
            payload.append(F.col(f"`{lookup.event_time}`").alias("seen"))
        frame = sorted_by_order(rows.select(*keyed, when, *payload), F.col(f"`{entity_time}`"))
        frames.append(frame._jdf)
        # The scan breaks ties itself, hashing only rows that share a key and time.
        ties.append(-1 if lookup.unique_times else len(lookup.columns))
        prefixes.append(f"__pit_{i}_")
    dates = entities.schema[entity_time].dataType.simpleString() == "date"
    joined = DataFrame(scan.join(labels._jdf, len(keys), dates, frames, ties, prefixes), spark)
    return _picked(joined, entities.columns, entity_time, [
        (lookup, flag, F.col(f"__pit_{i}_found"), F.col(f"__pit_{i}_seen"),
         {out: F.col(f"__pit_{i}_c{j}") for j, out in enumerate(lookup.columns.values())})
        for i, (lookup, _, flag) in enumerate(members)])


def _windowed(entities, entity_time: str, members: list):
    """Union and window, for sessions without the JVM scan: the label rows and every lookup's
    rows stacked, partitioned by the keys and sorted by event time, feature rows before label
    rows at equal times; a running `last(..., ignorenulls)` per lookup shares the one sort."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = sorted(members[0][0].key_map.values())
    side = "__pit_side"
    ties = any(not lookup.unique_times for lookup, _, _ in members)
    packed = [f"__pit_feat_{i}" for i in range(len(members))]
    stacked = entities.withColumn(side, F.lit(1).cast("tinyint"))
    for (lookup, features, _), name in zip(members, packed):
        values = [F.col(f"`{c}`").alias(out) for c, out in lookup.columns.items()]
        if lookup.lookback_seconds is not None:
            values.append(F.col(f"`{lookup.event_time}`").alias("__pit_seen"))
        rows, keyed, when = _feature_rows(lookup, features, entity_time, dict.fromkeys(keys))
        tie = _tie_break(lookup)
        if ties and not tie:
            tie = [F.lit(0).cast("long").alias("__pit_tie")]
        rows = rows.select(*keyed, when, F.lit(0).cast("tinyint").alias(side), F.struct(*values).alias(name), *tie)
        stacked = stacked.unionByName(rows, allowMissingColumns=True)
    order = [F.col(f"`{entity_time}`").asc_nulls_last(), F.col(side)] + ([F.col("__pit_tie")] if ties else [])
    newest_so_far = (Window.partitionBy(*[F.col(f"`{k}`") for k in keys]).orderBy(*order)
                     .rowsBetween(Window.unboundedPreceding, Window.currentRow))
    found = [F.last(name, ignorenulls=True).over(newest_so_far).alias(name) for name in packed]
    joined = stacked.select(*[F.col(f"`{c}`") for c in entities.columns], side, *found).where(
        F.col(side) == 1)
    return _picked(joined, entities.columns, entity_time, [
        (lookup, flag, F.col(name).isNotNull(), F.col(f"{name}.__pit_seen"),
         {out: F.col(f"{name}.`{out}`") for out in lookup.columns.values()})
        for (lookup, _, flag), name in zip(members, packed)])


def _picked(joined, columns: list[str], entity_time: str, lookups: list):
    """The entity columns, then per lookup its columns and matched flag: a row found, the
    label's time set, and the row no older than the lookback."""
    from pyspark.sql import functions as F

    out = [F.col(f"`{c}`") for c in columns]
    for lookup, flag, found, seen, values in lookups:
        in_range = found & F.col(f"`{entity_time}`").isNotNull()
        if lookup.lookback_seconds is not None:
            age = (F.col(f"`{entity_time}`").cast("timestamp").cast("long")
                   - seen.cast("timestamp").cast("long"))
            in_range = in_range & (age <= lookup.lookback_seconds)
        out += [F.when(in_range, value).alias(name) for name, value in values.items()]
        out.append(in_range.alias(flag))
    return joined.select(*out)


def content_digest(df) -> str:
    """An order-independent digest of the rows: row count and the sum of 64-bit row hashes."""
    from pyspark.sql import functions as F

    row = df.select(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.xxhash64(*[F.col(f"`{c}`") for c in sorted(df.columns)]).cast("decimal(38,0)"))
        .alias("h"),
    ).collect()[0]
    return f"{row['n']}-{int(row['h'] or 0) % (1 << 64):016x}"
