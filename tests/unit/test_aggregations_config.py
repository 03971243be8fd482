"""features.yml `aggregations:` as the loader reads it: generated names and types, and every
bad declaration refused at load (exit 2) naming the file and the key, before anything runs."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO

from sparkml_platform.cli import main
from sparkml_platform.config import load_config
from sparkml_platform.config.aggregations import Aggregations, column_name, percentile_of, window_seconds

TABLE = {
    "description": "Late arrivals per carrier.", "owner": "tests", "keys": ["carrier"], "event_time": "as_of",
    "aggregations": {
        "source": "entities.flights", "event_time": "sched_dep_time", "filter": "arr_delay IS NOT NULL",
        "columns": {"late": "CAST(arr_delay > 15 AS DOUBLE)"},
        "aggregate": [{"column": "late", "functions": ["count", "mean"], "windows": ["7d", "30d"]},
                      {"column": "arr_delay", "functions": ["p95", "approx_distinct"], "windows": ["lifetime"]}],
        "rename": {"late_mean_7d": "late_rate_7d"}}}


def project(tmp_path, table: dict):
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf" / "base", conf / "base")
    features = yaml.safe_load((conf / "base" / "features.yml").read_text())
    features["feature_tables"]["carrier_windows"] = table
    (conf / "base" / "features.yml").write_text(yaml.safe_dump(features, sort_keys=False))
    return conf


def test_generated_names_and_types_become_the_tables_features(tmp_path):
    table = load_config(project(tmp_path, TABLE)).feature_table("carrier_windows")
    assert table.sources == {"events": "entities.flights"} and table.transformation is None
    assert table.feature_types == {
        "late_count_7d": "bigint", "late_count_30d": "bigint", "late_rate_7d": "double",
        "late_mean_30d": "double", "arr_delay_p95_lifetime": "double",
        "arr_delay_approx_distinct_lifetime": "bigint"}
    assert table.features["late_rate_7d"].description == "mean of late over the last 7d"


def test_names_windows_and_percentiles():
    assert column_name("arr_delay", "p99.9", "30d") == "arr_delay_p99_9_30d"
    assert percentile_of("p99.9") == pytest.approx(0.999) and percentile_of("p5") == pytest.approx(0.05)
    assert percentile_of("mean") is None
    assert window_seconds("lifetime") is None and window_seconds("2h") == 7200
    spec = Aggregations.model_validate(TABLE["aggregations"])
    assert spec.inputs == ["late", "arr_delay"] and spec.longest_seconds == 30 * 86400
    assert spec.period_seconds == 86400 and spec.availability_seconds == 0


def with_aggregations(**change) -> dict:
    return {**TABLE, "aggregations": {**TABLE["aggregations"], **change}}


BAD = [
    ("a window that is not a duration",
     with_aggregations(aggregate=[{"column": "late", "functions": ["count"], "windows": ["a week"]}]),
     "feature_tables.carrier_windows.aggregations.aggregate.0.windows", "'a week' is not a duration"),
    ("an unknown function",
     with_aggregations(aggregate=[{"column": "late", "functions": ["median"], "windows": ["7d"]}]),
     "feature_tables.carrier_windows.aggregations.aggregate.0.functions", "unknown function 'median'"),
    ("aggregations and a transformation",
     {**TABLE, "transformation": "pkg.mod.fn"},
     "feature_tables.carrier_windows", "aggregations and transformation are both given"),
    ("features given by hand",
     {**TABLE, "features": {"late_rate_7d": {"type": "double"}}},
     "feature_tables.carrier_windows", "features: not given for an aggregation table"),
    ("a window that is not whole periods",
     with_aggregations(aggregate=[{"column": "late", "functions": ["count"], "windows": ["36h"]}]),
     "feature_tables.carrier_windows.aggregations", "window 36h of column late is not a whole number"),
    ("a rename of no generated column",
     with_aggregations(rename={"late_rate": "x"}),
     "feature_tables.carrier_windows.aggregations", "rename: late_rate is not a generated column"),
    ("a percentile out of range",
     with_aggregations(aggregate=[{"column": "late", "functions": ["p0"], "windows": ["7d"]}]),
     "feature_tables.carrier_windows.aggregations.aggregate.0.functions", "percentile 'p0'"),
    ("no source",
     {**TABLE, "aggregations": {k: v for k, v in TABLE["aggregations"].items() if k != "source"}},
     "feature_tables.carrier_windows.aggregations.source", "required key is missing"),
]


@pytest.mark.parametrize("what, table, key, message", BAD, ids=[b[0] for b in BAD])
def test_a_bad_declaration_exits_2_at_load_naming_file_and_key(tmp_path, capsys, what, table, key, message):
    conf = project(tmp_path, table)
    assert main(["--conf", str(conf), "features", "list"]) == 2
    err = capsys.readouterr().err
    assert "conf/base/features.yml" in err and key in err and message in err, err
    assert not (tmp_path / ".sparkml").exists()  # nothing written


def test_tables_and_lookups_without_the_new_keys_hash_as_before():
    """Builds, manifests and models record definition hashes of these dumps: a platform with
    `aggregations` and `accuracy` must give a transformation table and a plain lookup the
    same dump (so the same hash) as one without them, or every aliased model's table would
    read as changed."""
    from sparkml_platform.config.schema import FeatureTable, Lookup

    table = FeatureTable.model_validate({
        "description": "d", "owner": "o", "keys": ["k"], "event_time": "t", "sources": {"x": "raw.x"},
        "transformation": "pkg.mod.fn", "features": {"f": {"type": "double"}}})
    assert set(table.model_dump()) == {"description", "owner", "tags", "keys", "event_time", "sources",
                                       "transformation", "features", "lookback", "partition_by",
                                       "expectations", "on_failure"}
    assert set(Lookup(table="t").model_dump()) == {"table", "features", "key_map", "rename", "lookback"}
    assert Lookup(table="t", accuracy="snapshot").model_dump()["accuracy"] == "snapshot"
    aggregated = FeatureTable.model_validate(TABLE).model_dump(mode="json")
    assert aggregated["aggregations"]["source"] == "entities.flights" and aggregated["transformation"] is None
