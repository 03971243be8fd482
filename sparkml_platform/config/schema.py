"""Typed configuration: YAML under conf/base/, overlaid by conf/ENV/, then SPARKML_* variables.

Every model forbids unknown keys, so a typo is an error naming the file and the key path
instead of a setting silently ignored.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_serializer, model_validator

from ..core.errors import ConfigError
from .aggregations import Aggregations
from .base import NAME, TABLE_REF, Duration, Strict, parse_duration  # noqa: F401 (re-exported)
from .vocabulary import DISTRIBUTIONS, METRICS, MLLIB_ESTIMATORS

# A feature table's name, optionally with a version: NAME or NAME@N.
FEATURE_REF = re.compile(r"^([a-z][a-z0-9_]*)(?:@([1-9][0-9]*))?$")


def versioned(name: str, version: int) -> str:
    """Feature table `name`'s version as lakes, manifests and models name it: version 1 is
    the plain name (the table as it was before versions), version N > 1 is NAME@N."""
    return name if version == 1 else f"{name}@{version}"


def split_version(ref: str) -> tuple[str, int | None]:
    """`NAME` or `NAME@N` (a feature table, possibly `features.`-prefixed) -> (NAME, N or None)."""
    match = FEATURE_REF.match(ref.removeprefix("features."))
    if not match:
        raise ConfigError(f"{ref!r} is not a feature table name: NAME or NAME@N (N a version "
                          "number from 1)")
    return match.group(1), int(match.group(2)) if match.group(2) else None


# --- platform.yml -------------------------------------------------------------------------


class MlflowSettings(Strict):
    tracking_uri: str = "sqlite:///.sparkml/mlflow.db"
    artifact_root: str = ".sparkml/mlartifacts"
    experiment: str = "sparkml"


class SparkSettings(Strict):
    master: str = "local[*]"
    app_name: str = "sparkml"
    driver_memory: str = "4g"
    shuffle_partitions: int = Field(8, ge=1)
    jars_dir: str | None = None  # the Delta jar cache; default: the user's, shared by projects
    # The JIT of a driver JVM the platform starts (a local master, a client-mode driver):
    # `client` compiles with C1 only (a small job finishes sooner: no C2 compiles competing
    # for few cores); `server` adds C2 (heavy local work runs faster once compiled). `auto`:
    # client for a cluster's driver, which only coordinates, and for a local command whose
    # inputs are small (a feature build's sources, from their Delta logs); else server.
    # A cluster's executors keep their JVM's default.
    driver_jit: Literal["auto", "client", "server"] = "auto"
    conf: dict[str, str] = {}


class MetastoreSettings(Strict):
    """Register lake tables in the session's catalog (a cluster's Hive metastore) under `database`.

    Unset (the default): nothing is registered, and no embedded Derby metastore is ever
    started, so any number of commands can run at once; notebooks get views instead
    (`sparkml_platform.api.notebook.register_views`)."""

    database: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class ScoringSettings(Strict):
    # The running environment against the model's: `warn` logs and records a mismatch of the
    # Python minor version or a key package; `strict` refuses to score (exit 2).
    environment_check: Literal["warn", "strict"] = "warn"
    # Entity rows with a null key: `score` them (their features are null) and count them,
    # or `refuse` the run (exit 2) before anything is written.
    null_keys: Literal["score", "refuse"] = "score"


class ProjectSettings(Strict):
    """The user's own code: Python packages under the project root (or its `src/`) that hold
    transformations, entity functions and estimators. Imported by every command without
    PYTHONPATH, shipped to executors, versioned with every artifact."""

    name: str | None = None  # default: the project root's directory name
    # Default: every package (a directory with __init__.py) directly under the root or src/.
    packages: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] | None = None
    # A configuration is code: each transformation, entity function and estimator class it
    # names is imported, running that module's top-level code. When set, only modules under
    # these prefixes may be named (e.g. [my_project, sklearn]); unset, any module may.
    allowed_imports: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")]] | None = None


class OnlineStoreSettings(Strict):
    """Where `features publish` puts each key's newest feature row for online scoring: a
    SQLite file (the embedded default: nothing to run) or a Redis server."""

    url: str = Field("sqlite:///.sparkml/online.db", pattern=r"^(sqlite:///|redis://|rediss://).+")
    timeout_seconds: float = Field(0.5, gt=0)  # a store that does not answer: 503, not a hang


class ServingSettings(Strict):
    """What `sparkml serve` accepts from a client (larger: 413) and how it keeps its request log."""

    max_request_bytes: int = Field(1_048_576, ge=1024)
    max_rows: int = Field(1000, ge=1)
    max_json_depth: int = Field(8, ge=3)  # {"rows": [{...}]} is 3 deep
    # The request log's small appends are compacted (Delta OPTIMIZE) this often; 0: never.
    compact_minutes: float = Field(10.0, ge=0)


class PlatformSettings(Strict):
    project: ProjectSettings = ProjectSettings()
    online_store: OnlineStoreSettings = OnlineStoreSettings()
    serving: ServingSettings = ServingSettings()
    lake_root: str = ".sparkml/lake"
    # A table whose data files hold at most this many MiB is read by the command's own process
    # (delta-rs, no JVM) where nothing is computed on it: `features show` statistics, `features
    # publish`. Larger ones start Spark. 0: always Spark.
    local_read_max_mb: int = Field(64, ge=0)
    environments_dir: str = ".sparkml/environments"
    mlflow: MlflowSettings = MlflowSettings()
    spark: SparkSettings = SparkSettings()
    metastore: MetastoreSettings = MetastoreSettings()
    scoring: ScoringSettings = ScoringSettings()


# --- sources.yml --------------------------------------------------------------------------


class Source(Strict):
    """A raw table loaded into the lake as `raw.NAME`."""

    path: str  # a file path, or `package:PKG/relative/path` for data shipped in a package
    format: Literal["csv", "parquet", "json"] = "csv"
    options: dict[str, str] = {}
    filter: str | None = None  # SQL predicate applied on load (e.g. a slice for tests)
    description: str = ""
    owner: str = ""


class EntityTable(Strict):
    """Entity rows (keys + event time) derived from a table, e.g. the rows to score."""

    source: str = Field(pattern=TABLE_REF)
    transform: str
    filter: str | None = None
    description: str = ""
    owner: str = ""


class SourcesFile(Strict):
    sources: dict[str, Source] = {}
    entity_tables: dict[str, EntityTable] = {}


# --- features.yml -------------------------------------------------------------------------


class Feature(Strict):
    type: Literal["double", "float", "int", "bigint", "string", "boolean", "timestamp"]
    description: str = ""


class OnlineKeep(Strict):
    """Which rows per key the online store keeps, so a request is answered as of its event
    time: every row within `keep` of the key's newest one (and the newest before that), or the
    newest `keep_rows`. Unset: the table's lookback, or without one the newest row only."""

    keep: Duration | None = None
    keep_rows: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one(self):
        if self.keep is not None and self.keep_rows is not None:
            raise ValueError("give keep (a duration) or keep_rows (a count), not both")
        return self


