"""The Workspace: one object for a project, shared by notebooks, the CLI, `jobs/` and pipelines.

    from sparkml_platform import Workspace
    ws = Workspace("conf", env="dev")          # joins a running Delta session, or builds one
    ws.features.search("weather")
    ts = ws.create_training_set(labels_df, [{"table": "origin_weather_hourly"}], label="late")
    model = HistGradientBoostingClassifier().fit(...ts.to_pandas()...)
    ws.log_model(model, ts.save("my_set"), registered_model="my_model")
    ws.score_batch("my_model@champion", entities_df)

It owns the configuration, the SparkSession (built lazily: listing needs none), the storage
layer and one MLflow client bound to the configured tracking and registry URIs. Each verb
returns DataFrames or small records; the stages it calls (features, training_sets, training,
scoring, registry, ...) do the work.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import Config, Lookup, parse_instant, versioned
from ..core import refs
from ..core.errors import ConfigError, GateFailed, NotFoundError, SparkmlError
from ..features import build as features
from ..features import plan as feature_plan
from ..features import sources
from ..features.validation import prepare_in_background
from ..insight import catalog, monitoring, report, summary
from ..insight.lineage import graph
from ..orchestration import freshness, schedule
from ..orchestration.pipeline import run
from ..orchestration.retrain import retrain
from ..runtime import environments as environment
from ..runtime import packing as runtime_env
from ..runtime.delta_jars import jars_dir
from ..runtime.project import open_project, project_of
from ..runtime.session import check_jars, get_spark
from ..serving import publish as online
from ..serving import scoring, small_batch
from ..serving.server import serve
from ..storage import lake, leases, online_stores, places
from ..storage import training_sets as trainset_store
from ..storage.online_stores import open_store
from ..tracking import registry
from ..tracking.tracker import Tracker
from ..training import train as training
from ..trainsets import build as training_sets
from .notebook import views

FeatureLookup = Lookup  # a lookup as training_sets.yml writes it: table, features, key_map, rename, lookback


class Record:
    """A small result record; `to_dict()` gives it as plain data (the CLI prints that)."""

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)  # type: ignore[arg-type]
                if not f.name.startswith("_")}

    @classmethod
    def of(cls, data: dict):
        return cls(**data)


@dataclass(frozen=True)
class FeatureTableInfo(Record):
    name: str
    description: str
    owner: str
    tags: list[str]
    keys: list[str]
    event_time: str
    features: list[str]
    version: int | None
    last_built: str | None
    last_run_id: str | None
    newest_event_time: str | None
    declared: str | None = None  # the version features.yml declares: NAME, or NAME@N
    lake_versions: list[str] | None = None  # every version the lake holds


@dataclass(frozen=True)
class SourceInfo(Record):
    """A raw source (`raw.NAME`) or an entity table (`entities.NAME`) as `sources.list()` shows it."""

    name: str
    table: str
    kind: str  # source or entity_table
    description: str
    owner: str
    # where its rows come from: a file or package path (a source), the lake table it is derived
    # from (an entity table)
    source: str
    format: str
    version: int | None
    last_written: str | None


@dataclass(frozen=True)
class SourceDetail(SourceInfo):
    """`sources.show(name)`: the definition, and once in the lake its schema and Delta history;
    `read_by`: the entity tables, feature tables, training-set versions and predictions tables
    made from it."""

    path: str = ""
    filter: str | None = None
    loaded: bool = False
    schema: list[dict] | None = None
    history: list[dict] | None = None
    status: str | None = None
    read_by: dict = field(default_factory=dict)
    options: dict | None = None
    transform: str | None = None


@dataclass(frozen=True)
class BuiltTable(Record):
    table: str
    version: int | None
    mode: str
    run_id: str
    chunks: list
    rows: int | None
    reason: str | None = None
    window: list[str] | None = None
    event_time_range: list | None = None
    rows_written: int | None = None
    registered_as: str | None = None
    validation: dict | None = None
    # Model versions marked stale by a build with retire (MODEL/VERSION).
    retired: list[str] | None = None
    # Older versions of the table that aliased models use, built along (or why not).
    older_versions: list[dict] | None = None


@dataclass(frozen=True)
class Published(Record):
    """What `features.publish` moved to the online store."""

    table: str
    version: int
    mode: str  # full, incremental or up to date
    written: int
    deleted: int
    older_versions: list[dict] | None = None  # older versions aliased models use, published along
    recent_events: dict | None = None  # an aggregation table's events per key, for temporal lookups


@dataclass(frozen=True)
class ModelResult(Record):
    """A registered version made by `train` or `log_model`, with its gate verdict."""

    model: str
    spec: str | None
    version: str
    run_id: str
    metrics: dict
    gate: dict
    aliases: list[str]
    decision: str
    params: dict
    training_set: str
    # A Spark ML model's compiled predictor: exact (served online) or why not.
    compiled: dict | None = None

    @property
    def promoted(self) -> bool:
        return bool(self.gate.get("passed"))


@dataclass(frozen=True)
class ScoreResult(Record):
    model: str
    version: str
    run_id: str
    scoring_run_id: str
    output: str
    output_version: int
    run_date: str
    rows: int
    predicted_positive: int | None
    rows_with_null_keys: dict
    environment_id: str
    environment_mismatch: list[str]

    def to_dict(self) -> dict:
        out = super().to_dict()
        if out["predicted_positive"] is None:  # a regression: no positives to count
            del out["predicted_positive"]
        return out


@dataclass(frozen=True)
class RegisteredModel(Record):
    name: str
    description: str
    versions: int
    latest_version: int | None
    aliases: dict


@dataclass(frozen=True)
class ModelVersionInfo(Record):
    name: str
    version: str
    aliases: list[str]
    run_id: str
    source: str
    created: int
    tags: dict
    params: dict
    metrics: dict


@dataclass
class TrainingSet:
    """Label rows joined point in time with features. `df` has the entity columns, `label`,
    `split` (train / validation / test) and the features; `save(name)` writes it as an
    immutable version with a manifest, like `trainset build`."""

    df: Any
    feature_columns: list[str]
    name: str | None = None
    version: int | None = None
    manifest: dict | None = None
    path: str | None = None  # where the saved version's Delta table is
    pruned: dict | None = None  # what the training set's retention deleted after this build
    _facts: dict | None = field(default=None, repr=False)
    _workspace: "Workspace | None" = field(default=None, repr=False)

    @property
    def ref(self) -> str | None:
        return f"{self.name}@{self.version}" if self.name else None

    def to_pandas(self, limit: int | None = None):
        df = self.df.drop(*self._flags)
        return (df.limit(limit) if limit is not None else df).toPandas()

    @property
    def _flags(self) -> list[str]:
        return list((self._facts or {}).get("flags", []))

    def save(self, name: str) -> "TrainingSet":
        """Write this as the next version of training set `name`; returns the saved version."""
        if self._facts is None:
            raise ConfigError(f"training set {self.ref} is already saved")
        ws = self._workspace
        man = training_sets.save_frame(ws.spark, ws.config, name, self.df, self._facts)
        return ws.training_set(name, man["version"])


@dataclass(frozen=True)
class ReportFile(Record):
    """A model version's report page, as `report` wrote it."""

    path: str
    model: str
    version: str


