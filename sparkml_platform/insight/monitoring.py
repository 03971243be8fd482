"""`sparkml monitor`: a registered model's performance once the outcomes of its predictions
arrive, and the drift of its inputs away from its training set, per period, kept in the Delta
table `monitoring.NAME` (one row per period, model version and measure)."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import time
from functools import reduce

from ..config import Config, parse_duration
from ..core import refs
from ..core.errors import ConfigError, GateFailed, JobFailed, NotFoundError
from ..config.vocabulary import LOWER_IS_BETTER, METRICS
from ..modeling import evaluation
from ..storage import lake, places, training_sets
from ..storage.pit import join_features
from ..storage.request_log import request_log_table
from ..storage.statistics import sql_name
from ..storage.training_sets import SPLIT
from ..tracking import model_versions
from ..tracking import tracker as tracking
from ..tracking.version_record import VersionRecord


def table_ref(model_name: str) -> str:
    """The monitoring table of a registered model: `monitoring.NAME`, NAME in lower case with
    every other character than a letter or a digit made `_`."""
    return "monitoring." + re.sub(r"[^a-z0-9_]", "_", model_name.lower()).lstrip("_0123456789")


def history(spark, config: Config, model_name: str, version: int | None = None) -> list[dict]:
    """Every monitoring row kept for `model_name` (one version's, when given), oldest period
    first: model_version, by, period, kind ('metric' or 'drift'), name (a metric, or a
    feature), measure ('value', 'psi' or 'ks'), value, threshold, breached, rows, monitored_at.
    A table of at most `local_read_max_mb` is read through delta-rs; `spark` (a session, or a
    callable giving one) only for a larger one."""
    path = places.table(config, table_ref(model_name))
    if not lake.exists(path):
        return []
    order = ("period", "kind", "name", "measure")
    if lake.local_reads(path, config.local_read_max_bytes):  # read here: no JVM for a report
        import pyarrow.compute as pc

        table = lake.read_arrow(path)
        if version is not None:
            table = table.filter(pc.equal(table.column("model_version"), int(version)))
        return table.sort_by([(c, "ascending") for c in order]).to_pylist()
    df = lake.read(spark() if callable(spark) else spark, path)
    if version is not None:
        df = df.where(df.model_version == int(version))
    return [r.asDict() for r in df.orderBy(*order).collect()]


PERIODS = {"run_date": None, "day": "yyyy-MM-dd", "week": "yyyy-MM-dd", "month": "yyyy-MM"}
PSI_BINS = 10  # deciles of the training distribution, as PSI is usually read
KS_GRID = 50   # the empirical distributions compared at 2 % quantiles of the training set
TOP_CATEGORIES = 20
TRAIN = "__training_set__"


def monitor(spark, config: Config, tracker, model_ref: str, outcomes_ref: str, run_date: str | None = None,
            by: str = "run_date", predictions_ref: str | None = None) -> dict:
    """Join the model version's predictions (batch scoring's tables and the online request log)
    with the outcomes in `outcomes_ref`, then per period: its metrics, and per feature the drift
    of the scored inputs from the training set. Written to `monitoring.NAME` and an MLflow run
    tagged with the model version; a metric below a floor raises GateFailed (exit 3) after."""
    with tracker.bound():
        return _monitor(spark, config, tracker, model_ref, outcomes_ref, run_date, by, predictions_ref)


def _monitor(spark, config, tracker, model_ref, outcomes_ref, run_date, by, predictions_ref) -> dict:
    if by not in PERIODS:
        raise ConfigError(f"by {by!r}: one of {', '.join(PERIODS)}")
    day = str(refs.parse_run_date(run_date)) if run_date else None
    model = model_versions.resolve(tracker, model_ref)
    mv, entity = model.version, model.spec["entity"]
    record = VersionRecord.from_tags(mv.tags)
    spec_name = record.model_spec or mv.name
    settings = config.models.models[spec_name].monitoring if spec_name in config.models.models else None
    if record.training_set_ref is None:
        raise NotFoundError(f"model {mv.name} version {mv.version} records no training set (not trained "
                            "by the platform): monitoring compares its inputs with its training set")
    man = training_sets.manifest(config, record.training_set_ref)
    if settings is not None:
        check_features_named(settings, man, config.where(f"models.yml: models.{spec_name}.monitoring"))
    outcomes = _outcomes(spark, config, outcomes_ref, man, entity)
    runs = _score_runs(tracker, mv)
    scored = _predictions(spark, config, runs, model, predictions_ref, day)
    if scored is None:
        raise NotFoundError(f"model {mv.name} version {mv.version} has no predictions"
                            f"{' of run date ' + day if day else ''} to monitor (score with it first)")
    # The event time is often one of the keys (sparkml init's example): each column once.
    keys = list(dict.fromkeys(entity["keys"] + ([entity["event_time"]] if entity["event_time"] in outcomes.columns
                                                 else [])))
    periods = _with_period(scored, by, entity["event_time"])
    joined = periods.join(outcomes, on=keys, how="inner")
    measured = _metrics(joined, model.classifier)
    scored_rows = {r["__period"]: r["count"] for r in periods.groupBy("__period").count().collect()}
    drift = _drift(spark, config, runs, model, man, scored, by, day,
                   settings.drift_reference if settings is not None else "training_set",
                   (settings.drift_min_rows or settings.min_rows) if settings is not None else 1)
    task = "classification" if model.classifier else "regression"
    rows, breaches = _judge(mv, by, measured, drift, settings, task, scored_rows)
    _write(spark, config, mv, by, rows)
    run_id = _log_run(tracker, mv, outcomes_ref, by, rows, breaches)
    result = {"model": mv.name, "version": mv.version, "outcomes": outcomes_ref, "by": by,
              "run_date": day, "periods": measured, "drift": drift, "breaches": breaches,
              "table": table_ref(mv.name), "monitor_run_id": run_id}
    floor_breaches = [b for b in breaches if b["kind"] == "metric"]
    drift_breaches = [b for b in breaches if b["kind"] == "drift"]
    if floor_breaches or (drift_breaches and settings is not None and settings.retrain_on_drift):
        said = [b["text"] for b in floor_breaches]
        if drift_breaches:
            worst = max(drift_breaches, key=lambda b: b["value"])
            said.append(f"{len(drift_breaches)} drift measures above their ceilings (largest: {worst['text']})")
        raise GateFailed(f"model {mv.name} version {mv.version}: " + "; ".join(said)
                         + f" (details in {table_ref(mv.name)}; re-train it)", result=result)
    return result


def _outcomes(spark, config, outcomes_ref: str, man: dict, entity: dict):
    """The outcomes table's keys (and event time, when it has it) with `__label`: the training
    set's own label expression evaluated on it, or its `label` column."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    path = places.table(config, outcomes_ref)
    if not lake.exists(path):
        raise NotFoundError(f"outcomes table {outcomes_ref} does not exist in the lake")
    df = lake.read(spark, path, ref=outcomes_ref)
    missing = [k for k in entity["keys"] if k not in df.columns]
    if missing:
        raise ConfigError(f"outcomes table {outcomes_ref} lacks key column {', '.join(missing)} of the "
                          f"model's entity (keys: {', '.join(entity['keys'])}; it has {', '.join(df.columns)})")
    label = (man.get("definition") or {}).get("label", {}).get("label") or "label"
    try:
        labelled = df.select(*[c for c in dict.fromkeys([*entity["keys"], entity["event_time"]]) if c in df.columns],
                             F.expr(label).cast("double").alias("__label"))
    except AnalysisException as exc:
        raise ConfigError(f"outcomes table {outcomes_ref} lacks the label: the model's training set "
                          f"{man['name']} labels with {label!r}, which does not evaluate on its columns "
                          f"({', '.join(df.columns)}): {str(exc).strip().splitlines()[0]}") from None
    return labelled.where(F.col("__label").isNotNull())  # outcomes not known (yet) are left out


