"""`sparkml lineage REF`: what an artifact was made from, and what was made from it."""

from __future__ import annotations

import json

from . import catalog, lake, refs, registry, training_sets
from .config import Config
from .errors import NotFoundError


def lineage(config: Config, tracker, ref: str) -> dict:
    for zone in ("features.", "trainsets."):
        if ref.startswith(zone):
            ref = ref[len(zone):]
    parsed = refs.parse(ref)
    if parsed.name in config.features.feature_tables and not parsed.is_model_only:
        return feature_table(config, parsed.name)
    if parsed.name in config.training_sets.training_sets and not parsed.is_model_only:
        return trainset(config, tracker, ref)
    try:
        return model(tracker, ref)
    except NotFoundError:
        raise NotFoundError(f"{ref!r} is neither a feature table, a training set nor a registered "
                            "model (see: sparkml features list, trainset list, models list)") from None


def feature_table(config: Config, name: str) -> dict:
    path = lake.table_path(config.lake_root, f"features.{name}")
    commits = lake.commits(path) if lake.exists(path) else []
    latest = (commits[-1]["metadata"] or {}) if commits else {}
    return {
        "kind": "feature_table",
        "ref": f"features.{name}",
        "version": commits[-1]["version"] if commits else None,
        "upstream": latest.get("sources", dict(config.feature_table(name).sources.items())),
        "definition_hash": latest.get("definition_hash"),
        "code": latest.get("code"),
        "downstream": catalog.used_by(config, name),
    }


def trainset(config: Config, tracker, ref: str) -> dict:
    man = training_sets.manifest(config, ref)
    upstream = {man["label_source"]["table"]: man["label_source"]["version"]}
    upstream.update({f"features.{lk['table']}": lk["version"] for lk in man["lookups"]})
    return {
        "kind": "training_set",
        "ref": f"{man['name']}@{man['version']}",
        "digest": man["digest"],
        "upstream": upstream,
        "code": man["code"],
        "downstream": registry.trained_on(tracker, man["name"]).get(man["version"], []),
    }


def model(tracker, ref: str) -> dict:
    mv = registry.resolve(tracker, ref)
    tags = dict(mv.tags or {})
    return {
        "kind": "model_version",
        "ref": f"{mv.name}/{mv.version}",
        "run_id": mv.run_id,
        "upstream": {
            "training_set": f"{tags.get('training_set')}@{tags.get('training_set_version')}",
            "training_set_digest": tags.get("training_set_digest"),
            "feature_tables": json.loads(tags.get("feature_tables", "{}")),
            "environment_id": tags.get("environment_id"),
            "code": json.loads(tags.get("code_version", "null")),
        },
    }

