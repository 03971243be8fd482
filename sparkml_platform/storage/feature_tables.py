"""Feature-table versions as the lake holds them: `NAME` or `NAME@N` resolved to one version,
its definition (features.yml's for the declared version, the one its builds recorded for an
older one) and its Delta table. What every stage that reads features starts from."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ..config import Config, FeatureTable, split_version, versioned
from ..core.errors import ConfigError, JobFailed, NotFoundError
from ..core.provenance import import_function
from . import lake, places, window_aggregates


@dataclass(frozen=True)
class TableVersion:
    """One version of a feature table, resolved: its name as manifests and models record it
    (NAME for version 1, NAME@N), its definition (features.yml's for the declared version, the
    one its builds recorded for an older one) and its Delta table."""

    name: str
    base: str
    number: int
    definition: FeatureTable
    declared: bool
    # False: built before builds recorded their definition (read from its Delta metadata):
    # it can be read and published, not built again.
    buildable: bool = True

    @property
    def ref(self) -> str:
        return f"features.{self.name}"

    @functools.cached_property
    def transform(self):
        """The transformation function, imported once per resolved version (None: the table
        is aggregated by the platform, from its `aggregations`)."""
        if self.definition.transformation is None:
            return None
        return import_function(self.definition.transformation, f"{self.where}.transformation")

    @property
    def exact(self) -> str:
        """NAME@N, which `resolve` gives back as this version whatever features.yml declares
        (a plain NAME is the declared version)."""
        return f"{self.base}@{self.number}"

    @property
    def where(self) -> str:
        return f"features.yml: feature_tables.{self.base}" + ("" if self.declared else f" (version {self.number})")

    def path(self, config: Config):
        return places.table(config, self.ref)


def resolve(config: Config, name: str) -> TableVersion:
    """`NAME` (the version features.yml declares) or `NAME@N` -> that version. An older
    version's definition is the one its newest build recorded in its Delta log."""
    declared = config.feature_table(name.split("@")[0] if "@" in name else name)
    base, number = split_version(name)
    if number is None or number == declared.version:
        return TableVersion(versioned(base, declared.version), base, declared.version, declared, True)
    path = places.table(config, f"features.{versioned(base, number)}")
    if not lake.exists(path):
        held = lake_versions(config, base)
        raise NotFoundError(f"feature table {base} has no version {number}: features.yml declares "
                            f"version {declared.version}, and the lake holds "
                            f"{', '.join(versioned(base, n) for n in held) or 'no version of it'}")
    ref = f"features.{versioned(base, number)}"
    recorded = (lake.last_commit(path, "feature_table", ref) or {}).get("metadata") or {}
    if isinstance(recorded.get("definition"), dict):
        return TableVersion(versioned(base, number), base, number,
                            FeatureTable.model_validate(recorded["definition"]), False)
    return TableVersion(versioned(base, number), base, number, _described(path, ref, recorded), False,
                        buildable=False)


def _described(path, ref: str, build: dict) -> FeatureTable:
    """A table built before builds recorded their definition, as its Delta metadata describes
    it (the properties `table_properties` sets, its columns, the sources its build read):
    enough to read, look up and publish it, not to build it again."""
    description, props = lake.properties(path, ref)
    keys = [k for k in props.get("sparkml.keys", "").split(",") if k]
    event_time = props.get("sparkml.event_time", "")
    if not keys or not event_time:
        raise ConfigError(f"feature table {ref}: its builds recorded no definition and its Delta "
                          "properties name no keys or event time; it cannot be used by name")
    columns = {c["name"]: c["type"] for c in lake.schema(path, ref)}
    sources = list((build.get("sources") or {"raw.unknown": None}))
    return FeatureTable.model_validate({
        "description": description or ref, "owner": props.get("sparkml.owner", ""),
        "tags": [t for t in props.get("sparkml.tags", "").split(",") if t], "keys": keys,
        "event_time": event_time, "transformation": props.get("sparkml.transformation", ""),
        "lookback": props.get("sparkml.lookback") or None,
        "sources": {f"source_{i}": s for i, s in enumerate(sources)},
        "features": {c: {"type": t} for c, t in columns.items() if c not in (*keys, event_time)}})


def lake_versions(config: Config, base: str) -> list[int]:
    """The versions of feature table `base` that exist in the lake, oldest first."""
    zone = places.lake_root(config) / "features"
    found = []
    for folder in (zone.names() if zone.is_dir() else []):
        if folder == base:
            number = 1
        elif folder.startswith(base + "__v") and folder[len(base) + 3:].isdigit():
            number = int(folder[len(base) + 3:])
        else:
            continue
        if lake.exists(zone / folder):
            found.append(number)
    return sorted(found)


def source_events(spark, config: Config, declared: window_aggregates.Declared, version: int | None = None,
                  after: int | None = None, to: int | None = None):
    """An aggregation table's events (`window_aggregates.events_of`, those visible in (after,
    to] when given) read from its source at `version` (None: the newest). Returns (events,
    source reference, version read): what a build computes its rows from and a temporal
    lookup its values."""
    ref = config.source_ref(declared.spec.source)
    path = places.table(config, ref)
    if not lake.exists(path):
        raise JobFailed(f"{declared.where}.aggregations.source: table {ref} does not exist yet: "
                        "load or build it first")
    version = lake.version(spark, path, ref) if version is None else version
    return window_aggregates.events_of(lake.read(spark, path, version, ref), declared, after, to), ref, version
