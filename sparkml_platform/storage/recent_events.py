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

import functools
import json
import math

import numpy as np

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
    key = _parsed(value)
    outputs = spec.output_columns()
    if at_us < key.kept_from or (at_us < key.cut and any(outputs[c][2] == LIFETIME for c in columns)):
        return None, BEFORE_KEPT
    got = {}
    for column in columns:
        source, function, window = outputs[column]
        if window == LIFETIME:
            got[column] = key.lifetime.get(column)
            continue
        # The events in (at - w, at]: times are sorted, so two binary searches.
        lo = int(np.searchsorted(key.times, at_us - window_seconds(window) * 1_000_000, side="right"))
        hi = int(np.searchsorted(key.times, at_us, side="right"))
        got[column] = compute(function, key, lo, hi, source)
    return got, FOUND


class _Key:
    """One key's stored value, parsed: event times (sorted) and each field as an array."""

    def __init__(self, value: str):
        self.cut, self.kept_from, events, self.lifetime = json.loads(value)  # events oldest first
        self.times = np.fromiter((at for at, _ in events), dtype=np.int64, count=len(events))
        names = {name for _, row in events for name in row}
        self.numbers = {n: np.array([np.nan if row.get(n) is None else float(row[n]) for _, row in events])
                        for n in names if n.endswith(":" + NUMBER)}
        self.texts = {n: [row.get(n) for _, row in events] for n in names if n.endswith(":" + TEXT)}


@functools.lru_cache(maxsize=256)
def _parsed(value: str) -> _Key:
    """Parsed once per stored value: a batch of requests reads the same few keys many times."""
    return _Key(value)


def compute(function: str, key: _Key, lo: int, hi: int, column: str):
    """One function over the key's events lo..hi-1, by the rules batch follows: nulls skipped,
    null when nothing is left (count included); stddev of the sample; first and last by time,
    then the least and the greatest value; percentiles interpolated."""
    number, text = field_name(column, NUMBER), field_name(column, TEXT)
    if function == "approx_distinct" or (function == "count" and number not in key.numbers):
        values = [v for v in key.texts.get(text, [])[lo:hi] if v is not None]
        if not values:
            return None
        return len(values) if function == "count" else distinct_estimate(values)
    window = key.numbers.get(number, np.empty(0))[lo:hi]
    present = ~np.isnan(window)
    n = int(present.sum())
    if n == 0:
        return None
    values = window[present]
    if function == "count":
        return n
    if function == "sum":
        return float(values.sum())
    if function == "mean":
        return float(values.sum()) / n
    if function == "min":
        return float(values.min())
    if function == "max":
        return float(values.max())
    if function in ("first", "last"):
        times = key.times[lo:hi][present]
        edge = times.min() if function == "first" else times.max()
        tied = values[times == edge]
        return float(tied.min() if function == "first" else tied.max())
    if function == "stddev":
        return None if n < 2 else float(np.sqrt(((values - values.mean()) ** 2).sum() / (n - 1)))
    q = percentile_of(function)
    if q is None:
        raise ValueError(f"no online computation of {function}")
    ordered = np.sort(values)
    position = q * (n - 1)
    lower = math.floor(position)
    upper = min(lower + 1, n - 1)
    return float(ordered[lower] + (position - lower) * (ordered[upper] - ordered[lower]))


def distinct_estimate(values: list[str]) -> int:
    """What Spark's hll_sketch_estimate(hll_sketch_agg(...)) gives for these texts: the same
    DataSketches HLL sketch (lgConfigK 12, HLL_4, the same hash of the UTF-8 bytes), rounded."""
    from datasketches import hll_sketch, tgt_hll_type

    sketch = hll_sketch(12, tgt_hll_type.HLL_4)
    for v in values:
        sketch.update(v)
    return round(sketch.get_estimate())