class FeatureTable(Strict):
    description: str
    owner: str
    # A changed definition that aliased models depend on is a new version, built as its own
    # Delta table beside the old one (feature_definitions); 1 is the plain table.
    # Not in model_dump (so not in the definition hash): the same definition as version 1
    # and as version 2 is the same definition, and hashes recorded before versions stay valid.
    version: int = Field(1, ge=1, exclude=True)
    tags: list[str] = []
    keys: list[str] = Field(min_length=1)
    event_time: str
    # A transformation: its sources (argument name -> table reference), the dotted path of a
    # pure DataFrame -> DataFrame function, and the features it computes. Or `aggregations`
    # (aggregations.py): the platform computes the features, and fills in `sources` and
    # `features` from the declaration.
    sources: dict[str, str] = {}
    transformation: str | None = None
    features: dict[str, Feature] = {}
    aggregations: Aggregations | None = None
    lookback: Duration | None = None
    partition_by: list[str] = []  # declared columns (keys or features) to partition the table by
    expectations: str | None = None  # suite name: conf/*/expectations/NAME.yml
    on_failure: Literal["block", "warn"] = "block"  # what a failing suite does to the write
    # What the online store keeps: not in the definition hash (the table's rows do not change).
    online: OnlineKeep = Field(OnlineKeep(), exclude=True)

    def online_keep(self) -> tuple[int | None, int | None]:
        """(seconds, rows) the online store keeps per key: one of them is set."""
        if self.online.keep_rows is not None:
            return None, self.online.keep_rows
        span = self.online.keep or self.lookback
        return (parse_duration(span), None) if span else (None, 1)

    @property
    def feature_types(self) -> dict[str, str]:
        """Each feature's declared Spark type, by name."""
        return {n: f.type for n, f in self.features.items()}

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """A transformation table dumps (and hashes) as before `aggregations` existed: its
        definition hash, which builds and models record, does not change with the platform."""
        data = handler(self)
        if self.aggregations is None and isinstance(data, dict):
            data.pop("aggregations", None)
        return data

    @property
    def computed_by(self) -> str:
        """What computes the rows, as messages and table properties name it."""
        if self.aggregations is not None:
            return f"aggregations of {self.aggregations.source}"
        return f"transformation {self.transformation}"

    @field_validator("sources")
    @classmethod
    def _refs(cls, value: dict[str, str]) -> dict[str, str]:
        for ref in value.values():
            if not re.match(TABLE_REF, ref):
                raise ValueError(f"{ref!r} is not a table reference like raw.NAME or features.NAME")
        return value

    @model_validator(mode="after")
    def _one_kind(self):
        """A transformation with its sources and features, or aggregations: never both."""
        given = self.model_fields_set
        if self.aggregations is None:
            if self.transformation is None:
                raise ValueError("give a transformation (with its sources and features) or aggregations")
            for key in ("sources", "features"):
                if not getattr(self, key):
                    raise ValueError(f"{key}: give at least one")
            return self
        if self.transformation is not None:
            raise ValueError("aggregations and transformation are both given: a table is either "
                             "computed by its transformation or aggregated by the platform, not both")
        for key, why in (("sources", "its source is aggregations.source"),
                         ("features", "they are generated from aggregations.aggregate (rename them "
                                      "with aggregations.rename)"),
                         ("lookback", "a row holds until the table's next row for the key, and the "
                                      "windows say how far back each value reaches")):
            if key in given:
                raise ValueError(f"{key}: not given for an aggregation table: {why}")
        clash = [c for c in self.aggregations.output_columns() if c in (*self.keys, self.event_time)]
        if clash:
            raise ValueError(f"aggregate column {', '.join(clash)} has the name of a key or of the "
                             "event time: rename it")
        self.sources = {"events": self.aggregations.source}
        self.features = {name: Feature(type=kind, description=_described(self.aggregations, name))
                         for name, kind in self.aggregations.feature_types().items()}
        return self

    @model_validator(mode="after")
    def _partition_columns(self):
        declared = {*self.keys, self.event_time, *self.features}
        unknown = [c for c in self.partition_by if c not in declared]
        if unknown:
            raise ValueError(f"partition_by: {', '.join(unknown)} is not a key or feature of "
                             "this table")
        return self


