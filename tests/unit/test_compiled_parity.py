"""How a compiled pipeline's columns are compared with Spark's (modeling/compiled_parity.py),
and the refusals `sparkml serve` gives from the record: no JVM."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sparkml_platform.modeling import compiled_parity


def stages(probability: np.ndarray) -> list:
    return [("stage 1 (StringIndexerModel, si)", {"__idx_shop": np.array([0.0, 1.0, 2.0])}),
            ("stage 4 (GBTClassificationModel, gbt)", {"probability": probability})]


def test_equal_columns_are_exact_with_their_largest_difference_and_nan_matches_nan():
    frame = pd.DataFrame({"id": [1, 2, 3], "shop": ["a", None, "z"]})
    ours = np.array([[0.7, 0.3], [0.4, 0.6], [np.nan, np.nan]])
    spark = {"__idx_shop": np.array([0.0, 1.0, 2.0]),
             "probability": np.array([[0.7, 0.3 + 4e-10], [0.4, 0.6], [np.nan, np.nan]], dtype=object)}
    record = compiled_parity.compare(stages(ours), {**spark, "probability": list(spark["probability"])},
                                     frame, ["id", "shop"])
    assert record["exact"] and record["rows_compared"] == 3
    assert 3e-10 < record["max_difference"] < 5e-10


def test_the_first_differing_row_and_stage_are_named_and_refused_at_serve():
    frame = pd.DataFrame({"id": [1, 2, 3], "shop": ["a", None, "z"]})
    ours = np.array([[0.7, 0.3], [0.4, 0.6], [0.5, 0.5]])
    theirs = [np.array([0.7, 0.3]), np.array([0.4, 0.6 + 2e-9]), np.array([0.1, 0.9])]
    record = compiled_parity.compare(stages(ours), {"__idx_shop": np.array([0.0, 1.0, 2.0]),
                                                    "probability": theirs}, frame, ["id", "shop"])
    first = record["first_difference"]
    assert not record["exact"]
    assert (first["stage"], first["column"], first["row"]) == ("stage 4 (GBTClassificationModel, gbt)",
                                                                "probability", 1)
    assert first["values"] == {"id": 2, "shop": None} and first["spark"] == [0.4, 0.6 + 2e-9]
    why = compiled_parity.refusal("model m version 2", {**record, "tolerance": 1e-9}, "sparkml train m")
    assert why.startswith("model m version 2 has no compiled predictor: at training, stage 4 "
                          "(GBTClassificationModel, gbt) gave probability unlike Spark on row 1 of its test split")
    # A NaN on one side only is a difference too.
    nan_side = compiled_parity.compare(stages(np.array([[0.7, 0.3], [0.4, 0.6], [np.nan, np.nan]])),
                                       {"__idx_shop": np.array([0.0, 1.0, 2.0]),
                                        "probability": [np.array([0.7, 0.3]), np.array([0.4, 0.6]),
                                                        np.array([0.5, 0.5])]}, frame, ["id"])
    assert nan_side["first_difference"]["row"] == 2


def test_a_model_logged_before_compiled_predictors_is_refused_with_how_to_log_it_again():
    why = compiled_parity.refusal("model flight_delays version 1", None, "sparkml train flight_delay_gbt")
    assert "logged before compiled predictors (no compiled_predictor.json)" in why
    assert "train it again to serve it online (sparkml train flight_delay_gbt)" in why
    assert compiled_parity.refusal("m", {"exact": True}, "x") is None
