"""Training-set versions as the lake holds them: what any stage reads of them.

Version N of training set NAME is the Delta table `LAKE/trainsets/NAME/vNNNN` and its
manifest `LAKE/trainsets/NAME/vNNNN.json`, written last: a version without a manifest was
never finished and does not exist. A deleted version leaves `vNNNN.deleted.json`, written
first: its number is never given to another version. Building, pruning and deleting them is
the trainsets stage's (trainsets/build.py).
"""

from __future__ import annotations

import json
import re

from ..config import Config, split_version
from ..core import refs
from ..core.errors import ConfigError, JobFailed, NotFoundError
from . import feature_definitions, lake, places, window_aggregates
from .files import Location
from .feature_tables import source_events
from .pit import FeatureLookup

LABEL = "label"
SPLIT = "split"
MANIFEST_FILE = re.compile(r"^v(\d{4,})\.json$")
DELETED_FILE = re.compile(r"^v(\d{4,})\.deleted\.json$")


def feature_commits(config: Config):
    """Feature table name -> its commit list (`lake.commits`): what feature_definitions reads."""
    return lambda table: lake.commits(places.table(config, f"features.{table}"), f"features.{table}")


def read_feature_tables(spark, config: Config, lookups: list[FeatureLookup],
                        pinned: dict[str, int] | None = None) -> list[tuple[FeatureLookup, object]]:
    """Each lookup with its feature table read at a pinned (or the current) Delta version."""
    out = []
    for lookup in lookups:
        ref = f"features.{lookup.table}"
        path = places.table(config, ref)
        # A plain NAME on a command line is the declared version: another one is NAME@N.
        base, number = split_version(lookup.table)
        declared = config.features.feature_tables.get(base)
        command = "sparkml features build " + (lookup.table if declared is None or declared.version == (number or 1)
                                               else f"{base}@{number or 1}")
        if not lake.exists(path):
            raise JobFailed(f"feature table {lookup.table} has not been built (run: {command})")
        version = (pinned or {}).get(ref)
        version = lake.version(spark, path) if version is None else version
        df = lake.read(spark, path, version, ref)
        missing = [c for c in [*lookup.key_map, lookup.event_time, *lookup.columns] if c not in df.columns]
        if missing:
            raise ConfigError(f"{ref} in the lake has no column {', '.join(missing)} (version "
                              f"{version}): rebuild it with {command}")
        built = feature_definitions.definition_at(lake.commits(path, ref), version)
        # Built by the platform, whose build refuses two rows for one key and event time.
        read = FeatureLookup(**{**lookup.to_dict(), "version": version, "unique_times": True,
                                "definition": built.definition if built else None})
        if lookup.aggregation is not None:
            df = _events_built_from(spark, config, read, built)
        out.append((read, df))
    return out


def _events_built_from(spark, config: Config, lookup: FeatureLookup, built):
    """An aggregation table's source events at the version its Delta version `lookup.version`
    was built from (so a temporal lookup agrees with the table version it records, and a
    rebuild pinned to that version reads the same events)."""
    declared = window_aggregates.declared_of(lookup.aggregation)
    ref = config.source_ref(declared.spec.source)
    version = (built.sources or {}).get(ref) if built else None
    if version is None:
        raise JobFailed(f"feature table {lookup.table} version {lookup.version} does not record the "
                        f"version of {ref} it was built from: rebuild it with sparkml features build")
    return source_events(spark, config, declared, version)[0]


def names(config: Config) -> list[str]:
    """Training sets defined in training_sets.yml and those saved from a DataFrame."""
    saved = [n for n in (places.lake_root(config) / "trainsets").names() if re.fullmatch(r"[a-z][a-z0-9_]*", n)]
    return sorted({*config.training_sets.training_sets,
                   *(n for n in saved if list_versions(config, n) or unfinished_deletes(config, n))})


def list_versions(config: Config, name: str) -> list[int]:
    """The published versions: those whose manifest exists."""
    base = places.table(config, f"trainsets.{name}")
    return sorted(int(m.group(1)) for n in base.names() if (m := MANIFEST_FILE.match(n)))