def _predictions(spark, config, runs: list[dict], model, predictions_ref: str | None, day: str | None):
    """The version's predictions: keys, event time, run date, prediction and score, from the
    tables its scoring runs wrote (or `predictions_ref`) and from the online request log."""
    from pyspark.sql import functions as F

    mv, entity = model.version, model.spec["entity"]
    score = "probability" if model.classifier else "value"
    tables = [predictions_ref] if predictions_ref else \
        sorted({p["output_table"] for p in runs if "output_table" in p})
    frames = []
    for ref in tables:
        path = places.table(config, ref)
        if not lake.exists(path):
            continue
        df = lake.read(spark, path, ref=ref).where(
            (F.col("model_name") == mv.name) & (F.col("model_version") == int(mv.version)))
        frames.append(df.select(*dict.fromkeys([*entity["keys"], entity["event_time"]]),
                                F.col("run_date").cast("string"),
                                F.col("prediction").cast("double"), F.col(score).cast("double").alias("__score")))
    online = places.table(config, request_log_table(mv.name))
    if not predictions_ref and lake.exists(online):
        keys = F.from_json("keys", "map<string,string>")
        df = lake.read(spark, online).where(F.col("model_version") == int(mv.version))
        frames.append(df.select(*[keys[k].alias(k) for k in entity["keys"] if k != entity["event_time"]],
                                F.col("event_time").alias(entity["event_time"]),
                                F.to_date("received_at").cast("string").alias("run_date"),
                                F.col("prediction").cast("double"), F.col("probability").alias("__score")))
    if not frames:
        return None
    scored = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)
    if day:
        scored = scored.where(F.col("run_date") == day)
    # A row scored on several run dates counts once: its newest scoring.
    from pyspark.sql import Window

    rows = list(dict.fromkeys([*entity["keys"], entity["event_time"]]))
    newest = Window.partitionBy(*rows).orderBy(F.col("run_date").desc_nulls_last())
    return scored.withColumn("__n", F.row_number().over(newest)).where("__n = 1").drop("__n")


