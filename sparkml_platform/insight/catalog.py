"""Discovery: what raw sources, entity tables, feature tables and training sets exist, what
they hold, who owns them and what reads them."""

from __future__ import annotations

from ..config import Config, versioned
from ..core.errors import JobFailed, NotFoundError
from ..storage import lake, places, statistics, training_sets
from ..storage.feature_tables import lake_versions, resolve


def feature_tables(config: Config) -> list[dict]:

    out = []
    for name, table in sorted(config.features.feature_tables.items()):
        path = places.table(config, f"features.{versioned(name, table.version)}")
        history = lake.commits(path) if lake.exists(path) else []
        stats = statistics.latest(path) if history else None
        built = [c for c in history if (c["metadata"] or {}).get("kind") == "feature_table"]
        out.append({
            "name": name,
            "description": table.description,
            "owner": table.owner,
            "tags": table.tags,
            "keys": table.keys,
            "event_time": table.event_time,
            "features": list(table.features),
            "version": history[-1]["version"] if history else None,
            # freshness: when it was last built, and the newest event time it holds
            "last_built": lake.iso_time(built[-1]["timestamp"]) if built else None,
            "last_run_id": built[-1]["metadata"].get("run_id") if built else None,
            "newest_event_time": stats["event_time_range"][1] if stats else None,
            # the version features.yml declares (NAME, or NAME@N) and the ones the lake holds
            "declared": versioned(name, table.version),
            "lake_versions": [versioned(name, n) for n in lake_versions(config, name)],
        })
    return out


def search(config: Config, text: str) -> list[dict]:
    """Feature tables whose name, description, tags, owner or feature names contain `text`."""
    needle = text.lower()
    hits = []
    for entry in feature_tables(config):
        table = config.feature_table(entry["name"])
        haystack = [entry["name"], table.description, table.owner, *table.tags,
                    *[f"{n} {f.description}" for n, f in table.features.items()]]
        if any(needle in h.lower() for h in haystack):
            hits.append(entry)
    return hits


def show_feature_table(spark, config: Config, name: str, users: list[dict] = ()) -> dict:
    """NAME (the declared version) or NAME@N: definition, rows, builds, statistics, and every
    version of the table in the lake with the model versions under an alias using each
    (`users`: registry.feature_users). From the Delta log and the statistics records; a
    version's statistics not recorded yet are computed once, in this process for a table of
    at most `local_read_max_mb` (`spark`, a callable giving a session, is called only for a
    larger one)."""
    resolved = resolve(config, name)
    table, name = resolved.definition, resolved.name
    path = resolved.path(config)
    info = {
        "name": name,
        "table": resolved.ref,
        "table_version": resolved.number,
        "declared": resolved.declared,
        "versions": [_version_summary(config, resolved.base, n, users)
                     for n in lake_versions(config, resolved.base)],
        "path": str(path),
        "description": table.description,
        "owner": table.owner,
        "tags": table.tags,
        "keys": table.keys,
        "event_time": table.event_time,
        "lookback": table.lookback,
        "transformation": table.transformation,
        **({"aggregations": table.aggregations.model_dump(mode="json")} if table.aggregations else {}),
        "sources": table.sources,
        "features": {n: f.model_dump() for n, f in table.features.items()},
        "built": lake.exists(path),
    }
    if info["built"]:
        stats = statistics.for_version(spark, path, lake.version(None, path, resolved.ref), table.feature_types,
                                       table.event_time, config.local_read_max_bytes)
        info["rows"] = stats["rows"]
        info["event_time_range"] = stats["event_time_range"]
        info["history"] = lake.history(path)
        builds = [c for c in lake.commits(path) if (c["metadata"] or {}).get("kind") == "feature_table"]
        info["last_build"] = _build_summary(builds[-1]) if builds else None
        full = [c for c in builds if c["metadata"].get("mode") == "full"]
        info["last_full_build"] = _build_summary(full[-1]) if full else None
        info["latest_statistics"] = stats
        info["used_by"] = used_by(config, name)
    return info


