"""A fitted Spark ML pipeline, evaluated with numpy in this process: no JVM.

`load(folder)` reads a saved PipelineModel (what `mlflow.spark` logs under `sparkml/`): each
stage's own metadata (its parameters) and data (indexer labels, imputer surrogates, model
coefficients, tree nodes) through pyarrow, and returns a `Compiled` whose `outputs(frame)`
gives, per stage, the columns Spark's `transform` adds, computed by the same rules. What
Spark computes is the reference: training compares the two on the test split
(modeling/compiled_parity.py) and only an exact match (1e-9) is served.

Compiled: the stages `estimators.MllibEstimator.pipeline` builds (the platform's own
`SQLTransformer` cast, `StringIndexerModel`, `OneHotEncoderModel`, `ImputerModel`,
`VectorAssembler`) and the models it offers, with decision trees besides. Anything else is
refused by name (`Unsupported`), with the list of what is supported.
"""

from __future__ import annotations

import glob
import json
import os
import re

import numpy as np

# The one SQL statement compiled: the cast estimators.py puts first.
_CAST = re.compile(r"CAST\(`((?:[^`]|``)+)` AS DOUBLE\) AS `((?:[^`]|``)+)`")


class Unsupported(ValueError):
    """A stage (or a setting of one) this module does not evaluate."""


class Compiled:
    """The stages of one saved pipeline, in order; `outputs` runs them on a pandas frame."""

    def __init__(self, stages: list):
        self.stages = stages
        self.task = stages[-1].task if stages and hasattr(stages[-1], "task") else None

    @property
    def inputs(self) -> list[str]:
        """The frame's columns the first stages read (the model's input columns)."""
        made, read = set(), []
        for stage in self.stages:
            read += [c for c in stage.reads if c not in made and c not in read]
            made.update(stage.writes)
        return read

    def outputs(self, frame) -> list[tuple[str, dict[str, np.ndarray]]]:
        """[(stage name, {column: values})] for every stage, in order (what Spark adds)."""
        columns = {c: frame[c].to_numpy() if frame[c].dtype.kind in "fiub"
                   else frame[c].to_numpy(dtype=object, na_value=None) for c in frame.columns}
        out = []
        for stage in self.stages:
            made = stage.apply(columns, len(frame))
            columns.update(made)
            out.append((stage.name, made))
        return out

    def predict(self, frame) -> tuple[np.ndarray, np.ndarray]:
        """(score, prediction): the positive class's probability for a classifier (the
        predicted value for a regressor), and the predicted class or value."""
        made = self.outputs(frame)[-1][1]
        score = made["probability"][:, 1] if self.task == "classification" else made["prediction"]
        return score, made["prediction"]


def load(folder: str) -> Compiled:
    """The saved PipelineModel in `folder` (its `metadata/` and `stages/`), compiled."""
    meta = _metadata(folder)
    if meta["class"] != "org.apache.spark.ml.PipelineModel":
        raise Unsupported(f"{folder}: a {meta['class']}, not a PipelineModel")
    stages = []
    for i, uid in enumerate(meta["paramMap"]["stageUids"]):
        path = os.path.join(folder, "stages", f"{i}_{uid}")
        stage_meta = _metadata(path)
        cls = stage_meta["class"]
        name = f"stage {i} ({cls.rsplit('.', 1)[-1]}, {uid})"
        if cls not in _COMPILERS:
            raise Unsupported(f"{name} is not supported online; supported stages: {SUPPORTED}")
        stages.append(_COMPILERS[cls][0](path, _params(stage_meta), name))
    return Compiled(stages)


def _metadata(path: str) -> dict:
    parts = sorted(glob.glob(os.path.join(path, "metadata", "part-*")))
    if not parts:
        raise Unsupported(f"{path}: no saved Spark ML metadata")
    with open(parts[0], encoding="utf-8") as f:
        return json.loads(f.readline())


def _params(meta: dict) -> dict:
    return {**meta.get("defaultParamMap", {}), **meta.get("paramMap", {})}


def _data(path: str, folder: str = "data") -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(os.path.join(path, folder)).to_pylist()


def _vector(v: dict) -> np.ndarray:
    """Spark's VectorUDT as stored: type 0 sparse (size, indices, values), 1 dense."""
    if v["type"] == 1:
        return np.asarray(v["values"], dtype=float)
    out = np.zeros(v["size"])
    out[np.asarray(v["indices"], dtype=int)] = v["values"]
    return out


