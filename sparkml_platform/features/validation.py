"""Validation on write: a table's Great Expectations suite runs on the rows about to be
committed. Suites are YAML under conf/*/expectations/, one expectation per item:

    expectations:
      - expect_column_values_to_not_be_null: {column: origin}
      - expect_column_values_to_be_between: {column: temp, min_value: -40, max_value: 130}
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading

from ..core.errors import ConfigError
from ..storage.files import Location

EXAMPLES = 5
# Rows that Spark estimates at most this size are checked on a pandas copy on the driver:
# Great Expectations' Spark engine runs a few Spark jobs per expectation, which dominates
# small windows. Spark's estimate ignores filters, so a window is judged by its whole table.
LOCAL_MAX_BYTES = 64 * 1024 * 1024
_context = None
# Data sources and assets are added to the context once per process and reused: each addition
# rewrites the context's whole configuration, which grows with every source it holds.
_batch_definitions: dict[tuple[str, str], object] = {}
_lock = threading.Lock()


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


def to_pandas(table, timezone: str):
    """A collected Arrow table as pandas, timestamps shown in the session's time zone without
    an offset, as Spark's own `toPandas` shows them (in the failed expectations' examples)."""
    import pandas as pd

    frame = table.to_pandas()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert(timezone).dt.tz_localize(None)
    return frame


def _make_context() -> None:
    """The process's one ephemeral context (creating it, with the import, costs seconds)."""
    global _context
    if _context is not None:
        return
    # No usage reporting from a batch job, and no progress bars or chatter in its log.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    for logger in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    _context = context


def prepare_in_background() -> None:
    """Import Great Expectations and make the context on a thread of its own, while the caller
    starts its Spark session (the JVM's start leaves this process waiting): a small build's
    validation then no longer pays seconds of imports. A failure here is left for `validate`
    to meet and report."""
    def make() -> None:
        with _lock:
            try:
                _make_context()
            except Exception:  # noqa: BLE001 - validate() makes it again and reports
                pass

    if _context is None:
        # Great Expectations imports pyspark.sql on that thread while this one starts the
        # session: two threads importing it at once met it half-initialized in a spark-submit job
        # ("cannot import name 'SQLContext' from partially initialized module"). Whole first.
        import pyspark.sql  # noqa: F401

        threading.Thread(target=make, name="great-expectations-context", daemon=True).start()


def validate(df, name: str, items: list[dict], where: str) -> dict:
    """Run the suite on `df` in an ephemeral context; a summary with failed expectations.

    A pandas DataFrame (a small window's copy) is validated on the driver, a Spark one with Spark."""
    import pandas as pd

    engine = "pandas" if isinstance(df, pd.DataFrame) else "spark"
    with _lock:
        _make_context()
        if (engine, name) not in _batch_definitions:
            sources = _context.data_sources
            source = sources.all().get(f"sparkml_{engine}")
            if source is None:
                add = sources.add_pandas if engine == "pandas" else sources.add_spark
                source = add(name=f"sparkml_{engine}")
            # An asset or definition left by an earlier call that failed half-way is reused:
            # adding it again would be refused for the rest of the process.
            asset = source.get_asset(name) if name in source.get_asset_names() \
                else source.add_dataframe_asset(name=name)
            defined = {definition.name: definition for definition in asset.batch_definitions}
            _batch_definitions[engine, name] = defined.get("window") \
                or asset.add_batch_definition_whole_dataframe("window")
    batch = _batch_definitions[engine, name].get_batch(batch_parameters={"dataframe": df})
    result = batch.validate(build_suite(name, items, where), result_format="BASIC")
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
            "engine": engine,
            "failed": failed}


def describe_failures(summary: dict) -> str:
    lines = []
    for f in summary["failed"]:
        count = f"{f['unexpected_count']} of {f['element_count']} rows" \
            if f["unexpected_count"] is not None else f"observed {f['observed_value']}"
        examples = f", e.g. {f['examples']}" if f["examples"] else ""
        lines.append(f"  {f['expectation']} {f['kwargs']}: {count}{examples}")
    return "\n".join(lines)


def keep(summary: dict, store: Location, table: str) -> Location:
    """Keep the results as an artifact (JSON) and return where."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = store / table / f"{stamp}.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
    return path
