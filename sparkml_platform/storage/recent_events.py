"""A key's recent events in the online store, and its window aggregates as of a request's time
computed from them: how a model trained with temporal accuracy is served the values it was
trained on (config/aggregations.py has the semantics; storage/window_aggregates.py computes
them in batch).

A key's stored value is
`[CUT_US, FROM_US, [[AT_US, {FIELD: VALUE}], ...], {LIFETIME_COLUMN: VALUE}]`: the visible
time of the key's newest event when published (the cut), the earliest request time answered
(the cut less the table's `online.keep`, the cut without one), its events visible within the
longest finite window before FROM_US up to the cut (oldest first, each with its `fields`, named
by `field_name`), and the values of its lifetime windows at the cut, as batch computed them.
No event lands in the store after a publish, so a request at t >= FROM_US covers exactly the
stored events in (t - w, t] for each finite window, and at t >= CUT_US the lifetime values
stand. Earlier requests (and a lifetime window asked for before the cut) would need events
the store no longer tells apart: they are answered with nulls and said to be before the kept
window (`online_stores.BEFORE_KEPT`), never with later events' values.

Pure: no Spark, no store; serving/publish.py writes the values, serving/server.py reads them.
"""

from __future__ import annotations

import json
import math

from ..config.aggregations import LIFETIME, Aggregations, percentile_of, window_seconds
from .online_stores import BEFORE_KEPT, EVENTS_SUFFIX, FOUND, NO_ROW

NUMBER, TEXT = "number", "text"  # a field: an input as a double, or as Spark's text of it
FORMAT = "recent-events/2"


def store_table(table: str) -> str:
    return table + EVENTS_SUFFIX


def field_name(column: str, kind: str) -> str:
    return f"{column}:{kind}"


def fields(spec: Aggregations, numeric: dict[str, bool]) -> list[tuple[str, str]]:
    """The (input, kind) fields each stored event carries: a number where a function needs
    one (or a numeric input is counted), Spark's text of it where approx_distinct hashes it
    (or another input is counted). `numeric`: input -> whether the source holds numbers."""
    out = []
    for column in spec.inputs:
        functions = {f for c, f, _ in spec.output_columns().values() if c == column}
        number = bool(functions - {"count", "approx_distinct"}) or ("count" in functions and numeric[column])
        if number:
            out.append((column, NUMBER))
        if "approx_distinct" in functions or ("count" in functions and not number):
            out.append((column, TEXT))
    return out


def answer(value: str | None, at_us: int, spec: Aggregations, columns: list[str]) -> tuple[dict | None, str]:
    """The aggregates `columns` (the table's column names) a request at `at_us` gets, and why
    (FOUND, NO_ROW, BEFORE_KEPT)."""
    if value is None:
        return None, NO_ROW
    cut, kept_from, events, lifetime = json.loads(value)
    outputs = spec.output_columns()
    if at_us < kept_from or (at_us < cut and any(outputs[c][2] == LIFETIME for c in columns)):
        return None, BEFORE_KEPT
    got = {}
    for column in columns:
        source, function, window = outputs[column]
        if window == LIFETIME:
            got[column] = lifetime.get(column)
            continue
        edge = at_us - window_seconds(window) * 1_000_000
        got[column] = compute(function, [(at, row) for at, row in events if edge < at <= at_us], source)
    return got, FOUND


def compute(function: str, events: list, column: str):
    """One function over a window's events ([at_us, fields]), by the rules batch follows: nulls
    skipped, null when nothing is left (count included); stddev of the sample; first and last
    by time, then the least and the greatest value; percentiles interpolated."""
    number, text = field_name(column, NUMBER), field_name(column, TEXT)
    if function == "approx_distinct" or (function == "count" and not any(number in row for _, row in events)):
        values = [row[text] for _, row in events if row.get(text) is not None]
        if not values:
            return None
        return len(values) if function == "count" else distinct_estimate(values)
    timed = [(at, float(row[number])) for at, row in events if row.get(number) is not None]
    if not timed:
        return None
    values = [v for _, v in timed]
    n = len(values)
    if function == "count":
        return n
    if function == "sum":
        return sum(values)
    if function == "mean":
        return sum(values) / n
    if function == "min":
        return min(values)
    if function == "max":
        return max(values)
    if function == "first":
        return min(timed)[1]
    if function == "last":
        return max(timed)[1]
    if function == "stddev":
        if n < 2:
            return None
        mean = sum(values) / n
        return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    q = percentile_of(function)
    if q is None:
        raise ValueError(f"no online computation of {function}")
    ordered = sorted(values)
    position = q * (n - 1)
    lower = math.floor(position)
    upper = min(lower + 1, n - 1)
    return ordered[lower] + (position - lower) * (ordered[upper] - ordered[lower])


def distinct_estimate(values: list[str]) -> int:
    """What Spark's hll_sketch_estimate(hll_sketch_agg(...)) gives for these texts: the same
    DataSketches HLL sketch (lgConfigK 12, HLL_4, the same hash of the UTF-8 bytes), rounded."""
    from datasketches import hll_sketch, tgt_hll_type

    sketch = hll_sketch(12, tgt_hll_type.HLL_4)
    for v in values:
        sketch.update(v)
    return round(sketch.get_estimate())