def _described(aggregations: Aggregations, name: str) -> str:
    column, function, window = aggregations.output_columns()[name]
    span = "all events so far" if window == "lifetime" else f"the last {window}"
    return f"{function} of {column} over {span}"


class FeaturesFile(Strict):
    feature_tables: dict[str, FeatureTable] = {}

    @field_validator("feature_tables")
    @classmethod
    def _names(cls, tables: dict[str, FeatureTable]) -> dict[str, FeatureTable]:
        for name in tables:
            if not re.match(NAME, name):
                raise ValueError(f"table name {name!r} must be lower case letters, digits and _ "
                                 "(starting with a letter): it names a Delta table")
            if re.search(r"__v[0-9]+$", name):
                raise ValueError(f"table name {name!r} ends like a table version's folder "
                                 "(NAME__vN): give the version as version: N instead")
        return tables


class ExpectationSuiteFile(Strict):
    """conf/*/expectations/NAME.yml: a list of `{expectation_name: {kwargs}}` items."""

    description: str = ""
    expectations: list[dict[str, dict | None]] = Field(min_length=1)

    @field_validator("expectations")
    @classmethod
    def _one_each(cls, items: list[dict]) -> list[dict]:
        for item in items:
            if len(item) != 1 or not next(iter(item)).startswith("expect_"):
                raise ValueError("each item is one `expect_...: {arguments}` mapping")
        return items


