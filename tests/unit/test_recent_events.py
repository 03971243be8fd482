"""Window aggregates as of a request's time from a key's recent events in the online store
(storage/recent_events.py), against brute force (tests/support/window_oracle.py): every
function over finite and lifetime windows, ties at the window edges, nulls, requests before
the kept window."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
from support.window_oracle import close, expected

from sparkml_platform.config.aggregations import Aggregations
from sparkml_platform.storage import online_stores
from sparkml_platform.storage import recent_events as re_

START = dt.datetime(2024, 3, 1)
SPEC = Aggregations.model_validate({
    "source": "raw.sales", "event_time": "at", "availability": "1h",
    "aggregate": [{"column": "amount", "functions": ["count", "sum", "mean", "min", "max", "stddev", "first",
                                                     "last", "p50", "p90"], "windows": ["1d", "7d", "lifetime"]},
                  {"column": "kind", "functions": ["count", "approx_distinct"], "windows": ["3d"]},
                  {"column": "amount", "functions": ["approx_distinct"], "windows": ["7d"]}],
    "rename": {"amount_mean_7d": "mean_week"}})


def micros(t) -> int:
    return int(pd.Timestamp(t).value // 1000)


def stored(events: pd.DataFrame, field_list, keep=pd.Timedelta(0)) -> tuple[str, pd.Timestamp]:
    """One key's value as the documented format has it, built from its events here (`keep`:
    the table's online.keep)."""
    lag = pd.Timedelta(hours=1)
    visible = events["at"] + lag
    cut = visible.max()
    kept = events[visible > cut - keep - pd.Timedelta(days=7)].sort_values("at")
    lifetime = expected(pd.DataFrame({"k": ["a"], "t": [cut]}), "t", ["k"], events.assign(k="a"), "at", SPEC)
    names = [c for c, (_, _, w) in SPEC.output_columns().items() if w == "lifetime"]

    def field(v, kind):
        return None if pd.isna(v) else float(v) if kind == re_.NUMBER else str(v)

    rows = [[micros(at + lag), {re_.field_name(c, k): field(kept[c].iloc[i], k) for c, k in field_list}]
            for i, at in enumerate(kept["at"])]
    return json.dumps([micros(cut), micros(cut - keep), rows, {n: _plain(lifetime[n].iloc[0]) for n in names}]), cut


def _plain(v):
    return None if v is None or pd.isna(v) else v.item() if hasattr(v, "item") else v


def random_events(seed: int, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"at": [START + dt.timedelta(hours=int(h)) for h in rng.integers(0, 24 * 20, n)],
                         "amount": np.where(rng.random(n) < 0.1, np.nan, rng.normal(20, 5, n).round(1)),
                         "kind": rng.choice(["x", "y", "z", None], n)})


def assert_brute_force(value: str, events: pd.DataFrame, times: list, columns: list[str]) -> None:
    want = expected(pd.DataFrame({"k": "a", "t": times}), "t", ["k"], events.assign(k="a"), "at", SPEC)
    for i, t in enumerate(times):
        got, why = re_.answer(value, micros(t), SPEC, columns)
        assert why == online_stores.FOUND, t
        for name in columns:
            function = SPEC.output_columns()[name][1]
            w = want[name].iloc[i]
            w = None if w is None or (isinstance(w, float) and np.isnan(w)) else w
            assert close(got[name], w, function == "approx_distinct"), (t, name, got[name], w)


def test_requests_after_the_newest_event_equal_brute_force_and_earlier_ones_are_before_the_kept_window():
    rng = np.random.default_rng(7)
    events = random_events(7)
    field_list = re_.fields(SPEC, {"amount": True, "kind": False})
    assert field_list == [("amount", re_.NUMBER), ("amount", re_.TEXT), ("kind", re_.TEXT)]
    value, cut = stored(events, field_list)
    # At the cut, on window edges (whole hours after it, as events are) and anywhere after.
    times = [cut] + [cut + pd.Timedelta(hours=int(h)) for h in rng.integers(0, 24 * 8, 15)] \
        + [cut + pd.Timedelta(minutes=int(m)) for m in rng.integers(0, 60 * 24 * 9, 15)]
    columns = list(SPEC.output_columns())
    assert_brute_force(value, events, times, columns)
    assert re_.answer(value, micros(cut) - 1, SPEC, columns) == (None, online_stores.BEFORE_KEPT)
    assert re_.answer(None, micros(cut), SPEC, columns) == (None, online_stores.NO_ROW)


def test_with_online_keep_requests_that_far_before_the_newest_event_are_answered_but_lifetime_only_after_it():
    rng = np.random.default_rng(3)
    events = random_events(3)
    keep = pd.Timedelta(days=2)
    value, cut = stored(events, re_.fields(SPEC, {"amount": True, "kind": False}), keep)
    finite = [c for c, (_, _, w) in SPEC.output_columns().items() if w != "lifetime"]
    # Exactly at the start of the kept span, on whole hours (event times) and between.
    times = [cut - keep] + [cut - pd.Timedelta(hours=int(h)) for h in rng.integers(1, 48, 12)] \
        + [cut - pd.Timedelta(minutes=int(m)) for m in rng.integers(1, 60 * 48, 12)]
    assert_brute_force(value, events, times, finite)
    assert re_.answer(value, micros(cut - keep) - 1, SPEC, finite) == (None, online_stores.BEFORE_KEPT)
    assert re_.answer(value, micros(cut) - 1, SPEC, list(SPEC.output_columns())) == (None, online_stores.BEFORE_KEPT)
    assert_brute_force(value, events, [cut, cut + pd.Timedelta(hours=5)], list(SPEC.output_columns()))


def test_distinct_estimates_are_the_sketch_spark_makes_and_exact_when_small():
    values = [f"v{i % 37}" for i in range(500)]
    assert re_.distinct_estimate(values) == 37
    big = re_.distinct_estimate([f"u{i}" for i in range(20_000)])
    assert abs(big - 20_000) < 0.03 * 20_000 and big != 20_000