def _matrix(m: dict) -> np.ndarray:
    """Spark's MatrixUDT as stored: dense (column-major unless transposed) or CSC sparse."""
    rows, cols = m["numRows"], m["numCols"]
    if m["type"] == 1:
        values = np.asarray(m["values"], dtype=float)
        return values.reshape((rows, cols)) if m["isTransposed"] else values.reshape((cols, rows)).T
    out = np.zeros((cols, rows) if m["isTransposed"] else (rows, cols))
    ptrs, idx, values = m["colPtrs"], m["rowIndices"], m["values"]
    for j in range(len(ptrs) - 1):
        for k in range(ptrs[j], ptrs[j + 1]):
            out[idx[k], j] = values[k]
    return out.T if m["isTransposed"] else out


def _doubles(values: np.ndarray) -> np.ndarray:
    """A column as Spark's CAST(... AS DOUBLE) of a number or boolean: nulls become NaN."""
    if values.dtype.kind in "fiub":
        return values.astype(float)
    return np.array([np.nan if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)
                     for v in values], dtype=float)


class _Stage:
    reads: list[str] = []
    writes: list[str] = []

    def __init__(self, path: str, params: dict, name: str):
        self.name = name
        self.setup(path, params)

    def setup(self, path: str, params: dict) -> None:
        raise NotImplementedError

    def apply(self, columns: dict, n: int) -> dict:
        raise NotImplementedError


class _Cast(_Stage):
    """SELECT CAST(`c` AS DOUBLE) AS `__num_c`, ..., * FROM __THIS__ (estimators.py's first stage)."""

    def setup(self, path, params):
        statement = params["statement"]
        pairs = [(a.replace("``", "`"), b.replace("``", "`")) for a, b in _CAST.findall(statement)]
        rebuilt = "SELECT " + ", ".join([f"CAST(`{a.replace('`', '``')}` AS DOUBLE) AS `{b.replace('`', '``')}`"
                                         for a, b in pairs] + ["*"]) + " FROM __THIS__"
        if rebuilt != statement:
            raise Unsupported(f"{self.name}: only the platform's numeric cast is compiled, not {statement!r}")
        self.pairs = pairs
        self.reads, self.writes = [a for a, _ in pairs], [b for _, b in pairs]

    def apply(self, columns, n):
        return {b: _doubles(columns[a]) for a, b in self.pairs}


