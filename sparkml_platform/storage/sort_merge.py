"""What the platform's one-pass scans in its jar share (`jvm/sparkml/pit`: AsOfMerge, the
point-in-time join, and WindowSweep, window aggregates as of each row's time): the leading
sort column both sort their inputs by, and how a session finds them."""

from __future__ import annotations

ORDER = "__pit_order"
TIME_BITS = (1 << 32) - 1


def sort_order(key_cols: list, time, time_type: str):
    """The scans' leading sort column: the upper 32 bits of a 64-bit hash of the keys, then
    the time in whole seconds (days for dates) since 1970 in the lower 32, held between 0 and
    2^32 - 1 (so it never decreases as the time grows). Sorting by it first, the sort decides
    almost every comparison on its long prefix; sorted by the keys first, every two rows of
    one key tie there and cost a comparison of whole rows (benchmarks/pit_join.py, 10,000
    keys: 45 % of the join's time in the sort's comparator, against 26 % for the equi-join
    floor). A null time sorts last. `time_type` "micros": a long of microseconds since 1970."""
    from pyspark.sql import functions as F

    if time_type == "date":
        units = F.unix_date(time).cast("long")
    elif time_type == "timestamp":
        units = F.unix_seconds(time)
    elif time_type == "micros":
        units = F.floor(time / F.lit(1_000_000)).cast("long")
    else:  # timestamp_ntz: from its fields, free of any time zone
        units = (F.unix_date(F.to_date(time)).cast("long") * 86400 + F.hour(time) * 3600
                 + F.minute(time) * 60 + F.second(time))
    seconds = F.coalesce(F.least(F.greatest(units, F.lit(0).cast("long")), F.lit(TIME_BITS).cast("long")),
                         F.lit(TIME_BITS).cast("long"))
    return F.xxhash64(*key_cols).bitwiseAND(F.lit(~TIME_BITS).cast("long")).bitwiseOR(seconds)


def jvm_class(spark, name: str):
    """`sparkml.pit.NAME` from the platform's jar, or None where the session lacks it: Spark
    Connect, or a session started without that jar."""
    from py4j.java_gateway import JavaClass

    jvm = getattr(spark, "_jvm", None)
    try:
        found = getattr(jvm.sparkml.pit, name) if jvm is not None else None
    except Exception:  # noqa: BLE001 - no JVM to ask
        return None
    return found if isinstance(found, JavaClass) else None


def observed(frame) -> bool:
    """Whether `frame` carries an `Observation` (its metrics collected as it runs): the scans
    run their inputs as RDDs, where it would never report, so such a frame takes Spark's own
    plan instead."""
    return "CollectMetrics" in frame._jdf.queryExecution().logical().toString()