class Workspace:
    """A project's configuration, session, storage layer and MLflow client, with its verbs."""

    def __init__(self, conf: str | None = None, env: str | None = None, spark=None):
        """`conf`: the configuration directory (default: SPARKML_CONF, else `conf`); `env`: the
        overlay (default: SPARKML_ENV); `spark`: a running session to join (default: the
        active one, else one built from platform.yml)."""
        self._open(open_project(conf, env), spark)

    @classmethod
    def from_config(cls, config: Config, spark=None) -> "Workspace":
        """A Workspace on a configuration already loaded (and perhaps adjusted in code)."""
        ws = cls.__new__(cls)
        ws._open(config, spark)
        return ws

    def _open(self, config: Config, spark) -> None:
        self.config, self._given, self._spark = config, spark, None
        self._small_inputs = False  # set by a command that knows its inputs are small
        self.tracker = Tracker(config)
        self.features = Features(self)
        self.sources = Sources(self)
        self.models = Models(self)
        self.env = Environments(self)
        self.schedules = Schedules(self)

    @property
    def storage(self):
        return places.storage(self.config)

    @property
    def online_store(self):
        """The online store (platform.yml online_store: SQLite by default, or Redis)."""
        if getattr(self, "_online", None) is None:
            self._online = open_store(self.config)
        return self._online

    @property
    def spark(self):
        """The session: the one given, the running one when it has Delta on, else one built
        from platform.yml (and the jar cache)."""
        if self._spark is None or not _alive(self._spark):
            given = self._given if self._given is not None and _alive(self._given) else None
            if given is None and self._spark is None:
                # The lake answers (its S3 bucket exists, its HDFS is up) before a JVM starts.
                places.lake_root(self.config).exists()
            # checked: Delta on, or refused
            self._spark = get_spark(self.config, given, small_inputs=self._small_inputs)
        return self._spark

    def check_setup(self) -> None:
        """Before a step that may find from metadata alone that it has nothing to do: a
        missing jar is refused as it would be by the session it may need (exit 2), before
        the lake is read."""
        if self._spark is not None or self._given is not None:
            return
        if "pyspark.sql" in sys.modules and sys.modules["pyspark.sql"].SparkSession.getActiveSession():
            return  # a notebook's running session is joined, whatever jars it has

        check_jars(self.config)

    @property
    def spark_started(self) -> bool:
        """Whether this Workspace has started (or joined) a session yet."""
        return self._spark is not None

    def register_views(self) -> list[str]:
        """A temporary view `ZONE_NAME` over each lake table (SELECT * FROM features_NAME)."""
        return views(self.spark, self.config)

    # --- sources --------------------------------------------------------------------------

    def load_sources(self, names: list[str] | None = None) -> list[dict]:
        """Load raw sources (all when none is named) into the lake as raw.NAME."""
        known = self.config.sources.sources
        missing = [n for n in names or [] if n not in known]
        if missing:  # checked before the first load, so nothing is written
            raise NotFoundError(f"no source named {', '.join(map(repr, missing))} in conf/*/sources.yml "
                                f"(known: {', '.join(sorted(known))})")
        for name in names or list(known):  # every source's files found, before a JVM starts
            sources.check_source(self.config, name)
        return [sources.load_source(self.spark, self.config, n) for n in names or list(known)]

    def build_entities(self, names: list[str]) -> list[dict]:
        return [sources.build_entity_table(self.spark, self.config, n) for n in names]

    # --- training sets --------------------------------------------------------------------

    def create_training_set(self, labels_df, lookups: list, label: str | None = None, exclude=(),
                            *, keys: list[str] | None = None, event_time: str | None = None,
                            split=None) -> TrainingSet:
        """Label rows (any DataFrame with the lookups' keys and an event time) joined point in
        time with the feature tables as they are now. Nothing is written until `.save(name)`.

        `lookups`: as in training_sets.yml (`{table, features, key_map, rename, lookback}`)
        or `FeatureLookup` objects; `label`: the label column; `exclude`: columns that are not
        features; `event_time`: default, the labels' only timestamp column; `split`: as in
        training_sets.yml, default a seeded 80/20 split on the keys."""
        joined, facts = training_sets.from_frame(self.spark, self.config, labels_df, lookups, label=label,
                                                 exclude=exclude, keys=keys, event_time=event_time,
                                                 split=split)
        return TrainingSet(joined, facts["feature_columns"], _facts=facts, _workspace=self)

    def build_training_set(self, name: str) -> TrainingSet:
        """The next version of training set NAME as training_sets.yml defines it."""
        # What the configuration already shows is said before a session starts.
        training_sets.resolve_lookups(self.config, name, self.config.training_set(name))
        man = training_sets.build(self.spark, self.config, name)
        built = self.training_set(name, man["version"])
        built.pruned = training_sets.after_build(self.config, self.tracker, name)
        return built

    def training_set(self, name: str, version: int | None = None) -> TrainingSet:
        """A saved version (the newest by default): its rows and its manifest."""
        man = trainset_store.manifest(self.config, f"{name}@{version}" if version is not None else name)
        return TrainingSet(trainset_store.read_version(self.spark, self.config, man), man["feature_columns"],
                           man["name"], man["version"], man,
                           str(trainset_store.version_path(self.config, man["name"], man["version"])))

    def rebuild_training_set(self, ref: str) -> dict:
        return training_sets.rebuild(self.spark, self.config, ref)

    def training_set_manifest(self, ref: str) -> dict:
        pass

        return trainset_store.manifest(self.config, ref)

    def training_sets(self) -> list[dict]:
        return catalog.trainsets(self.config)

    def delete_training_set(self, ref: str) -> dict:
        """Delete version NAME@VERSION (rows and manifest); refused (ConfigError) while a
        registered model version was trained on it. Its number is never reused."""
        return training_sets.delete(self.config, self.tracker, ref)

    def prune_training_sets(self, name: str, keep: int | None = None) -> dict:
        """Keep the newest `keep` versions of training set `name` (default: its retention in
        training_sets.yml) and every version a registered model version was trained on;
        delete the rest. Returns what was deleted and what was kept, and why."""
        return training_sets.prune(self.config, self.tracker, name, keep)

    # --- models ---------------------------------------------------------------------------

    def train(self, model_name: str, tune: bool = True) -> ModelResult:
        """Train the model spec `model_name` (models.yml) on its training set's newest version."""
        self.config.model(model_name)
        return _model_result(lambda: training.train(self.spark, self.config, self.tracker, model_name, tune))

    def retrain(self, model_name: str, echo: Callable[[str], None] = print) -> ModelResult:
        self.config.model(model_name)
        return retrain(self, model_name, echo=echo)

    def log_model(self, model, training_set: TrainingSet, registered_model: str,
                  metrics: dict | None = None, thresholds: dict | None = None) -> ModelResult:
        """Register a scikit-learn estimator or Spark ML model fitted here, on a saved training
        set, exactly like a trained one (feature spec, training-set version, environment,
        code version, gate, aliases), so `score`/`score_batch` look its features up."""
        training.fitted_flavor(model)  # what is not a fitted model is refused first
        if not isinstance(training_set, TrainingSet):
            raise ConfigError("log_model: training_set must be a TrainingSet (from create_training_set "
                              f"then .save(name), or training_set(name)), not a {type(training_set).__name__}")
        if training_set.manifest is None:
            raise ConfigError("log_model: the training set is not saved: save it first "
                              "(training_set.save(NAME)), so the model records the version it learnt from")
        return _model_result(lambda: training.log_fitted(
            self.spark, self.config, self.tracker, model, training_set.manifest,
            registered_model=registered_model, metrics=metrics, thresholds=thresholds))

    # --- scoring --------------------------------------------------------------------------

    def score_batch(self, model_ref: str, df):
        """`df` scored by `model_ref` (MODEL, MODEL@ALIAS or MODEL/VERSION), features looked up
        as of each row's event time: a DataFrame, nothing written. A pandas frame takes the
        small-data path, without Spark: features from the online store, the model in this
        process, as `sparkml serve` answers (serving/small_batch.py)."""
        if type(df).__module__.startswith("pandas."):
            return small_batch.score_frame(self.tracker, self.online_store, model_ref, df)
        return scoring.score_batch(self.spark, self.config, self.tracker, model_ref, df)

    def score(self, model_ref: str, input: str, output: str, run_date: str | None = None) -> ScoreResult:
        """Score lake table `input` into partition `run_date` of `predictions.NAME` `output`."""
        refs.parse_run_date(run_date)
        places.table(self.config, output, scoring.OUTPUT_ZONES)
        refs.model(model_ref)
        return ScoreResult.of(scoring.score(self.spark, self.config, self.tracker, model_ref, input, output,
                                            run_date))

    def serve(self, model_ref: str, host: str = "127.0.0.1", port: int = 8080, poll_seconds: float = 30.0,
              log_requests: bool = True) -> None:
        """Answer POST /predict for `model_ref` over HTTP until stopped (see serving.py)."""
        serve(self, model_ref, host=host, port=port, poll_seconds=poll_seconds, log_requests=log_requests)

    # --- provenance -----------------------------------------------------------------------

    def lineage(self, ref: str):
        """The lineage graph of REF (a raw source, entity table, feature table, training
        set[@v], model[@alias|/v] or predictions table): everything upstream to the raw
        sources and everything made from it, as a `lineage.Graph` (`to_text()`, `to_dict()`,
        `to_dot()`)."""
        with self.tracker.bound():
            return graph(self.config, self.tracker, ref)

    def report(self, ref: str, output: str | None = None) -> ReportFile:
        """One self-contained HTML page on model version `ref` (MODEL, MODEL@ALIAS or
        MODEL/VERSION): metrics against the thresholds and the champion, the gate verdict, its
        plots, training set, feature tables, environment, lineage and monitoring history.
        Written to `output` (a path; default .sparkml/reports/MODEL-vVERSION.html in the
        project) whole or not at all."""
        refs.model(ref)
        target = self.storage.location(output) if output else None
        if target is not None and target.is_dir():
            raise ConfigError(f"report: output {output!r} is a directory: name the HTML file to write")
        with self.tracker.bound():
            data = report.gather(self.config, self.tracker, ref, self._monitoring_history)
        page = report.render(data)
        if target is None:
            target = self.storage.location(str(self.config.path(".sparkml/reports")
                                               / f"{data['model']}-v{data['version']}.html"))
        target.write_text(page)  # staged beside it, then renamed: whole or nothing
        return ReportFile(str(target), data["model"], data["version"])

    def _monitoring_history(self, model_name: str, version: int) -> list[dict]:
        """A version's monitoring rows (through delta-rs for a small table: no session)."""
        return monitoring.history(lambda: self.spark, self.config, model_name, version)

    def monitor(self, model_ref: str, outcomes: str, run_date: str | None = None, by: str = "run_date",
                predictions: str | None = None) -> dict:
        """The model version's predictions joined with the outcomes in lake table `outcomes`:
        metrics and input drift per period (`by`: run_date, day, week or month), kept in
        `monitoring.NAME` and an MLflow run. Raises GateFailed (exit 3) below a floor."""
        refs.model(model_ref)
        return monitoring.monitor(self.spark, self.config, self.tracker, model_ref, outcomes, run_date, by,
                                  predictions)

    # --- pipelines ------------------------------------------------------------------------

    def run(self, pipeline: str, echo: Callable[[str], None] = print, force: bool = False) -> dict:
        """Run the steps PIPELINE declares in pipelines.yml; returns its report. Steps whose
        inputs did not change since they last ran are skipped ("up to date") unless `force`."""
        return run(self, pipeline, echo=echo, force=force)

    def summary(self, report: dict) -> str:
        return summary.render(lambda: self.spark, self.config, self.tracker, report)


