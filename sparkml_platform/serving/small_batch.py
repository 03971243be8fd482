"""`score_batch` on a pandas frame: the small-data path, without Spark.

The rows go through exactly what `sparkml serve` does for a request (serving/server.py
`ServedModel`), in this process: features looked up in the online store as of each row's
event time, the model evaluated in Python (a scikit-learn model as it is, a Spark ML
pipeline by its compiled form). The store is what a server would read, so the numbers are
the ones batch scoring gives wherever the store holds the rows it looked up (the parity the
online tests check); a row before what the store keeps gets null features and says so in
`tables_without_row`, as a served answer does. Publish the model's tables first.
"""

from __future__ import annotations

import datetime as dt

from ..core.errors import ConfigError
from .online_requests import BadRequest, check_row
from .server import ServedModel


def score_frame(tracker, store, model_ref: str, frame):
    """`frame`'s rows scored by `model_ref`: a pandas frame with its columns and `prediction`,
    `probability` (or `value`), `tables_without_row`, `model_name`, `model_version`."""
    model = ServedModel(tracker, model_ref, store)
    rows = [{c: _plain(v) for c, v in row.items()} for row in frame.to_dict("records")]
    try:
        checked = [check_row(i, row, model.columns, model.required) for i, row in enumerate(rows)]
        answers, _, degraded = model.answer(checked, store)
    except BadRequest as exc:  # a row the model cannot take, named as a served answer names it
        raise ConfigError(f"score_batch: {exc}; nothing scored") from None
    if degraded:  # what a server would flag on every answer: here, refused
        raise ConfigError("score_batch: the online store does not serve "
                          + "; ".join(f"{t} ({why})" for t, why in degraded.items()) + "; nothing scored")
    out = frame.copy()
    out["prediction"] = [a["prediction"] for a in answers]
    score = "probability" if model.classifier else "value"
    out[score] = [a[score] for a in answers]
    out["tables_without_row"] = [a["tables_without_row"] for a in answers]
    out["model_name"] = model.version.name
    out["model_version"] = int(model.version.version)
    return out


def _plain(v):
    """A frame's value as a request's JSON would carry it: times as ISO text (a time without a
    zone is UTC, as Spark's session here keeps it), NaN, NaT and NA as null."""
    import pandas as pd

    if v is None or (not isinstance(v, (str, bytes, list, dict)) and pd.isna(v)):
        return None
    if isinstance(v, dt.datetime):  # pandas' Timestamp too
        return v.isoformat()
    return v.item() if hasattr(v, "item") else v  # numpy scalars as Python's
