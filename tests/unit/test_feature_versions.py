"""Feature table versions without Spark: how NAME and NAME@N resolve and where they live, how
an older version's definition is read back from its Delta log, and the build refusals (a
changed definition under aliased models, a skipped version), on tables written with delta-rs."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from conftest import make_project

from sparkml_platform.config import split_version, versioned
from sparkml_platform.core.errors import ConfigError, NotFoundError
from sparkml_platform.features import build as features
from sparkml_platform.insight import catalog
from sparkml_platform.runtime.project import open_project
from sparkml_platform.storage import lake, places

TABLE = "origin_weather_hourly"


def config_with(tmp_path, version: int | None = None, **table):
    entry = {**({"version": version} if version is not None else {}), **table}
    overlay = {"features.yml": {"feature_tables": {TABLE: entry}}} if entry else None
    return open_project(make_project(tmp_path, overlay), "test")


def write_build(config, name: str, meta: dict, properties: dict | None = None) -> None:
    """A commit as a platform build records it (delta-rs: no JVM)."""
    from deltalake import CommitProperties, write_deltalake

    path = places.table(config, f"features.{name}")
    rows = pa.table({"origin": ["EWR"], "time_hour": pa.array([0], pa.timestamp("us")), "temp": [1.5]})
    write_deltalake(str(path), rows, mode="append", description="hourly weather" if properties else None,
                    commit_properties=CommitProperties(custom_metadata={"userMetadata": json.dumps(
                        {"kind": "feature_table", **meta})}))
    if properties:  # the properties a Spark build sets (delta-rs writes them only this way)
        from deltalake import DeltaTable

        DeltaTable(str(path)).alter.set_table_properties(properties, raise_if_not_exists=False)


def test_version_names_and_where_each_version_lives(tmp_path):
    root = places.lake_root(open_project(make_project(tmp_path), "test"))
    assert lake.table_path(root, "features.price") == root / "features" / "price"
    assert lake.table_path(root, "features.price@1") == root / "features" / "price"
    assert lake.table_path(root, "features.price@2") == root / "features" / "price__v2"
    for bad in ("raw.prices@2", "features.price@0", "features.price@x"):
        with pytest.raises(ConfigError, match="not a lake table name"):
            lake.table_path(root, bad)
    with pytest.raises(ConfigError, match="is named NAME@N, not by its folder"):
        lake.table_path(root, "features.price__v2")
    assert lake.table_path(root, "raw.sales__v2") == root / "raw" / "sales__v2"  # other zones: any name
    assert (versioned("price", 1), versioned("price", 3)) == ("price", "price@3")
    assert split_version("features.price@12") == ("price", 12) and split_version("price") == ("price", None)
    with pytest.raises(ConfigError, match="not a feature table name"):
        split_version("price@0")


def test_the_declared_version_is_what_a_plain_name_means(tmp_path):
    config = config_with(tmp_path, version=2)
    assert config.feature_table(TABLE).version == 2
    assert config.feature_ref(TABLE) == f"{TABLE}@2" and config.feature_ref(f"{TABLE}@1") == TABLE
    assert config.source_ref(f"features.{TABLE}") == f"features.{TABLE}@2"
    assert config.source_ref("raw.weather") == "raw.weather"
    with pytest.raises(ConfigError, match=f"declares version 2 of {TABLE}, not 3"):
        config.feature_table(f"{TABLE}@3")
    declared = features.resolve(config, TABLE)
    assert (declared.name, declared.number, declared.declared, declared.exact) == (f"{TABLE}@2", 2, True, f"{TABLE}@2")
    assert config_with(tmp_path / "one").feature_table(TABLE).version == 1


def test_a_name_like_a_version_folder_and_a_version_below_one_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="version: N instead"):
        open_project(make_project(tmp_path / "a", {"features.yml": {"feature_tables": {
            "price__v2": {"description": "d", "owner": "o", "keys": ["k"], "event_time": "t",
                          "sources": {"s": "raw.s"}, "transformation": "m.f",
                          "features": {"x": {"type": "double"}}}}}}), "test")
    with pytest.raises(ConfigError, match="greater than or equal to 1"):
        config_with(tmp_path / "b", version=0)


def test_an_older_version_is_read_back_from_its_own_builds(tmp_path):
    config = config_with(tmp_path, version=2)
    with pytest.raises(NotFoundError, match=f"{TABLE} has no version 1: features.yml declares version 2, "
                                            "and the lake holds no version of it"):
        features.resolve(config, f"{TABLE}@1")
    # Built before builds recorded their definition: described by its Delta metadata, enough
    # to read, look up and publish it, never to build it again.
    write_build(config, TABLE, {"definition_hash": "A", "sources": {"raw.weather": 3}},
                {"sparkml.keys": "origin", "sparkml.event_time": "time_hour", "sparkml.owner": "ops",
                 "sparkml.transformation": "pkg.weather"})
    described = features.resolve(config, f"{TABLE}@1")
    assert not described.buildable and described.definition.keys == ["origin"]
    assert (described.definition.event_time, described.definition.owner) == ("time_hour", "ops")
    assert described.definition.feature_types == {"temp": "double"}
    assert described.definition.sources == {"source_0": "raw.weather"}
    with pytest.raises(ConfigError, match="kept as it is"):
        features.check_change(config, f"{TABLE}@1")
    old = config.feature_table(TABLE).model_dump(mode="json") | {"lookback": "2h"}
    write_build(config, TABLE, {"definition_hash": "B", "definition": old})
    older = features.resolve(config, f"{TABLE}@1")
    assert (older.name, older.declared, older.exact, older.definition.lookback) == (TABLE, False, f"{TABLE}@1", "2h")
    assert features.lake_versions(config, TABLE) == [1]
    write_build(config, f"{TABLE}@2", {"definition_hash": "C"})
    assert features.lake_versions(config, TABLE) == [1, 2]
    listed = next(t for t in catalog.feature_tables(config) if t["name"] == TABLE)
    assert (listed["declared"], listed["lake_versions"]) == (f"{TABLE}@2", [TABLE, f"{TABLE}@2"])
    assert listed["version"] == 0  # the Delta version of the declared one
    with pytest.raises(NotFoundError, match=f"the lake holds {TABLE}, {TABLE}@2"):
        features.resolve(config, f"{TABLE}@5")


def test_versions_go_up_one_at_a_time(tmp_path):
    config = config_with(tmp_path, version=3)
    features._refuse_skipped_version(config, features.resolve(config, TABLE))  # a new lake: fine
    write_build(config, TABLE, {"definition_hash": "A"})
    with pytest.raises(ConfigError, match=f"version: 3 follows no version in the lake, which holds {TABLE} "
                                          f"but not {TABLE}@2; nothing written"):
        features._refuse_skipped_version(config, features.resolve(config, TABLE))
    write_build(config, f"{TABLE}@2", {"definition_hash": "B"})
    features._refuse_skipped_version(config, features.resolve(config, TABLE))


def test_a_changed_definition_under_aliased_models_is_refused_unless_retired(tmp_path):
    config = config_with(tmp_path)
    table = features.resolve(config, TABLE)
    path = table.path(config)
    asked = []

    def users():
        asked.append(1)
        return [{"model": "delays", "version": "3", "aliases": ["champion"], "tables": {TABLE: 0},
                 "definitions": {TABLE: "A"}},
                {"model": "delays", "version": "4", "aliases": ["challenger"], "tables": {TABLE: 0},
                 "definitions": {TABLE: "NEW"}},  # already on the new definition
                {"model": "other", "version": "1", "aliases": ["champion"], "tables": {"plane_attributes": 2},
                 "definitions": {"plane_attributes": "A"}}]

    new = {"definition_hash": "NEW", "code_hash": "c2", "config_hash": "y1"}
    assert features._dependents_of_a_change(table, path, new, users, retire=False) == []  # no build yet
    write_build(config, TABLE, {"definition_hash": "A", "code_hash": "c1", "config_hash": "y1"})
    same = {"definition_hash": "A", "code_hash": "c1", "config_hash": "y1"}
    assert features._dependents_of_a_change(table, path, same, users, retire=False) == []
    assert asked == []  # the registry is asked only when the definition changed
    with pytest.raises(ConfigError) as refused:
        features._dependents_of_a_change(table, path, new, users, retire=False)
    said = str(refused.value)
    assert f"feature table {TABLE}: the transformation's code changed (code hash c1 -> c2)" in said
    assert "delays version 3 (champion)" in said and "delays version 4" not in said and "other" not in said
    assert f"feature_tables.{TABLE}.version to 2" in said and f"built as {TABLE}@2" in said
    assert "--retire" in said and "Nothing written" in said
    assert features._dependents_of_a_change(table, path, new, users, retire=True) == ["delays/3"]


def test_a_champion_that_cannot_be_compared_follows_on_stale_champion():
    from sparkml_platform.config import Threshold
    from sparkml_platform.modeling.evaluation import verdict

    thresholds = {"rmse": Threshold(max=5.0, vs_champion=0.0)}
    stale = {"version": 3, "skipped": "version 2 of features.price was vacuumed"}
    assert verdict(thresholds, {"rmse": 1.0}, {**stale, "policy": "promote_if_thresholds_pass"})["passed"]
    kept = verdict(thresholds, {"rmse": 1.0}, {**stale, "policy": "keep"})
    assert not kept["passed"]
    assert kept["failed"] == ["champion = not computed, needs a comparison with champion v3 "
                              "(on_stale_champion: keep; version 2 of features.price was vacuumed)"]


def test_a_refused_build_names_the_aliased_model_from_the_registry_and_starts_no_jvm(tmp_path):
    from sparkml_platform import Workspace
    from sparkml_platform.tracking import registry

    config = config_with(tmp_path)
    write_build(config, TABLE, {"definition_hash": "OLD", "code_hash": "c0", "config_hash": "y0"})
    ws = Workspace.from_config(config)
    with ws.tracker.bound():
        client = ws.tracker.client
        client.create_registered_model("delays")
        tags = {"feature_tables": json.dumps({TABLE: 0}), "feature_definitions": json.dumps({TABLE: "OLD"})}
        first = client.create_model_version("delays", str(tmp_path / "model"), tags=tags)
        client.create_model_version("delays", str(tmp_path / "model"), tags=tags)  # no alias
        client.set_registered_model_alias("delays", "champion", first.version)
        client.set_registered_model_alias("delays", "pinned", first.version)
        assert registry.feature_users(ws.tracker) == [
            {"model": "delays", "version": "1", "aliases": ["champion", "pinned"], "tables": {TABLE: 0},
             "definitions": {TABLE: "OLD"}, "stale": None}]
    with pytest.raises(ConfigError, match=r"delays version 1 \(champion, pinned\)") as refused:
        ws.features.build(TABLE)
    assert "delays version 2" not in str(refused.value)
    assert not ws.spark_started
    assert [c["version"] for c in lake.commits(places.table(config, f"features.{TABLE}"))] == [0]


def test_a_version_number_is_no_part_of_the_definition_but_a_source_version_is(tmp_path):
    """Hashes recorded before versions existed stay valid (nothing rebuilds on an upgrade), and
    a table reading another feature table changes definition when that source is bumped."""
    from sparkml_platform.core.provenance import definition_hash

    one, two = config_with(tmp_path / "one"), config_with(tmp_path / "two", version=2)
    assert "version" not in one.feature_table(TABLE).model_dump()
    assert definition_hash(one.feature_table(TABLE)) == definition_hash(two.feature_table(TABLE))
    reader = {"description": "d", "owner": "o", "keys": ["origin"], "event_time": "time_hour",
              "sources": {"weather": f"features.{TABLE}"}, "transformation": "pkg.f",
              "features": {"x": {"type": "double"}}}

    def hashes(version):
        conf = make_project(tmp_path / f"r{version}", {"features.yml": {"feature_tables": {
            TABLE: {"version": version}, "reader": reader}}})
        config = open_project(conf, "test")
        return features.definition_hashes(config.feature_table("reader"), len, config)

    first, second = hashes(1), hashes(2)
    assert second["config_hash"] != first["config_hash"]
    assert first["config_hash"] == definition_hash(open_project(make_project(
        tmp_path / "plain", {"features.yml": {"feature_tables": {"reader": reader}}}), "test").feature_table("reader"))
