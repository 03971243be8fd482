"""feature_definitions: which definition each Delta version of a feature table holds, and
when a model recorded on one may not read another; decided from commit lists alone."""

from __future__ import annotations

import pytest

from sparkml_platform.core.errors import ConfigError
from sparkml_platform.storage import feature_definitions as fd


def build(version: int, definition: str | None, at: int = 0, kind: str = "feature_table") -> dict:
    meta = {"kind": kind, **({"definition_hash": definition} if definition else {})}
    return {"version": version, "timestamp": 1_700_000_000_000 + at, "metadata": meta}


# v0 built with A, v1 an incremental build (A), v2 a description, v3 a full rebuild with B.
HISTORY = [build(0, "A"), build(1, "A", 10), build(2, None, 20, kind="table_metadata"), build(3, "B", 30_000)]


def commits_of(history):
    asked = []

    def commits(table):
        asked.append(table)
        return history
    return commits, asked


def test_a_version_holds_the_definition_of_the_newest_build_at_or_before_it():
    assert fd.definition_at(HISTORY, 2) == fd.Build(1, "A", 1_700_000_000_010)
    assert fd.definition_at(HISTORY, 3).definition == "B"
    assert fd.definition_at(HISTORY, None) is None
    # The builds before it were folded into a checkpoint: unknown, not guessed.
    assert fd.definition_at(HISTORY[2:], 2) is None


def test_a_change_is_the_first_build_after_a_version_with_another_definition():
    assert fd.changed_since(HISTORY, 0).version == 3
    assert fd.changed_since(HISTORY, 0, until=2) is None
    assert fd.changed_since(HISTORY, 3) is None
    assert fd.changed_since(HISTORY, 0, definition="B").version == 1  # A differs from B at once


def test_the_same_definition_is_accepted_without_reading_the_history():
    commits, asked = commits_of(HISTORY)
    assert fd.mismatch("m version 1", {"table": "t", "version": 0, "definition": "A"},
                       {"table": "t", "version": 2, "definition": "A"}, commits) is None
    assert asked == []


def test_another_definition_is_refused_naming_the_table_both_hashes_and_when_it_changed():
    commits, asked = commits_of(HISTORY)
    why = fd.mismatch("m version 1", {"table": "t", "version": 1, "definition": "A"},
                      {"table": "t", "version": 3, "definition": "B"}, commits)
    assert why == ("model m version 1 was trained on feature table t with definition A (Delta version 1); "
                   "version 3 of the table holds definition B, changed by the build of version 3 at "
                   "2023-11-14T22:13:50+00:00")
    assert asked == ["t"]


def test_a_lookup_recorded_before_definitions_mismatches_only_when_the_history_shows_a_change():
    commits, _ = commits_of(HISTORY)
    unknown = {"table": "t", "version": 1}
    assert fd.mismatch("m", unknown, {"table": "t", "version": 2, "definition": "A"}, commits) is None
    why = fd.mismatch("m", unknown, {"table": "t", "version": 3, "definition": "B"}, commits)
    assert "with definition unknown (Delta version 1)" in why and "build of version 3" in why
    # No recorded version either: nothing to compare with.
    assert fd.mismatch("m", {"table": "t"}, {"table": "t", "version": 3, "definition": "B"}, commits) is None


def test_a_table_version_no_build_recorded_is_not_refused():
    commits, _ = commits_of([])
    assert fd.mismatch("m", {"table": "t", "version": 0, "definition": "A"},
                       {"table": "t", "version": 4, "definition": None}, commits) is None


def test_verify_refuses_with_every_mismatched_table_and_what_follows():
    commits, _ = commits_of(HISTORY)
    recorded = [{"table": "t", "version": 1, "definition": "A"}, {"table": "u", "version": 0, "definition": "X"}]
    read = [{"table": "t", "version": 3, "definition": "B"}, {"table": "u", "version": 0, "definition": "X"}]
    with pytest.raises(ConfigError) as err:
        fd.verify("m version 1", recorded, read, commits)
    assert "feature table t with definition A" in str(err.value) and "feature table u" not in str(err.value)
    assert str(err.value).endswith(fd.SCORING)
    fd.verify("m version 1", recorded, [read[1]], commits)  # only the tables read are checked


def test_a_lookup_keeps_its_definition_and_reads_keys_a_later_version_adds():
    from sparkml_platform.storage.pit import FeatureLookup

    recorded = {"table": "t", "key_map": {"k": "k"}, "event_time": "at", "columns": {"x": "x"},
                "lookback_seconds": None, "version": 3, "definition": "A"}
    lookup = FeatureLookup.from_dict({**recorded, "recorded_by_a_later_version": True})
    assert lookup.to_dict() == recorded
    assert FeatureLookup.from_dict({k: v for k, v in recorded.items() if k != "definition"}).definition is None
