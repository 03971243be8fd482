"""Declared window aggregations computed from a source's events, as DataFrame functions.

One engine for both accuracies, so they agree by construction (config/aggregations.py has the
semantics): `as_of(rows, time, events, ...)` gives each row the aggregates of its key's events
as of the row's own time (`temporal`: training sets and batch scoring), and `snapshots(...)`
is the same computation at period ends, one row per key at each period end where a value may
change (the table's rows, which the point-in-time join and the online store read).

The rows to answer and the events are stacked, partitioned by the keys and ordered by time in
microseconds; each window is a range frame `(t - w, t]` over that order (events at exactly
t are in, those at exactly t - w out), and every function skips the answered rows (their
inputs are null). Events at the same time as a row count for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config.aggregations import ANY_TYPE, LIFETIME, Aggregations, percentile_of, window_seconds
from ..core.errors import ConfigError, sql_from_config
from . import sort_merge

# What an aggregation table's rows are made by, in its definition hash (the code hash of a
# transformation): a change to what the engine computes bumps it, and tables are rebuilt.
ENGINE = "window-aggregates-1"
SIDE = "__agg_side"  # 0: an event, 1: a row to answer
AT = "__agg_at"  # the time in microseconds since 1970 (an event's: when it became visible)
NUMBERS = ("tinyint", "smallint", "int", "bigint", "float", "double", "boolean")
TIME_TYPES = ("timestamp", "timestamp_ntz", "date")


@dataclass(frozen=True)
class Declared:
    """An aggregation table's declaration with what reading its events needs: the table's
    keys, and where messages point (`features.yml: feature_tables.NAME`)."""

    spec: Aggregations
    keys: tuple[str, ...]
    where: str


def declared_of(recorded: dict) -> Declared:
    """A declaration as lookups record it (`FeatureLookup.aggregation`)."""
    return Declared(Aggregations.model_validate(recorded["aggregations"]), tuple(recorded["keys"]),
                    recorded["where"])


def recorded(declared: Declared) -> dict:
    return {"aggregations": declared.spec.model_dump(mode="json"), "keys": list(declared.keys),
            "where": declared.where}


def _input(column: str) -> str:
    return f"__agg_in_{column}"


def events_of(source, declared: Declared):
    """The source's events: filtered, with the derived columns, then only the keys, the
    visible time (`AT`) and the inputs; rows without a key or a time dropped. What the
    source cannot feed is refused here, before anything is computed or written, naming the
    key: an event time or key it lacks, SQL that does not parse, a mean of a string."""
    from pyspark.sql import functions as F

    spec, where = declared.spec, f"{declared.where}.aggregations"
    if spec.event_time not in source.columns:
        raise ConfigError(f"{where}.event_time: column {spec.event_time!r} is not in {spec.source} "
                          f"(columns: {', '.join(source.columns)})")
    time_type = source.schema[spec.event_time].dataType.simpleString()
    if time_type not in TIME_TYPES:
        raise ConfigError(f"{where}.event_time: column {spec.event_time!r} of {spec.source} is "
                          f"{time_type}, not a timestamp or date")
    if spec.filter:
        with sql_from_config(f"{where}.filter"):
            source = source.where(F.expr(spec.filter))
    for name, expression in spec.columns.items():
        with sql_from_config(f"{where}.columns.{name}"):
            source = source.withColumn(name, F.expr(expression))
    missing = [k for k in declared.keys if k not in source.columns]
    if missing:
        raise ConfigError(f"{declared.where}.keys: {', '.join(missing)} is not a column of "
                          f"{spec.source} or a derived column (columns: {', '.join(source.columns)})")
    types = {f.name: f.dataType.simpleString() for f in source.schema.fields}
    for i, item in enumerate(spec.aggregate):
        if item.column not in types:
            raise ConfigError(f"{where}.aggregate.{i}.column: {item.column!r} is not a column of "
                              f"{spec.source} or a derived column (columns: {', '.join(types)})")
        numeric = [f for f in item.functions if f not in ANY_TYPE]
        if numeric and types[item.column] not in NUMBERS:
            raise ConfigError(f"{where}.aggregate.{i}.functions: {', '.join(numeric)} of "
                              f"{item.column!r}, which is {types[item.column]}: these need a number "
                              f"(count and approx_distinct take any type)")
    visible = _micros(F.col(f"`{spec.event_time}`"), time_type) + F.lit(spec.availability_seconds * 1_000_000)
    inputs = [F.col(f"`{c}`").alias(_input(c)) for c in spec.inputs]
    return (source.select(*[F.col(f"`{k}`") for k in declared.keys], visible.alias(AT), *inputs)
            .where(F.col(AT).isNotNull() & F.expr(" AND ".join(f"`{k}` IS NOT NULL" for k in declared.keys))))


def _micros(column, time_type: str):
    """A time as microseconds since 1970 (dates at their midnight, UTC)."""
    from pyspark.sql import functions as F

    if time_type == "date":
        return F.unix_date(column).cast("long") * 86_400_000_000
    if time_type == "timestamp_ntz":  # its fields, read in the session's time zone (UTC)
        return F.unix_micros(column.cast("timestamp"))
    return F.unix_micros(column)


def as_of(rows, time: str, key_map: dict[str, str], events, declared: Declared,
          columns: dict[str, str] | None = None):
    """`rows` (every column kept, none added or dropped but the aggregates) with each
    declared aggregate (or the `columns` asked: table column -> output name) as of the row's
    `time`, over the events of its key (`key_map`: the table's key -> the rows' column).
    A row without a time or a key gets nulls."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    spec = declared.spec
    outputs = spec.output_columns()
    wanted = columns or {c: c for c in outputs}
    time_type = rows.schema[time].dataType.simpleString()
    if time_type not in TIME_TYPES:
        raise ConfigError(f"{declared.where}: the rows' time {time!r} is {time_type}, not a timestamp or date")
    row_keys = [key_map[k] for k in declared.keys]
    keyed = events.select(*[F.col(f"`{k}`").cast(rows.schema[key_map[k]].dataType).alias(key_map[k])
                            for k in declared.keys], AT, *[_input(c) for c in spec.inputs])
    sweep = _sweep(rows.sparkSession)
    if sweep is not None and all(outputs[c][1] in SWEPT for c in wanted) and not sort_merge.observed(rows):
        return _swept(sweep, rows, time, time_type, row_keys, keyed, wanted, spec.inputs, outputs)
    stacked = (rows.withColumn(SIDE, F.lit(1).cast("tinyint"))
               .withColumn(AT, _micros(F.col(f"`{time}`"), time_type))
               .unionByName(keyed.withColumn(SIDE, F.lit(0).cast("tinyint")), allowMissingColumns=True))
    by_key = Window.partitionBy(*[F.col(f"`{k}`") for k in row_keys]).orderBy(F.col(AT))
    values = []
    for column, out in wanted.items():
        source, function, window = outputs[column]
        seconds = window_seconds(window)
        frame = by_key.rangeBetween(Window.unboundedPreceding if seconds is None else -(seconds * 1_000_000 - 1), 0)
        values.append(_aggregate(function, F.col(_input(source)), frame).alias(out))
    answered = stacked.select(*[F.col(f"`{c}`") for c in rows.columns], SIDE, AT, *values).where(F.col(SIDE) == 1)
    untimed = F.col(AT).isNull()
    return answered.select(*[F.col(f"`{c}`") for c in rows.columns],
                           *[F.when(~untimed, F.col(f"`{out}`")).alias(out) for out in wanted.values()])


