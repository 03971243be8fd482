"""The short summary printed at the end of `sparkml run`."""

from __future__ import annotations

from ..config import Config
from ..storage import lake, places


def table_rows(spark, config: Config) -> dict[str, int]:
    """Each table's rows: from the counts its Delta log keeps per file (no Spark job), else
    counted with Spark (files added without one)."""
    rows = {}
    for zone in ("raw", "entities", "features", "predictions"):
        zone_dir = places.lake_root(config) / zone
        for name in zone_dir.names():
            if lake.exists(path := zone_dir / name):
                counted = lake.row_count(path, lake.version(None, path))
                rows[f"{zone}.{name}"] = counted if counted is not None else lake.read(spark(), path).count()
    return rows


HEADLINE = {"roc_auc": "ROC AUC", "log_loss": "log loss", "rmse": "RMSE", "mae": "MAE", "r2": "R²"}


def _headline(metrics: dict) -> str:
    """A classifier's ROC AUC and log loss, a regressor's RMSE, MAE and R²."""
    shown = [f"{label} {metrics[key]:.4f}" for key, label in HEADLINE.items()
             if isinstance(metrics.get(key), float) and metrics[key] == metrics[key]]
    return ", ".join(shown) or "no metric computed"


def render(spark, config: Config, tracker, report: dict) -> str:
    """`spark`: a function giving the session, called only if a table's log lacks row counts."""
    lines = ["", f"== {report['pipeline']}: summary", "rows per table:"]
    for ref, n in table_rows(spark, config).items():
        lines.append(f"  {ref:<40} {n:>10,}")
    for step in report["steps"]:
        for out in step["outputs"]:
            if step["step"] == "build_trainset":
                lines.append(f"training set {out['table']} version {out['version']}: "
                             + ", ".join(f"{k} {v:,}" for k, v in out["rows"].items()))
            if step["step"] == "train":
                lines.append(f"model {out['model']} version {out['version']} ({out['spec']}): "
                             f"{_headline(out['metrics'])} on the held-out test split; {out['decision']}")
            if step["step"] == "score":
                line = (f"scored {out['rows']:,} rows into {out['output']} (run date "
                        f"{out['run_date']})")
                if out.get("predicted_positive") is not None:  # classifiers
                    line += f": {out['predicted_positive']:,} predicted positive"
                lines.append(line)
    lines.append(f"lake root: {places.lake_root(config)}")
    lines.append(f"MLflow: {tracker.shown_uri}")
    lines.append(f"open the MLflow UI: {tracker.ui_command()}")
    return "\n".join(lines)
