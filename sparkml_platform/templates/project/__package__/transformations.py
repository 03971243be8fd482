"""Feature transformations and entity functions, named by dotted path in conf/base/*.yml.

A feature transformation takes each source of its feature table as a keyword argument (a
Spark DataFrame) and returns a DataFrame with the table's keys, its event time (a timestamp:
when the values became known) and each declared feature with its declared type. An entity
function takes one DataFrame (its `source`) and returns the entity rows. Both are pure: they
never read or write storage, the platform does that.
"""

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def price_days(prices: DataFrame) -> DataFrame:
    """Entity rows: one per symbol and day (its other columns kept), with tomorrow's close as
    the label to learn."""
    by_symbol = Window.partitionBy("symbol").orderBy("at")
    return (prices.withColumn("at", F.to_timestamp("date")).drop("date")
            .withColumn("close", F.col("close").cast("double"))
            .withColumn("next_close", F.lead("close").over(by_symbol)))


def price_stats(prices: DataFrame) -> DataFrame:
    """Trailing statistics per symbol, each known at the close of its day."""
    by_symbol = Window.partitionBy("symbol").orderBy("at")
    days = prices.select("symbol", F.to_timestamp("date").alias("at"), F.col("close").cast("double"))
    return days.select(
        "symbol", "at",
        F.avg("close").over(by_symbol.rowsBetween(-4, 0)).alias("mean_5d"),
        (F.col("close") - F.lag("close").over(by_symbol)).alias("change_1d"),
        F.count("*").over(by_symbol.rowsBetween(Window.unboundedPreceding, 0)).alias("days_seen"),
    )
