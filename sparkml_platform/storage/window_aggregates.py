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

import datetime as dt
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


def input_column(column: str) -> str:
    """The name an input column has among `events_of`'s columns."""
    return f"__agg_in_{column}"


def events_of(source, declared: Declared, after: int | None = None, to: int | None = None):
    """The source's events: filtered, with the derived columns, then only the keys, the
    visible time (`AT`) and the inputs; rows without a key or a time dropped. What the
    source cannot feed is refused here, before anything is computed or written, naming the
    key: an event time or key it lacks, SQL that does not parse, a mean of a string.
    `after`/`to`: only the events visible in (after, to] (microseconds), filtered on the
    source's own event-time column, so that Delta skips the files outside."""
    from pyspark.sql import functions as F

    spec, where = declared.spec, f"{declared.where}.aggregations"
    if spec.event_time not in source.columns:
        raise ConfigError(f"{where}.event_time: column {spec.event_time!r} is not in {spec.source} "
                          f"(columns: {', '.join(source.columns)})")
    time_type = source.schema[spec.event_time].dataType.simpleString()
    if time_type not in TIME_TYPES:
        raise ConfigError(f"{where}.event_time: column {spec.event_time!r} of {spec.source} is "
                          f"{time_type}, not a timestamp or date")
    source = _visible_between(source, spec, time_type, after, to)
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
    inputs = [F.col(f"`{c}`").alias(input_column(c)) for c in spec.inputs]
    return (source.select(*[F.col(f"`{k}`") for k in declared.keys], visible.alias(AT), *inputs)
            .where(F.col(AT).isNotNull() & F.expr(" AND ".join(f"`{k}` IS NOT NULL" for k in declared.keys))))


