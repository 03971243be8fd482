"""Discovery: what feature tables and training sets exist, what they hold, who owns them."""

from __future__ import annotations

from . import lake, statistics, training_sets
from .config import Config
from .errors import JobFailed


def feature_tables(config: Config) -> list[dict]:
    out = []
    for name, table in sorted(config.features.feature_tables.items()):
        path = lake.table_path(config.lake_root, f"features.{name}")
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


def show_feature_table(spark, config: Config, name: str) -> dict:
    from pyspark.sql import functions as F

    table = config.feature_table(name)
    path = lake.table_path(config.lake_root, f"features.{name}")
    info = {
        "name": name,
        "table": f"features.{name}",
        "path": str(path),
        "description": table.description,
        "owner": table.owner,
        "tags": table.tags,
        "keys": table.keys,
        "event_time": table.event_time,
        "lookback": table.lookback,
        "transformation": table.transformation,
        "sources": table.sources,
        "features": {n: f.model_dump() for n, f in table.features.items()},
        "built": lake.exists(path),
    }
    if info["built"]:
        df = lake.read(spark, path, ref=f"features.{name}")
        row = df.agg(F.count("*").alias("rows"), F.min(table.event_time).alias("first"),
                     F.max(table.event_time).alias("last")).collect()[0]
        info["rows"] = row["rows"]
        info["event_time_range"] = [str(row["first"]), str(row["last"])]
        info["history"] = lake.history(path)
        builds = [c for c in lake.commits(path) if (c["metadata"] or {}).get("kind") == "feature_table"]
        info["last_build"] = _build_summary(builds[-1]) if builds else None
        full = [c for c in builds if c["metadata"].get("mode") == "full"]
        info["last_full_build"] = _build_summary(full[-1]) if full else None
        info["latest_statistics"] = statistics.for_version(
            spark, path, lake.version(spark, path), table.feature_types, table.event_time) \
            or statistics.latest(path)
        info["used_by"] = used_by(config, name)
    return info


def _build_summary(commit: dict) -> dict:
    """A build's version, time, mode and why a full build happened (first build, asked for,
    the definition or the transformation's code changed)."""
    meta = commit["metadata"]
    return {"version": commit["version"], "when": lake.iso_time(commit["timestamp"]), "mode": meta.get("mode"),
            "reason": meta.get("reason"), "window": meta.get("window"),
            "definition_hash": meta.get("definition_hash"), "code_hash": meta.get("code_hash")}


def compare_versions(spark, config: Config, name: str, old: int, new: int) -> dict:
    from .errors import NotFoundError

    table = config.feature_table(name)
    path = lake.table_path(config.lake_root, f"features.{name}")
    loaded = {v: statistics.for_version(spark, path, v, table.feature_types, table.event_time)
              for v in (old, new)}
    missing = [str(v) for v, s in loaded.items() if s is None]
    if missing:
        have = statistics.kept_versions(path)
        raise NotFoundError(f"feature table {name} has no statistics for version "
                            f"{', '.join(missing)} (versions with statistics: {have or 'none'})")
    return {"table": f"features.{name}", **statistics.compare(loaded[old], loaded[new])}


def used_by(config: Config, feature_table: str) -> list[str]:
    """Training-set versions built from this feature table."""
    out = []
    for name in training_sets.names(config):
        for version in training_sets.list_versions(config, name):
            man = training_sets.manifest(config, f"{name}@{version}")
            if any(lk["table"] == feature_table for lk in man["lookups"]):
                out.append(f"{name}@{version}")
    return out


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