class Sources:
    """Raw sources and entity tables (sources.yml): list, show."""

    def __init__(self, ws: Workspace):
        self._ws = ws

    def list(self) -> list[SourceInfo]:
        return [SourceInfo.of(row) for row in catalog.sources(self._ws.config)]

    def show(self, name: str) -> SourceDetail:
        """NAME or raw.NAME (a raw source), entities.NAME (an entity table)."""
        return SourceDetail.of(catalog.show_source(self._ws.config, name))


class Features:
    """Feature tables: list, search, show, read, build."""

    def __init__(self, ws: Workspace):
        self._ws = ws

    def list(self) -> list[FeatureTableInfo]:
        return [FeatureTableInfo.of(row) for row in catalog.feature_tables(self._ws.config)]

    def search(self, text: str) -> list[FeatureTableInfo]:
        return [FeatureTableInfo.of(row) for row in catalog.search(self._ws.config, text)]

    def show(self, name: str, compare: tuple[int, int] | None = None) -> dict:
        """The table's definition, versions, statistics (or, with `compare`, their shift)."""
        name = features.resolve(self._ws.config, name).exact
        if compare:
            return catalog.compare_versions(lambda: self._ws.spark, self._ws.config, name, *compare)
        try:
            with self._ws.tracker.bound():
                users = registry.feature_users(self._ws.tracker)
        except Exception as exc:  # noqa: BLE001 - the table is shown without who uses it

            logging.getLogger(__name__).warning("features show: the registry did not answer (%s): "
                                                "the versions are shown without the models using them", exc)
            users = []
        shown = catalog.show_feature_table(lambda: self._ws.spark, self._ws.config, name, users)
        try:
            newest = (shown.get("history") or [{}])[0].get("version")
            shown["online"] = online_stores.online_status(self._ws.online_store, shown["name"], newest)
        except online_stores.StoreDown as exc:
            shown["online"] = {"unknown": str(exc)}
        return shown

    def read(self, name: str, version: int | None = None, as_of=None, commit_time=None):
        """The table's rows. `as_of` (a time, or text like 2013-06-01 or 2013-06-01 08:00, UTC)
        is event time: each key's newest row at or before it, the feature values as they were
        known then (what a point-in-time lookup at that time finds, before any lookback).
        `version` (a Delta version) and `commit_time` (the newest version committed at or
        before it) travel in the table's history; either combines with `as_of`."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        table = features.resolve(self._ws.config, name)
        ref, path = table.ref, table.path(self._ws.config)
        if not lake.exists(path):
            raise ConfigError(f"feature table {name} has not been built yet (features.build({name!r}))")
        if version is not None and commit_time is not None:
            raise ConfigError("read: give version or commit_time, not both")
        if commit_time is not None:
            version = lake.version_at(path, commit_time, ref)
        rows = lake.read(self._ws.spark, path, version, ref)
        if as_of is None:
            return rows
        try:
            at = as_of if isinstance(as_of, dt.datetime) else parse_instant(str(as_of))
        except ValueError as exc:
            raise ConfigError(f"read: as_of: {exc}") from None
        if at.tzinfo is not None:
            at = at.astimezone(dt.timezone.utc).replace(tzinfo=None)
        definition = table.definition
        event = F.col(definition.event_time)
        newest = Window.partitionBy(*definition.keys).orderBy(event.desc())
        return (rows.where(event.cast("timestamp") <= F.lit(at.isoformat(sep=" ")).cast("timestamp"))
                .withColumn("__n", F.row_number().over(newest)).where("__n = 1").drop("__n"))

    def publish(self, name: str, full: bool = False) -> Published:
        """Each key's newest row of the table into the online store (only what changed since
        the version published last, unless `full`); records the Delta version published."""
        table = features.resolve(self._ws.config, name)
        published = self._publish_one(table.exact, full)
        if table.declared and table.number > 1:
            # NAME@N: a plain NAME would be the declared version.
            published["older_versions"] = []
            for n in self._used_older(table):
                try:
                    published["older_versions"].append(self._publish_one(f"{table.base}@{n}", full))
                except SparkmlError as exc:  # the declared version is published: say why this one is not
                    published["older_versions"].append({"table": f"features.{versioned(table.base, n)}",
                                                        "mode": "not published", "reason": str(exc)})
        return Published.of(published)

    def _publish_one(self, name: str, full: bool) -> dict:
        if (done := freshness.current(self._ws, "publish_features", name, force=full)) is not None:
            return done  # before the session: nothing to publish needs none
        return online.publish_table(lambda: self._ws.spark, self._ws.config, self._ws.online_store, name, full=full)

    def _used_older(self, table) -> list[int]:
        """The versions of `table` older than it that the lake holds and a model version
        under an alias uses."""
        held = [n for n in features.lake_versions(self._ws.config, table.base) if n < table.number]
        if not held:
            return []
        with self._ws.tracker.bound():
            used = {t for u in registry.feature_users(self._ws.tracker) for t in u["tables"]}
        return [n for n in held if versioned(table.base, n) in used]

    def vacuum(self, name: str, retain_hours: int | None = None) -> dict:
        """Delta VACUUM of the feature table: deletes the files its current version no longer
        reads that were removed more than `retain_hours` ago. Refused (ConfigError) when a
        training-set version that `rebuild` can recompute reads one of them; default hours:
        that safe minimum, or the table's retention (168 hours) when longer."""
        table = features.resolve(self._ws.config, name)
        with self._ws.tracker.bound():
            users = registry.feature_users(self._ws.tracker)
        done = training_sets.vacuum(self._ws.spark, self._ws.config, table.ref, retain_hours, users)
        tiles = places.tiles(self._ws.config, table.ref)
        if lake.exists(tiles):  # an aggregation table's tiles: read by its builds alone, never pinned
            done["tiles_files_deleted"] = len(lake.vacuum(self._ws.spark, tiles, done["retain_hours"], dry_run=True))
            lake.vacuum(self._ws.spark, tiles, done["retain_hours"])
        return done

    def build(self, name: str, start: str | None = None, end: str | None = None, *,
              chunk_days: int | None = None, full: bool = False, force: bool = False,
              retire: bool = False) -> BuiltTable:
        """Compute the table (or the window start..end) into Delta, one commit per chunk.
        Without a window: only what is new since the last build, and nothing (mode "up to
        date", no session started) when its sources have not changed, unless `force`.

        `name` is NAME (the version features.yml declares) or NAME@N (an older one). A changed
        definition that a model version under an alias was trained on is refused (ConfigError)
        unless `retire`, which rebuilds it in place and marks those versions stale. Building
        NAME without a window also brings up to date every older version an aliased model
        still uses (`older_versions`), while its transformation's code is unchanged."""
        window = feature_plan.parse_window(start, end)
        if window and full:
            raise ConfigError("full=True rebuilds the whole table: give it without start/end")
        if chunk_days and not window:
            raise ConfigError("chunk_days splits a window: give start and end too")
        table = features.resolve(self._ws.config, name)
        self._ws.check_setup()
        built = self._build_one(table, start, end, chunk_days=chunk_days, full=full, force=force,
                                retire=retire)
        if built.get("retired"):
            with self._ws.tracker.bound():
                registry.mark_stale(self._ws.tracker, built["retired"],
                                    f"feature table {table.name}: definition retired by the build of "
                                    f"Delta version {built['version']} (run {built['run_id']})")
        if table.declared and window is None and table.number > 1:
            built["older_versions"] = self._build_older(table)
        return BuiltTable.of(built)

    def _build_one(self, name, start=None, end=None, **options) -> dict:
        """Build one version (NAME@N, or its TableVersion): resolved once, its transformation
        imported once, for the freshness check, the refusals and the build alike."""
        table = features.resolve(self._ws.config, name) if isinstance(name, str) else name
        window = feature_plan.parse_window(start, end)
        if window is None and (done := freshness.current(self._ws, "build_features", table,
                                                         force=options["full"] or options["force"])) is not None:
            return done
        asked: list[list[dict]] = []

        def users():  # the registry, asked once, and only for a changed definition
            if not asked:
                with self._ws.tracker.bound():
                    asked.append(registry.feature_users(self._ws.tracker))
            return asked[0]

        # Refusals first: they need no session, so a refused build starts no JVM.
        checked = features.check_change(self._ws.config, table, users, options.get("retire", False))
        if self._ws.config.suite(table.definition.expectations, f"{table.where}.expectations") is not None:
            prepare_in_background()  # while the session starts
        if self._ws._spark is None and self._ws._given is None:  # a JVM to start: its JIT
            self._ws._small_inputs = features.small_inputs(self._ws.config, table)

        # The sources at the versions they have now, leased while the build reads them.
        config = self._ws.config
        sources_at = lake.current_versions(places.lake_root(config), [config.source_ref(r) for r in table.definition.sources.values()])
        with leases.reading_tables(config, f"feature build {table.name}", sources_at):
            # force: the check above is done (and build would repeat it)
            return features.build(self._ws.spark, config, table, start, end,
                                  chunk_days=options.get("chunk_days"), full=options["full"], force=True,
                                  users=users, retire=options.get("retire", False), checked=checked,
                                  sources_at=sources_at)

    def _build_older(self, table) -> list[dict]:
        """The older versions of `table` that a model under an alias uses, each built
        incrementally, or the reason it is kept as it is."""
        out = []
        for number in self._used_older(table):
            name = f"{table.base}@{number}"  # a plain NAME would be the declared version
            try:
                built = self._build_one(name, full=False, force=False)
            except SparkmlError as exc:  # the declared version is built: say why this one is not
                out.append({"table": f"features.{versioned(table.base, number)}", "mode": "kept as it is",
                            "reason": str(exc)})
                continue
            out.append({k: built.get(k) for k in ("table", "version", "mode", "rows", "rows_written")})
        return out


