"""Statistics of a feature table per Delta version, kept beside the table so that any two
versions can be compared (`sparkml features show NAME --compare V1 V2`).

They live in `TABLE/_sparkml_stats/vNNNNNN.json`: Delta ignores paths starting with `_`.
"""

from __future__ import annotations

import json
import re

from . import lake
from .files import Location

NUMERIC = ("double", "float", "int", "bigint", "smallint", "tinyint")


def sql_name(column: str) -> str:
    """A column name quoted for Spark SQL, whatever characters it holds."""
    return "`" + column.replace("`", "``") + "`"


def stats_path(table_path: Location, version: int) -> Location:
    return table_path / "_sparkml_stats" / f"v{version:06d}.json"


def summarize(df, features: dict[str, str], event_time: str) -> dict:
    """Rows, event-time range, and per feature: count, nulls, min, max, mean (numeric) and
    approximate distinct count, in one aggregation over `df`."""
    return from_aggregates(df.agg(*aggregates(features, event_time)).collect()[0].asDict(), features)


def aggregates(features: dict[str, str], event_time: str) -> list:
    """The aggregate columns `summarize` computes: also usable as an observation of a write.

    Built from SQL text: a Column built function by function costs a few calls to the JVM
    each (about a thousand for ten features), a noticeable part of a small window's build."""
    from pyspark.sql import functions as F

    # The range as text in the session's time zone (UTC): a collected timestamp would be a
    # wall-clock value of the Python process's zone, and an incremental build a day off.
    aggs = ["count(1) AS __rows",
            f"date_format(min({sql_name(event_time)}), 'yyyy-MM-dd HH:mm:ss') AS __first",
            f"date_format(max({sql_name(event_time)}), 'yyyy-MM-dd HH:mm:ss') AS __last"]
    for name, kind in features.items():
        col = sql_name(name)
        aggs += [f"count({col}) AS {sql_name(name + '__count')}",
                 f"approx_count_distinct({col}) AS {sql_name(name + '__distinct')}"]
        if kind in NUMERIC:
            aggs += [f"CAST(min({col}) AS DOUBLE) AS {sql_name(name + '__min')}",
                     f"CAST(max({col}) AS DOUBLE) AS {sql_name(name + '__max')}",
                     f"avg({col}) AS {sql_name(name + '__mean')}"]
    return [F.expr(agg) for agg in aggs]


def summarize_arrow(table, features: dict[str, str], event_time: str) -> dict:
    """What `summarize` computes, from an Arrow table in this process (a small table read
    through delta-rs): the distinct counts are exact, which Spark's approximate ones estimate."""
    import pyarrow as pa
    import pyarrow.compute as pc

    row = {"__rows": table.num_rows}
    times = _instants(table.column(event_time)) if table.num_rows else None
    span = pc.min_max(times).as_py() if times is not None else {"min": None, "max": None}
    row["__first"], row["__last"] = (_second(span["min"]), _second(span["max"]))
    for name, kind in features.items():
        column = table.column(name)
        row[f"{name}__count"] = len(column) - column.null_count
        row[f"{name}__distinct"] = pc.count_distinct(column, mode="only_valid").as_py()
        if kind in NUMERIC:
            # On the column as it is (a bigint beyond 2^53 has no exact double), then as Spark's
            # CAST(... AS DOUBLE) gives them.
            found = {k: None if v is None else float(v) for k, v in pc.min_max(column).as_py().items()}
            row[f"{name}__min"], row[f"{name}__max"] = found["min"], found["max"]
            mean = pc.mean(column).as_py()
            row[f"{name}__mean"] = None if mean is None else float(mean)
            if pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py():
                # Spark orders NaN above every number
                row[f"{name}__max"] = row[f"{name}__mean"] = float("nan")
                row[f"{name}__min"] = float("nan") if found["min"] is None else found["min"]
    return from_aggregates(row, features)


def _instants(column):
    """An event-time column as UTC timestamps (a date is its midnight), or a TypeError for a
    type Spark would have to parse."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_timestamp(kind):
        return column
    if pa.types.is_date(kind):
        return pc.cast(column, pa.timestamp("us"))
    raise TypeError(f"event time of type {kind}")


def _second(at) -> str | None:
    """An instant as `aggregates` writes it (UTC, to the second); a missing one as Spark's None."""
    return at.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds") if at is not None else None


