"""Estimators behind one interface: Spark MLlib pipelines (distributed fits) and scikit-learn
pipelines (one machine), each with the spec's preprocessing in front.

Both give `fit(train, params)` and `predict(model, df)`, the latter returning a pandas frame
with `label`, `score` (the positive-class probability, or the regressor's value) and
`prediction`, which is what evaluation and champion comparison read.
"""

from __future__ import annotations

import importlib.metadata
from typing import TYPE_CHECKING

from ..config.vocabulary import MLLIB_ESTIMATORS
from ..core.errors import ConfigError
from ..core.provenance import import_object

if TYPE_CHECKING:
    from ..config import ModelSpec

FEATURES_VECTOR = "features"
# A classifier predicts the positive class from this probability on (training, scoring).
DECISION_THRESHOLD = 0.5


def spark_score(task: str):
    """The score column of a Spark ML model's output: the positive class's probability for a
    classifier, the predicted value for a regressor."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    return vector_to_array("probability")[1] if task == "classification" else F.col("prediction")


def for_spec(spec: ModelSpec, model_name: str, feature_columns: list[str], types: dict[str, str],
             label: str):
    categorical = [c for c in feature_columns
                   if c in spec.preprocessing.categorical or types[c] == "string"]
    numeric = [c for c in feature_columns if c not in categorical]
    kind = SklearnEstimator if spec.estimator.type == "sklearn" else MllibEstimator
    return kind(spec, model_name, categorical, numeric, label)


class _Estimator:
    """What both flavors share: the spec, the input columns by kind, the label, the task."""

    def __init__(self, spec: ModelSpec, model_name: str, categorical: list[str], numeric: list[str],
                 label: str):
        self.spec, self.categorical, self.numeric, self.label = spec, categorical, numeric, label
        self.task = spec.estimator.task
        self.where = f"models.yml: models.{model_name}"

    @property
    def feature_columns(self) -> list[str]:
        return [*self.categorical, *self.numeric]

    def prepare(self, train) -> None:
        pass

    def code_packages(self) -> list[str]:
        """Top-level packages of code the logged model runs (beyond its requirements)."""
        return []

    def requirements(self) -> list[str]:
        """What loading the logged model needs, pinned to the versions installed here.

        Given to MLflow because it otherwise infers them by loading the model again in a child
        process (for a Spark model a Spark session of its own, about 30 s per model) and
        also lists whatever that process happened to import (pytest, under the tests)."""
        return pinned(self.distributions)


class MllibEstimator(_Estimator):
    flavor = "spark"
    distributions = ("mlflow", "pyspark", "numpy", "pandas")

    def __init__(self, spec: ModelSpec, model_name: str, categorical: list[str], numeric: list[str],
                 label: str):
        from pyspark.ml import classification, regression

        super().__init__(spec, model_name, categorical, numeric, label)
        module, cls, _ = MLLIB_ESTIMATORS[spec.estimator.type]
        self.estimator_class = getattr({"classification": classification,
                                        "regression": regression}[module], cls)
        self.max_categories = 0

    def prepare(self, train) -> None:
        """Trees need a bin per category: count them once on the training rows."""
        if self.categorical:
            from pyspark.sql import functions as F

            row = train.agg(*[F.approx_count_distinct(c).alias(c) for c in self.categorical]).collect()[0]
            self.max_categories = int(max(row) * 1.1) + 1  # approximate: leave a margin

    def pipeline(self, params: dict):
        from pyspark.ml import Pipeline
        from pyspark.ml.feature import Imputer, OneHotEncoder, SQLTransformer, StringIndexer, VectorAssembler

        cat, num = self.categorical, self.numeric
        # Cast numerics to double so that the imputer and the assembler see one type.
        select = ", ".join([f"CAST(`{c}` AS DOUBLE) AS `__num_{c}`" for c in num] + ["*"])
        stages = [SQLTransformer(statement=f"SELECT {select} FROM __THIS__")]
        encoded = []
        if cat:
            stages.append(StringIndexer(inputCols=cat, outputCols=[f"__idx_{c}" for c in cat],
                                        handleInvalid="keep"))
            encoded = [f"__idx_{c}" for c in cat]
            if self.spec.preprocessing.encoding == "onehot":
                stages.append(OneHotEncoder(inputCols=encoded, outputCols=[f"__oh_{c}" for c in cat],
                                            handleInvalid="keep"))
                encoded = [f"__oh_{c}" for c in cat]
        if num:
            stages.append(Imputer(inputCols=[f"__num_{c}" for c in num],
                                  outputCols=[f"__imp_{c}" for c in num],
                                  strategy=self.spec.preprocessing.impute))
        stages.append(VectorAssembler(inputCols=encoded + [f"__imp_{c}" for c in num],
                                      outputCol=FEATURES_VECTOR, handleInvalid="keep"))
        try:
            estimator = self.estimator_class(featuresCol=FEATURES_VECTOR, labelCol="__label", **params)
        except TypeError as exc:
            raise ConfigError(f"{self.where}.estimator.params: {exc}") from None
        if hasattr(estimator, "getMaxBins") and cat and self.spec.preprocessing.encoding == "index":
            # the unseen and null buckets of the indexer take a bin each too
            estimator.setMaxBins(max(estimator.getMaxBins(), self.max_categories + 2))
        return Pipeline(stages=[*stages, estimator])

    def fit(self, train, params: dict):
        from pyspark.sql import functions as F

        # The label is cast outside the pipeline: scoring rows have none.
        return self.pipeline(params).fit(train.withColumn("__label", F.col(self.label).cast("double")))

    def transform(self, model, df):
        """The model's Spark output with `score` and `prediction` (for scoring without collecting)."""
        return model.transform(df).withColumn("score", spark_score(self.task))

    def predict(self, model, df):
        from pyspark.sql import functions as F

        return (self.transform(model, df)
                .select(F.col(self.label).cast("double").alias("label"), "score", "prediction")
                .toPandas())

    def importances(self, model) -> dict[str, float] | None:
        """Per input column (one-hot parts summed), from the fitted estimator."""
        last = model.stages[-1]
        if hasattr(last, "featureImportances"):
            values = last.featureImportances.toArray()
        elif hasattr(last, "coefficients"):
            values = abs(last.coefficients.toArray())
        else:
            return None
        names = self._vector_names(model)
        out: dict[str, float] = {}
        for name, value in zip(names, values):
            out[name] = out.get(name, 0.0) + float(value)
        return out

    def _vector_names(self, model) -> list[str]:
        names = []
        if self.spec.preprocessing.encoding == "onehot" and self.categorical:
            indexer = next(s for s in model.stages if hasattr(s, "labelsArray"))
            for column, labels in zip(self.categorical, indexer.labelsArray):
                names += [column] * len(labels)  # dropLast drops one, keep adds one
        else:
            names += self.categorical
        return names + self.numeric

    def log_model(self, model, signature, code_paths: list[str] | None = None):
        return log_fitted_model(model, self.flavor, self.task, signature, code_paths, self.requirements())