class Models:
    """Registered models: list, show."""

    def __init__(self, ws: Workspace):
        self._ws = ws

    def list(self) -> list[RegisteredModel]:
        with self._ws.tracker.bound():
            return [RegisteredModel.of(m) for m in registry.list_models(self._ws.tracker)]

    def show(self, ref: str) -> ModelVersionInfo:
        with self._ws.tracker.bound():
            return ModelVersionInfo.of(registry.show(self._ws.tracker, ref))


class Environments:
    """Environment artifacts: capture, show, diff, pack."""

    def __init__(self, ws: Workspace):
        self._ws = ws

    def capture(self, save: bool = True) -> dict:
        """The running environment (Python, every package, Spark, Java, Scala, Delta)."""
        captured = environment.capture()
        if save:
            captured["path"] = str(environment.save(captured, places.environments_dir(self._ws.config)))
        return captured

    def show(self, ref: str | None = None) -> dict:
        """Environment REF (an id, a model reference or a run id); the running one without REF."""
        if not ref:
            return environment.capture()
        with self._ws.tracker.bound():
            return environment.resolve(places.environments_dir(self._ws.config), self._ws.tracker, ref)

    def diff(self, ref_a: str, ref_b: str | None = None) -> dict:
        """Packages added, removed and changed from REF_A to REF_B (default: the running one)."""
        return environment.diff(self.show(ref_a), self.show(ref_b))

    def pack(self, ref: str | None = None, output_dir: str | None = None, archive: bool = True) -> dict:
        config = self._ws.config
        data = self.show(ref)
        if not ref:
            environment.save(data, places.environments_dir(config))
        out = config.path(output_dir) if output_dir else config.path(".sparkml/envs") / data["id"]
        return runtime_env.build(data, out, config.path(".sparkml/envs/build"), config.conf_dir,
                                 jars_dir(config), archive=archive, packages=project_of(config).packages)


class Schedules:
    """`schedules.yml` rendered for cron or Oozie, and the next runs."""

    def __init__(self, ws: Workspace):
        self._ws = ws

    def list(self) -> list[dict]:
        return schedule.listing(self._ws.config)

    def render(self, target: str, output: str | None = None, name: str | None = None):
        """`target` cron: a runner script per schedule under `output` (default
        .sparkml/schedules) and the crontab lines; oozie: workflow.xml, coordinator.xml and
        job.properties per schedule under `output` (default .sparkml/oozie)."""
        config = self._ws.config
        if target == "cron":
            return schedule.render_cron(config, Path(output) if output else None, name)
        if target == "oozie":
            return schedule.render_oozie(config, Path(output) if output else config.path(".sparkml/oozie"), name)
        raise ConfigError(f"target {target!r}: cron or oozie")


def _model_result(call) -> ModelResult:
    """A stage's result as a record; a failed gate keeps its record on the exception."""
    try:
        return ModelResult.of(call())
    except GateFailed as exc:
        if isinstance(exc.result, dict):
            exc.result = ModelResult.of(exc.result)
        raise


def _alive(spark) -> bool:
    try:
        return spark.sparkContext._jsc is not None
    except Exception:  # noqa: BLE001 - a stopped session
        return False
