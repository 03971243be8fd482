"""Training: tune, fit on a training-set version, evaluate, compare with the champion, log,
register, and gate the `champion` alias.

One MLflow run per training; each tuning trial is a nested run under it. The registered
version carries everything a reviewer needs (see `registry.register`).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import warnings
from pathlib import Path

from ..config import Config, Threshold
from ..core import refs
from ..core.errors import ConfigError, GateFailed, JobFailed
from ..core.provenance import definition_hash
from ..config.vocabulary import METRICS
from ..modeling import compiled_parity, estimators, evaluation
from ..runtime import environments as environment
from ..runtime.project import project_of
from ..storage import feature_definitions, lake, leases, places, training_sets
from ..storage.pit import FeatureLookup, join_features
from ..storage.training_sets import SPLIT
from ..tracking import registry
from ..tracking import tracker as tracking
from ..tracking.model_versions import ScoringModel
from ..tracking.version_record import VersionRecord
from . import tuning

TUNING_HOLDOUT = 0.2  # share of the train split that scores trials when there is no validation split


def train(spark, config: Config, tracker: tracking.Tracker, model_name: str, tune: bool = True) -> dict:
    """Tune (unless told not to), fit, evaluate on validation and test, register, gate. The
    training-set version read is leased for the whole run: retention keeps it meanwhile."""
    name = config.model(model_name).training_set
    version = training_sets.manifest(config, name)["version"]
    with leases.held(config, f"training {model_name}", {f"training_set:{name}": [version]}):
        manifest = training_sets.manifest(config, f"{name}@{version}")  # leased: still there
        with tracker.bound(), quiet_schema_hints():
            return _train(spark, config, tracker, model_name, tune, manifest)


@contextlib.contextmanager
def quiet_schema_hints():
    """Integer columns draw a hint about missing values from MLflow's schema inference; Spark
    scoring does not enforce it, so it is noise in a job log (silenced here only)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        yield


