"""Training sets: labels joined point-in-time with features, written as immutable versions.

How versions are laid out in the lake, and what every stage reads of them, is
storage/training_sets.py; this module builds, saves, prunes, deletes and vacuums them.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import math
import os
import re
import socket
import time
from dataclasses import dataclass

from ..config import Config, Lookup, Split, TrainingSet, parse_duration, parse_instant
from ..core import refs
from ..core.errors import ConfigError, JobFailed, NotFoundError, first_line, sql_from_config
from ..core.provenance import definition_hash
from ..runtime.project import project_of
from ..storage import lake, leases, places, window_aggregates
from ..storage.feature_tables import resolve
from ..storage.files import Location
from ..storage.pit import FeatureLookup, content_digest, join_features
from ..storage.training_sets import (LABEL, SPLIT, deleted_versions, deletion, folder, list_versions,
                                     manifest, names, read_feature_tables, unfinished_deletes, version_path)
from ..tracking import registry
from . import retention as retention_plan


def resolve_lookups(config: Config, name: str, definition: TrainingSet) -> list[FeatureLookup]:
    """The definition's lookups with the feature tables' keys, event times and lookbacks."""
    return lookups_for(config, definition.features, config.where(f"training_sets.yml: training_sets.{name}.features"))


def lookups_for(config: Config, items: list[Lookup], where_prefix: str) -> list[FeatureLookup]:
    """Lookups as written in training_sets.yml -> resolved with each feature table's keys,
    event time and lookback (no `features`: all of the table's). A table named without `@N`
    is the version features.yml declares; the lookup records the version it resolved to."""
    lookups = []
    for i, item in enumerate(items):
        where = f"{where_prefix}.{i}"
        try:
            resolved = resolve(config, item.table)
        except (NotFoundError, ConfigError) as exc:
            raise type(exc)(f"{where}.table: {exc}") from None
        table = resolved.definition
        wanted = item.features or list(table.features)
        missing = [f for f in wanted if f not in table.features]
        if missing:
            raise ConfigError(f"{where}.features: feature table {item.table} has no feature "
                              f"{', '.join(missing)} (it has {', '.join(table.features)})")
        stray = [r for r in item.rename if r not in wanted]
        if stray:
            raise ConfigError(f"{where}.rename: {', '.join(stray)} is not one of the looked-up "
                              f"features ({', '.join(wanted)})")
        unknown = [k for k in item.key_map if k not in table.keys]
        if unknown:
            raise ConfigError(f"{where}.key_map: {', '.join(unknown)} is not a key of "
                              f"{item.table} (keys: {', '.join(table.keys)})")
        if item.accuracy is not None and table.aggregations is None:
            raise ConfigError(f"{where}.accuracy: feature table {item.table} is computed by its "
                              "transformation, not aggregated: accuracy applies to tables of "
                              "aggregations only")
        if table.aggregations is not None and item.lookback:
            raise ConfigError(f"{where}.lookback: feature table {item.table} is aggregated: its "
                              "windows say how far back each value reaches")
        lookback = item.lookback or table.lookback
        temporal = table.aggregations is not None and item.accuracy != "snapshot"
        lookups.append(FeatureLookup(
            table=resolved.name,
            key_map={k: item.key_map.get(k, k) for k in table.keys},
            event_time=table.event_time,
            columns={f: item.rename.get(f, f) for f in wanted},
            lookback_seconds=parse_duration(lookback) if lookback else None,
            aggregation=window_aggregates.recorded(window_aggregates.Declared(
                table.aggregations, tuple(table.keys), config.where(f"features.yml: feature_tables.{resolved.base}")))
            if temporal else None,
        ))
    return lookups


def assemble(spark, config: Config, name: str, definition: TrainingSet,
             lookups: list[FeatureLookup], pinned: dict[str, int] | None = None, new: bool = True):
    """The training set's rows and the facts the manifest records.

    `pinned` maps table references to Delta versions (what a build leased, or a rebuild's
    manifest); tables not in it are read at their current version. `new`: a new version,
    whose label rows are checked (a rebuild recomputes one that passed).
    """
    label = definition.label
    where = config.where(f"training_sets.yml: training_sets.{name}")
    label_path = places.table(config, label.table)
    if not lake.exists(label_path):
        raise JobFailed(f"{where}.label.table: table {label.table} does not exist yet")
    label_version = (pinned or {}).get(label.table)
    label_version = lake.version(spark, label_path) if label_version is None else label_version
    source = lake.read(spark, label_path, label_version, label.table)
    if label.filter:
        with sql_from_config(f"{where}.label.filter"):
            source = source.where(label.filter)
    entities, columns = label_rows(source, keys=label.keys, event_time=label.event_time,
                                   label=label.label, passthrough=label.passthrough,
                                   split=definition.split, lookups=lookups,
                                   where=Where(where, label.table))
    if new:
        check_unique_keys(entities, label.keys, f"{where}.label.keys", label.table)
        check_cut_offs(config, entities, name, definition, label.event_time)
    tables = read_feature_tables(spark, config, lookups, pinned)
    joined, flags = join_features(entities, label.event_time, tables)
    return joined, facts(tables, {"table": label.table, "version": label_version}, definition,
                         label.keys, label.event_time, columns, label.passthrough, flags)


@dataclass(frozen=True)
class Where:
    """How messages name the definition (a YAML key path, or a Python argument) and the labels."""

    definition: str
    labels: str
    label_key: str = ".label"
    label_expression_key: str = ".label.label"
    features_key: str = ".features"
    split_key: str = ".split"


def label_rows(source, *, keys: list[str], event_time: str, label: str | None, passthrough: list[str],
               split: Split, lookups: list[FeatureLookup], where: Where, split_keys: list[str] | None = None):
    """The pure core of a training set's label side: the label rows' entity columns, the
    label (a SQL expression over `source`) and the split, after checking that every column
    the lookups and the definition name is there. Returns (rows, entity columns)."""
    from pyspark.sql import functions as F

    for i, lookup in enumerate(lookups):
        absent = [c for c in lookup.key_map.values() if c not in source.columns]
        if absent:
            raise ConfigError(f"{where.definition}{where.features_key}.{i}.key_map: column "
                              f"{', '.join(absent)} is not in {where.labels} "
                              f"(columns: {', '.join(source.columns)})")
    lookup_keys = [c for lk in lookups for c in lk.key_map.values()]
    columns = list(dict.fromkeys([*keys, event_time, *lookup_keys, *passthrough]))
    missing = [c for c in columns if c not in source.columns]
    if missing:
        raise ConfigError(f"{where.definition}{where.label_key}: column {', '.join(missing)} is not "
                          f"in {where.labels} (columns: {', '.join(source.columns)})")
    outputs = [out for lk in lookups for out in lk.columns.values()]
    clashes = sorted({c for c in outputs if outputs.count(c) > 1 or c in columns or c in (LABEL, SPLIT)})
    if clashes:
        raise ConfigError(f"{where.definition}{where.features_key}: output column {', '.join(clashes)} "
                          "appears twice (use rename to give looked-up features distinct names)")
    labelled = [F.expr(label).alias(LABEL)] if label else []
    with sql_from_config(f"{where.definition}{where.label_expression_key}"):
        entities = source.select(*columns, *labelled)
    with sql_from_config(f"{where.definition}{where.split_key}"):
        entities = entities.withColumn(SPLIT, _split_column(split, split_keys or keys, event_time))
    return entities, columns


def facts(tables, label_source: dict, definition, keys: list[str], event_time: str,
          columns: list[str], passthrough: list[str], flags: list[str]) -> dict:
    """What a version's manifest records about how its rows were made."""
    return {
        "label_source": label_source,
        "lookups": [lk.to_dict() for lk, _ in tables],
        "definition_hash": definition_hash(definition),
        "definition": definition.model_dump(mode="json") if hasattr(definition, "model_dump") else definition,
        "entity": {"keys": keys, "event_time": event_time, "columns": columns, "passthrough": passthrough},
        "feature_columns": [*passthrough, *[out for lk, _ in tables for out in lk.columns.values()]],
        "flags": flags,
    }


def _split_column(split: Split, keys: list[str], event_time: str):
    from pyspark.sql import functions as F

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


def check_unique_keys(entities, keys: list[str], key: str, labels: str) -> None:
    """The label keys identify one label row each (a row's features and split follow from
    them): keys shared by several rows are refused, with a few of them, before anything is
    written."""
    shared = entities.groupBy(*keys).count().where("count > 1").orderBy(*keys).limit(3).collect()
    if shared:
        shown = "; ".join(", ".join(f"{k}={row[k]!r}" for k in keys) + f" ({row['count']} rows)" for row in shared)
        raise ConfigError(f"{key}: {', '.join(keys)} do not identify one label row each in {labels}: "
                          f"{shown}{' ...' if len(shared) == 3 else ''}. Give keys that do (the event "
                          "time is often one of them), or filter the labels")


def check_cut_offs(config: Config, entities, name: str, definition: TrainingSet, event_time: str) -> None:
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
    where = config.where(f"training_sets.yml: training_sets.{name}.split")
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
    # The tables at the versions they have now, leased while they are read: a VACUUM meanwhile
    # keeps their files.
    pinned = lake.current_versions(places.lake_root(config), [definition.label.table, *[f"features.{lk.table}" for lk in lookups]])
    with leases.reading_tables(config, f"training-set build {name}", pinned):
        joined, facts = assemble(spark, config, name, definition, lookups, pinned)
        if not joined.limit(1).count():
            raise JobFailed(f"training set {name}: the label source {facts['label_source']['table']} "
                            "gave no rows (check its filter); nothing written")
        return write_version(spark, config, name, joined, facts)


def up_to_date(config: Config, name: str) -> dict | None:
    """The manifest of the newest version when building again would make the same rows: it
    was built from this definition, from the label table and every feature table at the
    versions they have now. Else None. From manifests and Delta logs: no Spark session."""
    definition = config.training_set(name)
    if not list_versions(config, name):
        return None
    man = manifest(config, name)
    label_path = places.table(config, definition.label.table)
    if man.get("definition_hash") != definition_hash(definition) or not lake.exists(label_path) \
            or man.get("label_source") != {"table": definition.label.table,
                                           "version": lake.version(None, label_path)}:
        return None
    current = []
    for lookup in resolve_lookups(config, name, definition):
        path = places.table(config, f"features.{lookup.table}")
        if not lake.exists(path):
            return None
        current.append(FeatureLookup(**{**lookup.to_dict(), "version": lake.version(None, path)}).to_dict())
    # A Delta version fixes its definition: manifests written before definitions were recorded
    # (no "definition" key) are as current as the versions they name.
    recorded = [{k: v for k, v in lk.items() if k != "definition"} for lk in man.get("lookups", [])]
    return man if recorded == [{k: v for k, v in lk.items() if k != "definition"} for lk in current] else None


def rebuild(spark, config: Config, ref: str) -> dict:
    """Recompute version `ref` from its manifest alone (its definition, its resolved lookups,
    every input at its recorded Delta version) and compare the digest. Writes nothing."""
    man = manifest(config, ref)
    if "dataframe" in man["label_source"]:
        raise ConfigError(f"training set {man['name']}@{man['version']} was made from a DataFrame "
                          f"(labels digest {man['label_source']['digest']}): its label rows are not "
                          "in the lake, so it cannot be recomputed; its own rows are kept as they were")
    definition = TrainingSet.model_validate(man["definition"])
    lookups = [FeatureLookup.from_dict({**lk, "version": None}) for lk in man["lookups"]]
    pinned = {man["label_source"]["table"]: man["label_source"]["version"]}
    pinned.update({f"features.{lk['table']}": lk["version"] for lk in man["lookups"]})
    joined, facts = assemble(spark, config, man["name"], definition, lookups, pinned, new=False)
    digest = content_digest(joined.drop(*facts["flags"]))
    return {"ref": f"{man['name']}@{man['version']}", "digest": digest,
            "matches": digest == man["digest"]}


def write_version(spark, config: Config, name: str, joined, facts: dict) -> dict:
    from pyspark.sql import functions as F

    base = places.table(config, f"trainsets.{name}")
    # After the newest version ever published, deleted ones included: numbers are never reused.
    number, path = _reserve(base, max(list_versions(config, name) + deleted_versions(config, name),
                                      default=0) + 1)
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
        "code": project_of(config).code_version(),
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
    me = {"host": socket.gethostname(), "pid": os.getpid(),
          "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    while True:
        path = base / f"v{number:04d}"
        if (base / f"v{number:04d}.json").exists() or (base / f"v{number:04d}.deleted.json").exists():
            number += 1  # published (by a build older than owner files kept after publishing), or deleted
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


def from_frame(spark, config: Config, labels, lookups: list, *, label: str | None = None,
               exclude=(), keys: list[str] | None = None, event_time: str | None = None,
               split=None):
    """A training set from a labels DataFrame made anywhere (a notebook's), joined point in
    time with the feature tables as they are now. Returns (rows, facts), like `assemble`.

    `lookups` are written as in training_sets.yml (dicts) or as `Lookup` objects; `label`
    names the label column (copied to `label`); every other column of `labels` that is not a
    key, the event time or in `exclude` is a passthrough feature."""
    from pyspark.sql import DataFrame

    where = Where("create_training_set", "the labels DataFrame", label_key=": labels_df",
                  label_expression_key=": label", features_key=": lookups", split_key=": split")
    if not isinstance(labels, DataFrame):
        raise ConfigError(f"create_training_set: labels_df is a {type(labels).__name__}, not a Spark "
                          "DataFrame (spark.createDataFrame(pandas_frame) makes one)")
    items = []
    for i, item in enumerate(lookups):
        try:
            items.append(item if isinstance(item, Lookup) else Lookup.model_validate(item))
        except Exception as exc:  # noqa: BLE001 - pydantic's message names the bad key
            raise ConfigError(f"create_training_set: lookups.{i}: {exc}".splitlines()[0] +
                              " (a lookup is {table: NAME, features: [...]} or a FeatureLookup)") from None
    resolved = lookups_for(config, items, "create_training_set: lookups")
    if event_time is None:
        times = [f.name for f in labels.schema.fields
                 if f.dataType.simpleString() in ("timestamp", "timestamp_ntz", "date")]
        if len(times) != 1:
            raise ConfigError(f"create_training_set: labels_df has {len(times) or 'no'} timestamp "
                              f"columns ({', '.join(times) or 'columns: ' + ', '.join(labels.columns)}): "
                              "give event_time=, the column each row's features are looked up as of")
        event_time = times[0]
    lookup_keys = [c for lk in resolved for c in lk.key_map.values()]
    # No keys given: a row is its lookup keys at its event time (and its split hashes both,
    # so that one key's rows spread over the splits).
    split_keys = None if keys else [*dict.fromkeys(lookup_keys), event_time]
    keys = list(keys or dict.fromkeys(lookup_keys))
    if label is not None and label not in labels.columns:
        raise ConfigError(f"create_training_set: label={label!r} is not a column of labels_df "
                          f"(columns: {', '.join(labels.columns)})")
    unknown = [c for c in exclude if c not in labels.columns]
    if unknown:
        raise ConfigError(f"create_training_set: exclude names {', '.join(unknown)}, not a column of "
                          f"labels_df (columns: {', '.join(labels.columns)})")
    taken = {*keys, event_time, *lookup_keys, *(exclude or ()), *([label] if label else []), LABEL, SPLIT}
    passthrough = [c for c in labels.columns if c not in taken]
    split = split if isinstance(split, Split) else Split.model_validate(split or {"type": "random"})
    entities, columns = label_rows(labels, keys=keys, event_time=event_time,
                                   label=f"`{label}`" if label else None, passthrough=passthrough,
                                   split=split, lookups=resolved, where=where, split_keys=split_keys)
    if split_keys is None:  # keys given: each names one label row
        check_unique_keys(entities, keys, "create_training_set: keys", "labels_df")
    tables = read_feature_tables(spark, config, resolved)
    joined, flags = join_features(entities, event_time, tables)
    definition = {"source": "dataframe", "label": {"keys": keys, "event_time": event_time,
                                                  "label": label, "passthrough": passthrough,
                                                  "split_keys": split_keys or keys},
                  "features": [i.model_dump(mode="json", exclude_none=True) for i in items],
                  "split": split.model_dump(mode="json")}
    source = labels.select(*columns, *([label] if label else []))
    label_source = {"dataframe": True, "digest": content_digest(source)}
    return joined, facts(tables, label_source, definition, keys, event_time, columns, passthrough, flags)


def save_frame(spark, config: Config, name: str, joined, facts: dict) -> dict:
    """Version N of a training set made from a DataFrame: written and published exactly like
    `build`'s (an immutable version with a manifest)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", str(name)):
        raise ConfigError(f"save: name {name!r} must be lower case letters, digits and _ (starting "
                          "with a letter): it names a folder in the lake")
    if name in config.training_sets.training_sets:
        raise ConfigError(f"save: training set {name} is defined in training_sets.yml (built by "
                          "trainset build); save this one under another name")
    if not joined.limit(1).count():
        raise JobFailed(f"save: training set {name}: the labels DataFrame gave no rows; nothing written")
    return write_version(spark, config, name, joined, dict(facts))


# --- deleting versions, retention ---------------------------------------------------------


def delete(config: Config, tracker, ref: str) -> dict:
    """Delete version NAME@VERSION (its manifest and its rows), refused (ConfigError) while
    a registered model version was trained on it: the refusal names every such version.

    In this order: the deletion record first (from then on the number is never reused, and
    the listing shows a delete that did not finish), the manifest next (the version no longer
    exists for show, rebuild, training), its rows last. A delete interrupted anywhere is
    finished by deleting the same version again."""
    parsed = refs.training_set(ref)
    name, version = parsed.name, parsed.version
    if version is None:
        raise ConfigError(f"delete: {ref!r} names no version: give NAME@VERSION (one version is "
                          "deleted at a time; prune applies a retention)")
    valid = re.fullmatch(r"[a-z][a-z0-9_]*", name)
    published = bool(valid) and version in list_versions(config, name)
    if not published and not (valid and deletion(config, name, version)):
        manifest(config, f"{name}@{version}")  # NotFoundError naming the versions there are
    if published:
        running = leases.leased(config, f"training_set:{name}").get(version, [])
        if running:
            raise ConfigError(f"training set {name}@{version} is not deleted: it is being read by "
                              f"{'; '.join(running)} (delete it once that run has ended)")
        users = registry.trained_on(tracker, name).get(version, [])
        if users:
            raise ConfigError(f"training set {name}@{version} is not deleted: registered model "
                              f"version{'s' if len(users) > 1 else ''} {', '.join(users)} "
                              f"{'were' if len(users) > 1 else 'was'} trained on it (its rows and "
                              "manifest are what they record; delete those model versions first)")
    return _remove(config, name, version, "deleted")


def _remove(config: Config, name: str, version: int, reason: str) -> dict:
    base = folder(config, name)
    record_file, manifest_file = base / f"v{version:04d}.deleted.json", base / f"v{version:04d}.json"
    try:
        digest = json.loads(manifest_file.read_or_none() or "{}").get("digest")
    except (ValueError, AttributeError):
        digest = None  # a damaged manifest: the version goes all the same
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    record = {"name": name, "version": version, "digest": digest, "reason": reason,
              "deleted_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "by": f"{user}@{socket.gethostname()}"}
    finishing = not record_file.create(json.dumps(record, indent=2))
    if finishing:  # an earlier delete was interrupted: its record stands
        record = deletion(config, name, version) or record
    manifest_file.unlink()
    version_path(config, name, version).remove_tree()
    return {"deleted": f"{name}@{version}", "digest": record.get("digest"),
            "deleted_at": record.get("deleted_at"), "finished_an_interrupted_delete": finishing}


def retention_for(config: Config, name: str, keep: int | None = None) -> tuple[int, str]:
    """How many newest versions of `name` prune keeps, and where that number comes from."""
    retention, key = config.retention(name)
    return retention_plan.keep_count(name, keep, retention.keep if retention else None, key)


def prune(config: Config, tracker, name: str, keep: int | None = None) -> dict:
    """Delete the versions of `name` beyond the newest `keep` (default: its retention), except
    every version a registered model version was trained on or a running training reads;
    finishes interrupted deletes (retention.py decides, this executes)."""
    versions = list_versions(config, name) if re.fullmatch(r"[a-z][a-z0-9_]*", name) else []
    if not versions and not unfinished_deletes(config, name):
        config.training_set(name)  # neither defined nor saved: NotFoundError

    count, source = retention_for(config, name, keep)
    decided = retention_plan.plan(versions, count, source, registry.trained_on(tracker, name),
                                  leases.leased(config, f"training_set:{name}"), unfinished_deletes(config, name))
    deleted = [_remove(config, name, v, f"retention: keep {count} ({source})")["deleted"] for v in decided.delete]
    finished = [_remove(config, name, v, "deleted")["deleted"] for v in decided.finish]
    return {"training_set": name, "keep": count, "keep_from": source, "deleted": deleted,
            "finished_interrupted_deletes": finished,
            "kept": [f"{name}@{v}" for v in decided.kept],
            "kept_for_models": {f"{name}@{v}": users for v, users in decided.kept_for_models.items()},
            "kept_for_running": {f"{name}@{v}": runs for v, runs in decided.kept_for_running.items()}}


def after_build(config: Config, tracker, name: str) -> dict | None:
    """The retention applied after a successful build (None when none is configured). A
    failure here does not undo the build: it is reported, and prune can be run again."""
    if config.retention(name)[0] is None:
        return None
    try:
        return prune(config, tracker, name)
    except Exception as exc:  # noqa: BLE001 - the new version is published either way

        logging.getLogger(__name__).warning("training set %s: retention not applied: %s", name,
                                            first_line(exc))
        return {"training_set": name, "error": f"retention not applied: {first_line(exc)} "
                                               f"(run: sparkml trainset prune {name})"}


# --- what VACUUM must keep -----------------------------------------------------------------


def pins(config: Config, ref: str, users: list[dict] = ()) -> list[tuple[str, int]]:
    """(who, Delta version of `ref` it needs) for every training-set version `rebuild` can
    recompute (it reads `ref` at that version, so its files must stay; a version made from a
    DataFrame cannot be recomputed and pins nothing), for every model version under an
    alias (`users`, registry.feature_users) trained on `ref` (the gate re-scores a champion
    on its own features by reading that version), and for every running reader that leased
    it (a scoring, a training-set build)."""
    out = [(f"model {u['model']}/{u['version']} ({', '.join(u['aliases'])})", int(u["tables"][table]))
           for u in users for table in u["tables"]
           if f"features.{table}" == ref and u["tables"][table] is not None]
    for name in names(config):
        for version in list_versions(config, name):
            try:
                man = manifest(config, f"{name}@{version}")
            except JobFailed:
                continue  # a damaged manifest cannot be rebuilt from
            if "dataframe" in man["label_source"]:
                continue
            read = {man["label_source"]["table"]: man["label_source"]["version"],
                    **{f"features.{lk['table']}": lk["version"] for lk in man["lookups"]}}
            if read.get(ref) is not None:
                out.append((f"training set {name}@{version}", int(read[ref])))
    # A scoring or a build under way reads `ref` at the version it leased.
    out += [(holder, version) for version, holders in leases.leased(config, leases.table_key(ref)).items()
            for holder in holders]
    return out


def vacuum(spark, config: Config, ref: str, retain_hours: int | None = None, users: list[dict] = ()) -> dict:
    """Delta VACUUM of lake table `ref`, refused (ConfigError) when `retain_hours` is shorter
    than what a training-set version's rebuild or an aliased model version (`users`, see
    `pins`) needs; without it, the longer of that minimum and the table's own retention
    (Delta's default 168 hours).

    A version's files are removed from the table by later commits; VACUUM deletes a removed
    file once its removal is older than the retention (and, after the table's
    deletedFileRetentionDuration, once the file itself is). So a pinned version needs the
    hours since the first commit after it (since its oldest removed file, past that
    duration), and nothing when no file of it was removed (only appends since)."""
    path = places.table(config, ref)
    if not lake.exists(path):
        raise NotFoundError(f"vacuum: lake table {ref} does not exist (looked in {path})")
    if retain_hours is not None and (isinstance(retain_hours, bool) or not isinstance(retain_hours, int)
                                     or retain_hours < 0):
        raise ConfigError(f"vacuum: retain_hours={retain_hours!r} must be a whole number of hours, 0 or more")
    now = time.time() * 1000
    current, commits = lake.files(path, ref=ref), lake.commits(path, ref)
    tombstone_hours = lake.deleted_file_retention_hours(path)
    needs = []
    for pinned_by, version in pins(config, ref, users):
        gone = {f: t for f, t in lake.files(path, version, ref).items() if f not in current}
        hours = 0
        if gone:
            removed_from = min(c["timestamp"] for c in commits if c["version"] > version)
            age = (now - removed_from) / 3_600_000
            if age >= tombstone_hours:  # removal records expired: only the files' age protects them
                age = (now - min(gone.values())) / 3_600_000
            hours = math.ceil(age) + 1  # an hour's margin for the clock running until VACUUM
        needs.append({"needed_by": pinned_by, "table_version": version, "needs_hours": hours,
                      "_files": set(gone)})
    # Never less than an hour: files a writer is still adding are not in the log yet.
    minimum = max([1, *(n["needs_hours"] for n in needs)])
    if retain_hours is None:
        hours = max(minimum, math.ceil(tombstone_hours))
    elif retain_hours < minimum:
        short = [n for n in needs if n["needs_hours"] > retain_hours]
        said = "; ".join(f"{n['needed_by']} reads {ref} version {n['table_version']} "
                         f"and needs {n['needs_hours']} hours" for n in short) \
            or "files being written may not be in the log yet"
        raise ConfigError(f"vacuum {ref}: retain_hours={retain_hours} is too short, the minimum is "
                          f"{minimum} hours ({said}); nothing deleted (delete or prune those "
                          "training-set versions, or move those aliases, to release their files)")
    else:
        hours = retain_hours
    doomed = lake.vacuum(spark, path, hours, dry_run=True)
    needed = {f: n["needed_by"] for n in needs for f in n["_files"]}
    if hit := [f for f in doomed if f in needed]:  # what the log says against what is on disk
        raise ConfigError(f"vacuum {ref}: with retain_hours={hours} Delta would delete {len(hit)} "
                          f"file(s) {needed[hit[0]]} needs (e.g. {hit[0]}); nothing "
                          "deleted: give more hours")
    lake.vacuum(spark, path, hours)
    return {"table": ref, "retain_hours": hours, "retain_hours_given": retain_hours,
            "minimum_hours": minimum, "files_deleted": len(doomed),
            "pinned_by": [{k: v for k, v in n.items() if not k.startswith("_")} for n in needs]}
