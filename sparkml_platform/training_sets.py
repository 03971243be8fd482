"""Training sets: labels joined point-in-time with features, written as immutable versions.

Version N of training set NAME is the Delta table `LAKE/trainsets/NAME/vNNNN` and its
manifest `LAKE/trainsets/NAME/vNNNN.json`, written last: a version without a manifest was
never finished and does not exist.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re

from . import lake
from .config import Config, TrainingSet, parse_duration, parse_instant
from .errors import ConfigError, JobFailed, NotFoundError, sql_from_config
from .pit import FeatureLookup, content_digest, join_features
from .provenance import definition_hash
from .storage import Location

LABEL = "label"
SPLIT = "split"
MANIFEST_FILE = re.compile(r"^v(\d{4,})\.json$")


def resolve_lookups(config: Config, name: str, definition: TrainingSet) -> list[FeatureLookup]:
    """The definition's lookups with the feature tables' keys, event times and lookbacks."""
    lookups = []
    for i, item in enumerate(definition.features):
        where = f"training_sets.yml: training_sets.{name}.features.{i}"
        table = config.feature_table(item.table)
        missing = [f for f in item.features if f not in table.features]
        if missing:
            raise ConfigError(f"{where}.features: feature table {item.table} has no feature "
                              f"{', '.join(missing)} (it has {', '.join(table.features)})")
        stray = [r for r in item.rename if r not in item.features]
        if stray:
            raise ConfigError(f"{where}.rename: {', '.join(stray)} is not one of the looked-up "
                              f"features ({', '.join(item.features)})")
        unknown = [k for k in item.key_map if k not in table.keys]
        if unknown:
            raise ConfigError(f"{where}.key_map: {', '.join(unknown)} is not a key of "
                              f"{item.table} (keys: {', '.join(table.keys)})")
        lookback = item.lookback or table.lookback
        lookups.append(FeatureLookup(
            table=item.table,
            key_map={k: item.key_map.get(k, k) for k in table.keys},
            event_time=table.event_time,
            columns={f: item.rename.get(f, f) for f in item.features},
            lookback_seconds=parse_duration(lookback) if lookback else None,
        ))
    return lookups


def read_feature_tables(spark, config: Config, lookups: list[FeatureLookup],
                        pinned: dict[str, int] | None = None) -> list[tuple[FeatureLookup, object]]:
    """Each lookup with its feature table read at a pinned (or the current) Delta version."""
    out = []
    for lookup in lookups:
        ref = f"features.{lookup.table}"
        path = lake.table_path(config.lake_root, ref)
        if not lake.exists(path):
            raise JobFailed(f"feature table {lookup.table} has not been built "
                            f"(run: sparkml features build {lookup.table})")
        version = (pinned or {}).get(ref)
        version = lake.version(spark, path) if version is None else version
        df = lake.read(spark, path, version, ref)
        missing = [c for c in [*lookup.key_map, lookup.event_time, *lookup.columns] if c not in df.columns]
        if missing:
            raise ConfigError(f"{ref} in the lake has no column {', '.join(missing)} (version "
                              f"{version}): rebuild it with sparkml features build {lookup.table}")
        out.append((FeatureLookup(**{**lookup.to_dict(), "version": version}), df))
    return out


def assemble(spark, config: Config, name: str, definition: TrainingSet,
             lookups: list[FeatureLookup], pinned: dict[str, int] | None = None):
    """The training set's rows and the facts the manifest records.

    `pinned` maps table references to Delta versions (a rebuild from a manifest); tables not
    in it are read at their current version.
    """
    label = definition.label
    where = f"training_sets.yml: training_sets.{name}"
    label_path = lake.table_path(config.lake_root, label.table)
    if not lake.exists(label_path):
        raise JobFailed(f"{where}.label.table: table {label.table} does not exist yet")
    label_version = (pinned or {}).get(label.table)
    label_version = lake.version(spark, label_path) if label_version is None else label_version
    source = lake.read(spark, label_path, label_version, label.table)
    if label.filter:
        with sql_from_config(f"{where}.label.filter"):
            source = source.where(label.filter)
    for i, lookup in enumerate(lookups):
        absent = [c for c in lookup.key_map.values() if c not in source.columns]
        if absent:
            raise ConfigError(f"{where}.features.{i}.key_map: column {', '.join(absent)} is not in "
                              f"{label.table} (columns: {', '.join(source.columns)})")
    lookup_keys = [c for lk in lookups for c in lk.key_map.values()]
    columns = list(dict.fromkeys([*label.keys, label.event_time, *lookup_keys, *label.passthrough]))
    missing = [c for c in columns if c not in source.columns]
    if missing:
        raise ConfigError(f"{where}.label: column {', '.join(missing)} is not in {label.table} "
                          f"(columns: {', '.join(source.columns)})")
    from pyspark.sql import functions as F

    outputs = [out for lk in lookups for out in lk.columns.values()]
    clashes = sorted({c for c in outputs if outputs.count(c) > 1 or c in columns or c in (LABEL, SPLIT)})
    if clashes:
        raise ConfigError(f"{where}.features: output column {', '.join(clashes)} appears twice "
                          "(use rename to give looked-up features distinct names)")
    with sql_from_config(f"{where}.label.label"):
        entities = source.select(*columns, F.expr(label.label).alias(LABEL))
    with sql_from_config(f"{where}.split"):
        entities = entities.withColumn(SPLIT, _split_column(definition, label.keys, label.event_time))
    if pinned is None:  # a new version (a rebuild recomputes one that passed)
        check_cut_offs(entities, name, definition, label.event_time)
    tables = read_feature_tables(spark, config, lookups, pinned)
    joined, flags = join_features(entities, label.event_time, tables)
    facts = {
        "label_source": {"table": label.table, "version": label_version},
        "lookups": [lk.to_dict() for lk, _ in tables],
        "definition_hash": definition_hash(definition),
        "definition": definition.model_dump(mode="json"),
        "entity": {"keys": label.keys, "event_time": label.event_time,
                   "columns": columns, "passthrough": label.passthrough},
        "feature_columns": [*label.passthrough,
                            *[out for lk in lookups for out in lk.columns.values()]],
        "flags": flags,
    }
    return joined, facts


def _split_column(definition: TrainingSet, keys: list[str], event_time: str):
    from pyspark.sql import functions as F

    split = definition.split
    if split.type == "time":  # cut-offs parsed and ordered when the configuration loaded
        at = F.col(event_time)
        is_test = at >= _instant_literal(split.test_start)
        is_validation = (at >= _instant_literal(split.validation_start)
                         if split.validation_start else F.lit(False))
    else:
        # A hash of the keys, not rand(): the same row lands in the same split on every rebuild.
        bucket = (F.abs(F.xxhash64(F.lit(split.seed), *keys)) % 1_000_000) / 1_000_000
        is_test = bucket < split.test_fraction
        is_validation = bucket < split.test_fraction + split.validation_fraction
    return (F.when(is_test, F.lit("test")).when(is_validation, F.lit("validation"))
            .otherwise(F.lit("train")))


def _instant_literal(text: str):
    """A cut-off as a timestamp in the session's time zone (UTC), from its normalised text."""
    from pyspark.sql import functions as F

    return F.lit(parse_instant(text).isoformat(sep=" ")).cast("timestamp")


