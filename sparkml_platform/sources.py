"""Raw tables into the lake (`raw.NAME`) and entity tables derived from them (`entities.NAME`)."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

from . import lake
from .config import Config, EntityTable, Source
from .errors import ConfigError, JobFailed, NotFoundError, first_line, sql_from_config
from .provenance import import_function


def resolve_source_path(source: Source, name: str, config: Config) -> str:
    """`package:PKG/rel/path` -> the file inside the installed package, a relative path -> under
    the project root, a URI (hdfs://, s3a://) as it is; zips are extracted."""
    where = f"sources.yml: sources.{name}.path"
    if "://" in source.path:
        try:
            location = config.storage.location(source.path)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if not location.exists():
            raise ConfigError(f"{where}: {location} does not exist")
        return str(location)
    root, staging = config.root, config.staging_dir
    if source.path.startswith("package:"):
        package, _, rel = source.path[len("package:"):].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"{where}: package {package!r} is not installed")
        path = Path(list(spec.submodule_search_locations)[0]) / rel
    else:
        path = Path(source.path).expanduser()
        path = path if path.is_absolute() else root / path
    if not path.exists():
        raise ConfigError(f"{where}: {path} does not exist")
    if path.suffix == ".zip":
        # Spark cannot read inside a zip: extract once into the staging area.
        target = staging / name
        marker = target / ".extracted"
        if not marker.exists() or marker.stat().st_mtime < path.stat().st_mtime:
            target.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(path) as archive:
                archive.extractall(target)
            marker.touch()
        return str(target)
    return str(path)


def load_source(spark, config: Config, name: str) -> dict:
    sources = config.sources.sources
    if name not in sources:
        raise NotFoundError(f"no source named {name!r} in conf/*/sources.yml "
                            f"(known: {', '.join(sorted(sources)) or 'none'})")
    source = sources[name]
    path = resolve_source_path(source, name, config)
    options = {"header": "true", "inferSchema": "true", "nullValue": "NA"} if source.format == "csv" else {}
    options.update(source.options)
    df = spark.read.format(source.format).options(**options).load(path)
    if source.filter:
        with sql_from_config(f"sources.yml: sources.{name}.filter"):
            df = df.where(source.filter)
    target = lake.table_path(config.lake_root, f"raw.{name}")
    version = lake.write(df, target, metadata={
        "kind": "raw", "source": source.path, "filter": source.filter, "code": config.project.code_version()})
    return {"table": f"raw.{name}", "version": version, "rows": lake.read(spark, target).count()}


def build_entity_table(spark, config: Config, name: str) -> dict:
    tables = config.sources.entity_tables
    if name not in tables:
        raise NotFoundError(f"no entity table named {name!r} in conf/*/sources.yml "
                            f"(known: {', '.join(sorted(tables)) or 'none'})")
    spec: EntityTable = tables[name]
    transform = import_function(spec.transform, f"sources.yml: entity_tables.{name}.transform")
    src_path = lake.table_path(config.lake_root, spec.source)
    src_version = lake.version(spark, src_path) if lake.exists(src_path) else None
    source = lake.read(spark, src_path, src_version, spec.source)
    try:
        df = transform(source)
    except Exception as exc:  # noqa: BLE001 - the user's code: say whose it is
        raise JobFailed(f"entity table {name}: its transform {spec.transform} raised "
                        f"{type(exc).__name__}: {first_line(exc)}") from exc
    if spec.filter:
        with sql_from_config(f"sources.yml: entity_tables.{name}.filter"):
            df = df.where(spec.filter)
    target = lake.table_path(config.lake_root, f"entities.{name}")
    version = lake.write(df, target, metadata={
        "kind": "entities", "sources": {spec.source: src_version}, "code": config.project.code_version()})
    return {"table": f"entities.{name}", "version": version, "rows": lake.read(spark, target).count()}
