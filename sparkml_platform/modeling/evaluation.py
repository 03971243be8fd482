"""Metrics, pictures and the gate verdict of a candidate model.

Everything here reads one pandas frame of (label, score, prediction) per evaluated split:
three numbers per row, so even large test sets fit on the driver.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..config.vocabulary import LOWER_IS_BETTER

if TYPE_CHECKING:
    from ..config import Threshold


def metrics(frame, task: str) -> dict[str, float]:
    from sklearn import metrics as m

    y, score, pred = frame["label"].to_numpy(), frame["score"].to_numpy(), frame["prediction"].to_numpy()
    if task == "regression":
        return {"rmse": math.sqrt(m.mean_squared_error(y, score)),
                "mae": m.mean_absolute_error(y, score), "r2": m.r2_score(y, score)}
    y = y.astype(int)
    tn, fp, fn, tp = m.confusion_matrix(y, pred.astype(int), labels=[0, 1]).ravel()
    both = len(set(y)) == 2
    return {
        "roc_auc": m.roc_auc_score(y, score) if both else float("nan"),
        "pr_auc": m.average_precision_score(y, score) if both else float("nan"),
        "f1": m.f1_score(y, pred, zero_division=0),
        "precision": m.precision_score(y, pred, zero_division=0),
        "recall": m.recall_score(y, pred, zero_division=0),
        "accuracy": m.accuracy_score(y, pred),
        "log_loss": m.log_loss(y, score.clip(1e-15, 1 - 1e-15), labels=[0, 1]),
        "true_negatives": float(tn), "false_positives": float(fp),
        "false_negatives": float(fn), "true_positives": float(tp),
    }


def better(metric: str, a: float, b: float) -> bool:
    """Is `a` better than `b` for this metric?"""
    return a < b if metric in LOWER_IS_BETTER else a > b


def loss(metric: str, value: float) -> float:
    """What Hyperopt minimises for a metric."""
    return value if metric in LOWER_IS_BETTER else -value


def verdict(thresholds: dict[str, "Threshold"], measured: dict[str, float],
            champion: dict | None) -> dict:
    """Each threshold with its measured value; passed only if all pass.

    `champion` is {"version", "metrics"} of the current champion evaluated on the same test
    rows (None when there is none yet, or {"version", "skipped": why} when it could not be).
    """
    checks = []
    for metric, bound in thresholds.items():
        value = measured.get(metric)
        if bound.min is not None:
            checks.append({"metric": metric, "kind": "floor", "rule": f">= {bound.min}", "value": value,
                           "passed": _ok(value) and value >= bound.min})
        if bound.max is not None:
            checks.append({"metric": metric, "kind": "ceiling", "rule": f"<= {bound.max}", "value": value,
                           "passed": _ok(value) and value <= bound.max})
        if bound.vs_champion is not None and champion and "metrics" in champion:
            theirs = champion["metrics"].get(metric)
            if metric in LOWER_IS_BETTER:
                limit, rule = theirs + bound.vs_champion, "<="
                passed = _ok(value) and value <= limit
            else:
                limit, rule = theirs - bound.vs_champion, ">="
                passed = _ok(value) and value >= limit
            checks.append({"metric": metric, "kind": "champion", "value": value, "passed": passed,
                           "rule": f"{rule} champion v{champion['version']} ({theirs:.4f}) "
                                   f"{'+' if rule == '<=' else '-'} {bound.vs_champion}"})
    if champion and "skipped" in champion and champion.get("policy") == "keep":
        checks.append({"metric": "champion", "kind": "champion", "value": None, "passed": False,
                       "rule": f"a comparison with champion v{champion['version']} "
                               f"(on_stale_champion: keep; {champion['skipped']})"})
    out = {"passed": all(c["passed"] for c in checks), "checks": checks,
           "champion": {k: v for k, v in (champion or {}).items() if k != "model"} or None}
    out["failed"] = [f"{c['metric']} = {_fmt(c['value'])}, needs {c['rule']}"
                     for c in checks if not c["passed"]]
    return out


def _ok(value) -> bool:
    return value is not None and not math.isnan(value)


def _fmt(value) -> str:
    return "not computed" if value is None else f"{value:.4f}"


def plots(frame, task: str, importances: dict[str, float] | None, folder: Path) -> list[Path]:
    """ROC curve, PR curve, confusion matrix and feature importance as PNG files."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a cluster node
    import matplotlib.pyplot as plt
    from sklearn import metrics as m

    folder.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name):
        path = folder / name
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)

    y, score = frame["label"].to_numpy(), frame["score"].to_numpy()
    if task == "classification" and len(set(y.astype(int))) == 2:
        y = y.astype(int)
        fpr, tpr, _ = m.roc_curve(y, score)
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot(fpr, tpr, label=f"AUC {m.roc_auc_score(y, score):.3f}")
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve (test)")
        ax.legend(loc="lower right")
        save(fig, "roc_curve.png")

        precision, recall, _ = m.precision_recall_curve(y, score)
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot(recall, precision, label=f"AP {m.average_precision_score(y, score):.3f}")
        ax.axhline(y.mean(), linestyle="--", color="grey")
        ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve (test)")
        ax.legend(loc="upper right")
        save(fig, "pr_curve.png")

        matrix = m.confusion_matrix(y, frame["prediction"].to_numpy().astype(int), labels=[0, 1])
        fig, ax = plt.subplots(figsize=(4, 4))
        m.ConfusionMatrixDisplay(matrix, display_labels=[0, 1]).plot(ax=ax, colorbar=False)
        ax.set_title("Confusion matrix (test)")
        save(fig, "confusion_matrix.png")
    if importances:
        ranked = sorted(importances.items(), key=lambda kv: kv[1])[-25:]
        fig, ax = plt.subplots(figsize=(6, max(3, 0.3 * len(ranked))))
        ax.barh([k for k, _ in ranked], [v for _, v in ranked])
        ax.set(title="Feature importance", xlabel="importance")
        save(fig, "feature_importance.png")
    return written

