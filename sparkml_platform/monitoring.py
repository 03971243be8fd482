"""`sparkml monitor`: a registered model's performance once the outcomes of its predictions
arrive, and the drift of its inputs away from its training set, per period, kept in the Delta
table `monitoring.NAME` (one row per period, model version and measure)."""

from __future__ import annotations

import re

from . import lake
from .config import Config


def table_ref(model_name: str) -> str:
    """The monitoring table of a registered model: `monitoring.NAME`, NAME in lower case with
    every other character than a letter or a digit made `_`."""
    return "monitoring." + re.sub(r"[^a-z0-9_]", "_", model_name.lower()).lstrip("_0123456789")


def history(spark, config: Config, model_name: str, version: int | None = None) -> list[dict]:
    """Every monitoring row kept for `model_name` (one version's, when given), oldest period
    first: model_version, by, period, kind ('metric' or 'drift'), name (a metric, or a
    feature), measure ('value', 'psi' or 'ks'), value, threshold, breached, rows, monitored_at."""
    path = lake.table_path(config.lake_root, table_ref(model_name))
    if not lake.exists(path):
        return []
    df = lake.read(spark, path)
    if version is not None:
        df = df.where(df.model_version == int(version))
    rows = [r.asDict() for r in df.orderBy("period", "kind", "name", "measure").collect()]
    return rows