def _score_runs(tracker, mv) -> list[dict]:
    """The parameters (input and output tables, their versions, run date) of every batch
    scoring run of this model version."""
    runs = tracker.client.search_runs(
        [tracker.experiment_id], "tags.`sparkml.kind` = 'score' and tags.`sparkml.model` = "
        f"'{mv.name}' and tags.`sparkml.model_version` = '{mv.version}'", max_results=5000)
    return [dict(r.data.params) for r in runs]


def _with_period(df, by: str, event_time: str):
    from pyspark.sql import functions as F

    if by == "run_date":
        return df.withColumn("__period", F.col("run_date"))
    if by == "week":
        return df.withColumn("__period", F.date_format(F.date_trunc("week", event_time), PERIODS[by]))
    return df.withColumn("__period", F.date_format(F.col(event_time), PERIODS[by]))


def _metrics(joined, classifier: bool) -> dict[str, dict]:
    """Per period: the metrics of evaluation.py on (label, score, prediction), and the rows
    (three numbers a row on the driver, as evaluation does for a test split)."""
    from pyspark.sql import functions as F

    frame = joined.select("__period", F.col("__label").alias("label"), F.col("__score").alias("score"),
                          "prediction").toPandas()
    task = "classification" if classifier else "regression"
    out = {}
    for period, rows in sorted(frame.groupby("__period"), key=lambda kv: kv[0]):
        values = evaluation.metrics(rows, task)
        out[str(period)] = {"rows": len(rows), **{k: float(v) for k, v in values.items()
                                                  if k in METRICS[task]}}
    return out


# --- drift --------------------------------------------------------------------------------