def _spark_text(v) -> str | None:
    """A value as Spark's CAST(... AS STRING) writes it, for the types a categorical input has."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        raise Unsupported("a categorical column holding floating-point numbers is not compiled")
    return str(v)


class _Indexer(_Stage):
    def setup(self, path, params):
        if params.get("handleInvalid") not in ("keep", "error"):
            raise Unsupported(f"{self.name}: handleInvalid {params.get('handleInvalid')!r} (keep and error are)")
        self.keep = params["handleInvalid"] == "keep"
        self.reads = params["inputCols"] if "inputCols" in params else [params["inputCol"]]
        self.writes = params["outputCols"] if "outputCols" in params else [params["outputCol"]]
        labels = _data(path)[0]
        self.labels = [{v: i for i, v in enumerate(ls)} for ls in (labels.get("labelsArray") or [labels["labels"]])]

    def apply(self, columns, n):
        out = {}
        for source, target, index in zip(self.reads, self.writes, self.labels):
            got = np.empty(n)
            for i, v in enumerate(columns[source]):
                position = index.get(_spark_text(v))
                if position is None:
                    if not self.keep:
                        raise ValueError(f"{self.name}: {source} = {v!r} was not seen in training "
                                         "(handleInvalid is error)")
                    position = len(index)
                got[i] = position
            out[target] = got
        return out


class _OneHot(_Stage):
    def setup(self, path, params):
        self.reads, self.writes = params["inputCols"], params["outputCols"]
        self.keep = params.get("handleInvalid", "error") == "keep"
        drop_last = params.get("dropLast", True)
        self.sizes = [int(s) for s in _data(path)[0]["categorySizes"]]
        # Spark's configured sizes: with keep, an extra category for invalid values, unless the
        # last one is dropped; without keep, the last one is dropped if dropLast.
        self.widths = [s + 1 if self.keep and not drop_last else s - 1 if drop_last and not self.keep else s
                       for s in self.sizes]

    def apply(self, columns, n):
        out = {}
        for source, target, size, width in zip(self.reads, self.writes, self.sizes, self.widths):
            labels = columns[source]
            valid = (labels >= 0) & (labels < size) & (labels == np.floor(labels))
            if not self.keep and not valid.all():
                raise ValueError(f"{self.name}: {source} holds an index outside 0..{size - 1}")
            position = np.where(valid, labels, size).astype(int)
            matrix = np.zeros((n, width))
            hit = position < width
            matrix[np.nonzero(hit)[0], position[hit]] = 1.0
            out[target] = matrix
        return out


class _Imputer(_Stage):
    def setup(self, path, params):
        self.reads = params["inputCols"] if "inputCols" in params else [params["inputCol"]]
        self.writes = params["outputCols"] if "outputCols" in params else [params["outputCol"]]
        surrogates = _data(path)[0]
        self.surrogates = [float(surrogates[c]) for c in self.reads]
        self.missing = float(params.get("missingValue", float("nan")))

    def apply(self, columns, n):
        out = {}
        for source, target, fill in zip(self.reads, self.writes, self.surrogates):
            x = _doubles(columns[source])
            missing = np.isnan(x) | (x == self.missing) if not np.isnan(self.missing) else np.isnan(x)
            out[target] = np.where(missing, fill, x)
        return out


class _Assembler(_Stage):
    def setup(self, path, params):
        if params.get("handleInvalid", "error") != "keep":
            raise Unsupported(f"{self.name}: handleInvalid {params.get('handleInvalid')!r} (keep is)")
        self.reads, self.writes = params["inputCols"], [params["outputCol"]]

    def apply(self, columns, n):
        parts = [np.asarray(columns[c], dtype=float).reshape(n, -1) for c in self.reads]
        return {self.writes[0]: np.hstack(parts) if parts else np.zeros((n, 0))}


class _Model(_Stage):
    task = "classification"

    def setup(self, path, params):
        self.reads = [params.get("featuresCol", "features")]
        self.writes = ["rawPrediction", "probability", "prediction"] if self.task == "classification" \
            else ["prediction"]
        self.threshold = params.get("threshold", 0.5)
        if params.get("thresholds") is not None:
            raise Unsupported(f"{self.name}: per-class thresholds")
        self.load(path, params)

    def load(self, path, params):
        raise NotImplementedError

    def classes(self, raw: np.ndarray, probability: np.ndarray) -> dict:
        return {"rawPrediction": raw, "probability": probability,
                "prediction": (probability[:, 1] > self.threshold).astype(float)}


class _Logistic(_Model):
    def load(self, path, params):
        data = _data(path)[0]
        if data["isMultinomial"] or data["numClasses"] != 2:
            raise Unsupported(f"{self.name}: multinomial logistic regression")
        self.coefficients = _matrix(data["coefficientMatrix"])[0]
        self.intercept = float(_vector(data["interceptVector"])[0])

    def apply(self, columns, n):
        margin = columns[self.reads[0]] @ self.coefficients + self.intercept
        p = 1.0 / (1.0 + np.exp(-margin))
        return self.classes(np.column_stack([-margin, margin]), np.column_stack([1.0 - p, p]))


class _Linear(_Model):
    task = "regression"

    def load(self, path, params):
        data = _data(path)[0]
        self.coefficients = _vector(data["coefficients"])
        self.intercept = float(data["intercept"])

    def apply(self, columns, n):
        return {"prediction": columns[self.reads[0]] @ self.coefficients + self.intercept}


class _Tree:
    """One decision tree as arrays indexed by node id: a row goes left on a continuous split
    when its value <= the threshold (NaN goes right), on a categorical one when its value is
    among the left categories."""

    def __init__(self, nodes: list[dict]):
        size = max(node["id"] for node in nodes) + 1
        self.left = np.full(size, -1)
        self.right = np.full(size, -1)
        self.feature = np.zeros(size, dtype=int)
        self.threshold = np.zeros(size)
        self.categories: dict[int, np.ndarray] = {}
        self.prediction = np.zeros(size)
        self.stats: list = [None] * size
        for node in nodes:
            i = node["id"]
            self.prediction[i] = node["prediction"]
            self.stats[i] = node["impurityStats"]
            if node["leftChild"] >= 0:
                self.left[i], self.right[i] = node["leftChild"], node["rightChild"]
                split = node["split"]
                self.feature[i] = split["featureIndex"]
                if split["numCategories"] >= 0:
                    self.categories[i] = np.asarray(split["leftCategoriesOrThreshold"], dtype=float)
                else:
                    self.threshold[i] = split["leftCategoriesOrThreshold"][0]
        self.categorical = np.zeros(size, dtype=bool)
        self.categorical[list(self.categories)] = True

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """The leaf each row of `x` reaches."""
        at = np.zeros(len(x), dtype=int)  # Spark saves the root as node 0
        rows = np.arange(len(x))
        active = self.left[at] >= 0
        while active.any():
            r, node = rows[active], at[active]
            values = x[r, self.feature[node]]
            go_left = values <= self.threshold[node]
            if self.categorical[node].any():
                for i in np.unique(node[self.categorical[node]]):
                    mine = node == i
                    go_left[mine] = np.isin(values[mine], self.categories[i])
            at[r] = np.where(go_left, self.left[node], self.right[node])
            active = self.left[at] >= 0
        return at


def _trees(path: str) -> tuple[list[_Tree], np.ndarray]:
    """The trees of a saved ensemble (or of one tree) and their weights."""
    if os.path.isdir(os.path.join(path, "treesMetadata")):
        by_tree: dict[int, list] = {}
        for row in _data(path):
            by_tree.setdefault(row["treeID"], []).append(row["nodeData"])
        weights = {row["_1"]: row["_3"] for row in _data(path, "treesMetadata")}
        ids = sorted(by_tree)
        return [_Tree(by_tree[i]) for i in ids], np.asarray([weights[i] for i in ids], dtype=float)
    return [_Tree(_data(path))], np.ones(1)


class _ForestClassifier(_Model):
    """A random forest: each tree votes its leaf's class shares; the votes, normalised, are
    the probability."""

    counts = False  # a single decision tree's raw prediction is its leaf's class counts

    def load(self, path, params):
        self.trees, _ = _trees(path)

    def apply(self, columns, n):
        x = columns[self.reads[0]]
        raw = np.zeros((n, 2))
        for tree in self.trees:
            stats = np.asarray([tree.stats[i] for i in tree.leaves(x)], dtype=float)
            if self.counts:
                raw += stats
            else:
                total = stats.sum(axis=1, keepdims=True)
                raw += np.divide(stats, total, out=np.zeros_like(stats), where=total != 0)
        total = raw.sum(axis=1, keepdims=True)
        probability = np.divide(raw, total, out=np.zeros_like(raw), where=total != 0)
        return self.classes(raw, probability)


class _TreeClassifier(_ForestClassifier):
    counts = True


class _GBTClassifier(_Model):
    """Weighted sum of regression trees (the margin); probability 1 / (1 + exp(-2 margin))."""

    def load(self, path, params):
        self.trees, self.weights = _trees(path)

    def apply(self, columns, n):
        x = columns[self.reads[0]]
        margin = _weighted(self.trees, self.weights, x)
        p = 1.0 / (1.0 + np.exp(-2.0 * margin))
        return self.classes(np.column_stack([-margin, margin]), np.column_stack([1.0 - p, p]))


def _weighted(trees: list[_Tree], weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    total = np.zeros(len(x))
    for tree, weight in zip(trees, weights):
        total += weight * tree.prediction[tree.leaves(x)]
    return total


class _TreeRegressor(_Model):
    """A decision tree or gradient-boosted trees: the weighted sum of the trees' leaves."""

    task = "regression"

    def load(self, path, params):
        self.trees, self.weights = _trees(path)

    def apply(self, columns, n):
        return {"prediction": _weighted(self.trees, self.weights, columns[self.reads[0]])}