def manifest(config: Config, ref: str) -> dict:
    """The manifest of NAME@VERSION, or of the newest version of NAME."""
    parsed = refs.training_set(ref)
    name, version = parsed.name, parsed.version
    valid = re.fullmatch(r"[a-z][a-z0-9_]*", name)
    versions = list_versions(config, name) if valid else []
    if valid and version is not None and version not in versions and (gone := deletion(config, name, version)):
        raise NotFoundError(f"training set {name}@{version} was deleted at {gone.get('deleted_at')} "
                            f"(versions: {', '.join(map(str, versions)) or 'none'})")
    if not versions:
        deleted = deleted_versions(config, name) if valid else []
        if deleted:  # every version deleted (the name may be one saved from a DataFrame)
            raise NotFoundError(f"training set {name} has no version: version "
                                f"{', '.join(map(str, deleted))} deleted")
        config.training_set(name)  # neither defined nor saved from a DataFrame: NotFoundError
        raise NotFoundError(f"training set {name} has no version yet (build it: trainset build {name})")
    version = versions[-1] if version is None else version
    if version not in versions:
        raise NotFoundError(f"training set {name} has no version {version} "
                            f"(versions: {', '.join(map(str, versions))})")
    path = places.table(config, f"trainsets.{name}") / f"v{version:04d}.json"
    unusable = f"so the version cannot be used: build a new one with: sparkml trainset build {name}"
    try:
        man = json.loads(path.read_text())
    except ValueError as exc:
        raise JobFailed(f"training set {name}@{version}: its manifest {path} is damaged "
                        f"(not JSON: {exc}), {unusable}") from None
    if not isinstance(man, dict) or (man.get("name"), man.get("version")) != (name, version):
        described = f"{man.get('name')}@{man.get('version')}" if isinstance(man, dict) else repr(man)
        raise JobFailed(f"training set {name}@{version}: its manifest {path} describes "
                        f"{described}, not this version (edited or copied), {unusable}")
    lacking = [k for k, kind in MANIFEST_KEYS.items() if not isinstance(man.get(k), kind)]
    if lacking:
        raise JobFailed(f"training set {name}@{version}: its manifest {path} is damaged (no valid "
                        f"{', '.join(lacking)}: cut short or edited), {unusable}")
    return man


# What every manifest holds (built or saved from a DataFrame), and what lineage, training and
# rebuilds read from it.
MANIFEST_KEYS = {"label_source": dict, "lookups": list, "feature_columns": list, "digest": str, "rows": dict}


def version_path(config: Config, name: str, version: int) -> Location:
    """Where version `version` of training set `name` lives: derived, never read from a
    manifest (an edited manifest cannot point a training at other rows)."""
    return places.table(config, f"trainsets.{name}") / f"v{version:04d}"


def read_version(spark, config: Config, man: dict):
    """The rows of the version `man` describes, after checking that the data at its place was
    written as that version (its commit records the name and version)."""
    ref = f"trainset {man['name']}@{man['version']}"
    path = version_path(config, man["name"], man["version"])
    written = next((c["metadata"] for c in lake.commits(path) if c["metadata"]), None) \
        if lake.exists(path) else None
    if not written or (written.get("name"), written.get("version")) != (man["name"], man["version"]):
        raise JobFailed(f"{ref}: the data at {path} was not written as this version "
                        f"(its commit says {written}); the training set is damaged: rebuild it")
    return lake.read(spark, path, ref=ref)


def folder(config: Config, name: str) -> Location:
    """Training set `name`'s folder in the lake: its versions, manifests and deletion records."""
    return places.table(config, f"trainsets.{name}")


def deleted_versions(config: Config, name: str) -> list[int]:
    """The versions deleted (their deletion record kept: the number is never reused)."""
    return sorted(int(m.group(1)) for n in folder(config, name).names() if (m := DELETED_FILE.match(n)))


def deletion(config: Config, name: str, version: int) -> dict | None:
    """The record of version `version`'s deletion, or None when it was not deleted."""
    text = (folder(config, name) / f"v{version:04d}.deleted.json").read_or_none()
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"deleted_at": "unknown (its deletion record is damaged)"}


def unfinished_deletes(config: Config, name: str) -> list[int]:
    """Versions whose delete was interrupted: recorded as deleted, their manifest or rows still there."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        return []
    there = set(folder(config, name).names())
    return [v for v in deleted_versions(config, name) if {f"v{v:04d}.json", f"v{v:04d}"} & there]
