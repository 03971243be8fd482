"""Typed configuration: YAML under conf/base/, overlaid by conf/ENV/, then SPARKML_* variables.

Every model forbids unknown keys, so a typo is an error naming the file and the key path
instead of a setting silently ignored.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from . import envvars
from .errors import ConfigError
from .estimators import MLLIB_ESTIMATORS
from .evaluation import METRICS
from .search_space import DISTRIBUTIONS

NAME = r"^[a-z][a-z0-9_]*$"
TABLE_REF = r"^((raw|entities|trainsets|predictions)\.[a-z][a-z0-9_]*|features\.[a-z][a-z0-9_]*(@[1-9][0-9]*)?)$"
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
DURATION = re.compile(r"^(\d+)\s*(s|m|h|d)$")


def _duration(value: str) -> str:
    parse_duration(value)
    return value


Duration = Annotated[str, AfterValidator(_duration)]  # like 90m, 3h or 7d


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    (`sparkml_platform.notebook.register_views`)."""

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
    sources: dict[str, str] = Field(min_length=1)  # argument name -> table reference
    transformation: str  # dotted path of a pure DataFrame -> DataFrame function
    features: dict[str, Feature] = Field(min_length=1)
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

    @field_validator("sources")
    @classmethod
    def _refs(cls, value: dict[str, str]) -> dict[str, str]:
        for ref in value.values():
            if not re.match(TABLE_REF, ref):
                raise ValueError(f"{ref!r} is not a table reference like raw.NAME or features.NAME")
        return value

    @model_validator(mode="after")
    def _partition_columns(self):
        declared = {*self.keys, self.event_time, *self.features}
        unknown = [c for c in self.partition_by if c not in declared]
        if unknown:
            raise ValueError(f"partition_by: {', '.join(unknown)} is not a key or feature of "
                             "this table")
        return self


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
    import datetime as dt

    try:
        value = dt.datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a date or time like 2013-08-01 or "
                         "2013-08-01 00:00:00") from None
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def parse_duration(text: str) -> int:
    """'3h' -> 10800 seconds. Units: s, m, h, d."""
    match = DURATION.match(str(text).strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 90m, 3h or 7d")
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return int(match.group(1)) * seconds


class Config:
    """The merged, validated configuration, with paths resolved against the project root."""

    def __init__(self, conf_dir: Path, env: str | None, parts: dict[str, Strict]):
        self.conf_dir = conf_dir
        self.env = env
        self.root = conf_dir.resolve().parent
        self.platform: PlatformSettings = parts["platform.yml"]  # type: ignore[assignment]
        self.sources: SourcesFile = parts["sources.yml"]  # type: ignore[assignment]
        self.features: FeaturesFile = parts["features.yml"]  # type: ignore[assignment]
        self.training_sets: TrainingSetsFile = parts["training_sets.yml"]  # type: ignore[assignment]
        self.models: ModelsFile = parts["models.yml"]  # type: ignore[assignment]
        self.pipelines: PipelinesFile = parts["pipelines.yml"]  # type: ignore[assignment]
        self.schedules: SchedulesFile = parts["schedules.yml"]  # type: ignore[assignment]
        self.expectations: dict[str, ExpectationSuiteFile] = parts.get("expectations", {})  # type: ignore[assignment]
        self.layers: dict[str, list[tuple[Path, dict]]] = {}  # per file: (path, its YAML), base first

    def where(self, text: str) -> str:
        """`FILE: dotted.key` (how messages name a setting) with FILE the one that sets the key:
        conf/ENV/FILE when the overlay does, else conf/base/FILE."""
        file, sep, key = text.partition(": ")
        layers = self.layers.get(file)
        if not sep or not layers:
            return text
        file = _file_defining(key.split(" ")[0].split("."), layers)
        try:  # as the user sees it from the project root
            file = file.relative_to(self.root)
        except ValueError:
            pass
        return f"{file}: {key}"

    @functools.cached_property
    def project(self):
        """The project's own code (its packages), see project.py."""
        from .project import Project

        settings = self.platform.project
        return Project(self.root, settings.name, settings.packages)

    def path(self, value: str) -> Path:
        """A configured path; relative ones are relative to the project root."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.root / p

    def relative(self, path) -> str:
        """`path` (a Path or a storage Location) as recorded in metadata: relative to the
        project root when inside it, so a project copied or moved elsewhere still finds what
        it recorded; a location on HDFS or S3 as its URI."""
        local = getattr(path, "local", path) if not isinstance(path, Path) else path
        if local is None:
            return str(path)
        try:
            return str(Path(local).relative_to(self.root))
        except ValueError:
            return str(local)

    @functools.cached_property
    def storage(self):
        """The storage layer (local disk, HDFS, S3), set up from the Hadoop settings."""
        from .storage import Storage

        return Storage(self.platform.spark.conf)

    @property
    def local_read_max_bytes(self) -> int:
        return self.platform.local_read_max_mb * 1024 * 1024

    @property
    def lake_root(self):
        """The lake's root: a storage Location (local path, file://, hdfs:// or s3a://)."""
        return self.storage.location(self.platform.lake_root, base=self.root)

    @property
    def environments_dir(self):
        return self.storage.location(self.platform.environments_dir, base=self.root)

    @property
    def validation_dir(self):
        """Validation results kept as artifacts, per table: beside the lake root."""
        return self.lake_root.parent / "validation"

    @property
    def storage_schemes(self) -> set[str]:
        """The storage schemes of the places Spark reads and writes (they decide its jars)."""
        places = [self.lake_root.uri, self.environments_dir.uri]
        places += [s.path for s in self.sources.sources.values()]
        return {p.split("://", 1)[0] for p in places if "://" in p}

    @property
    def staging_dir(self) -> Path:
        """Where sources packed in zips are extracted for Spark to read: beside a local lake,
        else in the project (on the machine that runs the command)."""
        local = self.lake_root.local
        return local.parent / "staging" if local is not None else self.root / ".sparkml" / "staging"

    @property
    def jars_dir(self) -> Path:
        from .delta_jars import default_dir

        configured = self.platform.spark.jars_dir
        return self.path(configured) if configured else default_dir()

    @property
    def tracking_uri(self) -> str:
        uri = self.platform.mlflow.tracking_uri
        prefix = "sqlite:///"
        if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
            return prefix + str(self.path(uri[len(prefix):]))
        return uri

    @property
    def shown_tracking_uri(self) -> str:
        """The tracking URI for messages and logs: a password in it is masked."""
        return redact_uri(self.tracking_uri)

    @property
    def artifact_root(self) -> str:
        root = self.platform.mlflow.artifact_root
        if root.startswith("s3a://"):  # Hadoop's name for S3; MLflow's is s3://
            return "s3://" + root[len("s3a://"):]
        return root if "://" in root else self.path(root).as_uri()

    def feature_table(self, name: str) -> FeatureTable:
        """The declared definition of feature table `name` (NAME, or NAME@N with N its declared
        version; an older version's definition is in the lake: features.definition_of)."""
        match = FEATURE_REF.match(name)
        if not match:  # not a name at all: no table of that name, and the ones there are
            return _lookup(self.features.feature_tables, name, "feature table", "features.yml")
        base, number = split_version(name)
        table = _lookup(self.features.feature_tables, base, "feature table", "features.yml")
        if number is not None and number != table.version:
            raise ConfigError(f"feature table {name}: features.yml declares version {table.version} "
                              f"of {base}, not {number}")
        return table

    def feature_ref(self, name: str) -> str:
        """`NAME` (the declared version) or `NAME@N` -> the version's canonical name."""
        base, number = split_version(name)
        if number is None:
            number = self.feature_table(base).version
        return versioned(base, number)

    def source_ref(self, ref: str) -> str:
        """A lake table reference as a transformation reads it: `features.NAME` is the version
        features.yml declares now."""
        if ref.startswith("features."):
            return "features." + self.feature_ref(ref)
        return ref

    def expectation_suite(self, table: str) -> ExpectationSuiteFile | None:
        return self.suite(self.feature_table(table).expectations,
                          self.where(f"features.yml: feature_tables.{split_version(table)[0]}.expectations"))

    def suite(self, suite: str | None, where: str) -> ExpectationSuiteFile | None:
        """Expectation suite `suite` (None: none), named by `where` when it does not exist."""
        if suite is None:
            return None
        if suite not in self.expectations:
            raise ConfigError(f"{where}: no suite {suite!r} in conf/*/expectations/ (known: "
                              f"{', '.join(sorted(self.expectations)) or 'none'})")
        return self.expectations[suite]

    def training_set(self, name: str) -> TrainingSet:
        return _lookup(self.training_sets.training_sets, name, "training set", "training_sets.yml")

    def retention(self, name: str) -> tuple[Retention | None, str]:
        """Training set `name`'s retention and the key it comes from (its own, else the file's)."""
        own = self.training_sets.training_sets.get(name)
        if own is not None and own.retention is not None:
            return own.retention, self.where(f"training_sets.yml: training_sets.{name}.retention")
        return self.training_sets.retention, self.where("training_sets.yml: retention")

    def model(self, name: str) -> ModelSpec:
        return _lookup(self.models.models, name, "model", "models.yml")

    def pipeline(self, name: str) -> Pipeline:
        return _lookup(self.pipelines.pipelines, name, "pipeline", "pipelines.yml")


def _lookup(table: dict, name: str, what: str, file: str):
    from .errors import NotFoundError

    if name not in table:
        known = ", ".join(sorted(table)) or "none"
        raise NotFoundError(f"no {what} named {name!r} in conf/*/{file} (known: {known})")
    return table[name]


def load_config(conf_dir: str | os.PathLike | None = None, env: str | None = None) -> Config:
    conf = Path(conf_dir or envvars.SPARKML_CONF.get() or "conf")
    env = env or envvars.SPARKML_ENV.get()
    base = conf / "base"
    if not base.is_dir():
        raise ConfigError(
            f"configuration directory {base} not found: run from the project root, "
            "or give conf (a directory holding base/platform.yml)"
        )
    overlay = conf / env if env else None
    if overlay is not None and not overlay.is_dir():
        raise ConfigError(f"env {env!r}: overlay directory {overlay} not found")

    for layer in (base, overlay):
        if layer is not None:
            _refuse_unknown_files(layer)
    parts: dict[str, Strict] = {}
    layers_of = {}
    for filename, model in FILES.items():
        layers = [(base / filename, _read_yaml(base / filename))]
        if overlay is not None:
            layers.append((overlay / filename, _read_yaml(overlay / filename)))
        layers_of[filename] = [(path.resolve(), data) for path, data in layers]  # whatever the cwd later
        merged: dict = {}
        for _, data in layers:
            merged = _deep_merge(merged, data)
        if filename == "platform.yml":
            merged = _apply_env_overrides(merged)
        try:
            parts[filename] = model.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, layers)) from None
    parts["expectations"] = _load_suites(base, overlay)  # type: ignore[assignment]
    config = Config(conf, env, parts)
    config.layers = layers_of
    _refuse_imports_not_allowed(config)
    _check_storage(config, [base / "platform.yml"] + ([overlay / "platform.yml"] if overlay else []))
    config.project.activate()  # the project's packages import without PYTHONPATH
    return config


