"""Re-training as a composition of the stages' verbs: build the features incrementally,
build a training-set version (unless the newest was made from the same inputs), apply the
training set's retention, then train."""

from __future__ import annotations

import json

from ..config import Config
from ..features import build as features
from ..tracking import registry
from ..tracking import tracker as tracking
from ..training.train import train
from ..trainsets import build as training_sets


def retrain(spark, config: Config, tracker: tracking.Tracker, model_name: str, echo=print) -> dict:
    """Features (incrementally) and a new training-set version as of now (unless the newest
    was made from the same inputs), then `train`.

    The decision (promoted, or not and why) is recorded on the new version either way; a
    candidate that is not promoted exits 3 like `train`.
    """
    spec = config.model(model_name)
    tracking.check_reachable(tracker.uri, tracker.shown_uri)  # a server that is down fails before the work
    def users():
        with tracker.bound():
            return registry.feature_users(tracker)

    for lookup in config.training_set(spec.training_set).features:
        built = features.build(spark, config, lookup.table, users=users)
        echo(json.dumps({k: built.get(k) for k in ("table", "version", "mode", "window", "rows")}, default=str))
    # The same inputs make the same rows: the newest version is trained on again, so the
    # other candidates of the training set see no new version to retrain on.
    if (man := training_sets.up_to_date(config, spec.training_set)) is not None:
        echo(json.dumps({"training_set": f"{man['name']}@{man['version']}", "rows": man["rows"],
                         "mode": "up to date"}))
        return train(spark, config, tracker, model_name)
    man = training_sets.build(spark, config, spec.training_set)
    echo(json.dumps({"training_set": f"{man['name']}@{man['version']}", "rows": man["rows"]}))
    if (pruned := training_sets.after_build(config, tracker, spec.training_set)) is not None:
        echo(json.dumps({"retention": pruned}))
    return train(spark, config, tracker, model_name)
