"""Monitoring's drift bins on a small frame, against pandas: a categorical feature's most frequent
training values (ties by value, missing values apart, the rest `__other__`) for text and boolean
columns in one job, and a numeric value's bin as the number of edges it exceeds."""

from __future__ import annotations

import pandas as pd

from sparkml_platform.insight import monitoring


def test_top_categories_and_bins_match_pandas(spark):
    from pyspark.sql import functions as F

    # 25 carriers: carrier i appears i % 7 + 1 times, so counts tie and the top 20 cut through a tie.
    carriers = [f"c{i:02d}" for i in range(25) for _ in range(i % 7 + 1)]
    n = len(carriers)
    frame = pd.DataFrame({
        "carrier": carriers + [None, None],
        "cancelled": [i % 3 == 0 for i in range(n)] + [None, True],
        "distance": [float(i % 11) for i in range(n)] + [None, 4.5],
    })
    df = spark.createDataFrame(frame).withColumn("__period", F.lit("p"))

    top = monitoring._top_categories(df, ["carrier", "cancelled"])

    def expected_top(column: pd.Series) -> list[str]:
        counts = column.dropna().astype(str).str.lower().value_counts().rename_axis("value").reset_index()
        ordered = counts.sort_values(["count", "value"], ascending=[False, True])
        return ordered["value"].head(monitoring.TOP_CATEGORIES).tolist()

    assert top["carrier"] == expected_top(frame["carrier"])
    assert len(top["carrier"]) == monitoring.TOP_CATEGORIES
    assert top["cancelled"] == expected_top(frame["cancelled"])  # Spark's text of a boolean: true, false
    assert monitoring._top_categories(df, []) == {}

    edges = {"distance": [2.0, 5.0, 7.5]}
    got = monitoring._bin_counts(df, edges, top).toPandas()
    got = {(r.feature, r.bin): r["count"] for _, r in got.iterrows()}

    def bin_of_distance(v):
        return "null" if pd.isna(v) else str(sum(v > e for e in edges["distance"]))

    def bin_of_category(v, values):
        if pd.isna(v):
            return "null"
        text = str(v).lower() if isinstance(v, bool) else str(v)
        return text if text in values else "__other__"

    want: dict[tuple[str, str], int] = {}
    for _, row in frame.iterrows():
        for key in [("distance", bin_of_distance(row["distance"])),
                    ("carrier", bin_of_category(row["carrier"], top["carrier"])),
                    ("cancelled", bin_of_category(row["cancelled"], top["cancelled"]))]:
            want[key] = want.get(key, 0) + 1
    assert got == want
    assert got[("carrier", "__other__")] == sum(carriers.count(c) for c in set(carriers) - set(top["carrier"]))