# The functions the one-pass sweep in the platform's jar computes (jvm/sparkml/pit/WindowSweep.java);
# a declaration asking for another (approx_distinct, a percentile) is computed by Spark frames.
SWEPT = ("count", "sum", "mean", "min", "max", "stddev", "first", "last")


def _sweep(spark):
    """The sweep's JVM side, or None where the session lacks the platform's jar."""
    return sort_merge.jvm_class(spark, "WindowSweep")


def _swept(sweep, rows, time: str, time_type: str, row_keys: list[str], keyed, wanted: dict,
           inputs: list[str], outputs: dict):
    """`as_of` by the sweep: the rows and the events hash-partitioned by the keys alike and
    sorted on their own by (order, keys, time), then one pass per partition in the JVM, each
    event added to and dropped from each window once. The same values as the frames below."""
    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F

    spark = rows.sparkSession
    parts = int(spark.conf.get("spark.sql.shuffle.partitions"))
    names = [f"__agg_k{i}" for i in range(len(row_keys))]
    key_cols = [F.col(n) for n in names]

    def prepared(frame, rest: list[str]):
        order = sort_merge.sort_order(key_cols, F.col(AT), "micros").alias(sort_merge.ORDER)
        return (frame.repartition(parts, *key_cols).select(order, *names, AT, *[F.col(f"`{c}`") for c in rest])
                .sortWithinPartitions(sort_merge.ORDER, *key_cols, F.col(AT).asc_nulls_last()))

    labels = prepared(rows.select(*[F.col(f"`{k}`").alias(n) for k, n in zip(row_keys, names)],
                                  _micros(F.col(f"`{time}`"), time_type).alias(AT), "*"), rows.columns)
    # Each input as a double; an input that is not a number (only counted) as 1.0 where present.
    types = dict(keyed.dtypes)
    values = [(F.col(_input(c)).cast("double") if types[_input(c)] in NUMBERS
               else F.when(F.col(_input(c)).isNotNull(), F.lit(1.0))).alias(f"__agg_v{i}")
              for i, c in enumerate(inputs)]
    events = prepared(keyed.select(*[F.col(f"`{k}`").alias(n) for k, n in zip(row_keys, names)], AT, *values),
                      [f"__agg_v{i}" for i in range(len(inputs))])
    asked = list(wanted.items())
    spans = [-1 if (seconds := window_seconds(outputs[c][2])) is None else seconds * 1_000_000 for c, _ in asked]
    swept = DataFrame(sweep.aggregate(labels._jdf, events._jdf, len(names),
                                      [inputs.index(outputs[c][0]) for c, _ in asked], spans,
                                      [outputs[c][1] for c, _ in asked],
                                      [f"__agg_o{i}" for i in range(len(asked))]), spark)
    return swept.select(*[F.col(f"`{c}`") for c in rows.columns],
                        *[F.col(f"__agg_o{i}").alias(out) for i, (_, out) in enumerate(asked)])