def from_aggregates(row: dict, features: dict[str, str]) -> dict:
    """The statistics from the values of `aggregates` (a dict by alias)."""
    rows = row["__rows"]
    per_feature = {}
    for name, kind in features.items():
        entry = {"count": row[f"{name}__count"], "nulls": rows - row[f"{name}__count"],
                 "distinct_approx": row[f"{name}__distinct"]}
        if kind in NUMERIC:
            entry.update(min=row[f"{name}__min"], max=row[f"{name}__max"], mean=row[f"{name}__mean"])
        per_feature[name] = entry
    return {"rows": rows, "event_time_range": [str(row["__first"]), str(row["__last"])],
            "features": per_feature}


def record(table_path: Location, version: int, written: dict, whole_table: bool) -> dict:
    """Store a new version's statistics: those of the rows it wrote, and the table's.

    A build that wrote the whole table knows the table's statistics already; after a window
    build they are computed when first asked for (`for_version`), from the Delta version
    itself, so a build never re-reads its table. The event-time range is kept either way
    (widened by the window), for freshness and incremental builds.
    """
    previous = latest(table_path)
    span = written["event_time_range"]
    if not whole_table and previous and written["rows"]:
        span = [min(previous["event_time_range"][0], span[0]), max(previous["event_time_range"][1], span[1])]
    elif not whole_table and previous:
        span = previous["event_time_range"]
    stats = {"version": version, "event_time_range": span, "written": written,
             "rows": written["rows"] if whole_table else None,
             "features": written["features"] if whole_table else None}
    save(table_path, stats)
    return stats


def for_version(spark, table_path: Location, version: int, features: dict[str, str],
                event_time: str, local_max_bytes: int = 0) -> dict | None:
    """A version's table statistics, computing (and keeping) them if the build did not: a
    window build, or one killed between its commit and recording them. None for a version
    the table does not have. `spark` is a session or a callable giving one: a version of at
    most `local_max_bytes` is summarized in this process (no JVM), a larger one by Spark."""
    stats = load(table_path, version)
    if stats is not None and stats.get("features") is not None:
        return stats
    if stats is None:
        if not lake.exists(table_path) or not 0 <= version <= lake.version(None, table_path):
            return None
        stats = {"version": version, "written": None}
    table = None
    if lake.local_reads(table_path, local_max_bytes, version):
        try:
            table = summarize_arrow(lake.read_arrow(table_path, version, columns=[event_time, *features]),
                                    features, event_time)
        except TypeError:  # an event time held as text: Spark parses it
            table = None
    if table is None:
        session = spark() if callable(spark) else spark
        table = summarize(lake.read(session, table_path, version), features, event_time)
    stats.update(rows=table["rows"], features=table["features"], event_time_range=table["event_time_range"])
    save(table_path, stats)
    return stats


def save(table_path: Location, stats: dict) -> Location:
    path = stats_path(table_path, stats["version"])
    path.write_text(json.dumps(stats, indent=2, default=str))
    return path


def load(table_path: Location, version: int) -> dict | None:
    text = stats_path(table_path, version).read_or_none()
    return json.loads(text) if text is not None else None


def latest(table_path: Location) -> dict | None:
    versions = kept_versions(table_path)
    return load(table_path, versions[-1]) if versions else None


STATS_FILE = re.compile(r"^v(\d{6})\.json$")


def kept_versions(table_path: Location) -> list[int]:
    """The versions whose statistics are kept, oldest first."""
    return sorted(int(m.group(1)) for n in (table_path / "_sparkml_stats").names()
                  if (m := STATS_FILE.match(n)))


def compare(old: dict, new: dict) -> dict:
    """Per feature and measure: the value in each version and the shift between them."""
    out = {"versions": [old["version"], new["version"]],
           "rows": [old["rows"], new["rows"], new["rows"] - old["rows"]],
           "features": {}}
    for name in sorted(set(old["features"]) | set(new["features"])):
        a, b = old["features"].get(name, {}), new["features"].get(name, {})
        measures = {}
        for key in ("count", "nulls", "distinct_approx", "min", "max", "mean"):
            if key in a or key in b:
                va, vb = a.get(key), b.get(key)
                shift = vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
                measures[key] = [va, vb, shift]
        out["features"][name] = measures
    return out
