"""Feature tables: a declared transformation of source tables, computed by Spark into Delta."""

from __future__ import annotations

import datetime as dt

from . import lake, statistics
from .config import Config, FeatureTable
from .errors import ConfigError, GateFailed, JobFailed
from .provenance import code_version, definition_hash, import_function


def parse_window(start: str | None, end: str | None) -> tuple[dt.date, dt.date] | None:
    """`--start/--end` (both days included) -> dates; None when no window is given."""
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise ConfigError("--start and --end go together: give both dates or neither")
    try:
        first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    except ValueError as exc:
        raise ConfigError(f"--start/--end: {exc} (use YYYY-MM-DD)") from None
    if last < first:
        raise ConfigError(f"--end {end} is before --start {start}")
    return first, last


def compute(spark, config: Config, name: str) -> tuple[object, dict[str, int]]:
    """The feature table's rows as a DataFrame, and the Delta versions of the sources read."""
    definition = config.feature_table(name)
    where = f"features.yml: feature_tables.{name}"
    transform = import_function(definition.transformation, f"{where}.transformation")
    inputs, versions = {}, {}
    for arg, ref in definition.sources.items():
        path = lake.table_path(config.lake_root, ref)
        if not lake.exists(path):
            raise JobFailed(f"{where}.sources.{arg}: table {ref} does not exist yet "
                            "(load sources first: sparkml run flights)")
        versions[ref] = lake.version(spark, path)
        inputs[arg] = lake.read(spark, path, versions[ref], ref)
    try:
        df = transform(**inputs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {definition.transformation} does not take the declared "
                          f"sources {sorted(inputs)}: {exc}") from None
    return conform(df, definition, where), versions


def conform(df, definition: FeatureTable, where: str):
    """Check the output against the definition and keep only its declared columns."""
    types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    expected = {k: None for k in definition.keys}
    expected[definition.event_time] = "timestamp"
    expected.update({n: f.type for n, f in definition.features.items()})
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


def build(spark, config: Config, name: str, start: str | None = None, end: str | None = None) -> dict:
    """Compute the table (or one window of it) and replace exactly that part in one commit."""
    window = parse_window(start, end)
    definition = config.feature_table(name)
    df, source_versions = compute(spark, config, name)
    path = lake.table_path(config.lake_root, f"features.{name}")
    replace_where = None
    if window is not None:
        first, last = window
        upper = last + dt.timedelta(days=1)
        replace_where = (f"`{definition.event_time}` >= '{first}' AND "
                         f"`{definition.event_time}` < '{upper}'")
        df = df.where(replace_where)
        if not lake.exists(path):
            replace_where = None  # the first write creates the table
    df = df.persist()  # checked, validated, then written: compute it once
    _refuse_duplicates(df, definition, name)
    validated = _validate(config, name, df)
    metadata = {
        "kind": "feature_table",
        "name": name,
        "definition_hash": definition_hash(definition),
        "sources": source_versions,
        "code": code_version(),
        "window": [str(d) for d in window] if window else None,
        "validation": validated,
    }
    version = lake.write(df, path, replace_where=replace_where, metadata=metadata)
    df.unpersist()
    stats = statistics.compute(spark, path, version,
                               {n: f.type for n, f in definition.features.items()},
                               definition.event_time)
    statistics.save(path, stats)
    rows = stats["rows"]
    return {"table": f"features.{name}", "version": version, "rows": rows,
            "event_time_range": stats["event_time_range"],
            "window": metadata["window"], "validation": validated}


def _refuse_duplicates(df, definition: FeatureTable, name: str) -> None:
    """Two rows for one entity at one event time would make point-in-time lookups ambiguous."""
    from pyspark.sql import functions as F

    key = [*definition.keys, definition.event_time]
    dupes = df.groupBy(*key).agg(F.count("*").alias("rows")).where("rows > 1")
    examples = dupes.limit(5).collect()
    if examples:
        df.unpersist()
        shown = "; ".join(", ".join(f"{c}={r[c]}" for c in key) + f" ({r['rows']} rows)"
                          for r in examples)
        raise GateFailed(f"feature table {name}: {dupes.count()} (entity, event time) pairs occur "
                         f"more than once, nothing written; e.g. {shown}")


def _validate(config: Config, name: str, df) -> dict | None:
    """Run the table's expectation suite on the rows about to be written (block or warn)."""
    import logging

    from . import validation

    suite = config.expectation_suite(name)
    if suite is None:
        return None
    definition = config.feature_table(name)
    summary = validation.validate(df, definition.expectations, suite.expectations,
                                  f"expectations/{definition.expectations}.yml: expectations")
    kept = validation.keep(summary, config.validation_dir, name)
    outcome = {"suite": definition.expectations, "success": summary["success"],
               "failed": len(summary["failed"]), "results": str(kept)}
    if not summary["success"]:
        report = validation.describe_failures(summary)
        if definition.on_failure == "block":
            df.unpersist()
            raise GateFailed(f"feature table {name}: expectation suite {definition.expectations} "
                             f"failed, nothing written (results: {kept}):\n{report}")
        logging.getLogger(__name__).warning("feature table %s: suite %s failed (on_failure: warn), "
                                            "writing anyway:\n%s", name, definition.expectations, report)
    return outcome
