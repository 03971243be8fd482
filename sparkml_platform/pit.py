"""The point-in-time-correct join, as pure DataFrame functions.

Each label row gets, from a feature table, the newest feature row of its key whose event
time is at or before the label's event time and within the lookback; nothing later. Label
rows are never dropped or duplicated: no match gives nulls.

Algorithm (union and window, cost of one sort): label rows and feature rows are stacked
into one frame, partitioned by the key and sorted by event time, feature rows before label
rows at equal times. A running `last(..., ignorenulls)` carries the newest feature row down
to each label row. No label row is ever paired with every earlier feature row.

Ties: feature rows with the same key and event time are ordered by their feature values
(nulls first, in the declared column order) and the last one wins, so the result never
depends on how the data was partitioned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError

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

    def to_dict(self) -> dict:
        return {"table": self.table, "key_map": self.key_map, "event_time": self.event_time,
                "columns": self.columns, "lookback_seconds": self.lookback_seconds,
                "version": self.version}

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureLookup":
        return cls(**data)


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
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    check_time_types(entities, entity_time, features, lookup)
    keys = list(lookup.key_map.values())
    side, ts, feat = "__pit_side", "__pit_ts", "__pit_feat"
    feature_rows = features.where(
        F.col(lookup.event_time).isNotNull()
        & F.expr(" AND ".join(f"`{k}` IS NOT NULL" for k in lookup.key_map))
    ).select(
        *[F.col(fk).alias(ek) for fk, ek in lookup.key_map.items()],
        F.col(lookup.event_time).alias(ts),
        F.lit(0).alias(side),
        F.struct(F.col(lookup.event_time).alias("event_time"),
                 *[F.col(c).alias(out) for c, out in lookup.columns.items()]).alias(feat),
    )
    label_rows = entities.withColumn(ts, F.col(entity_time)).withColumn(side, F.lit(1))
    stacked = label_rows.unionByName(feature_rows, allowMissingColumns=True)
    newest_so_far = (
        Window.partitionBy(*keys).orderBy(F.col(ts).asc_nulls_last(), side, feat)
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    found = F.last(feat, ignorenulls=True).over(newest_so_far)
    joined = stacked.withColumn("__pit_found", found).where(F.col(side) == 1)
    in_range = F.col("__pit_found").isNotNull() & F.col(ts).isNotNull()
    if lookup.lookback_seconds is not None:
        age = F.col(ts).cast("timestamp").cast("long") - F.col("__pit_found.event_time").cast(
            "timestamp").cast("long")
        in_range = in_range & (age <= lookup.lookback_seconds)
    out = joined.select(
        *entities.columns,
        *[F.when(in_range, F.col(f"__pit_found.{name}")).alias(name)
          for name in lookup.columns.values()],
        in_range.alias(matched_flag),
    )
    return out


def join_features(entities, entity_time: str, tables: list[tuple[FeatureLookup, object]]):
    """Apply each lookup in turn; returns the frame and the names of the matched flags."""
    flags = []
    for i, (lookup, features) in enumerate(tables):
        flag = f"__matched_{i}"
        entities = as_of_join(entities, entity_time, features, lookup, flag)
        flags.append(flag)
    return entities, flags


def content_digest(df) -> str:
    """An order-independent digest of the rows: row count and the sum of 64-bit row hashes."""
    from pyspark.sql import functions as F

    row = df.select(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.xxhash64(*[F.col(f"`{c}`") for c in sorted(df.columns)]).cast("decimal(38,0)"))
        .alias("h"),
    ).collect()[0]
    return f"{row['n']}-{int(row['h'] or 0) % (1 << 64):016x}"