def _visible_between(source, spec: Aggregations, time_type: str, after: int | None, to: int | None):
    """The source's rows whose visible time is in (after, to], as a predicate on the event-time
    column itself (a literal bound, which Delta's file statistics and Parquet's row groups
    skip by; an expression of the column would be read whole)."""
    from pyspark.sql import functions as F

    column, lag = F.col(f"`{spec.event_time}`"), spec.availability_seconds * 1_000_000

    def bound(micros: int):
        if time_type == "date":  # a date's visible time is its midnight (UTC): whole days
            return F.date_from_unix_date(F.lit(micros // DAY))
        instant = F.timestamp_micros(F.lit(micros))
        return instant.cast("timestamp_ntz") if time_type == "timestamp_ntz" else instant

    if after is not None:
        source = source.where(column > bound(after - lag))
    if to is not None:
        source = source.where(column <= bound(to - lag))
    return source


DAY = 86_400_000_000


def _micros(column, time_type: str):
    """A time as microseconds since 1970 (dates at their midnight, UTC)."""
    from pyspark.sql import functions as F

    if time_type == "date":
        return F.unix_date(column).cast("long") * DAY
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
                            for k in declared.keys], AT, *[input_column(c) for c in spec.inputs])
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
        values.append(_aggregate(function, F.col(input_column(source)), frame).alias(out))
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
    values = [(F.col(input_column(c)).cast("double") if types[input_column(c)] in NUMBERS
               else F.when(F.col(input_column(c)).isNotNull(), F.lit(1.0))).alias(f"__agg_v{i}")
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


def _period_end(at, period: int):
    """The end of the period (e - period, e] holding `at`: period ends are the multiples of
    the period since 1970. In whole numbers (a division in doubles rounds near the ends)."""
    from pyspark.sql import functions as F

    return at + F.pmod(-at, F.lit(period).cast("long"))


def change_points(events, declared: Declared):
    """Each key's period ends where a value may change: the end of the period an event becomes
    visible in, and the period end each finite window drops it at; up to the period end of
    the newest event. Returns (keys, `AT`) rows, distinct."""
    from pyspark.sql import functions as F

    entered = events.select(*[F.col(f"`{k}`") for k in declared.keys],
                            _period_end(F.col(AT), declared.spec.period_seconds * 1_000_000).alias(AT))
    return _points(entered, declared)


def _points(entered, declared: Declared, since: int | None = None, before: int | None = None):
    """`change_points` from the period ends events entered at (keys, `AT`), only those in
    [since, before) when given."""
    from pyspark.sql import functions as F

    spec = declared.spec
    spans = sorted({s for item in spec.aggregate for w in item.windows
                    if w != LIFETIME and (s := window_seconds(w)) is not None})
    shifted = F.explode(F.array(*[F.lit(0).cast("long")] + [F.lit(s * 1_000_000).cast("long") for s in spans]))
    points = (entered.select(*[F.col(f"`{k}`") for k in declared.keys], F.col(AT), shifted.alias("__agg_shift"))
              .select(*[F.col(f"`{k}`") for k in declared.keys], (F.col(AT) + F.col("__agg_shift")).alias(AT))
              .distinct())
    newest = entered.agg(F.max(AT)).collect()[0][0]
    if newest is not None:
        points = points.where(F.col(AT) <= F.lit(newest))
    if since is not None:
        points = points.where(F.col(AT) >= F.lit(since))
    if before is not None:
        points = points.where(F.col(AT) < F.lit(before))
    return points


def snapshots(events, declared: Declared, event_time: str):
    """The table's rows: per key, at each change point (`change_points`), every declared
    aggregate as of that period end, which is the row's `event_time` (a timestamp)."""
    from pyspark.sql import functions as F

    points = change_points(events, declared)
    rows = points.select(*[F.col(f"`{k}`") for k in declared.keys],
                         F.timestamp_micros(F.col(AT)).alias(event_time))
    return as_of(rows, event_time, {k: k for k in declared.keys}, events, declared)


# Tiles: each key's partial aggregates per snapshot period (the events visible in (e - p, e]),
# kept in Delta beside the table (places.tiles). Every finite window is whole periods, so a
# window's value at a period end merges the tiles inside it: an incremental build computes
# only the newest periods' tiles from events and reads the older tiles, not their events.
# Functions whose tiles merge exactly (approx_distinct: HLL sketches, which union); a table
# asking for a percentile, which does not merge, is computed from all its events.
TILED = ("count", "sum", "mean", "min", "max", "stddev", "first", "last", "approx_distinct")
TILE_END = "period_end"  # the tile's period end, a timestamp
# What each function needs of a tile (`n`, the count of non-null values, always).
TILE_PARTS = {"count": (), "sum": ("sum",), "mean": ("sum",), "stddev": ("sum", "m2"), "min": ("min",),
              "max": ("max",), "first": ("first_at", "first"), "last": ("last_at", "last"),
              "approx_distinct": ("hll",)}


def tiled(spec: Aggregations) -> bool:
    """Whether the table is built from tiles: every function it asks for merges."""
    return all(function in TILED for _, function, _ in spec.output_columns().values())


def tile_parts(spec: Aggregations) -> dict[str, list[str]]:
    """Input column -> the parts its tiles hold, in a fixed order."""
    order = ["n", "sum", "m2", "min", "max", "first_at", "first", "last_at", "last", "hll"]
    asked: dict[str, set[str]] = {}
    for column, function, _ in spec.output_columns().values():
        asked.setdefault(column, {"n"}).update(TILE_PARTS[function])
    return {column: [p for p in order if p in parts] for column, parts in asked.items()}


def _part(column: str, part: str) -> str:
    return f"{column}__{part}"


@dataclass(frozen=True)
class TileRange:
    """What a tiled build computes, in microseconds since 1970 (None: no bound). Tiles with
    period ends in [first, last] are computed again from the events visible in (events_after,
    last]; the tiles with period ends at or after `read_after` are read to merge (every tile
    when a window is lifetime): the one at exactly first - w is outside every window from
    first on, but its leaving the window is a change point at first; rows are written at the
    change points in [since, before)."""

    first: int | None = None
    last: int | None = None
    events_after: int | None = None
    read_after: int | None = None
    since: int | None = None
    before: int | None = None


def tile_range(spec: Aggregations, window, landed_from: int | None = None) -> TileRange:
    """The range a build of the event days `window` ((first, last) dates, last None: open;
    None: the whole table) computes. Its rows are the period ends from the first day's
    midnight; the tiles computed again are those of the periods ending from then on, whose
    events start one period earlier; the older tiles a finite window reaches are read.
    `landed_from`: the earliest visible time among the events landed since the tiles were
    computed; when it is older, the tiles are computed again from its period on (late events
    count in the windows of the rows written, as in a full build)."""
    if window is None:
        return TileRange()
    period = spec.period_seconds * 1_000_000
    first_day, last_day = window
    since = _day_micros(first_day)
    first = -(-since // period) * period  # the first period end at or after it
    if landed_from is not None:
        first = min(first, -(-landed_from // period) * period)
    before = None if last_day is None else _day_micros(last_day) + DAY
    last = None if before is None else -(-before // period) * period - period  # the last one before
    longest = spec.longest_seconds
    lifetime = any(w == LIFETIME for _, _, w in spec.output_columns().values())
    rows_from = -(-since // period) * period
    read_after = None if lifetime or longest is None else rows_from - longest * 1_000_000
    return TileRange(first, last, first - period, read_after, since, before)


def visible_micros(event_time, spec: Aggregations) -> int:
    """When an event of this time (a datetime, naive ones in UTC, or a date) becomes visible."""
    if isinstance(event_time, dt.datetime):
        aware = event_time if event_time.tzinfo else event_time.replace(tzinfo=dt.timezone.utc)
        at = (aware - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)
    else:
        at = _day_micros(event_time)
    return at + spec.availability_seconds * 1_000_000


def _day_micros(day) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY


def tiles_of(events, declared: Declared):
    """Per key and period end (`TILE_END`), each input's partial aggregates over the events
    visible in (end - period, end]: `n` (non-null values), then what its functions need
    (`tile_parts`): sum, m2 (squared deviations from the tile's mean), min, max, first and
    last with their times, an HLL sketch."""
    from pyspark.sql import functions as F

    spec = declared.spec
    types = dict(events.dtypes)
    end = _period_end(F.col(AT), spec.period_seconds * 1_000_000)
    parts = []
    for column, wanted in tile_parts(spec).items():
        raw = F.col(input_column(column))
        value = raw.cast("double") if types[input_column(column)] in NUMBERS else None
        present = raw.isNotNull()
        made = {"n": F.count(raw)}
        if value is not None:
            ordered = F.when(present, F.struct(F.col(AT), value))
            made.update({"sum": F.sum(value), "m2": F.var_pop(value) * F.count(raw), "min": F.min(value),
                         "max": F.max(value), "first_at": F.min(F.when(present, F.col(AT))),
                         "first": F.min_by(value, ordered), "last_at": F.max(F.when(present, F.col(AT))),
                         "last": F.max_by(value, ordered)})
        made["hll"] = F.hll_sketch_agg(raw.cast("string"))
        parts += [made[p].alias(_part(column, p)) for p in wanted]
    keys = [F.col(f"`{k}`") for k in declared.keys]
    return (events.groupBy(*keys, end.alias(AT)).agg(*parts)
            .select(*keys, F.timestamp_micros(F.col(AT)).alias(TILE_END), *[_part(c, p) for c, ps in
                                                                             tile_parts(spec).items() for p in ps]))


def from_tiles(tiles, declared: Declared, event_time: str, span: TileRange = TileRange()):
    """The table's rows from its tiles: per key, at each change point in the span, every
    declared aggregate as of that period end, each window merging the tiles whose period
    ends lie in (t - w, t]. The same values as `snapshots` computes from the events (to
    rounding: a mean is a sum over a count either way; stddev merges the tiles' squared
    deviations about one centre per key, Chan's formula)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    spec = declared.spec
    keys = [F.col(f"`{k}`") for k in declared.keys]
    at = F.unix_micros(F.col(TILE_END))
    if span.read_after is not None:  # a tile at exactly first - w still makes a change point at first
        tiles = tiles.where(at >= F.lit(span.read_after))
    tiles = tiles.withColumn(AT, at).drop(TILE_END)
    points = _points(tiles.select(*keys, AT), declared, span.since, span.before)
    stacked = (tiles.withColumn(SIDE, F.lit(0).cast("tinyint"))
               .unionByName(points.withColumn(SIDE, F.lit(1).cast("tinyint")), allowMissingColumns=True))
    whole_key = Window.partitionBy(*keys)
    by_key = whole_key.orderBy(F.col(AT))
    values = []
    for out, (column, function, window) in spec.output_columns().items():
        seconds = window_seconds(window)
        frame = by_key.rangeBetween(Window.unboundedPreceding if seconds is None else -(seconds * 1_000_000 - 1), 0)
        values.append(_merged(function, lambda p, c=column: F.col(_part(c, p)), frame, whole_key).alias(out))
    merged = stacked.select(*keys, SIDE, AT, *values).where(F.col(SIDE) == 1)
    return merged.select(*keys, F.timestamp_micros(F.col(AT)).alias(event_time), *spec.output_columns())


def _merged(function: str, part, frame, whole_key):
    """One function over the tiles in a window frame; null when they hold no non-null value."""
    from pyspark.sql import functions as F

    n = F.sum(part("n")).over(frame)
    some = n > 0
    if function == "count":
        return F.when(some, n)
    if function == "approx_distinct":
        return F.when(some, F.hll_sketch_estimate(F.hll_union_agg(part("hll")).over(frame)))
    if function in ("sum", "mean"):
        total = F.sum(part("sum")).over(frame)
        return F.when(some, total if function == "sum" else total / n)
    if function in ("min", "max"):
        return (F.min if function == "min" else F.max)(part(function)).over(frame)
    if function in ("first", "last"):
        at, value = part(f"{function}_at"), part(function)
        pick = F.min_by if function == "first" else F.max_by
        return pick(value, F.when(value.isNotNull(), F.struct(at, value))).over(frame)
    # stddev: the tiles' squared deviations about one centre c per key (its first tile's mean),
    # M2 = sum(m2_i + n_i (mean_i - c)^2) - n (mean - c)^2; centred, the terms stay small.
    mean_i = part("sum") / part("n")
    centre = F.min_by(mean_i, F.when(part("n") > 0, F.col(AT))).over(whole_key)
    spread = F.sum(part("m2") + part("n") * F.pow(mean_i - centre, 2)).over(frame)
    m2 = spread - n * F.pow(F.sum(part("sum")).over(frame) / n - centre, 2)
    return F.when(n >= 2, F.sqrt(F.greatest(m2, F.lit(0.0)) / (n - 1)))
