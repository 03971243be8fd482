"""What a model version records: one typed record, written as registry tags and read back."""

import dataclasses
import json

from sparkml_platform.tracking.registry import version_record
from sparkml_platform.tracking.version_record import ALIASES_SET, STALE, VersionRecord

MANIFEST = {"name": "delays", "version": 7, "digest": "abc123",
            "lookups": [{"table": "weather", "version": 3, "definition": "h1"},
                        {"table": "planes@2", "version": 0}],
            "rows": {"train": 800, "test": 200}, "code": {"content_hash": "c0"}}
ENV = {"id": "env42", "python": "3.11.7"}


def _record(passed: bool, **verdict) -> VersionRecord:
    return version_record("flight_delays", "run1", MANIFEST, ENV, {"roc_auc": 0.81234567, "f1": float("nan")},
                          {"passed": passed, "checks": [{"metric": "roc_auc", "passed": passed}],
                           "failed": [] if passed else ["roc_auc 0.81 < 0.9"], **verdict},
                          params={"maxDepth": 5}, spec_name="gbt", code={"content_hash": "c1"}, spec_hash="s1")


def test_a_record_read_back_from_its_tags_is_the_record_written():
    record = _record(True, champion={"version": "3"})
    tags = record.to_tags()
    assert all(isinstance(v, str) for v in tags.values())
    back = VersionRecord.from_tags(tags)
    # NaN metrics are not recorded; metrics are kept to six decimals.
    assert back == dataclasses.replace(record, metrics={"roc_auc": 0.812346})
    assert back.training_set_ref == "delays@7"
    assert back.feature_tables == {"weather": 3, "planes@2": 0}
    assert back.feature_definitions == {"weather": "h1", "planes@2": None}
    assert back.rows == {"train": 800, "validation": 0, "test": 200}
    assert back.promoted and back.decision == "promoted to champion"
    assert back.compared_with == "champion v3"


def test_the_decision_says_why_a_version_was_not_promoted():
    record = _record(False)
    assert not record.promoted
    assert record.decision == "not promoted: roc_auc 0.81 < 0.9"
    assert record.to_tags()["gate"] == "failed"
    assert record.compared_with == "no champion yet"
    skipped = _record(False, champion={"version": "2", "skipped": "its features changed"})
    assert skipped.compared_with == "champion v2 (skipped: its features changed)"


def test_tags_the_registry_uses_are_the_ones_older_versions_hold():
    """Readers search and read these exact tag names (tags.training_set = '...' in the registry)."""
    tags = _record(True).to_tags()
    assert {"model_spec", "model_spec_hash", "training_set", "training_set_version", "training_set_digest",
            "feature_tables", "feature_definitions", "code_version", "environment_id", "python", "params",
            "gate", "gate_checks", "compared_with", "decision", "run_id", "metric.roc_auc",
            "train_rows", "validation_rows", "test_rows"} == set(tags)
    assert json.loads(tags["code_version"]) == {"content_hash": "c1"}
    assert tags["training_set_version"] == "7"


def test_a_version_registered_elsewhere_or_by_an_older_platform_reads_as_unknown_never_an_error():
    assert VersionRecord.from_tags(None) == VersionRecord()
    old = VersionRecord.from_tags({"decision": "promoted to champion", "training_set": "delays",
                                   "training_set_version": "v2", "feature_tables": "{not json",
                                   "metric.rmse": "n/a", "params": "[1, 2]", ALIASES_SET: "by its training",
                                   STALE: "weather retired"})
    assert old.promoted and old.aliases_set == "by its training" and old.stale == "weather retired"
    assert old.training_set_version is None and old.training_set_ref is None
    assert old.feature_tables == {} and old.metrics == {} and old.params == {}
    assert old.gate_passed is None and old.code is None
    assert "gate" not in old.to_tags() and "training_set_version" not in old.to_tags()