def _drift(spark, config, runs: list[dict], model, man: dict, scored, by: str, day: str | None,
           reference="training_set", least: int = 1) -> dict:
    """Per period and feature: PSI over the reference's deciles (missing values a bin of
    their own) and the Kolmogorov-Smirnov statistic on a 2 % quantile grid (numeric features).
    The scored inputs are the rows the scoring runs read, at the versions they read, with their
    features looked up again as of each row's event time. `reference`: see
    config.Monitoring.drift_reference."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import NumericType

    entity = model.spec["entity"]
    keys = list(dict.fromkeys([*entity["keys"], entity["event_time"]]))
    inputs = {(p["input_table"], p["input_version"]) for p in runs
              if "input_table" in p and (day is None or p.get("run_date") == day)}
    frames = [lake.read(spark, places.table(config, ref), int(version), ref).select(*model.needed)
              for ref, version in sorted(inputs) if version not in (None, "None")]
    if not frames:
        return {}
    rows = reduce(lambda a, b: a.unionByName(b), frames).dropDuplicates(keys)
    rows = rows.join(_with_period(scored, by, entity["event_time"]).select(*keys, "__period").dropDuplicates(keys),
                     on=keys)
    tables = training_sets.read_feature_tables(spark, config, model.lookups)
    looked_up, flags = join_features(rows, entity["event_time"], tables)
    train = _reference_rows(training_sets.read_version(spark, config, man), man, reference)
    names = [c for c in man["feature_columns"] if c in looked_up.columns and c in train.columns]
    numeric = [c for c in names if isinstance(train.schema[c].dataType, NumericType)]
    categorical = [c for c in names if c not in numeric]
    fine = [i / KS_GRID for i in range(1, KS_GRID)]
    quantiles = dict(zip(numeric, train.approxQuantile(numeric, fine, 0.001))) if numeric else {}
    edges = {c: sorted({e for e in q if e is not None}) for c, q in quantiles.items()}
    # The deciles are among the grid's points, so each grid bin falls in one decile.
    deciles = {c: {e for p, e in zip(fine, q) if round(p * PSI_BINS, 6).is_integer() and e is not None}
               for c, q in quantiles.items()}
    top = _top_categories(train, categorical)
    counted = _bin_counts(train.withColumn("__period", F.lit(TRAIN)), edges, top).unionByName(
        _bin_counts(looked_up, edges, top)).toPandas()
    scored_rows = counted[counted["__period"] != TRAIN].groupby(["__period", "feature"])["count"].sum()
    sizes = {str(p): int(n) for p, n in scored_rows.groupby(level=0).max().items()}
    return _distances(counted, edges, deciles, reference_periods(sizes, reference, least))


def reference_periods(sizes: dict[str, int], reference, least: int = 1) -> dict[str, str]:
    """What each period (its scored rows in `sizes`) is compared with: the training set's
    rows (TRAIN), or with `previous_period` the newest earlier period holding at least
    `least` rows (one too small to judge is no reference either), else TRAIN."""
    if reference != "previous_period":
        return {p: TRAIN for p in sizes}
    out, last = {}, TRAIN
    for period in sorted(sizes):
        out[period] = last
        if sizes[period] >= least:
            last = period
    return out


def _reference_rows(train, man: dict, reference):
    """The training set's rows the reference holds (all of them for `training_set` and
    `previous_period`, whose bins are the training set's)."""
    from pyspark.sql import functions as F

    where = f"drift_reference {reference!r}"
    if reference in ("train", "validation", "test"):
        rows = train.where(F.col(SPLIT) == reference)
    elif isinstance(reference, str):
        return train
    else:
        micros = F.unix_micros(F.col(sql_name(man["entity"]["event_time"])).cast("timestamp"))
        span = parse_duration(reference.last) * 1_000_000
        rows = (train.crossJoin(train.agg(F.max(micros).alias("__newest")))
                .where(micros > F.col("__newest") - F.lit(span)).drop("__newest"))
        where = f"drift_reference last {reference.last}"
    if not rows.limit(1).count():
        raise JobFailed(f"{where}: training set {man['name']}@{man['version']} has no such rows to compare with")
    return rows


def _top_categories(train, categorical: list[str]) -> dict[str, list[str]]:
    """Each categorical feature's most frequent values in the training set (ties by value),
    as text: one job for all features rather than one per feature."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not categorical:
        return {}
    pairs = F.explode(F.array(*[F.struct(F.lit(c).alias("feature"), F.col(sql_name(c)).cast("string").alias("value"))
                                for c in categorical]))
    rank = F.row_number().over(Window.partitionBy("feature").orderBy(F.desc("count"), "value"))
    counts = (train.select(pairs.alias("cell")).where(F.col("cell.value").isNotNull())
              .groupBy("cell.feature", "cell.value").count())
    # Ordered here, not by Spark: a global sort of these few rows would add a sampling job.
    kept = sorted((r["feature"], r["rank"], r["value"]) for r in
                  counts.withColumn("rank", rank).where(F.col("rank") <= TOP_CATEGORIES).collect())
    return {c: [value for feature, _, value in kept if feature == c] for c in categorical}


def _bin_counts(df, edges: dict[str, list[float]], top: dict[str, list]):
    """(period, feature, bin, count): a numeric value's bin is how many edges it exceeds; a
    category is itself, or `__other__` beyond the training set's most frequent ones."""
    from pyspark.sql import functions as F

    cells = []
    for c, es in edges.items():
        # One SQL text per feature: built as Column objects, its ~50 comparisons cost a few
        # py4j calls each, seconds of driver time for a dozen features (still one generated sum).
        index = F.expr(" + ".join(f"CAST({sql_name(c)} > CAST('{e!r}' AS DOUBLE) AS INT)" for e in es)) \
            if es else F.lit(0)
        cells.append((c, F.when(F.col(sql_name(c)).isNull(), "null").otherwise(index.cast("string"))))
    for c, values in top.items():
        text = F.col(sql_name(c)).cast("string")
        cells.append((c, F.when(text.isNull(), "null").when(text.isin(values), text).otherwise("__other__")))
    pairs = F.explode(F.array(*[F.struct(F.lit(c).alias("feature"), b.alias("bin")) for c, b in cells]))
    return df.select("__period", pairs.alias("cell")).groupBy("__period", "cell.feature", "cell.bin").count()


