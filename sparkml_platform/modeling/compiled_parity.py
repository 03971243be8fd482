"""Whether a logged Spark ML pipeline may be served by its compiled form (modeling/compiled.py):
at training time, the compiled stages run on the test split beside Spark's own `transform`,
stage by stage, and the record says how far apart they came out. Only a record that is
`exact` (every column of every stage within `TOLERANCE`, NaN matching NaN) is served; any other
names the first differing row and stage, or the stage that is not compiled.

The record is the artifact `RECORD` of the model's run; `serving/server.py` reads it.
"""

from __future__ import annotations

import numpy as np

from . import compiled

RECORD = "compiled_predictor.json"
FORMAT = "compiled/1"
TOLERANCE = 1e-9
ROWS = 20_000  # compared: the first rows of the test split, enough to reach most leaves


def check(model_folder: str, fitted, rows, keys: list[str]) -> dict:
    """The record for the PipelineModel saved in `model_folder` (what MLflow logged), fitted
    in this session as `fitted`, compared on DataFrame `rows` (the test split)."""
    record = {"format": FORMAT, "tolerance": TOLERANCE, "supported": compiled.SUPPORTED}
    try:
        predictor = compiled.load(model_folder)
    except compiled.Unsupported as exc:
        return {**record, "exact": False, "refused": str(exc)}
    from pyspark.ml.functions import vector_to_array
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import functions as F

    sample = rows.limit(ROWS).localCheckpoint()
    out = fitted.transform(sample)
    vectors = {f.name for f in out.schema.fields if isinstance(f.dataType, VectorUDT)}
    written = [c for stage in predictor.stages for c in stage.writes]
    inputs = [c for c in predictor.inputs if c in sample.columns]
    shown = [k for k in keys if k in sample.columns and k not in inputs]
    frame = out.select(*[F.col(f"`{c}`") for c in dict.fromkeys([*inputs, *shown])],
                       *[(vector_to_array(F.col(f"`{c}`")) if c in vectors else F.col(f"`{c}`")).alias(f"__spark_{i}")
                         for i, c in enumerate(written)]).toPandas()
    spark_values = {c: frame[f"__spark_{i}"].to_numpy() for i, c in enumerate(written)}
    try:
        stages = predictor.outputs(frame[inputs])
    except (ValueError, KeyError) as exc:
        return {**record, "exact": False, "refused": f"the compiled pipeline failed on the test rows: {exc}"}
    return {**record, **compare(stages, spark_values, frame, [*dict.fromkeys([*keys, *inputs])][:12])}


def compare(stages: list[tuple[str, dict]], spark_values: dict, frame, shown: list[str]) -> dict:
    """How the compiled stages' columns compare with Spark's: the largest difference, and the
    first row and stage (in pipeline order) that differ by more than TOLERANCE."""
    largest = 0.0
    for name, made in stages:
        for column, values in made.items():
            ours = np.asarray(values, dtype=float).reshape(len(frame), -1)
            theirs = _matrix(spark_values[column], len(frame))
            if theirs.shape != ours.shape:
                return {"exact": False, "rows_compared": len(frame), "first_difference": {
                    "stage": name, "column": column,
                    "why": f"{ours.shape[1]} values per row compiled, {theirs.shape[1]} from Spark"}}
            both_nan = np.isnan(ours) & np.isnan(theirs)
            gap = np.where(both_nan, 0.0, np.abs(ours - theirs))
            gap = np.where(np.isnan(gap), np.inf, gap)
            bad = np.nonzero((gap > TOLERANCE).any(axis=1))[0]
            if len(bad):
                row = int(bad[0])
                return {"exact": False, "rows_compared": len(frame), "first_difference": {
                    "stage": name, "column": column, "row": row,
                    "values": {c: _plain(frame[c].iloc[row]) for c in shown if c in frame.columns},
                    "spark": theirs[row].tolist(), "compiled": ours[row].tolist()}}
            if gap.size:
                largest = max(largest, float(gap.max()))
    return {"exact": True, "rows_compared": len(frame), "max_difference": largest}


def _matrix(values: np.ndarray, n: int) -> np.ndarray:
    """Spark's column as a float matrix, a row per row (arrays from vectors stacked; nulls NaN)."""
    if n and isinstance(values[0], (list, np.ndarray)):
        return np.vstack([np.asarray(v, dtype=float) for v in values])
    return np.asarray([np.nan if v is None else v for v in values], dtype=float).reshape(n, -1)


def _plain(v):
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v if isinstance(v, (int, float, str, bool)) else str(v)


def refusal(name: str, record: dict | None, train_command: str) -> str | None:
    """Why version `name` cannot be served compiled (None: it can)."""
    if record is None:
        return (f"{name} is a Spark ML model logged before compiled predictors (no {RECORD}): train it "
                f"again to serve it online ({train_command}); it scores in batch as it is")
    if record.get("exact"):
        return None
    if record.get("refused"):
        return f"{name} has no compiled predictor: {record['refused']}"
    first = record.get("first_difference") or {}
    at = f"row {first['row']} of its test split ({first.get('values')})" if "row" in first else "its test split"
    return (f"{name} has no compiled predictor: at training, {first.get('stage')} gave {first.get('column')} "
            f"unlike Spark on {at}: Spark {first.get('spark')}, compiled {first.get('compiled')} "
            f"{first.get('why', '')}".rstrip() + f" (tolerance {record.get('tolerance')})")
