"""Where a project's data lives, resolved from its configuration: the storage layer set up
from the Hadoop settings, the lake root, the environments folder and their neighbours.
The configuration names places as text; this is where they become Locations."""

from __future__ import annotations

import weakref
from pathlib import Path

from ..config import Config
from ..core.errors import ConfigError
from . import lake
from .files import Location, Storage, refuse_committed_secrets

_STORAGE: "weakref.WeakKeyDictionary[Config, Storage]" = weakref.WeakKeyDictionary()


def storage(config: Config) -> Storage:
    """One Storage per loaded configuration: its HDFS and S3 clients are made once."""
    if config not in _STORAGE:
        _STORAGE[config] = Storage(config.platform.spark.conf)
    return _STORAGE[config]


def lake_root(config: Config) -> Location:
    """The lake's root: a local path, file://, hdfs:// or s3a:// location."""
    return storage(config).location(config.platform.lake_root, base=config.root)


def table(config: Config, ref: str, zones: tuple[str, ...] = lake.ZONES) -> Location:
    """A lake table's place (`ZONE.NAME`, `features.NAME@N`): the one way a name becomes a path,
    checked by `lake.table_path` (its grammar, the zones this use may name, no way out of the lake)."""
    return lake.table_path(lake_root(config), ref, zones)


def tiles(config: Config, ref: str) -> Location:
    """Where an aggregation table keeps its partial aggregates per period (a Delta table of
    its own, window_aggregates.tiles_of): `_tiles/FOLDER` under the lake root, beside the
    zones, so that no listing of a zone takes it for a table."""
    return lake_root(config) / "_tiles" / table(config, ref, ("features",)).name


def environments_dir(config: Config) -> Location:
    return storage(config).location(config.platform.environments_dir, base=config.root)


def validation_dir(config: Config) -> Location:
    """Validation results kept as artifacts, per table: beside the lake root."""
    return lake_root(config).parent / "validation"


def staging_dir(config: Config) -> Path:
    """Where sources packed in zips are extracted for Spark to read: beside a local lake,
    else in the project (on the machine that runs the command)."""
    local = lake_root(config).local
    return local.parent / "staging" if local is not None else config.root / ".sparkml" / "staging"


def check(config: Config) -> None:
    """The lake root and environments folder parse as places the platform can reach, and no
    S3 secret sits in a committed platform.yml (any but conf/local/)."""
    for file, data in config.layers.get("platform.yml", []):
        # conf/local/ is the git-ignored overlay `sparkml init` sets up for personal settings.
        if file.is_file() and file.parent.name != "local":
            refuse_committed_secrets(((data.get("spark") or {}).get("conf") or {}), config.shown(file))
    for key, place in (("lake_root", lake_root), ("environments_dir", environments_dir)):
        try:
            place(config)
        except ConfigError as exc:
            raise ConfigError(f"platform.yml: {key}: {exc}") from None
