"""Raw tables into the lake (`raw.NAME`) and entity tables derived from them (`entities.NAME`)."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

from ..config import Config, EntityTable, Source
from ..core.errors import ConfigError, JobFailed, NotFoundError, first_line, raised_where, sql_from_config
from ..core.provenance import definition_hash, import_function
from ..runtime.project import function_fingerprint, project_of
from ..storage import lake, places


def resolve_source_path(source: Source, name: str, config: Config) -> str:
    """`package:PKG/rel/path` -> the file inside the installed package, a relative path -> under
    the project root, a URI (hdfs://, s3a://) as it is; zips are extracted."""
    where = config.where(f"sources.yml: sources.{name}.path")
    if "://" in source.path:
        try:
            location = places.storage(config).location(source.path)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if not location.exists():
            raise ConfigError(f"{where}: {location} does not exist")
        return str(location)
    path = _local_path(source, name, config)
    if path.suffix == ".zip":
        # Spark cannot read inside a zip: extract once into the staging area.
        target = places.staging_dir(config) / name
        marker = target / ".extracted"
        if not marker.exists() or marker.stat().st_mtime < path.stat().st_mtime:
            target.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(path) as archive:
                archive.extractall(target)
            marker.touch()
        return str(target)
    return str(path)


def check_source(config: Config, name: str) -> None:
    """The source's files exist where its path says (on a store: the store answers too)."""
    source = _source(config, name)
    if "://" in source.path:
        resolve_source_path(source, name, config)
    else:
        _local_path(source, name, config)


def _local_path(source: Source, name: str, config: Config) -> Path:
    """A source on the local disk: the file or folder its `path` names."""
    where = config.where(f"sources.yml: sources.{name}.path")
    if source.path.startswith("package:"):
        package, _, rel = source.path[len("package:"):].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"{where}: package {package!r} is not installed")
        path = Path(list(spec.submodule_search_locations)[0]) / rel
    else:
        path = Path(source.path).expanduser()
        path = path if path.is_absolute() else config.root / path
    if not path.exists():
        raise ConfigError(f"{where}: {path} does not exist")
    return path


def source_fingerprint(config: Config, name: str) -> str | None:
    """A hash of the source's definition and of its files' names, sizes and modification
    times: equal while neither changed. None for a source on a remote store (hdfs://, s3a://),
    which is loaded every time."""
    source = _source(config, name)
    if "://" in source.path:
        return None
    path = _local_path(source, name, config)
    found = sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file())
    files = [(str(p.relative_to(path)) if p != path else p.name, p.stat().st_size, p.stat().st_mtime_ns)
             for p in found]
    return definition_hash({"source": source.model_dump(mode="json"), "files": files})


def up_to_date_source(config: Config, name: str) -> dict | None:
    """raw.NAME as it is, when its newest load recorded the fingerprint the source has now
    (the same files and definition: loading again would write the same rows); else None.
    From the table's log and the files' metadata alone: no Spark session."""
    fingerprint = source_fingerprint(config, name)
    target = places.table(config, f"raw.{name}")
    if fingerprint is None or not lake.exists(target):
        return None
    version = lake.version(None, target)
    last = lake.last_commit(target, "raw")
    if last is None or last["version"] != version or last["metadata"].get("fingerprint") != fingerprint:
        return None
    return {"table": f"raw.{name}", "version": version, "mode": "up to date",
            "rows": lake.row_count(target, version)}


def _source(config: Config, name: str) -> Source:
    sources = config.sources.sources
    if name not in sources:
        raise NotFoundError(f"no source named {name!r} in conf/*/sources.yml "
                            f"(known: {', '.join(sorted(sources)) or 'none'})")
    return sources[name]


def load_source(spark, config: Config, name: str) -> dict:
    source = _source(config, name)
    fingerprint = source_fingerprint(config, name)  # of the files about to be read
    path = resolve_source_path(source, name, config)
    options = {"header": "true", "inferSchema": "true", "nullValue": "NA"} if source.format == "csv" else {}
    options.update(source.options)
    df = spark.read.format(source.format).options(**options).load(path)
    if source.filter:
        with sql_from_config(config.where(f"sources.yml: sources.{name}.filter")):
            df = df.where(source.filter)
    target = places.table(config, f"raw.{name}")
    version = lake.write(df, target, metadata={
        "kind": "raw", "source": source.path, "filter": source.filter, "fingerprint": fingerprint,
        "code": project_of(config).code_version()})
    return {"table": f"raw.{name}", "version": version, "rows": _rows(spark, target, version)}


def _entity_definition(config: Config, name: str) -> tuple[EntityTable, object, str]:
    """The entity table's definition, its transform, and a hash of both (YAML and code)."""
    tables = config.sources.entity_tables
    if name not in tables:
        raise NotFoundError(f"no entity table named {name!r} in conf/*/sources.yml "
                            f"(known: {', '.join(sorted(tables)) or 'none'})")
    spec: EntityTable = tables[name]
    transform = import_function(spec.transform, config.where(f"sources.yml: entity_tables.{name}.transform"))
    return spec, transform, definition_hash({"definition": definition_hash(spec),
                                             "code": function_fingerprint(transform)})


def up_to_date_entities(config: Config, name: str) -> dict | None:
    """entities.NAME as it is, when its newest build read the source table at the version it
    has now, with the same definition and transform code; else None. No Spark session."""
    spec, _, hashed = _entity_definition(config, name)
    target = places.table(config, f"entities.{name}")
    src_path = places.table(config, spec.source)
    if not lake.exists(target) or not lake.exists(src_path):
        return None
    version = lake.version(None, target)
    last = lake.last_commit(target, "entities")
    if last is None or last["version"] != version or last["metadata"].get("definition_hash") != hashed \
            or last["metadata"].get("sources") != {spec.source: lake.version(None, src_path)}:
        return None
    return {"table": f"entities.{name}", "version": version, "mode": "up to date",
            "rows": lake.row_count(target, version)}


def build_entity_table(spark, config: Config, name: str) -> dict:
    spec, transform, hashed = _entity_definition(config, name)
    src_path = places.table(config, spec.source)
    src_version = lake.version(spark, src_path) if lake.exists(src_path) else None
    source = lake.read(spark, src_path, src_version, spec.source)
    try:
        df = transform(source)
    except Exception as exc:  # noqa: BLE001 - the user's code: say whose it is
        raise JobFailed(f"entity table {name}: its transform {spec.transform} raised "
                        f"{type(exc).__name__}: {first_line(exc)}{raised_where(exc, transform)}") from exc
    if spec.filter:
        with sql_from_config(config.where(f"sources.yml: entity_tables.{name}.filter")):
            df = df.where(spec.filter)
    target = places.table(config, f"entities.{name}")
    version = lake.write(df, target, metadata={
        "kind": "entities", "sources": {spec.source: src_version}, "definition_hash": hashed,
        "code": project_of(config).code_version()})
    return {"table": f"entities.{name}", "version": version, "rows": _rows(spark, target, version)}


def _rows(spark, target, version: int) -> int:
    """The rows just written: from the log's per-file record counts, else a count job."""
    counted = lake.row_count(target, version)
    return counted if counted is not None else lake.read(spark, target, version).count()