# --- training_sets.yml --------------------------------------------------------------------


class LabelSource(Strict):
    table: str = Field(pattern=TABLE_REF)
    keys: list[str] = Field(min_length=1)
    event_time: str
    label: str  # SQL expression giving the label
    filter: str | None = None
    passthrough: list[str] = []  # entity columns used as features as they are


class Lookup(Strict):
    table: str  # feature table name
    features: list[str] | None = Field(None, min_length=1)  # none given: all of the table's
    key_map: dict[str, str] = {}  # feature table key -> entity column, where names differ
    rename: dict[str, str] = {}
    lookback: Duration | None = None
    # An aggregation table's values: `temporal` (the default) computes them from its source's
    # events exactly as of each row's time; `snapshot` reads the table's rows as of the newest
    # period end at or before it, as the online store answers.
    accuracy: Literal["temporal", "snapshot"] | None = None

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """Unset, `accuracy` is left out: training-set definitions hash as before it existed."""
        data = handler(self)
        if self.accuracy is None and isinstance(data, dict):
            data.pop("accuracy", None)
        return data


class Split(Strict):
    """Time split: test from `test_start`, validation from `validation_start` (optional) up to
    it, train before. Random split: a seeded hash of the label keys, so rebuilds agree."""

    type: Literal["time", "random"] = "time"
    test_start: str | None = None
    validation_start: str | None = None
    test_fraction: float = Field(0.2, gt=0, lt=1)
    validation_fraction: float = Field(0.0, ge=0, lt=1)
    seed: int = 42

    @field_validator("test_start", "validation_start")
    @classmethod
    def _instant(cls, value: str | None) -> str | None:
        if value is not None:
            parse_instant(value)
        return value

    @model_validator(mode="after")
    def _cut_offs(self):
        if self.type == "time":
            if self.test_start is None:
                raise ValueError("a time split needs test_start (and optionally validation_start)")
            if self.validation_start is not None and \
                    parse_instant(self.validation_start) >= parse_instant(self.test_start):
                raise ValueError(f"validation_start {self.validation_start} must be before "
                                 f"test_start {self.test_start} (validation is the period just "
                                 "before the test period)")
        elif self.test_fraction + self.validation_fraction >= 1:
            raise ValueError(f"test_fraction + validation_fraction = "
                             f"{self.test_fraction + self.validation_fraction} leaves no train rows")
        return self


class Retention(Strict):
    """How many versions of a training set to keep: the newest `keep`, and every version a
    registered model version was trained on (applied after each build, and by prune)."""

    keep: int = Field(ge=1)


class TrainingSet(Strict):
    description: str = ""
    label: LabelSource
    features: list[Lookup] = Field(min_length=1)
    split: Split = Field(default_factory=lambda: Split(type="random"))  # none given: seeded 80/20
    # Not how rows are made: left out of the manifest's definition and its hash.
    retention: Retention | None = Field(None, exclude=True)


def _names(what: str, pattern: str = NAME):
    """A validator: every key of the mapping is a safe name (it becomes a path or a registry
    reference), refused at load rather than after the work."""
    def check(value: dict) -> dict:
        for name in value:
            if not re.match(pattern, str(name)):
                allowed = ("lower case letters, digits and _ (starting with a letter)"
                           if pattern == NAME else "letters, digits, _, . and - (no / or @)")
                raise ValueError(f"{what} name {name!r} must be {allowed}")
        return value
    return AfterValidator(check)