class _ForestRegressor(_TreeRegressor):
    """A random forest: the mean of its trees' leaves."""

    def apply(self, columns, n):
        x = columns[self.reads[0]]
        return {"prediction": sum(t.prediction[t.leaves(x)] for t in self.trees) / len(self.trees)}


# Spark's class -> (what evaluates it, what messages call it): what `load` compiles.
_COMPILERS = {
    "org.apache.spark.ml.feature.SQLTransformer": (_Cast, "SQLTransformer (the platform's numeric cast)"),
    "org.apache.spark.ml.feature.StringIndexerModel": (_Indexer, "StringIndexer"),
    "org.apache.spark.ml.feature.OneHotEncoderModel": (_OneHot, "OneHotEncoder"),
    "org.apache.spark.ml.feature.ImputerModel": (_Imputer, "Imputer"),
    "org.apache.spark.ml.feature.VectorAssembler": (_Assembler, "VectorAssembler"),
    "org.apache.spark.ml.classification.LogisticRegressionModel": (_Logistic, "LogisticRegression (binary)"),
    "org.apache.spark.ml.classification.DecisionTreeClassificationModel": (_TreeClassifier, "DecisionTreeClassifier"),
    "org.apache.spark.ml.classification.RandomForestClassificationModel": (_ForestClassifier,
                                                                           "RandomForestClassifier"),
    "org.apache.spark.ml.classification.GBTClassificationModel": (_GBTClassifier, "GBTClassifier"),
    "org.apache.spark.ml.regression.LinearRegressionModel": (_Linear, "LinearRegression"),
    "org.apache.spark.ml.regression.DecisionTreeRegressionModel": (_TreeRegressor, "DecisionTreeRegressor"),
    "org.apache.spark.ml.regression.RandomForestRegressionModel": (_ForestRegressor, "RandomForestRegressor"),
    "org.apache.spark.ml.regression.GBTRegressionModel": (_TreeRegressor, "GBTRegressor"),
}
SUPPORTED = ", ".join(label for _, label in _COMPILERS.values())