def _distances(counted, edges: dict, deciles: dict, reference_of: dict[str, str] | None = None
               ) -> dict[str, dict[str, dict]]:
    """PSI and KS per period and feature against the period `reference_of` names (TRAIN,
    the training set's rows, by default)."""
    def shares(frame):
        total = frame["count"].sum()
        return {b: n / total for b, n in zip(frame["bin"], frame["count"])} if total else {}

    out: dict[str, dict[str, dict]] = {}
    for (period, feature), frame in counted[counted["__period"] != TRAIN].groupby(["__period", "feature"]):
        against = (reference_of or {}).get(str(period), TRAIN)
        reference = counted[(counted["__period"].astype(str) == against) & (counted["feature"] == feature)]
        expected = shares(reference)
        actual = shares(frame)
        ks = None
        if feature in edges:
            fine = edges[feature]
            decile = {str(b): sum(d < (fine[b] if b < len(fine) else math.inf) for d in deciles[feature])
                      for b in range(len(fine) + 1)}
            ks = _ks(expected, actual, len(fine) + 1)
            expected, actual = _regroup(expected, decile), _regroup(actual, decile)
        psi = sum((max(actual.get(b, 0), 1e-4) - max(expected.get(b, 0), 1e-4))
                  * math.log(max(actual.get(b, 0), 1e-4) / max(expected.get(b, 0), 1e-4))
                  for b in set(expected) | set(actual))
        out.setdefault(str(period), {})[feature] = {"psi": round(psi, 6), "ks": ks}
    return out


def _regroup(shares: dict[str, float], group: dict[str, int]) -> dict[str, float]:
    out: dict[str, float] = {}
    for b, share in shares.items():
        key = "null" if b == "null" else str(group[b])
        out[key] = out.get(key, 0.0) + share
    return out


def _ks(expected: dict[str, float], actual: dict[str, float], bins: int) -> float | None:
    """The largest gap between the two cumulative distributions of the non-missing values."""
    e_total = sum(v for b, v in expected.items() if b != "null")
    a_total = sum(v for b, v in actual.items() if b != "null")
    if not e_total or not a_total:
        return None
    gap, e_cum, a_cum = 0.0, 0.0, 0.0
    for b in range(bins):
        e_cum += expected.get(str(b), 0) / e_total
        a_cum += actual.get(str(b), 0) / a_total
        gap = max(gap, abs(a_cum - e_cum))
    return round(gap, 6)


# --- verdict and records ------------------------------------------------------------------


def check_features_named(settings, man: dict, where: str) -> None:
    """Every feature the monitoring settings name is one of the training set's."""
    named = [*settings.drift_exclude, *settings.feature_drift_ceilings]
    unknown = [f for f in dict.fromkeys(named) if f not in man["feature_columns"]]
    if unknown:
        raise ConfigError(f"{where}: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not "
                          f"a feature of training set {man['name']}@{man['version']} (features: "
                          f"{', '.join(man['feature_columns'])})")