class TrainingSetsFile(Strict):
    training_sets: Annotated[dict[str, TrainingSet], _names("training set")] = {}
    # The default for every training set without a `retention` of its own (and for those
    # saved from a DataFrame); none: every version is kept until deleted.
    retention: Retention | None = None


# --- models.yml ---------------------------------------------------------------------------


Param = float | int | str | bool | None


class Estimator(Strict):
    """An MLlib estimator by `type`, or `type: sklearn` with the estimator's dotted `class`."""

    type: Literal[tuple(MLLIB_ESTIMATORS) + ("sklearn",)]  # type: ignore[valid-type]
    class_: str | None = Field(None, alias="class")
    task: Literal["classification", "regression"] | None = None  # sklearn only
    params: dict[str, Param] = {}

    @model_validator(mode="after")
    def _sklearn_needs_class(self):
        if self.type == "sklearn":
            if not self.class_:
                raise ValueError("type sklearn needs `class`: the estimator's dotted path, "
                                 "e.g. sklearn.ensemble.HistGradientBoostingClassifier")
            if self.task is None:
                self.task = "regression" if self.class_.endswith("Regressor") else "classification"
        elif self.class_ or self.task:
            raise ValueError(f"`class` and `task` are for type sklearn; {self.type} is an MLlib "
                             "estimator")
        else:
            self.task = MLLIB_ESTIMATORS[self.type][2]
        return self


class Preprocessing(Strict):
    categorical: list[str] = []  # besides string columns, which always are
    encoding: Literal["index", "onehot"] = "index"
    impute: Literal["median", "mean"] = "median"


class Tuning(Strict):
    max_evals: int = Field(16, ge=1)
    parallelism: int = Field(1, ge=1)
    seed: int = 42
    metric: str | None = None  # default: roc_auc for classifiers, rmse for regressors
    early_stop_rounds: int | None = Field(None, ge=1)  # stop after this many trials without a better loss
    timeout: Duration | None = None


class Threshold(Strict):
    """Absolute bounds on a test metric, and how much worse than the champion it may be."""

    min: float | None = None
    max: float | None = None
    vs_champion: float | None = Field(None, ge=0)


def _search_space(space: dict[str, dict[str, list]]) -> dict[str, dict[str, list]]:
    for param, dist in space.items():
        if not isinstance(dist, dict) or len(dist) != 1:
            raise ValueError(f"{param}: one `distribution: [arguments]` mapping, with distribution "
                             f"one of {', '.join(DISTRIBUTIONS)}")
        (kind, args), = dist.items()
        if kind not in DISTRIBUTIONS:
            raise ValueError(f"{param}: unknown distribution {kind!r} (use {', '.join(DISTRIBUTIONS)})")
        if kind == "choice":
            if not args:
                raise ValueError(f"{param}: choice needs at least one option")
            continue
        want = 3 if kind == "quniform" else 2
        if len(args) != want or not all(isinstance(a, (int, float)) for a in args):
            raise ValueError(f"{param}: {kind} takes {want} numbers "
                             f"({'low, high, step' if want == 3 else 'low, high'}), got {args}")
        if args[0] >= args[1]:
            raise ValueError(f"{param}: {kind} needs low < high, got {args[:2]}")
        if kind == "loguniform" and args[0] <= 0:
            raise ValueError(f"{param}: loguniform needs low > 0, got {args[0]}")
    return space


class DriftWindow(Strict):
    """The training set's rows whose event time is within `last` of its newest."""

    last: Duration


