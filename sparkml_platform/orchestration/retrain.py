"""Re-training as a composition of the Workspace's verbs: the model's feature tables built
incrementally, a training-set version built (unless the newest was made from the same
inputs: freshness.py), the training set's retention applied, then `train`."""

from __future__ import annotations

import json

from ..tracking import tracker as tracking
from . import freshness


def retrain(ws, model_name: str, echo=print):
    """Features (incrementally) and a new training-set version as of now (unless the newest
    was made from the same inputs), then `ws.train`: its result (a ModelResult).

    The decision (promoted, or not and why) is recorded on the new version either way; a
    candidate that is not promoted exits 3 like `train`.
    """
    spec = ws.config.model(model_name)
    tracking.check_reachable(ws.tracker.uri, ws.tracker.shown_uri)  # a server that is down fails before the work
    for lookup in ws.config.training_set(spec.training_set).features:
        built = ws.features.build(lookup.table).to_dict()
        echo(json.dumps({k: built.get(k) for k in ("table", "version", "mode", "window", "rows")}, default=str))
    # The same inputs make the same rows: the newest version is trained on again, so the
    # other candidates of the training set see no new version to retrain on.
    if (done := freshness.current(ws, "build_trainset", spec.training_set)) is not None:
        echo(json.dumps({"training_set": f"{spec.training_set}@{done['version']}", "rows": done["rows"],
                         "mode": done["mode"]}))
        return ws.train(model_name)
    built = ws.build_training_set(spec.training_set)
    man = built.manifest
    echo(json.dumps({"training_set": f"{man['name']}@{man['version']}", "rows": man["rows"]}))
    if built.pruned is not None:
        echo(json.dumps({"retention": built.pruned}))
    return ws.train(model_name)