def _version_summary(config: Config, base: str, number: int, users) -> dict:
    """One version of a table in the lake: its definition now and who uses it."""
    name = versioned(base, number)
    path = places.table(config, f"features.{name}")
    built = lake.last_commit(path, "feature_table", f"features.{name}") or {}
    meta = built.get("metadata") or {}
    return {"name": name, "delta_version": lake.version(None, path, f"features.{name}"),
            "definition_hash": meta.get("definition_hash"), "last_built": lake.iso_time(built.get("timestamp")),
            "used_by_models": [f"{u['model']}/{u['version']} ({', '.join(u['aliases'])})"
                               + (" stale" if u.get("stale") else "")
                               for u in users if name in u["tables"]]}


def _build_summary(commit: dict) -> dict:
    """A build's version, time, mode and why a full build happened (first build, asked for,
    the definition or the transformation's code changed)."""
    meta = commit["metadata"]
    return {"version": commit["version"], "when": lake.iso_time(commit["timestamp"]), "mode": meta.get("mode"),
            "reason": meta.get("reason"), "window": meta.get("window"),
            "definition_hash": meta.get("definition_hash"), "code_hash": meta.get("code_hash")}


def compare_versions(spark, config: Config, name: str, old: int, new: int) -> dict:
    resolved = resolve(config, name)
    table, name = resolved.definition, resolved.name
    path = resolved.path(config)
    loaded = {v: statistics.for_version(spark, path, v, table.feature_types, table.event_time,
                                        config.local_read_max_bytes)
              for v in (old, new)}
    missing = [str(v) for v, s in loaded.items() if s is None]
    if missing:
        have = statistics.kept_versions(path)
        raise NotFoundError(f"feature table {name} has no statistics for version "
                            f"{', '.join(missing)} (versions with statistics: {have or 'none'})")
    return {"table": f"features.{name}", **statistics.compare(loaded[old], loaded[new])}


def used_by(config: Config, feature_table: str) -> list[str]:
    """Training-set versions built from this feature table."""
    return _trainsets_reading(all_manifests(config), f"features.{feature_table}")


def read_by(config: Config, table: str, manifests: list[dict] | None = None, commits=None) -> dict:
    """What reads lake table `table` (ZONE.NAME): the entity tables and feature tables whose
    definitions name it (sources.yml, features.yml), the training-set versions whose manifests
    read it (label source or lookup) and the predictions tables scored from it. `manifests`
    (see `all_manifests`) and `commits` (ref -> its commits) let a caller asking many times
    read each record once."""
    found = manifests if manifests is not None else all_manifests(config)
    return {
        "entity_tables": [f"entities.{n}" for n, spec in sorted(config.sources.entity_tables.items())
                          if spec.source == table],
        "feature_tables": [f"features.{versioned(n, t.version)}" for n, t in sorted(config.features.feature_tables.items())
                           if table in map(config.source_ref, t.sources.values())],
        "training_sets": _trainsets_reading(found, table),
        "predictions": scored_into(config, table, commits),
    }


def _trainsets_reading(manifests: list[dict], table: str) -> list[str]:
    return [f"{m['name']}@{m['version']}" for m in manifests
            if table in (m["label_source"].get("table"), *(f"features.{lk['table']}" for lk in m["lookups"]))]


def scored_into(config: Config, table: str, commits=None) -> list[str]:
    """Predictions tables that a scoring run wrote from input `table` (their commits' metadata)."""
    out = []
    for name in (places.lake_root(config) / "predictions").names():
        if not lake.REF.match(ref := f"predictions.{name}"):
            continue  # not a table the platform names
        path = places.table(config, ref)
        if not lake.exists(path):
            continue
        if any(table in ((c["metadata"] or {}).get("input") or {})
               for c in (commits(ref) if commits else lake.commits(path, ref))):
            out.append(ref)
    return out


def all_manifests(config: Config, damaged: list[str] | None = None) -> list[dict]:
    """Every training-set version's manifest; a damaged one is left out here, its reason
    appended to `damaged` (`trainsets` lists it with its reason, and using it is refused)."""
    out = []
    for name in training_sets.names(config):
        for version in training_sets.list_versions(config, name):
            try:
                out.append(training_sets.manifest(config, f"{name}@{version}"))
            except JobFailed as exc:
                if damaged is not None:
                    damaged.append(str(exc))
    return out


