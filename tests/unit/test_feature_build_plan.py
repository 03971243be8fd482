"""A feature-table build's decision (features/plan.py), without Spark: the mode, the window,
why a whole build, the chunks, and whether building again would write the same rows."""

import datetime as dt

import pytest

from sparkml_platform.core.errors import ConfigError
from sparkml_platform.features import plan

D = dt.date
NOW = {"definition_hash": "d2", "expectations_hash": "e1", "code_hash": "c2", "config_hash": "f1"}
LAST = {"kind": "feature_table", "mode": "incremental", "definition_hash": "d2", "expectations_hash": "e1",
        "code_hash": "c2", "config_hash": "f1", "sources": {"raw.weather": 4}}


def test_a_window_is_parsed_both_days_included_and_refused_when_reversed_or_half_given():
    assert plan.parse_window("2013-01-01", "2013-01-01") == (D(2013, 1, 1),) * 2
    assert plan.parse_window(None, None) is None
    with pytest.raises(ConfigError, match="end 2013-01-01 is before start 2013-01-05"):
        plan.parse_window("2013-01-05", "2013-01-01")
    with pytest.raises(ConfigError, match="start and end go together"):
        plan.parse_window("2013-01-05", None)
    with pytest.raises(ConfigError, match="start/end: .* \\(use YYYY-MM-DD\\)"):
        plan.parse_window("2013-13-01", "2013-12-31")


def test_a_first_build_a_changed_definition_or_suite_and_a_full_request_rebuild_the_whole_table():
    assert plan.plan(None, NOW) == plan.BuildPlan("full", None, "first build", [None])
    assert plan.plan(LAST, NOW, full=True).reason == "a full rebuild was asked for"
    code = plan.plan({**LAST, "definition_hash": "d1", "code_hash": "c1"}, NOW)
    assert code.mode == "full" and code.reason == "the transformation's code changed (code hash c1 -> c2)"
    both = plan.plan({**LAST, "definition_hash": "d1", "code_hash": "c1", "config_hash": "f0"}, NOW).reason
    assert both == ("the transformation's code changed (code hash c1 -> c2); "
                    "the definition in features.yml changed (hash f0 -> f1)")
    older = plan.plan({"definition_hash": "d0"}, NOW).reason  # recorded before code and config hashes
    assert older == "the definition changed (hash d0 -> d2)"
    suite = plan.plan({**LAST, "expectations_hash": "e0"}, NOW).reason
    assert suite.startswith("the expectation suite changed (hash e0 -> e1)")
    # A build recorded before suites were takes the current suite as its own.
    assert plan.plan({k: v for k, v in LAST.items() if k != "expectations_hash"}, NOW,
                     newest_day=D(2013, 3, 1)).mode == "incremental"


def test_an_incremental_build_starts_again_at_the_newest_day_built_with_an_open_end():
    decided = plan.plan(LAST, NOW, newest_day=D(2013, 3, 9), chunk_days=2)
    assert decided == plan.BuildPlan("incremental", (D(2013, 3, 9), None), None, [(D(2013, 3, 9), None)])
    with pytest.raises(ValueError, match="newest event day"):
        plan.plan(LAST, NOW)


def test_an_explicit_window_is_cut_into_chunks_the_last_one_shorter():
    window = (D(2013, 1, 1), D(2013, 1, 10))
    decided = plan.plan(LAST, NOW, window=window, chunk_days=4)
    assert decided.mode == "window" and decided.window == window and decided.reason is None
    assert decided.chunks == [(D(2013, 1, 1), D(2013, 1, 4)), (D(2013, 1, 5), D(2013, 1, 8)),
                              (D(2013, 1, 9), D(2013, 1, 10))]
    assert plan.plan(LAST, NOW, window=window).chunks == [window]
    assert plan.chunks((D(2013, 1, 1), D(2013, 1, 1)), 7) == [(D(2013, 1, 1), D(2013, 1, 1))]
    with pytest.raises(ConfigError, match="chunk_days 0: give a number of days, 1 or more"):
        plan.plan(LAST, NOW, window=window, chunk_days=0)


@pytest.mark.parametrize("kinds, last, sources, stats, fresh", [
    (["feature_table"], LAST, {"raw.weather": 4}, True, True),
    (["feature_table", "table_metadata"], LAST, {"raw.weather": 4}, True, True),  # a description changed
    (["feature_table", "feature_table_delete"], LAST, {"raw.weather": 4}, True, False),  # another write since
    (["feature_table"], LAST, {"raw.weather": 5}, True, False),  # a source moved on
    (["feature_table"], LAST, None, True, False),  # a source is missing
    (["feature_table"], LAST, {"raw.weather": 4}, False, False),  # its statistics were not recorded
    (["feature_table"], {**LAST, "mode": "window"}, {"raw.weather": 4}, True, False),  # only a window built
    (["feature_table"], {**LAST, "definition_hash": "d1"}, {"raw.weather": 4}, True, False),
    (["feature_table"], {**LAST, "expectations_hash": "e0"}, {"raw.weather": 4}, True, False),
    ([None, "table_metadata"], None, {"raw.weather": 4}, True, False),  # never built by the platform
])
def test_a_table_is_up_to_date_only_when_building_again_would_write_the_same_rows(kinds, last, sources,
                                                                                   stats, fresh):
    assert plan.fresh(kinds, last, NOW, sources, stats) is fresh


def test_a_resolved_version_imports_its_transformation_once_for_every_check(config, monkeypatch):
    """Names become objects once: the Workspace resolves NAME, and the freshness check, the
    refusals and the build use that version, importing the user's transformation once."""
    from sparkml_platform.features import build
    from sparkml_platform.storage import feature_tables

    imported = []
    real = feature_tables.import_function
    monkeypatch.setattr(feature_tables, "import_function", lambda *a: imported.append(a[0]) or real(*a))
    table = feature_tables.resolve(config, "origin_weather_hourly")
    assert build.check_change(config, table)[0] is table
    build.up_to_date(config, table)
    build.small_inputs(config, table)
    assert table.transform is table.transform
    assert imported == ["sparkml_platform.reference.flights.origin_weather_hourly"]
