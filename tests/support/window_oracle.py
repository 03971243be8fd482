"""Window aggregates by brute force, in pandas: the independent answer the platform's engine
(storage/window_aggregates.py) is compared with. For each row, every event of its key visible
in (t - w, t] (or at or before t, lifetime) is looked at again; nothing is shared between
rows, windows or functions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sparkml_platform.config.aggregations import Aggregations, percentile_of, window_seconds


def expected(rows: pd.DataFrame, time: str, keys: list[str], events: pd.DataFrame, event_time: str,
             spec: Aggregations) -> pd.DataFrame:
    """`rows` with one column per declared aggregate. `events` holds the keys, `event_time`
    and the input columns (derived ones computed already, the filter applied)."""
    lag = pd.Timedelta(seconds=spec.availability_seconds)
    events = events.dropna(subset=[*keys, event_time]).copy()
    events["__visible"] = pd.to_datetime(events[event_time]) + lag
    by_key = {k if isinstance(k, tuple) else (k,): g for k, g in events.groupby(keys, sort=False)}
    out = rows.copy()
    for name, (column, function, window) in spec.output_columns().items():
        seconds = window_seconds(window)
        values = []
        for _, row in rows.iterrows():
            t = row[time]
            key = tuple(row[k] for k in keys)
            group = by_key.get(key)
            if pd.isna(t) or group is None:
                values.append(None)
                continue
            t = pd.Timestamp(t)
            inside = group[(group["__visible"] <= t)
                           & ((group["__visible"] > t - pd.Timedelta(seconds=seconds)) if seconds else True)]
            values.append(one(function, inside, column))
        out[name] = values
    return out


def one(function: str, inside: pd.DataFrame, column: str):
    present = inside[inside[column].notna()]
    if present.empty:
        return None
    if function == "count":
        return len(present)
    if function == "approx_distinct":
        return present[column].astype(str).nunique()
    x = present[column].astype(float)
    if function in ("first", "last"):
        ordered = present.assign(__x=x).sort_values(["__visible", "__x"])
        return float(ordered["__x"].iloc[0 if function == "first" else -1])
    q = percentile_of(function)
    if q is not None:
        return float(np.quantile(x.to_numpy(), q))
    if function == "stddev":
        return float(x.std(ddof=1)) if len(x) > 1 else None
    return float({"sum": x.sum, "mean": x.mean, "min": x.min, "max": x.max}[function]())


def close(a, b, approximate: bool = False) -> bool:
    """Equal within 1e-9 (relative), both null alike; approximate counts within 2 %."""
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return False
    tolerance = 0.02 * abs(b) + 1 if approximate else 1e-9 * max(1.0, abs(b))
    return abs(float(a) - float(b)) <= tolerance