class SklearnEstimator(_Estimator):
    flavor = "sklearn"

    def __init__(self, spec: ModelSpec, model_name: str, categorical: list[str], numeric: list[str],
                 label: str):
        super().__init__(spec, model_name, categorical, numeric, label)
        self.where += ".estimator"
        self.estimator_class = load_class(spec.estimator.class_, f"{self.where}.class")

    def code_packages(self) -> list[str]:
        return [self.estimator_class.__module__.split(".")[0]]

    @property
    def distributions(self) -> tuple[str, ...]:
        # Saved with skops (log_model says so); a class from another package (xgboost,
        # lightgbm, ...) needs that package too.
        top = self.estimator_class.__module__.split(".")[0]
        extra = importlib.metadata.packages_distributions().get(top, [])
        return tuple(dict.fromkeys((*SKLEARN_DISTRIBUTIONS, *extra)))

    def frame(self, df):
        """A Spark DataFrame -> the pandas features (numerics as float64) and the label."""
        pdf = df.select(*self.feature_columns, self.label).toPandas()
        return features_frame(pdf, self.categorical, self.numeric), pdf[self.label].astype("float64")

    def features_only(self, df):
        return features_frame(df.select(*self.feature_columns).toPandas(), self.categorical, self.numeric)

    def fit(self, train, params: dict, data=None):
        x, y = data if data is not None else self.frame(train)
        return fit_sklearn(self.spec_dict(), x, y, params)

    def spec_dict(self) -> dict:
        """What a Spark worker needs to build the pipeline (plain data: it travels pickled)."""
        return {"class": self.spec.estimator.class_, "params": dict(self.spec.estimator.params),
                "encoding": self.spec.preprocessing.encoding,
                "impute": self.spec.preprocessing.impute,
                "categorical": self.categorical, "numeric": self.numeric, "task": self.task,
                "where": self.where}

    def predict(self, model, df, data=None):
        import pandas as pd

        x, y = data if data is not None else self.frame(df)
        score, prediction = predict_sklearn(model, x, self.task)
        return pd.DataFrame({"label": y.to_numpy(), "score": score, "prediction": prediction})

    def importances(self, model, data=None) -> dict[str, float] | None:
        """The estimator's own importances, else permutation importance on a sample of `data`."""
        import numpy as np

        last = model.steps[-1][1]
        if hasattr(last, "feature_importances_") or hasattr(last, "coef_"):
            values = getattr(last, "feature_importances_", None)
            if values is None:
                values = np.abs(np.atleast_2d(last.coef_)).sum(axis=0)
            names = model.steps[0][1].get_feature_names_out()
            out: dict[str, float] = {}
            for name, value in zip(names, values):
                column = _source_column(str(name), self.feature_columns)
                out[column] = out.get(column, 0.0) + float(value)
            return out
        if data is None:
            return None
        from sklearn.inspection import permutation_importance

        x, y = data
        sample = x.sample(n=min(len(x), 5000), random_state=0).index
        found = permutation_importance(model, x.loc[sample], y.loc[sample].astype("int64")
                                       if self.task == "classification" else y.loc[sample],
                                       n_repeats=2, random_state=0)
        return {c: float(v) for c, v in zip(x.columns, found.importances_mean)}

    def log_model(self, model, signature, code_paths: list[str] | None = None):
        return log_fitted_model(model, self.flavor, self.task, signature, code_paths, self.requirements())