def _train(spark, config: Config, tracker: tracking.Tracker, model_name: str, tune: bool, manifest: dict) -> dict:
    import mlflow

    spec = config.model(model_name)
    where = config.where(f"models.yml: models.{model_name}")
    registered = spec.registered_model or model_name
    data = training_sets.read_version(spark, config, manifest)
    feature_columns = manifest["feature_columns"]
    if spec.label not in data.columns:
        raise ConfigError(f"{where}.label: column {spec.label!r} is not in training set "
                          f"{manifest['name']}@{manifest['version']} (columns: {', '.join(data.columns)})")
    unknown = [c for c in spec.preprocessing.categorical if c not in feature_columns]
    if unknown:
        raise ConfigError(f"{where}.preprocessing.categorical: {', '.join(unknown)} is not a "
                          f"feature of training set {spec.training_set}")
    types = {f.name: f.dataType.simpleString() for f in data.schema.fields}
    estimator = estimators.for_spec(spec, model_name, feature_columns, types, spec.label)
    rows = manifest["rows"]
    if not rows.get("train") or not rows.get("test"):
        raise JobFailed(f"training set {manifest['name']}@{manifest['version']} has an empty "
                        f"train or test split ({rows}): check its split in training_sets.yml")
    columns = [*feature_columns, spec.label]
    train_df = data.where(f"{SPLIT} = 'train'").select(*columns).persist()
    test_df = data.where(f"{SPLIT} = 'test'").select(*columns)
    validation_df = (data.where(f"{SPLIT} = 'validation'").select(*columns)
                     if rows.get("validation") else None)
    estimator.prepare(train_df)

    experiment_id = tracker.experiment_id
    tracker.close_abandoned_runs()
    env = environment.capture(spark)
    environment.save(env, places.environments_dir(config))
    code = project_of(config).code_version()
    # The promotion lock, taken when the champion is read and held until the aliases are set.
    with contextlib.ExitStack() as promotion:
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"train {model_name}") as run:
            mlflow.set_tags({
                "sparkml.kind": "train", "sparkml.model": model_name,
                "sparkml.registered_model": registered,
                "sparkml.training_set": spec.training_set,
                "sparkml.training_set_version": str(manifest["version"]),
                "sparkml.training_set_digest": manifest["digest"],
                "sparkml.project": code["project"],
                "sparkml.code_commit": str(code["git_commit"]),
                "sparkml.code_dirty": str(code["dirty"]),
                "sparkml.code_hash": str(code["content_hash"]),
                "sparkml.framework_version": code["framework"]["version"],
                "sparkml.environment_id": env["id"], **tracking.owner_tags(),
            })
            # The training set as the run's dataset input: name@version, content digest, Delta path.
            stored = training_sets.version_path(config, manifest["name"], manifest["version"])
            tracking.log_dataset(_dataset_input(spark, data, manifest, spec.label, stored), "training")

            best = None
            if tune and spec.search_space:
                # Trials score on the validation split, or on a seeded share of train without one.
                tune_train, tune_valid = ((train_df, validation_df) if validation_df is not None
                                          else train_df.randomSplit([1 - TUNING_HOLDOUT, TUNING_HOLDOUT],
                                                                    seed=spec.tuning.seed))
                log = tuning.TrialLog(tracker.client, experiment_id, run.info.run_id,
                                      spec.tuning.metric)
                best = tuning.tune(spark, spec, model_name, estimator, tune_train, tune_valid, log)
                mlflow.log_metric("trials", len(log.results))
            params = {**spec.estimator.params, **(best["params"] if best else {})}
            mlflow.log_params({**params, "estimator": spec.estimator.class_ or spec.estimator.type,
                               "training_set": f"{spec.training_set}@{manifest['version']}",
                               "model_spec_hash": definition_hash(spec), "tuned": bool(best)})
            try:
                fitted = estimator.fit(train_df, params)
            except ConfigError:
                raise
            except Exception as exc:  # a failure inside fit is a failed job
                raise JobFailed(f"training {model_name} failed: {exc}") from exc

            test_frame = estimator.predict(fitted, test_df)
            metrics = evaluation.metrics(test_frame, estimator.task)
            logged = {**metrics, **{f"test_{k}": v for k, v in metrics.items()}}
            if validation_df is not None:
                logged.update({f"validation_{k}": v for k, v in
                               evaluation.metrics(estimator.predict(fitted, validation_df),
                                                  estimator.task).items()})
            counts = {f"{split}_rows": float(rows.get(split, 0)) for split in ("train", "validation", "test")}
            mlflow.log_metrics({k: v for k, v in {**logged, **counts}.items() if v == v})
            promotion.enter_context(registry.promotion_lock(tracker, registered))
            registry.finish_interrupted(tracker, registered)
            champion = _champion_on(config, tracker, registered, manifest, test_df, spec, estimator.task,
                                    data.where(f"{SPLIT} = 'test'"))
            verdict = evaluation.verdict(spec.thresholds, metrics, champion)

            sample = train_df.drop(spec.label).limit(50)
            signature = _signature(estimator, fitted, sample)
            feature_spec = _feature_spec(manifest, estimator.flavor, estimator.task, spec.label)
            importances = _importances(estimator, fitted, validation_df if validation_df is not None
                                       else test_df)
            _log_artifacts({"feature_spec.json": feature_spec, "environment.json": env,
                            "training_set_manifest.json": manifest, "gate.json": verdict,
                            "tuning.json": best or {}}, test_frame, estimator.task, importances)
            # A model built on the project's own code carries that code (MLflow code_paths), so it
            # loads wherever MLflow can load it, not only where the project is importable.
            own = project_of(config).packages
            code_paths = [str(own[p]) for p in estimator.code_packages() if own.get(p) is not None]
            info = estimator.log_model(fitted, signature, code_paths or None)
            online = (_log_compiled(fitted, info.model_uri, data.where(f"{SPLIT} = 'test'"),
                                    manifest["entity"]["keys"]) if estimator.flavor == "spark" else None)
        train_df.unpersist()

        recorded = registry.register(tracker, registered, info.model_uri, run.info.run_id, manifest, env,
                                     metrics, verdict, params=params, spec_name=model_name, code=code,
                                     spec_hash=spec_hash(spec, tune))
    version = recorded["version"]
    result = {"model": registered, "spec": model_name, "version": version,
              "run_id": run.info.run_id, "metrics": _rounded(metrics), "gate": verdict,
              "aliases": recorded["aliases"], "decision": recorded["decision"],
              "params": params, "training_set": f"{manifest['name']}@{manifest['version']}"}
    if online is not None:
        result["compiled"] = online
    if not verdict["passed"]:
        raise GateFailed(f"model {registered} version {version} ({model_name}) failed its gate: "
                         + "; ".join(verdict["failed"]) + " (registered as challenger, not champion)",
                         result=result)
    return result