def _refuse_imports_not_allowed(config: Config) -> None:
    """Every module the configuration would import, checked against project.allowed_imports
    before anything is imported."""
    allowed = config.platform.project.allowed_imports
    if allowed is None:
        return
    named = [(config.where(f"sources.yml: entity_tables.{n}.transform"), t.transform)
             for n, t in config.sources.entity_tables.items()]
    named += [(config.where(f"features.yml: feature_tables.{n}.transformation"), t.transformation)
              for n, t in config.features.feature_tables.items()]
    named += [(config.where(f"models.yml: models.{n}.estimator.class"), m.estimator.class_)
              for n, m in config.models.models.items() if m.estimator.class_]
    for where, dotted in named:
        if not any(dotted == prefix or dotted.startswith(prefix + ".") for prefix in allowed):
            raise ConfigError(f"{where}: {dotted!r} is not under platform.yml project."
                              f"allowed_imports ({', '.join(allowed)}): a configuration's imports "
                              "run that module's code, so only the allowed ones are imported")


def _check_storage(config: Config, files: list[Path]) -> None:
    """The lake root and environments folder parse as places the platform can reach, and no
    S3 secret sits in a committed platform.yml (any but conf/local/)."""
    from .storage import refuse_committed_secrets

    for file in files:
        # conf/local/ is the git-ignored overlay `sparkml init` sets up for personal settings.
        if file.is_file() and file.parent.name != "local":
            refuse_committed_secrets(((_read_yaml(file).get("spark") or {}).get("conf") or {}), str(file))
    for key in ("lake_root", "environments_dir"):
        try:
            getattr(config, key)
        except ConfigError as exc:
            raise ConfigError(f"platform.yml: {key}: {exc}") from None