SKLEARN_DISTRIBUTIONS = ("mlflow", "scikit-learn", "skops", "scipy", "numpy", "pandas")


def log_fitted_model(model, flavor: str, task: str, signature, code_paths: list[str] | None = None,
                     requirements: list[str] | None = None):
    """Log a fitted model in the active MLflow run, as scoring loads it."""
    import mlflow

    if flavor == "spark":
        return mlflow.spark.log_model(model, "model", signature=signature, code_paths=code_paths,
                                      pip_requirements=requirements or pinned(MllibEstimator.distributions))
    # pyfunc then returns probabilities, which is what scoring writes for classifiers.
    predict_fn = "predict_proba" if task == "classification" else "predict"
    # MLflow saves with skops, which loads only types it is told to trust: these are the
    # types of the model we fitted (or were handed) ourselves.
    from skops.io import dumps, get_untrusted_types

    if requirements is None:
        top = type(model).__module__.split(".")[0]
        extra = importlib.metadata.packages_distributions().get(top, [])
        requirements = pinned(dict.fromkeys((*SKLEARN_DISTRIBUTIONS, *extra)))
    return mlflow.sklearn.log_model(model, name="model", signature=signature,
                                    pyfunc_predict_fn=predict_fn, pip_requirements=requirements,
                                    serialization_format="skops",
                                    skops_trusted_types=get_untrusted_types(data=dumps(model)),
                                    code_paths=code_paths)


def _source_column(name: str, columns: list[str]) -> str:
    """`cat__carrier_AA` / `num__distance` -> the input column it came from."""
    bare = name.split("__", 1)[-1]
    return max((c for c in columns if bare == c or bare.startswith(c + "_")), key=len, default=bare)


