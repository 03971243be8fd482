"""How good the champion's predictions for October-December were, now that the outcomes are
known: ROC AUC and PR AUC of `predictions.flight_delays` against the flights' arrival delays
(late = more than 15 minutes; cancelled and diverted flights have no outcome and are left out).

    .venv/bin/python benchmarks/champion_oct_dec.py      # after make demo
"""

from __future__ import annotations

from _common import ROOT, session


def main() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    from sparkml_platform import lake
    from sparkml_platform.config import load_config

    config = load_config(ROOT / "conf")
    spark = session()
    predictions = lake.read(spark, lake.table_path(config.lake_root, "predictions.flight_delays"))
    flights = lake.read(spark, lake.table_path(config.lake_root, "entities.flights_to_score"))
    joined = (predictions.join(flights.select("flight_id", "arr_delay"), "flight_id")
              .where("arr_delay IS NOT NULL")
              .selectExpr("CAST(arr_delay > 15 AS INT) AS late", "probability", "prediction",
                          "model_name", "model_version", "run_date").toPandas())
    model = joined[["model_name", "model_version"]].drop_duplicates().to_records(index=False).tolist()
    print(f"model {model}, run dates {sorted(joined['run_date'].astype(str).unique())}")
    print(f"{len(joined):,} October-December flights with an outcome, {joined['late'].mean():.1%} late")
    print(f"ROC AUC {roc_auc_score(joined['late'], joined['probability']):.4f}, "
          f"PR AUC {average_precision_score(joined['late'], joined['probability']):.4f}, "
          f"predicted late {int(joined['prediction'].sum()):,}")


if __name__ == "__main__":
    main()