def _log_compiled(fitted, model_uri: str, rows, keys: list[str]) -> dict:
    """Compile the Spark ML pipeline just logged (its saved stages, as `sparkml serve` will read
    them), compare it with Spark on the test rows and log the record beside the model: what
    decides whether the version is served online (modeling/compiled_parity.py)."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(model_uri, dst_path=tmp)
        record = compiled_parity.check(str(Path(local) / "sparkml"), fitted, rows, keys)
    mlflow.log_dict(record, compiled_parity.RECORD)
    summary = {k: record[k] for k in ("exact", "rows_compared", "max_difference") if k in record}
    return summary if record["exact"] else {**summary, "why_not": compiled_parity.refusal("it", record, "")}


def spec_hash(spec, tune: bool) -> str:
    """What a registered version records of how it was trained: its spec, tuned or not."""
    return definition_hash({"spec": definition_hash(spec), "tune": bool(tune)})


def up_to_date(config: Config, tracker: tracking.Tracker, model_name: str, tune: bool = True) -> dict | None:
    """The newest version trained from spec `model_name`, as `train` reports one, when
    training again would learn from the same rows the same way: it was trained on the newest
    version of its training set, with this spec and the project's code as they are now (and
    its training finished: its aliases were set). Else None. Asks the registry: no session.
    The code compared is the project's packages (their content hash) and the framework's
    release, not the commit of a checkout (a framework edit retrains with `force`)."""
    spec = config.model(model_name)
    registered = spec.registered_model or model_name
    if not training_sets.list_versions(config, spec.training_set):
        return None
    manifest = training_sets.manifest(config, spec.training_set)
    with tracker.bound():
        found = tracker.client.search_model_versions(
            f"name = '{registered}' AND tags.model_spec = '{model_name}'")
        newest = max(found, key=lambda mv: int(mv.version), default=None)
        if newest is None:
            return None
        record, code = VersionRecord.from_tags(newest.tags), project_of(config).code_version()
        trained_code = record.code or {}
        if (record.spec_hash != spec_hash(spec, tune) or not record.aliases_set
                or record.training_set_ref != f"{manifest['name']}@{manifest['version']}"
                or (trained_code.get("content_hash"), (trained_code.get("framework") or {}).get("version"))
                != (code["content_hash"], code["framework"]["version"])):
            return None
        aliases = sorted(a for a in (tracker.client.get_model_version(registered, newest.version).aliases or []))
    return {"model": registered, "spec": model_name, "version": newest.version, "mode": "up to date",
            "run_id": record.run_id, "metrics": _rounded(record.metrics),
            "gate": {"passed": bool(record.gate_passed)}, "aliases": aliases,
            "decision": f"nothing new: version {newest.version} was trained on training set "
                        f"{manifest['name']}@{manifest['version']} with this spec and code "
                        f"({record.decision})",
            "params": record.params,
            "training_set": f"{manifest['name']}@{manifest['version']}"}


def _feature_spec(manifest: dict, flavor: str, task: str, label: str, **extra) -> dict:
    """What scoring needs to look a model's features up: the entity, the lookups, the columns."""
    spec = {k: manifest[k] for k in ("entity", "lookups", "feature_columns")}
    spec["training_set"] = {"name": manifest["name"], "version": manifest["version"],
                            "digest": manifest["digest"]}
    return {**spec, "flavor": flavor, "task": task, "label": label, **extra}


