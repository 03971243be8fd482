"""What a tiled aggregation build computes and reads, decided without Spark
(storage/window_aggregates.tile_range): the tiles recomputed, the events read, the older
tiles merged, the rows written."""

from __future__ import annotations

import datetime as dt

from sparkml_platform.config.aggregations import Aggregations
from sparkml_platform.storage import window_aggregates as wa

DAY = 86_400_000_000
HOUR = 3_600_000_000


def spec(windows=("7d", "30d"), functions=("count", "mean"), snapshot="1d", **more) -> Aggregations:
    return Aggregations.model_validate({"source": "raw.flights", "event_time": "at", "snapshot": snapshot,
                                        "aggregate": [{"column": "late", "functions": list(functions),
                                                       "windows": list(windows)}], **more})


def day(text: str) -> int:
    return (dt.date.fromisoformat(text) - dt.date(1970, 1, 1)).days * DAY


def test_a_daily_build_recomputes_its_days_tiles_from_a_day_of_events_and_reads_30_days_of_tiles():
    span = wa.tile_range(spec(), (dt.date(2013, 6, 10), None))
    assert span.first == day("2013-06-10") and span.last is None  # the tile of (June 9, June 10] on
    assert span.events_after == day("2013-06-09")  # events of June 9 on: the day before, and the new ones
    assert span.read_after == day("2013-06-10") - 30 * DAY  # what the 30-day window reaches back to
    assert (span.since, span.before) == (day("2013-06-10"), None)


def test_a_closed_window_recomputes_only_its_own_periods():
    span = wa.tile_range(spec(snapshot="1h", windows=("1h", "1d")), (dt.date(2013, 6, 10), dt.date(2013, 6, 11)))
    assert span.first == day("2013-06-10") and span.last == day("2013-06-12") - HOUR
    assert span.events_after == day("2013-06-10") - HOUR
    assert span.read_after == day("2013-06-10") - DAY
    assert (span.since, span.before) == (day("2013-06-10"), day("2013-06-12"))


def test_periods_longer_than_a_day_start_at_the_first_period_end_in_the_window():
    week = 7 * DAY  # period ends are multiples of 7 days since 1970 (Thursdays)
    span = wa.tile_range(spec(snapshot="7d", windows=("14d",)), (dt.date(2013, 6, 10), dt.date(2013, 6, 30)))
    assert span.first % week == 0 and day("2013-06-10") <= span.first < day("2013-06-10") + week
    assert span.last % week == 0 and span.last < day("2013-07-01") <= span.last + week
    assert span.events_after == span.first - week


def test_a_lifetime_window_reads_every_tile_and_a_whole_build_computes_all():
    assert wa.tile_range(spec(windows=("7d", "lifetime")), (dt.date(2013, 6, 10), None)).read_after is None
    assert wa.tile_range(spec(), None) == wa.TileRange()


def test_only_mergeable_functions_are_tiled_and_tiles_hold_what_they_need():
    assert wa.tiled(spec(functions=("count", "sum", "stddev", "first", "approx_distinct")))
    assert not wa.tiled(spec(functions=("count", "p95")))  # a percentile does not merge
    parts = wa.tile_parts(Aggregations.model_validate({
        "source": "raw.flights", "event_time": "at",
        "aggregate": [{"column": "late", "functions": ["stddev", "last"], "windows": ["7d"]},
                      {"column": "tail", "functions": ["count"], "windows": ["7d"]}]}))
    assert parts == {"late": ["n", "sum", "m2", "last_at", "last"], "tail": ["n"]}


def test_events_landed_late_move_the_tiles_computed_again_back_to_their_period():
    late = day("2013-06-03") + 5 * HOUR  # landed since the last build, a week before its newest day
    span = wa.tile_range(spec(), (dt.date(2013, 6, 10), None), landed_from=late)
    assert span.first == day("2013-06-04") and span.events_after == day("2013-06-03")
    assert (span.since, span.read_after) == (day("2013-06-10"), day("2013-06-10") - 30 * DAY)  # rows as before
    on_time = wa.tile_range(spec(), (dt.date(2013, 6, 10), None), landed_from=day("2013-06-10") + HOUR)
    assert on_time == wa.tile_range(spec(), (dt.date(2013, 6, 10), None))


def test_an_events_visible_time_is_its_time_plus_the_availability_lag():
    lagged = spec(availability="2h")
    assert wa.visible_micros(dt.datetime(2013, 6, 1, 22), lagged) == day("2013-06-02")
    assert wa.visible_micros(dt.datetime(2013, 6, 1, 22, tzinfo=dt.timezone.utc), lagged) == day("2013-06-02")
    assert wa.visible_micros(dt.date(2013, 6, 1), lagged) == day("2013-06-01") + 2 * HOUR