class Monitoring(Strict):
    """What `sparkml monitor` judges: metric floors (a model below one exits 3, so a schedule
    can chain a re-training) and drift ceilings per feature (flagged; exit 3 too when
    `retrain_on_drift`)."""

    floors: dict[str, float] = {}  # metric -> the lowest acceptable (highest for error metrics)
    drift_ceilings: dict[Literal["psi", "ks"], float] = {}
    # One feature's own ceilings, over drift_ceilings (a feature constant within a month, or
    # one known to move with the season, drifts by construction).
    feature_drift_ceilings: dict[str, dict[Literal["psi", "ks"], float]] = {}
    drift_exclude: list[str] = []  # features whose drift is recorded, never judged
    retrain_on_drift: bool = False
    min_rows: int = Field(100, ge=1)  # periods with fewer outcomes are reported, not judged
    # Periods with fewer scored rows have their drift reported, not judged (unset: min_rows).
    drift_min_rows: int | None = Field(None, ge=1)
    # What each period's inputs are compared with: `training_set` (every row of the version the
    # model was trained on), one split of it (`train`, `validation`, `test`: the newest rows of
    # a time split), `{last: 90d}` (its rows within 90 days of its newest), or
    # `previous_period` (the period before, over the training set's bins; the first period
    # against the training set).
    drift_reference: Literal["training_set", "train", "validation", "test", "previous_period"] | DriftWindow = \
        "training_set"