def check_cut_offs(entities, name: str, definition: TrainingSet, event_time: str) -> None:
    """A time split's cut-offs must fall inside the label rows' event times, else a split is
    empty: refused (naming the key and the range) before anything is written."""
    from pyspark.sql import functions as F

    split = definition.split
    if split.type != "time":
        return
    shown = "yyyy-MM-dd HH:mm:ss"  # in the session's time zone (UTC), not the process's
    first, last = entities.agg(F.date_format(F.min(event_time), shown),
                               F.date_format(F.max(event_time), shown)).collect()[0]
    if first is None:
        return  # no label rows: refused by the caller with its own message
    first, last = parse_instant(first), parse_instant(last)
    where = f"training_sets.yml: training_sets.{name}.split"
    for key in ("validation_start", "test_start"):
        value = getattr(split, key)
        if value is None:
            continue
        at = parse_instant(value)
        if not first < at <= last:
            raise ConfigError(f"{where}.{key}: {value} is outside the label rows' event times "
                              f"({event_time} from {first} to {last}), so the "
                              f"{'train' if at <= first else key.removesuffix('_start')} split would be empty; "
                              "nothing written")


def build(spark, config: Config, name: str) -> dict:
    """Write the next version of training set NAME and its manifest."""
    definition = config.training_set(name)
    lookups = resolve_lookups(config, name, definition)
    joined, facts = assemble(spark, config, name, definition, lookups)
    if not joined.limit(1).count():
        raise JobFailed(f"training set {name}: the label source {facts['label_source']['table']} "
                        "gave no rows (check its filter); nothing written")
    return write_version(spark, config, name, joined, facts)


def rebuild(spark, config: Config, ref: str) -> dict:
    """Recompute version `ref` from its manifest alone (its definition, its resolved lookups,
    every input at its recorded Delta version) and compare the digest. Writes nothing."""
    man = manifest(config, ref)
    definition = TrainingSet.model_validate(man["definition"])
    lookups = [FeatureLookup.from_dict({**lk, "version": None}) for lk in man["lookups"]]
    pinned = {man["label_source"]["table"]: man["label_source"]["version"]}
    pinned.update({f"features.{lk['table']}": lk["version"] for lk in man["lookups"]})
    joined, facts = assemble(spark, config, man["name"], definition, lookups, pinned)
    digest = content_digest(joined.drop(*facts["flags"]))
    return {"ref": f"{man['name']}@{man['version']}", "digest": digest,
            "matches": digest == man["digest"]}