def _judge(mv, by: str, measured: dict, drift: dict, settings, task: str,
           scored_rows: dict | None = None) -> tuple[list[dict], list[dict]]:
    """The table's rows, each measure with its threshold and whether it was breached; a period
    with fewer than `min_rows` outcomes (metrics) or scored rows (drift) is recorded, not
    judged."""
    floors = settings.floors if settings else {}
    ceilings = settings.drift_ceilings if settings else {}
    min_rows = settings.min_rows if settings else 1
    now = dt.datetime.now(dt.timezone.utc)
    rows, breaches = [], []

    def add(period, kind, name, measure, value, threshold, worse, count, least=min_rows):
        judged = value is not None and threshold is not None and count >= least and value == value
        breached = bool(judged and worse(value, threshold))
        rows.append({"model_version": int(mv.version), "by": by, "period": period, "kind": kind,
                     "name": name, "measure": measure, "value": None if value is None else float(value),
                     "threshold": threshold, "breached": breached, "rows": int(count), "monitored_at": now})
        if breached:
            side = "above" if worse(1, 0) else "below"
            what = f"{name} {measure}" if kind == "drift" else name
            breaches.append({"period": period, "kind": kind, "name": name, "measure": measure,
                             "value": value, "threshold": threshold,
                             "text": f"{period}: {what} {value:.4f} is {side} its "
                                     f"{'ceiling' if side == 'above' else 'floor'} {threshold}"})

    for period, values in measured.items():
        for metric in METRICS[task]:
            if metric in values:
                higher_worse = metric in LOWER_IS_BETTER
                add(period, "metric", metric, "value", values[metric], floors.get(metric),
                    (lambda v, t: v > t) if higher_worse else (lambda v, t: v < t), values["rows"])
    own = settings.feature_drift_ceilings if settings else {}
    excluded = set(settings.drift_exclude) if settings else set()
    drift_min = (settings.drift_min_rows or settings.min_rows) if settings else 1
    for period, features in drift.items():
        count = (scored_rows or {}).get(period, 0)  # drift is of the scored rows, outcomes or not
        for feature, values in features.items():
            for measure in ("psi", "ks"):
                ceiling = None if feature in excluded else own.get(feature, {}).get(measure, ceilings.get(measure))
                add(period, "drift", feature, measure, values[measure], ceiling,
                    lambda v, t: v > t, count, drift_min)
    return rows, breaches


def _write(spark, config: Config, mv, by: str, rows: list[dict]) -> None:
    """Replace this version's rows of the periods measured, in one commit."""
    from pyspark.sql.types import (BooleanType, DoubleType, LongType, StringType, StructField, StructType,
                                   TimestampType)

    if not rows:
        return
    schema = StructType([StructField("model_version", LongType()), StructField("by", StringType()),
                         StructField("period", StringType()), StructField("kind", StringType()),
                         StructField("name", StringType()), StructField("measure", StringType()),
                         StructField("value", DoubleType()), StructField("threshold", DoubleType()),
                         StructField("breached", BooleanType()), StructField("rows", LongType()),
                         StructField("monitored_at", TimestampType())])
    path = places.table(config, table_ref(mv.name))
    periods = ", ".join(f"'{p}'" for p in sorted({r["period"] for r in rows}))
    lake.write(spark.createDataFrame(rows, schema), path,
               replace_where=(f"model_version = {int(mv.version)} AND by = '{by}' AND period IN ({periods})"
                              if lake.exists(path) else None),
               metadata={"kind": "monitoring", "model": mv.name, "model_version": mv.version, "by": by})


def _log_run(tracker, mv, outcomes_ref: str, by: str, rows: list[dict], breaches: list[dict]) -> str:
    """One MLflow run per monitoring pass, tagged with the model version (which is tagged back):
    each measure a metric series over the periods, and every row as monitoring.json."""
    from mlflow.entities import Metric

    client = tracker.client
    run = client.create_run(tracker.experiment_id, run_name=f"monitor {mv.name}/{mv.version}", tags={
        "sparkml.kind": "monitor", "sparkml.model": mv.name, "sparkml.model_version": str(mv.version),
        "sparkml.model_run_id": mv.run_id, **tracking.owner_tags()})
    run_id = run.info.run_id
    periods = sorted({r["period"] for r in rows})
    now = int(time.time() * 1000)
    metrics = [Metric(f"{r['name']}" if r["kind"] == "metric" else f"{r['measure']}.{r['name']}",
                      r["value"], now, periods.index(r["period"]))
               for r in rows if r["value"] is not None and r["value"] == r["value"]]
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start:start + 1000])
    client.log_param(run_id, "outcomes_table", outcomes_ref)
    client.log_param(run_id, "by", by)
    kept = json.loads(json.dumps({"periods": periods, "rows": rows, "breaches": breaches}, default=str))
    client.log_dict(run_id, kept, "monitoring.json")
    client.set_tag(run_id, "sparkml.breaches", str(len(breaches)))
    client.set_terminated(run_id)
    client.set_model_version_tag(mv.name, mv.version, "last_monitor_run", run_id)
    client.set_model_version_tag(mv.name, mv.version, "monitor_breaches", str(len(breaches)))
    return run_id