class ModelSpec(Strict):
    description: str = ""
    training_set: str
    # The registry name; several specs may compete for one. No `/` or `@`: they separate a
    # version or an alias in a model reference.
    registered_model: str | None = Field(None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    label: str = "label"
    estimator: Estimator
    preprocessing: Preprocessing = Preprocessing()
    search_space: Annotated[dict[str, dict[str, list]], AfterValidator(_search_space)] = {}
    tuning: Tuning = Tuning()
    thresholds: dict[str, Threshold] = {}
    monitoring: Monitoring = Monitoring()
    # When the champion was trained on feature definitions the candidate's rows no longer hold
    # and cannot be re-scored through its own (its table version is gone): hold the candidate
    # to its thresholds alone, or keep the champion.
    on_stale_champion: Literal["promote_if_thresholds_pass", "keep"] = "promote_if_thresholds_pass"

    @model_validator(mode="after")
    def _metrics_known(self):
        known = METRICS[self.estimator.task]
        for metric in [*self.thresholds, *self.monitoring.floors,
                       *([self.tuning.metric] if self.tuning.metric else [])]:
            if metric not in known:
                raise ValueError(f"metric {metric!r} is not computed for {self.estimator.task} "
                                 f"(computed: {', '.join(known)})")
        self.tuning.metric = self.tuning.metric or known[0]
        return self


class ModelsFile(Strict):
    models: Annotated[dict[str, ModelSpec], _names("model", r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")] = {}


# --- pipelines.yml ------------------------------------------------------------------------


class ScoreStep(Strict):
    model: str
    input: str = Field(pattern=TABLE_REF)
    output: str = Field(pattern=r"^predictions\.[a-z][a-z0-9_]*$")  # scoring writes predictions only
    run_date: str | None = None


class Step(Strict):
    """Exactly one of the fields is set: the kind of step and its argument."""

    load_sources: list[str] | None = None
    build_features: list[str] | None = None
    publish_features: list[str] | None = None
    build_entities: list[str] | None = None
    build_trainset: str | None = None
    train: str | None = None
    score: ScoreStep | None = None

    def kind(self) -> tuple[str, Any]:
        set_fields = [(k, v) for k, v in self if v is not None]
        if len(set_fields) != 1:
            raise ValueError("a step sets exactly one of " + ", ".join(type(self).model_fields))
        return set_fields[0]


class Pipeline(Strict):
    description: str = ""
    steps: list[Step] = Field(min_length=1)

    @field_validator("steps")
    @classmethod
    def _one_kind(cls, steps: list[Step]) -> list[Step]:
        for step in steps:
            step.kind()
        return steps


class PipelinesFile(Strict):
    pipelines: Annotated[dict[str, Pipeline], _names("pipeline", r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")] = {}


# --- schedules.yml ------------------------------------------------------------------------

# The jobs a schedule may run: the shims under jobs/ that spark-submit.sh starts.
SCHEDULED_JOBS = ("run_pipeline", "load_sources", "features_build", "trainset_build", "train",
                  "retrain", "score", "monitor")


def _cron(expression: str) -> str:
    from croniter import croniter

    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise ValueError(f"{expression!r} is not a cron expression (five fields: minute hour "
                         "day-of-month month day-of-week, e.g. '30 2 * * *')")
    return expression


class ScheduledJob(Strict):
    """One job: a shim under jobs/ with its arguments, run when the jobs it waits for ended
    as `when` says (success: exit 0; gate_failed: exit 3, e.g. retrain after monitor)."""

    job: Literal[SCHEDULED_JOBS]  # type: ignore[valid-type]
    args: list[str] = []
    after: list[str] = []
    when: Literal["success", "gate_failed"] = "success"
    archive: str | None = None  # a packed environment (sparkml env pack); default: the schedule's
    spark_conf: dict[str, str] = {}


class Schedule(Strict):
    description: str = ""
    cron: Annotated[str, AfterValidator(_cron)]
    timezone: str = "UTC"  # Oozie's coordinator; cron runs in the machine's own time zone
    master: str | None = None  # unset: platform.yml's spark.master
    deploy_mode: Literal["client", "cluster"] = "client"
    archive: str | None = None
    lock_stale_after: Duration = "6h"  # a lock older than this was left by a killed run
    env: dict[str, str] = {}  # variables every job gets (e.g. HADOOP_CONF_DIR)
    jobs: Annotated[dict[str, ScheduledJob], _names("job")] = Field(min_length=1)

    @model_validator(mode="after")
    def _dependencies(self):
        for name, job in self.jobs.items():
            unknown = [a for a in job.after if a not in self.jobs]
            if unknown:
                raise ValueError(f"job {name} waits for {', '.join(unknown)}, not a job of this "
                                 f"schedule (jobs: {', '.join(self.jobs)})")
            if job.when == "gate_failed" and not job.after:
                raise ValueError(f"job {name}: when gate_failed needs `after` (the job whose gate)")
        self.order()  # a cycle is refused here, at load
        return self

    def order(self) -> list[str]:
        """The jobs in an order that runs each after the jobs it waits for (declaration
        order otherwise)."""
        done: list[str] = []
        visiting: list[str] = []

        def visit(name: str) -> None:
            if name in done:
                return
            if name in visiting:
                cycle = visiting[visiting.index(name):] + [name]
                raise ValueError(f"jobs wait for each other in a cycle: {' -> '.join(cycle)}")
            visiting.append(name)
            for dep in self.jobs[name].after:
                visit(dep)
            visiting.pop()
            done.append(name)

        for name in self.jobs:
            visit(name)
        return done


class OozieSettings(Strict):
    """Values for the rendered job.properties: where the cluster and the workflow live."""

    name_node: str = "hdfs://namenode:8020"
    resource_manager: str = "resourcemanager:8032"
    application_dir: str = "/user/${user.name}/sparkml"  # on HDFS, one folder per schedule
    start: str = "2026-01-01T00:00Z"
    end: str = "2099-12-31T00:00Z"


class SchedulesFile(Strict):
    # Where spark-submit.sh is on the machines that run the jobs (default: this checkout).
    platform_root: str | None = None
    logs_dir: str = ".sparkml/logs"
    oozie: OozieSettings = OozieSettings()
    schedules: Annotated[dict[str, Schedule], _names("schedule", r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")] = {}


# --- loading ------------------------------------------------------------------------------

FILES: dict[str, type[Strict]] = {
    "platform.yml": PlatformSettings,
    "sources.yml": SourcesFile,
    "features.yml": FeaturesFile,
    "training_sets.yml": TrainingSetsFile,
    "models.yml": ModelsFile,
    "pipelines.yml": PipelinesFile,
    "schedules.yml": SchedulesFile,
}


def redact_uri(uri: str) -> str:
    """`scheme://user:password@host` -> `scheme://user:***@host`; a token in the query too."""
    uri = re.sub(r"^([a-z][a-z0-9+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", uri, flags=re.I)
    return re.sub(r"([?&](?:token|password|secret|key|sig)[^=&]*=)[^&]*", r"\1***", uri, flags=re.I)


def parse_instant(text: str):
    """A split cut-off, `YYYY-MM-DD` or `YYYY-MM-DD HH:MM[:SS]`, as a naive UTC datetime."""
    try:
        value = dt.datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a date or time like 2013-08-01 or "
                         "2013-08-01 00:00:00") from None
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value
