"""Validation on write: a table's Great Expectations suite runs on the rows about to be
committed. Suites are YAML under conf/*/expectations/, one expectation per item:

    expectations:
      - expect_column_values_to_not_be_null: {column: origin}
      - expect_column_values_to_be_between: {column: temp, min_value: -40, max_value: 130}
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path

from .errors import ConfigError

EXAMPLES = 5
# Up to this many rows the suite runs on a pandas copy on the driver: Great Expectations'
# Spark engine runs a few Spark jobs per expectation, which dominates small windows.
PANDAS_MAX_ROWS = 200_000
_context = None
_sources = itertools.count()


def _expectation_class(name: str, where: str):
    import great_expectations as gx

    class_name = "".join(part.capitalize() for part in name.split("_"))
    cls = getattr(gx.expectations, class_name, None)
    if cls is None:
        raise ConfigError(f"{where}: {name!r} is not a Great Expectations expectation")
    return cls


def build_suite(name: str, items: list[dict], where: str):
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=name)
    for i, item in enumerate(items):
        (kind, kwargs), = item.items()
        try:
            suite.add_expectation(_expectation_class(kind, f"{where}.{i}")(**(kwargs or {})))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}.{i}.{kind}: {exc}") from None
    return suite


def validate(df, name: str, items: list[dict], where: str, rows: int | None = None) -> dict:
    """Run the suite on `df` in an ephemeral context; a summary with failed expectations.

    With `rows` (known) at most PANDAS_MAX_ROWS, on a pandas copy; else with Spark."""
    import logging
    import os

    # No usage reporting from a batch job, and no progress bars or chatter in its log.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    for logger in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    global _context
    if _context is None:  # one per process: creating it costs seconds
        _context = gx.get_context(mode="ephemeral")
        _context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source_name = f"sparkml_{next(_sources)}"
    if rows is not None and rows <= PANDAS_MAX_ROWS:
        source, df = _context.data_sources.add_pandas(name=source_name), df.toPandas()
    else:
        source = _context.data_sources.add_spark(name=source_name)
    batch = source.add_dataframe_asset(name=name).add_batch_definition_whole_dataframe("window") \
        .get_batch(batch_parameters={"dataframe": df})
    result = batch.validate(build_suite(name, items, where), result_format="SUMMARY")
    failed = []
    for res in result.results:
        if not res.success:
            detail = res.result or {}
            failed.append({
                "expectation": res.expectation_config.type,
                "kwargs": {k: v for k, v in res.expectation_config.kwargs.items() if k != "batch_id"},
                "unexpected_count": detail.get("unexpected_count"),
                "element_count": detail.get("element_count"),
                "examples": (detail.get("partial_unexpected_list") or [])[:EXAMPLES],
                "observed_value": detail.get("observed_value"),
            })
    return {"suite": name, "success": bool(result.success), "evaluated": len(result.results),
            "engine": "pandas" if rows is not None and rows <= PANDAS_MAX_ROWS else "spark",
            "failed": failed}


def describe_failures(summary: dict) -> str:
    lines = []
    for f in summary["failed"]:
        count = f"{f['unexpected_count']} of {f['element_count']} rows" \
            if f["unexpected_count"] is not None else f"observed {f['observed_value']}"
        examples = f", e.g. {f['examples']}" if f["examples"] else ""
        lines.append(f"  {f['expectation']} {f['kwargs']}: {count}{examples}")
    return "\n".join(lines)


def keep(summary: dict, store: Path, table: str) -> Path:
    """Keep the results as an artifact (JSON) and return where."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = store / table / f"{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=str))
    return path