def write_version(spark, config: Config, name: str, joined, facts: dict) -> dict:
    from pyspark.sql import functions as F

    base = lake.table_path(config.lake_root, f"trainsets.{name}")
    number, path = _reserve(base, max(list_versions(config, name), default=0) + 1)
    flags = facts.pop("flags")
    joined = joined.persist()  # written and counted: compute the join once
    data = joined.drop(*flags)
    try:
        lake.write(data, path, metadata={"kind": "training_set", "name": name, "version": number})
        stored = lake.read(spark, path)
        # Rows per split and rows without a match per lookup, in one pass over the cached join.
        per_split = joined.groupBy(SPLIT).agg(
            F.count("*").alias("__rows"), *[F.sum((~F.col(f)).cast("long")).alias(f) for f in flags]
        ).collect()
        digest = content_digest(stored)
    except BaseException:
        # Never a version without its manifest: remove what this build wrote.
        path.remove_tree()
        if not base.names():
            base.remove_tree()  # the training set's first build: no empty folder either
        raise
    finally:
        joined.unpersist()
    counts = {r[SPLIT]: r["__rows"] for r in per_split}
    unmatched = {lk["table"]: sum(r[f] for r in per_split) for f, lk in zip(flags, facts["lookups"])}
    manifest = {
        "name": name,
        "version": number,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "path": f"trainsets/{name}/v{number:04d}",  # under the lake root: a moved lake still works
        **facts,
        "code": config.project.code_version(),
        "rows": {"total": sum(counts.values()), **counts},
        "rows_without_match": unmatched,
        "columns": stored.columns,
        "digest": digest,
    }
    # Published with one operation that is atomic on every store (a put-if-absent): the
    # version exists from this instant, whole, and is never overwritten.
    if not (base / f"v{number:04d}.json").create(json.dumps(manifest, indent=2, default=str)):
        raise JobFailed(f"training set {name}: version {number} was published by another build "
                        f"while this one held it ({path}); this build's version is not "
                        "published: build again")
    return manifest


# In a version's folder: who reserved it (kept after publishing, a record of the builder).
OWNER = "_sparkml_owner.json"


def _reserve(base: Location, number: int) -> tuple[int, Location]:
    """The next free version number, taken exclusively: its owner file is created with a
    put-if-absent (atomic on a local disk, HDFS and S3), so two builds at once get two
    numbers. A version left unpublished by a build that died (its process on this host is
    gone) is taken over by one build; one whose builder may still run is skipped."""
    import socket

    me = {"host": socket.gethostname(), "pid": os.getpid(),
          "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    while True:
        path = base / f"v{number:04d}"
        if (base / f"v{number:04d}.json").exists():
            number += 1  # published (by a build older than owner files kept after publishing)
            continue
        if (path / OWNER).create(json.dumps(me)):
            return number, path
        owner = _dead_owner(path, me["host"])
        if owner is None or (base / f"v{number:04d}.json").exists() \
                or not (path / f"_sparkml_takeover_{owner}.json").create(json.dumps(me)):
            number += 1  # published, its builder may still run, or another build took it over
            continue
        # Never a version: its builder died. What it wrote goes; the owner file becomes ours.
        for name in path.names():
            if not name.startswith(("_sparkml_owner", "_sparkml_takeover_")):
                (path / name).remove_tree()
        (path / OWNER).write_text(json.dumps(me))
        return number, path


def _dead_owner(path: Location, host: str) -> str | None:
    """`HOST_PID` of the version's owner when it ran on this host and is gone, else None."""
    try:
        owner = json.loads((path / OWNER).read_text())
    except (OSError, ValueError):
        return None  # being created this instant, or not ours to judge
    if owner.get("host") != host:
        return None
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return f"{host}_{owner['pid']}"
    except (OSError, ValueError, KeyError):
        return None
    return None


def list_versions(config: Config, name: str) -> list[int]:
    """The published versions: those whose manifest exists."""
    base = lake.table_path(config.lake_root, f"trainsets.{name}")
    return sorted(int(m.group(1)) for n in base.names() if (m := MANIFEST_FILE.match(n)))


def parse_ref(ref: str) -> tuple[str, int | None]:
    name, _, version = ref.partition("@")
    if not version:
        return name, None
    try:
        return name, int(version.lstrip("v"))
    except ValueError:
        raise ConfigError(f"{ref!r}: the version after @ must be a number, like {name}@3") from None


def manifest(config: Config, ref: str) -> dict:
    """The manifest of NAME@VERSION, or of the newest version of NAME."""
    name, version = parse_ref(ref)
    config.training_set(name)
    versions = list_versions(config, name)
    if not versions:
        raise NotFoundError(f"training set {name} has no version yet (run: sparkml trainset build {name})")
    version = versions[-1] if version is None else version
    if version not in versions:
        raise NotFoundError(f"training set {name} has no version {version} "
                            f"(versions: {', '.join(map(str, versions))})")
    path = lake.table_path(config.lake_root, f"trainsets.{name}") / f"v{version:04d}.json"
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
    return man


def version_path(config: Config, name: str, version: int) -> Location:
    """Where version `version` of training set `name` lives: derived, never read from a
    manifest (an edited manifest cannot point a training at other rows)."""
    return lake.table_path(config.lake_root, f"trainsets.{name}") / f"v{version:04d}"


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
