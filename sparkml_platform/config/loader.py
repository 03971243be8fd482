"""The configuration as loaded: conf/base/ overlaid by conf/ENV/, then SPARKML_* variables,
validated by the schema (schema.py). Plain data: paths, lookups by name and where a key is set.
What it names is resolved by the layers above (storage places, the project's code, the jars).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from pydantic import ValidationError

from ..core import envvars
from ..core.errors import ConfigError, NotFoundError
from .schema import (FEATURE_REF, FILES, ExpectationSuiteFile, FeaturesFile, FeatureTable, ModelsFile,
                     ModelSpec, Pipeline, PipelinesFile, PlatformSettings, Retention, SchedulesFile,
                     SourcesFile, Strict, TrainingSet, TrainingSetsFile, redact_uri, split_version, versioned)
from .yaml_reader import read


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
        return f"{self.shown(_file_defining(key.split(' ')[0].split('.'), layers))}: {key}"

    def shown(self, file: Path) -> Path:
        """A configuration file as the user sees it from the project root."""
        try:
            return file.relative_to(self.root)
        except ValueError:
            return file

    @property
    def project_name(self) -> str:
        """platform.yml `project.name`, else the project root's folder name."""
        return self.platform.project.name or self.root.name

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

    @property
    def local_read_max_bytes(self) -> int:
        return self.platform.local_read_max_mb * 1024 * 1024

    @property
    def storage_schemes(self) -> set[str]:
        """The storage schemes of the places Spark reads and writes (they decide its jars)."""
        places = [self.platform.lake_root, self.platform.environments_dir]
        places += [s.path for s in self.sources.sources.values()]
        return {p.split("://", 1)[0] for p in places if "://" in p}

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
              for n, t in config.features.feature_tables.items() if t.transformation]
    named += [(config.where(f"models.yml: models.{n}.estimator.class"), m.estimator.class_)
              for n, m in config.models.models.items() if m.estimator.class_]
    for where, dotted in named:
        if not any(dotted == prefix or dotted.startswith(prefix + ".") for prefix in allowed):
            raise ConfigError(f"{where}: {dotted!r} is not under platform.yml project."
                              f"allowed_imports ({', '.join(allowed)}): a configuration's imports "
                              "run that module's code, so only the allowed ones are imported")


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
    return read(path)


def _refuse_unknown_files(layer: Path) -> None:
    """A misspelt file (`model.yml`, `platform.yaml`) would be ignored silently: refused."""
    known = set(FILES)
    for path in sorted(layer.iterdir()):
        if path.is_file() and path.suffix in (".yml", ".yaml") and path.name not in known:
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