def _aggregate(function: str, value, frame):
    """One function over one window frame; null when the frame holds no non-null input."""
    from pyspark.sql import functions as F

    number = value.cast("double")
    present = F.count(value).over(frame)
    if function == "count":
        return F.when(present > 0, present)
    if function == "approx_distinct":
        # A DataSketches HLL sketch (hll_sketch_agg takes strings, not doubles): mergeable, so
        # tiles of it add up to the same estimate.
        sketch = F.hll_sketch_agg(value.cast("string")).over(frame)
        return F.when(present > 0, F.hll_sketch_estimate(sketch))
    if function in ("first", "last"):
        # By time; events at the same time ordered by value (the same answer however stored).
        order = F.when(number.isNotNull(), F.struct(F.col(AT), number))
        pick = F.min_by if function == "first" else F.max_by
        return pick(number, order).over(frame)
    q = percentile_of(function)
    if q is not None:
        return F.percentile(number, F.lit(q)).over(frame)  # exact, interpolated like pandas
    simple = {"sum": F.sum, "mean": F.avg, "min": F.min, "max": F.max, "stddev": F.stddev_samp}
    return simple[function](number).over(frame)


def change_points(events, declared: Declared):
    """Each key's period ends where a value may change: the end of the period an event becomes
    visible in, and the period end each finite window drops it at; up to the period end of
    the newest event. Returns (keys, `AT`) rows, distinct."""
    from pyspark.sql import functions as F

    spec = declared.spec
    period = spec.period_seconds * 1_000_000
    ends = -F.floor(-F.col(AT) / F.lit(period)).cast("long") * F.lit(period)  # ceil to a period end
    entered = events.select(*[F.col(f"`{k}`") for k in declared.keys], ends.alias(AT))
    spans = sorted({s for item in spec.aggregate for w in item.windows
                    if w != LIFETIME and (s := window_seconds(w)) is not None})
    shifted = F.explode(F.array(*[F.lit(0).cast("long")] + [F.lit(s * 1_000_000).cast("long") for s in spans]))
    points = (entered.select(*[F.col(f"`{k}`") for k in declared.keys], F.col(AT), shifted.alias("__agg_shift"))
              .select(*[F.col(f"`{k}`") for k in declared.keys], (F.col(AT) + F.col("__agg_shift")).alias(AT))
              .distinct())
    newest = entered.agg(F.max(AT)).collect()[0][0]
    return points.where(F.col(AT) <= F.lit(newest)) if newest is not None else points


def snapshots(events, declared: Declared, event_time: str):
    """The table's rows: per key, at each change point (`change_points`), every declared
    aggregate as of that period end, which is the row's `event_time` (a timestamp)."""
    from pyspark.sql import functions as F

    points = change_points(events, declared)
    rows = points.select(*[F.col(f"`{k}`") for k in declared.keys],
                         F.timestamp_micros(F.col(AT)).alias(event_time))
    return as_of(rows, event_time, {k: k for k in declared.keys}, events, declared)
