"""Whether a step's output is already what running the step would make: one question per
kind of output, answered from the Delta logs, manifests, the online store's markers and the
registry (no Spark session), and the one place `force` is applied. The pipeline, re-training
and the Workspace's verbs ask here before they start any work."""

from __future__ import annotations

from ..features import build as features
from ..features import sources
from ..serving import publish, scoring
from ..training import train as training
from ..trainsets import build as training_sets

UP_TO_DATE = "up to date"


def current(ws, kind: str, target, force: bool = False) -> dict | None:
    """The record of `target`'s output as it stands (mode "up to date") when running step
    `kind` again would change nothing; None when it would (and always with `force`).
    `ws`: the Workspace (its configuration, tracker and online store)."""
    if force:
        return None
    config = ws.config
    if kind == "load_sources":
        return sources.up_to_date_source(config, target)
    if kind == "build_entities":
        return sources.up_to_date_entities(config, target)
    if kind == "build_features":
        return features.up_to_date(config, target)
    if kind == "publish_features":
        return publish.up_to_date(config, ws.online_store, target)
    if kind == "build_trainset":
        man = training_sets.up_to_date(config, target)
        return None if man is None else trainset_record(man, UP_TO_DATE)
    if kind == "train":
        return training.up_to_date(config, ws.tracker, target)
    if kind == "score":
        return scoring.up_to_date(config, ws.tracker, target.model, target.input, target.output, target.run_date)
    raise ValueError(f"no freshness check for a step of kind {kind!r}")


def trainset_record(man: dict, mode: str) -> dict:
    """What a pipeline reports of a training-set version, built or up to date."""
    return {"table": f"trainsets.{man['name']}", "version": man["version"], "mode": mode, "rows": man["rows"],
            "digest": man["digest"]}