def _log_artifacts(documents: dict[str, dict], test_frame, task: str, importances) -> None:
    """The JSON records a registered version carries, and its pictures (ROC, PR, confusion,
    importances) from its test predictions."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        for name, body in documents.items():
            (Path(tmp) / name).write_text(json.dumps(body, indent=2, default=str))
            mlflow.log_artifact(str(Path(tmp) / name))
        if test_frame is not None:
            for path in evaluation.plots(test_frame, task, importances, Path(tmp) / "plots"):
                mlflow.log_artifact(str(path), artifact_path="plots")


def _champion_on(config: Config, tracker: tracking.Tracker, registered: str, manifest: dict, test_df,
                 spec, task: str, test_rows) -> dict | None:
    """The current champion's metrics on the candidate's test rows (`test_df`: features and
    label; `test_rows`: the same rows with every training-set column) (None: no champion yet).
    A champion trained on another definition of a feature table than the candidate's rows
    hold is scored on the same rows through its own table versions (`_own_features`); where
    they are gone, it is skipped with the reason and `spec.on_stale_champion` decides."""
    champion = registry.champion(tracker, registered)
    if champion is None:
        return None
    if not any(t.vs_champion is not None for t in spec.thresholds.values()):
        return {"version": champion.version, "skipped": "no threshold compares with the champion"}
    feature_spec = registry.load_feature_spec(tracker, champion.run_id)
    label = spec.label
    other = feature_definitions.mismatches(f"{registered} version {champion.version}", feature_spec["lookups"],
                                           manifest["lookups"], training_sets.feature_commits(config))
    candidate = {lk["table"] for lk in manifest["lookups"]}
    other += [f"it was trained on feature table {lk['table']}, which the candidate's rows do not hold"
              for lk in feature_spec["lookups"] if lk["table"] not in candidate]
    through = None
    if other:
        rows = _own_features(config, feature_spec, test_rows, label)
        if isinstance(rows, str):
            return {"version": champion.version, "policy": spec.on_stale_champion,
                    "skipped": f"{'; '.join(other)}; and it cannot be scored through its own: {rows}"}
        test_df, through = rows
    missing = [c for c in feature_spec["feature_columns"] if c not in test_df.columns]
    if missing or feature_spec.get("task", "classification") != task:
        why = (f"it needs columns the test rows lack: {', '.join(missing)}" if missing
               else f"it is a {feature_spec.get('task')} model")
        return {"version": champion.version, "skipped": why}
    frame = estimators.predict_registered(champion, feature_spec, test_df, label, task)
    # Unrounded: a candidate equal to the champion must compare as equal.
    return {"version": champion.version, "metrics": evaluation.metrics(frame, task),
            **({"features": through} if through else {})}


def _own_features(config: Config, feature_spec: dict, test_df, label: str):
    """The candidate's test rows (their entity columns and label) with a champion's features
    looked up as of each row's time through the table versions it was trained on: the
    table's current Delta version where it still holds that definition (an older table
    version kept beside a new one), else the Delta version it was trained on (time travel).
    Returns (rows, {table: Delta version read}), or why that is impossible."""
    entity = feature_spec["entity"]
    lookups = [FeatureLookup.from_dict(lk) for lk in feature_spec["lookups"]]
    needed = list(dict.fromkeys([*ScoringModel(None, feature_spec).needed, label]))  # what scoring reads
    if missing := [c for c in needed if c not in test_df.columns]:
        return f"the candidate's test rows lack its entity column {', '.join(missing)}"
    spark, tables, read = test_df.sparkSession, [], {}
    for lk in lookups:
        ref = f"features.{lk.table}"
        path = places.table(config, ref)
        if not lake.exists(path):
            return f"its feature table {ref} no longer exists"
        current = lake.version(None, path, ref)
        now = feature_definitions.definition_at(lake.commits(path, ref), current)
        if lk.definition and now and now.definition == lk.definition:
            version = current
        elif lk.version is None:
            return f"it recorded no Delta version of {ref}"
        else:
            version = int(lk.version)
            gone = set(lake.files(path, version, ref)) - set(lake.files(path, ref=ref))
            if any(not (path / f).exists() for f in gone):
                return f"version {version} of {ref} was vacuumed"
        tables.append((FeatureLookup(**{**lk.to_dict(), "version": version, "unique_times": True}),
                       lake.read(spark, path, version, ref)))
        read[ref] = version
    joined, flags = join_features(test_df.select(*needed), entity["event_time"], tables)
    return joined.drop(*flags), read


def _dataset_input(spark, data, manifest: dict, label: str, path):
    """The training set version as an MLflow dataset: name@version, the manifest's content
    digest, the Delta table and version it is stored in, its schema and exact row counts.
    (`mlflow.data.from_spark` would also run a Spark job of up to 5 s to approximate a count
    the manifest already has.)"""
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.exceptions import MlflowException
    from mlflow.types.utils import _infer_schema

    class TrainingSetDataset(MetaDataset):
        @property
        def profile(self):
            return {"num_rows": manifest["rows"].get("total"), "rows_per_split": manifest["rows"],
                    "targets": label}

        def to_dict(self):  # MetaDataset's leaves the profile out
            return {**super().to_dict(), "profile": json.dumps(self.profile)}

    try:
        schema = _infer_schema(data)
    except (MlflowException, TypeError):  # types MLflow has no name for (timestamp_ntz, ...)
        schema = None
    source = DeltaDatasetSource(path=str(path), delta_table_version=lake.version(spark, path))
    return TrainingSetDataset(source, name=f"{manifest['name']}@{manifest['version']}",
                              digest=manifest["digest"], schema=schema)


def _signature(estimator, fitted, sample):
    """Inputs typed from the training set's own Spark schema, so that plain `mlflow.pyfunc`
    scoring accepts the training set's rows; outputs inferred from the model's answer."""
    from mlflow.models import ModelSignature
    from mlflow.types.utils import _infer_schema

    if estimator.flavor == "sklearn":
        x = estimator.features_only(sample)
        output = fitted.predict_proba(x) if estimator.task == "classification" else fitted.predict(x)
        columns = estimator.feature_columns
    else:
        output = fitted.transform(sample).select("prediction").toPandas()
        columns = sample.columns
    return ModelSignature(inputs=input_schema(sample.select(*columns).schema),
                          outputs=_infer_schema(output))


def input_schema(schema):
    """Spark types -> an MLflow input schema. Integer columns are `any`: MLflow refuses an int64
    column under `double` and a column with nulls (float64 in pandas) under `long`, and the
    training set's own rows come both ways; the logged model casts them to double itself
    (the Spark pipeline's first stage, the scikit-learn pipeline's imputer)."""
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    named = {"double": "double", "float": "float", "string": "string", "boolean": "boolean",
             "timestamp": "datetime", "timestamp_ntz": "datetime", "date": "datetime"}
    return Schema([ColSpec(named[f.dataType.simpleString()] if f.dataType.simpleString() in named
                           else AnyType(), f.name, required=False) for f in schema.fields])


def _importances(estimator, fitted, df):
    if estimator.flavor == "sklearn":
        return estimator.importances(fitted, estimator.frame(df.limit(20000)))
    return estimator.importances(fitted)


def _rounded(metrics: dict) -> dict:
    return {k: round(v, 6) if isinstance(v, float) and v == v else v for k, v in metrics.items()}


def fitted_flavor(model) -> tuple[str, str]:
    """(flavor, task) of a model fitted outside the platform: a scikit-learn estimator or a
    Spark ML model; anything else is refused."""
    try:
        from sklearn.base import BaseEstimator, is_classifier, is_regressor
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        BaseEstimator = None
    if BaseEstimator is not None and isinstance(model, BaseEstimator):
        try:
            check_is_fitted(model)
        except NotFittedError:
            raise ConfigError(f"log_model: the {type(model).__name__} is not fitted: fit it first, "
                              "nothing logged") from None
        if is_classifier(model):
            return "sklearn", "classification"
        if is_regressor(model):
            return "sklearn", "regression"
        raise ConfigError(f"log_model: {type(model).__name__} is neither a classifier nor a regressor")
    from pyspark.ml import Model, PipelineModel

    if isinstance(model, Model):
        last = model.stages[-1] if isinstance(model, PipelineModel) and model.stages else model
        return "spark", "classification" if last.hasParam("probabilityCol") else "regression"
    raise ConfigError(f"log_model: model is a {type(model).__module__}.{type(model).__name__}, neither "
                      "a fitted scikit-learn estimator nor a Spark ML model; nothing logged")


def log_fitted(spark, config: Config, tracker: tracking.Tracker, model, manifest: dict, *,
               registered_model: str, metrics: dict | None = None, thresholds: dict | None = None) -> dict:
    """Register a model fitted elsewhere (a notebook's) on a saved training-set version, exactly
    like a trained one: its feature spec, training-set version, environment and code version
    go with it, its test metrics pass the same gate (the thresholds given, else those of the
    model spec that registers `registered_model`), and it takes `challenger`, and `champion`
    when the gate passes. Scoring then looks its features up by itself."""
    with tracker.bound(), quiet_schema_hints():
        return _log_fitted(spark, config, tracker, model, manifest, registered_model, metrics, thresholds)


def _log_fitted(spark, config, tracker, model, manifest, registered, metrics, thresholds) -> dict:
    import mlflow
    from pyspark.sql import functions as F

    flavor, task = fitted_flavor(model)
    refs.model(registered)  # a name a model reference can hold
    data = training_sets.read_version(spark, config, manifest)
    label = training_sets.LABEL
    inputs = list(getattr(model, "feature_names_in_", None) if flavor == "sklearn" and
                  hasattr(model, "feature_names_in_") else manifest["feature_columns"])
    missing = [c for c in inputs if c not in data.columns]
    if missing:
        raise ConfigError(f"log_model: the model takes column {', '.join(missing)}, which training set "
                          f"{manifest['name']}@{manifest['version']} does not have")
    thresholds = _thresholds_for(config, registered, thresholds, task)
    test_df = data.where(F.col(training_sets.SPLIT) == "test")
    test_frame = None
    if label in data.columns and manifest["rows"].get("test"):
        test_frame = _predict_fitted(model, flavor, task, test_df.select(*inputs, label), inputs, label)
        metrics = {**evaluation.metrics(test_frame, task), **(metrics or {})}
    elif metrics is None:
        raise ConfigError(f"log_model: training set {manifest['name']}@{manifest['version']} has no "
                          "labelled test rows to measure the model on: give metrics=")
    sample = data.select(*inputs).limit(50)
    output = (_predict_fitted(model, flavor, task, sample, inputs, None))
    from mlflow.models import ModelSignature
    from mlflow.types.utils import _infer_schema

    signature = ModelSignature(inputs=input_schema(sample.schema), outputs=_infer_schema(output))
    env = environment.capture(spark)
    environment.save(env, places.environments_dir(config))
    code = project_of(config).code_version()
    categorical = [f.name for f in sample.schema.fields if f.dataType.simpleString() == "string"]
    with contextlib.ExitStack() as promotion:
        with mlflow.start_run(experiment_id=tracker.experiment_id, run_name=f"log_model {registered}") as run:
            mlflow.set_tags({"sparkml.kind": "log_model", "sparkml.registered_model": registered,
                             "sparkml.training_set": manifest["name"],
                             "sparkml.training_set_version": str(manifest["version"]),
                             "sparkml.training_set_digest": manifest["digest"],
                             "sparkml.code_commit": str(code["git_commit"]),
                             "sparkml.environment_id": env["id"], **tracking.owner_tags()})
            stored = training_sets.version_path(config, manifest["name"], manifest["version"])
            tracking.log_dataset(_dataset_input(spark, data, manifest, label, stored), "training")
            params = _params_of(model, flavor)
            mlflow.log_params({**params, "estimator": f"{type(model).__module__}.{type(model).__name__}",
                               "training_set": f"{manifest['name']}@{manifest['version']}"})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and v == v})
            promotion.enter_context(registry.promotion_lock(tracker, registered))
            registry.finish_interrupted(tracker, registered)
            champion = (_champion_on(config, tracker, registered, manifest, test_df, thresholds, label, task)
                        if test_frame is not None else None)
            verdict = evaluation.verdict(thresholds, metrics, champion)
            feature_spec = _feature_spec(manifest, flavor, task, label, model_inputs=inputs,
                                         categorical=categorical)
            _log_artifacts({"feature_spec.json": feature_spec, "environment.json": env,
                            "training_set_manifest.json": manifest, "gate.json": verdict},
                           test_frame, task, None)
            info = estimators.log_fitted_model(model, flavor, task, signature)
            online = (_log_compiled(model, info.model_uri, test_df, manifest["entity"]["keys"])
                      if flavor == "spark" else None)
        recorded = registry.register(tracker, registered, info.model_uri, run.info.run_id, manifest, env,
                                     metrics, verdict, params=params, spec_name=registered, code=code)
    return {"model": registered, "spec": None, "version": recorded["version"], "run_id": run.info.run_id,
            "metrics": _rounded(metrics), "gate": verdict, "aliases": recorded["aliases"],
            "decision": recorded["decision"], "params": params,
            "training_set": f"{manifest['name']}@{manifest['version']}",
            **({"compiled": online} if online is not None else {})}


def _thresholds_for(config: Config, registered: str, given: dict | None, task: str) -> dict:
    """The thresholds given, else those of the model spec registering under that name."""
    if given is None:
        specs = [s for n, s in config.models.models.items() if (s.registered_model or n) == registered]
        return dict(specs[0].thresholds) if specs else {}
    out = {}
    for metric, bound in given.items():
        if metric not in METRICS[task]:
            raise ConfigError(f"log_model: thresholds: metric {metric!r} is not computed for {task} "
                              f"(computed: {', '.join(METRICS[task])})")
        out[metric] = bound if isinstance(bound, Threshold) else Threshold.model_validate(bound)
    return out


def _predict_fitted(model, flavor: str, task: str, df, inputs: list[str], label: str | None):
    """(label, score, prediction) of a fitted model on `df`, as evaluation reads them; the
    model's raw answer (probabilities or values) when there is no label."""
    import pandas as pd

    if flavor == "sklearn":
        pdf = df.toPandas()
        x = pdf[inputs]
        if label is None:
            return model.predict_proba(x) if task == "classification" else model.predict(x)
        score, prediction = estimators.predict_sklearn(model, x, task)
        return pd.DataFrame({"label": pdf[label].astype("float64").to_numpy(), "score": score,
                             "prediction": prediction})
    from pyspark.sql import functions as F

    out = model.transform(df)
    if label is None:
        return out.select("prediction").toPandas()
    return out.select(F.col(label).cast("double").alias("label"),
                      estimators.spark_score(task).alias("score"), "prediction").toPandas()


def _params_of(model, flavor: str) -> dict:
    """The model's own hyper-parameters, as text (MLflow keeps parameters as strings)."""
    if flavor == "sklearn":
        params = model.get_params(deep=False)
    else:
        last = model.stages[-1] if hasattr(model, "stages") and model.stages else model
        params = {p.name: v for p, v in last.extractParamMap().items()}
    return {k: str(v)[:500] for k, v in params.items() if not callable(v)}