def sources(config: Config) -> list[dict]:
    """The raw sources (`raw.NAME`) and entity tables (`entities.NAME`) sources.yml declares,
    with their place in the lake: Delta's log only, no Spark job."""
    out = []
    declared = [("raw", n, s) for n, s in sorted(config.sources.sources.items())] + \
               [("entities", n, s) for n, s in sorted(config.sources.entity_tables.items())]
    for zone, name, spec in declared:
        ref = f"{zone}.{name}"
        path = places.table(config, ref)
        history = lake.commits(path, ref) if lake.exists(path) else []
        out.append({
            "name": name, "table": ref, "kind": "source" if zone == "raw" else "entity_table",
            "description": spec.description, "owner": spec.owner,
            # where its rows come from: a file or package path, or the lake table it is derived from
            "source": spec.path if zone == "raw" else spec.source,
            "format": spec.format if zone == "raw" else "delta",
            "version": history[-1]["version"] if history else None,
            "last_written": lake.iso_time(history[-1]["timestamp"]) if history else None,
        })
    return out


def show_source(config: Config, name: str) -> dict:
    """A raw source (NAME or raw.NAME) or an entity table (entities.NAME): its definition,
    schema and Delta history once in the lake, and what reads it."""
    ref = _source_ref(config, name)
    entry = next(e for e in sources(config) if e["table"] == ref)
    zone, bare = ref.split(".", 1)
    spec = config.sources.sources[bare] if zone == "raw" else config.sources.entity_tables[bare]
    path = places.table(config, ref)
    info = {**entry, "path": str(path), "filter": spec.filter,
            **({"options": spec.options} if zone == "raw" else {"transform": spec.transform}),
            "loaded": entry["version"] is not None}
    if info["loaded"]:
        info["schema"] = lake.schema(path, ref)
        info["history"] = [{k: c[k] for k in ("version", "timestamp", "operation", "rows_written")}
                           for c in lake.history(path)]
    else:
        info["schema"] = None
        info["status"] = (f"not loaded: load it with sparkml sources load {bare} (ws.load_sources([{bare!r}]))"
                          if zone == "raw" else
                          f"not built: build it with a pipeline's build_entities step "
                          f"(ws.build_entities([{bare!r}]))")
    info["read_by"] = read_by(config, ref)
    return info


def _source_ref(config: Config, name: str) -> str:
    """NAME or raw.NAME -> raw.NAME; entities.NAME as it is; anything else: NotFoundError."""
    known = [f"raw.{n}" for n in sorted(config.sources.sources)] + \
            [f"entities.{n}" for n in sorted(config.sources.entity_tables)]
    ref = name if "." in name else f"raw.{name}"
    if ref not in known:
        raise NotFoundError(f"no source or entity table named {name!r} in conf/*/sources.yml "
                            f"(known: {', '.join(known) or 'none'})")
    return ref


def trainsets(config: Config) -> list[dict]:
    out = []
    for name in training_sets.names(config):
        definition = config.training_sets.training_sets.get(name)
        for version in training_sets.list_versions(config, name) or [None]:
            entry = {"name": name, "description": definition.description if definition else
                     "made from a DataFrame", "version": version}
            if version is not None:
                try:
                    man = training_sets.manifest(config, f"{name}@{version}")
                except JobFailed as exc:  # one damaged manifest: listed as such, the rest still
                    entry["damaged"] = str(exc)
                else:
                    entry.update(created_at=man["created_at"], rows=man["rows"], digest=man["digest"])
            out.append(entry)
        for version in training_sets.unfinished_deletes(config, name):
            # A delete that stopped half-way: listed, with what finishes it.
            said = (f"being deleted: the delete of {name}@{version} did not finish (run: sparkml "
                    f"trainset delete {name}@{version})")
            listed = next((e for e in out if e["name"] == name and e["version"] == version), None)
            if listed is None:
                out.append({"name": name, "description": "", "version": version, "deleting": said})
            else:
                listed["deleting"] = said
    return out