def pinned(distributions) -> list[str]:
    """`name==version` for each installed distribution, as pip can install it from an index:
    without a local label (`+cpu`), a development build pinned to its release. A missing one
    is left unpinned."""
    from packaging.version import Version

    out = []
    for name in distributions:
        try:
            version = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            out.append(name)
            continue
        out.append(f"{name}=={version.base_version if version.is_devrelease else version.public}")
    return out


def load_class(dotted: str, where: str):
    return import_object(dotted, where, "estimator class")


def features_frame(pdf, categorical: list[str], numeric: list[str]):
    """Numerics as float64 (nulls as NaN) and categoricals as strings: one signature everywhere."""
    out = pdf[[*categorical, *numeric]].copy()
    for column in numeric:
        out[column] = out[column].astype("float64")
    for column in categorical:
        out[column] = out[column].astype("object")
    return out


def build_sklearn(spec: dict, params: dict):
    """Preprocessing (impute, encode) and the estimator, as one sklearn Pipeline."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    if spec["encoding"] == "onehot":
        encoder = OneHotEncoder(handle_unknown="ignore")
    else:
        encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    categorical = Pipeline([("fill", SimpleImputer(strategy="constant", fill_value="__missing__")),
                            ("encode", encoder)])
    columns = ColumnTransformer([("cat", categorical, spec["categorical"]),
                                 ("num", SimpleImputer(strategy=spec["impute"],
                                                       keep_empty_features=True), spec["numeric"])])
    cls = load_class(spec["class"], spec["where"])
    try:
        estimator = cls(**{**spec["params"], **params})
    except TypeError as exc:
        raise ConfigError(f"{spec['where']}.params: {exc}") from None
    return Pipeline([("preprocess", columns), ("estimator", estimator)])


def fit_sklearn(spec: dict, x, y, params: dict):
    model = build_sklearn(spec, params)
    model.fit(x, y.astype("int64") if spec["task"] == "classification" else y)
    return model


def predict_sklearn(model, x, task: str):
    if task == "classification":
        score = model.predict_proba(x)[:, 1]
        return score, (score >= DECISION_THRESHOLD).astype("float64")
    value = model.predict(x).astype("float64")
    return value, value


def predict_registered(mv, feature_spec: dict, df, label: str, task: str):
    """A registered version's (label, score, prediction) on `df`, whichever its flavor."""
    import mlflow
    import pandas as pd

    uri = f"models:/{mv.name}/{mv.version}"
    if feature_spec.get("flavor", "spark") == "sklearn":
        model = mlflow.sklearn.load_model(uri)
        categorical, numeric = sklearn_columns(model, feature_spec)
        pdf = df.select(*categorical, *numeric, label).toPandas()
        score, prediction = predict_sklearn(model, features_frame(pdf, categorical, numeric), task)
        return pd.DataFrame({"label": pdf[label].astype("float64").to_numpy(), "score": score,
                             "prediction": prediction})
    from pyspark.sql import functions as F

    out = mlflow.spark.load_model(uri).transform(df)
    return out.select(F.col(label).cast("double").alias("label"), spark_score(task).alias("score"),
                      "prediction").toPandas()


def sklearn_columns(model, feature_spec: dict | None = None) -> tuple[list[str], list[str]]:
    """The categorical and numeric input columns of a fitted pipeline from `build_sklearn`;
    for a model fitted elsewhere (a notebook's), those its feature spec records."""
    steps = getattr(model, "steps", None)
    transformer = steps[0][1] if steps else None
    if hasattr(transformer, "transformers_"):
        found = {name: list(cols) for name, _, cols in transformer.transformers_
                 if name in ("cat", "num")}
        if found:
            return found.get("cat", []), found.get("num", [])
    spec = feature_spec or {}
    return list(spec.get("categorical", [])), [c for c in spec.get("model_inputs", [])
                                               if c not in spec.get("categorical", [])]
