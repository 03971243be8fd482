"""Time Hyperopt tuning of a single-machine (scikit-learn) model through the platform's
tuning path (`SparkTrials`, one core per trial) with parallelism 2 against parallelism 1, in
one run, on the same data, space and seed; prints the speed-up (target: at least 1.6x on 2 cores).

    .venv/bin/python benchmarks/tuning_parallel.py [--trials 16] [--rows 60000]

Data: a seeded synthetic binary classification set (20 numeric features, 2 categoricals),
split 80/20 into train and validation. Nested trial runs go to a throw-away MLflow store.
"""

from __future__ import annotations

import argparse
import tempfile

from _common import session, timed


def data(spark, rows: int):
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=rows, n_features=20, n_informative=8, random_state=7)
    pdf = pd.DataFrame(x, columns=[f"x{i}" for i in range(20)])
    rng = np.random.default_rng(7)
    pdf["cat_a"] = rng.choice(list("abcdef"), rows)
    pdf["cat_b"] = rng.choice(list("uvwxyz"), rows)
    pdf["label"] = y
    df = spark.createDataFrame(pdf)
    return df.randomSplit([0.8, 0.2], seed=7)


def spec(trials: int, parallelism: int):
    from sparkml_platform.config import ModelSpec

    return ModelSpec.model_validate({
        "training_set": "synthetic",
        "estimator": {"type": "sklearn", "class": "sklearn.ensemble.HistGradientBoostingClassifier",
                      "params": {"max_iter": 150, "early_stopping": False, "random_state": 7}},
        "search_space": {"learning_rate": {"loguniform": [0.03, 0.3]},
                         "max_leaf_nodes": {"quniform": [15, 63, 8]},
                         "l2_regularization": {"uniform": [0.0, 1.0]}},
        "tuning": {"max_evals": trials, "parallelism": parallelism, "seed": 7},
    })


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--rows", type=int, default=60000)
    args = parser.parse_args()

    from mlflow import MlflowClient

    from sparkml_platform.modeling import estimators
    from sparkml_platform.training import tuning

    spark = session()
    train, valid = (df.cache() for df in data(spark, args.rows))
    print(f"{args.trials} trials of HistGradientBoostingClassifier, {train.count():,} train rows, "
          f"{valid.count():,} validation rows, {spark.sparkContext.defaultParallelism} cores")
    store = tempfile.mkdtemp()
    client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    experiment = client.create_experiment("tuning-bench", artifact_location=f"{store}/artifacts")
    types = {f.name: f.dataType.simpleString() for f in train.schema.fields}
    features = [c for c in train.columns if c != "label"]
    seconds, best = {}, {}
    for parallelism in (1, 2, 1, 2):  # alternate, so neither side has the warmer machine
        model_spec = spec(args.trials, parallelism)
        estimator = estimators.for_spec(model_spec, "bench", features, types, "label")
        parent = client.create_run(experiment).info.run_id
        log = tuning.TrialLog(client, experiment, parent, "roc_auc")
        took = timed(f"parallelism {parallelism}",
                     lambda: tuning.tune(spark, model_spec, "bench", estimator, train, valid, log))
        seconds.setdefault(parallelism, []).append(took)
        best[parallelism] = -log.best()["loss"]
    one, two = min(seconds[1]), min(seconds[2])
    print(f"best validation ROC AUC: parallelism 1 {best[1]:.4f}, parallelism 2 {best[2]:.4f}")
    print(f"parallelism 1: {one:.1f} s, parallelism 2: {two:.1f} s (best of 2 each)")
    print(f"speed-up = {one / two:.2f}x (target: at least 1.6x)")


if __name__ == "__main__":
    main()
