"""The reference pipeline's transformations, on small inline frames."""

from __future__ import annotations

import datetime as dt

from conftest import utc

from sparkml_platform.reference import flights

SCHEMA = ("year int, month int, day int, sched_dep_time int, hour int, minute int, "
          "carrier string, flight int, origin string, dest string, tailnum string, distance double, "
          "dep_delay double, air_time double, arr_delay double, time_hour string")


def flight(hour, minute, dep_delay, air_time, arr_delay, carrier="AA"):
    return (2013, 1, 1, hour * 100 + minute, hour, minute, carrier, 1, "JFK", "MIA", "N1",
            1000.0, dep_delay, air_time, arr_delay, f"2013-01-01T{hour:02d}:00:00Z")


def test_entities_have_scheduled_departure_in_utc(spark):
    df = spark.createDataFrame([flight(10, 15, 0.0, 100.0, 5.0)], SCHEMA)
    row = flights.flight_entities(df).collect()[0]
    assert utc(row.sched_dep_ts) == dt.datetime(2013, 1, 1, 10, 15)
    assert row.flight_id == "2013-01-01-AA-1-JFK-1015"


def test_flights_land_after_their_delay_flight_and_taxi_margin_and_cancelled_ones_never(spark):
    df = spark.createDataFrame([
        flight(8, 0, 0.0, 60.0, 30.0),     # lands 8:00 + 60 + 30 margin = 9:30
        flight(9, 5, 10.0, 60.0, 0.0),     # lands 9:05 + 10 + 60 + 30 = 10:45
        flight(9, 0, 0.0, None, None),     # cancelled: never lands, so never counted
    ], SCHEMA)
    rows = flights.flight_entities(df).orderBy("sched_dep_ts").collect()
    assert [(utc(r.sched_dep_ts), r.landed_at and utc(r.landed_at)) for r in rows] == [
        (dt.datetime(2013, 1, 1, 8, 0), dt.datetime(2013, 1, 1, 9, 30)),
        (dt.datetime(2013, 1, 1, 9, 0), None),
        (dt.datetime(2013, 1, 1, 9, 5), dt.datetime(2013, 1, 1, 10, 45)),
    ]


def test_plane_attributes_valid_from_year_built(spark):
    planes = spark.createDataFrame([("N1", 2004, 2, 55, "EMBRAER"), ("N2", None, 2, 100, "X")],
                                   "tailnum string, year int, engines int, seats int, manufacturer string")
    rows = {r.tailnum: r for r in flights.plane_attributes(planes).collect()}
    assert utc(rows["N1"].valid_from) == dt.datetime(2004, 1, 1)
    assert utc(rows["N2"].valid_from) == dt.datetime(1970, 1, 1) and rows["N2"].plane_year is None