def _load_suites(base: Path, overlay: Path | None) -> dict[str, ExpectationSuiteFile]:
    """Expectation suites by name; a file in the overlay replaces the base file of that name."""
    files: dict[str, Path] = {}
    for layer in (base, overlay):
        if layer is not None and (layer / "expectations").is_dir():
            files.update({p.stem: p for p in sorted((layer / "expectations").glob("*.yml"))})
    suites = {}
    for name, path in files.items():
        data = _read_yaml(path)
        try:
            suites[name] = ExpectationSuiteFile.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, [(path, data)])) from None
    return suites


def _read_yaml(path: Path) -> dict:
    from .yaml_reader import read

    return read(path)


def _refuse_unknown_files(layer: Path) -> None:
    """A misspelt file (`model.yml`, `platform.yaml`) would be ignored silently: refused."""
    known = set(FILES)
    for path in sorted(layer.iterdir()):
        if path.is_file() and path.suffix in (".yml", ".yaml") and path.name not in known:
            import difflib

            guess = difflib.get_close_matches(path.stem + ".yml", known, n=1, cutoff=0.8)
            hint = (f"did you mean {guess[0]}?" if guess else
                    f"the files are {', '.join(sorted(known))} and expectations/NAME.yml")
            raise ConfigError(f"{path}: not a configuration file the platform reads: {hint}")


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _apply_env_overrides(data: dict) -> dict:
    data = _deep_merge({}, data)
    for var, path in envvars.PLATFORM_OVERRIDES:
        value = var.get() if var.name in os.environ else None
        if value:
            node = data
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value
    return data


def _describe(exc: ValidationError, layers: list[tuple[Path, dict]]) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc) or "(top level)"
        where = _file_defining(loc, layers)
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = err["msg"]
            if "input" in err and err["type"] != "value_error":
                msg += f" (got {err['input']!r})"
        lines.append(f"{where}: {key}: {msg}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _file_defining(loc: list[str], layers: list[tuple[Path, dict]]) -> Path:
    """The last layer (overlay before base) whose YAML holds the longest prefix of `loc`."""
    best, best_depth = layers[0][0], -1
    for path, data in layers:
        node, depth = data, 0
        for part in loc:
            if isinstance(node, dict) and part in node:
                node, depth = node[part], depth + 1
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node, depth = node[int(part)], depth + 1
            else:
                break
        if depth >= best_depth and depth > 0:
            best, best_depth = path, depth
    return best
