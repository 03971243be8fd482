"""Feature tables: built into Delta from lake sources, by window, idempotent, checked."""

from __future__ import annotations


from sparkml_platform.features import validation


def test_search_finds_a_table_by_a_word_of_a_feature_description(config):
    from sparkml_platform.insight import catalog

    assert [t["name"] for t in catalog.search(config, "humidity")] == ["origin_weather_hourly"]
    assert [t["name"] for t in catalog.search(config, "SEATS")] == ["plane_attributes"]
    assert catalog.search(config, "no such word") == []


def test_an_asset_left_without_its_batch_definition_by_a_failed_call_is_reused():
    import pandas as pd

    frame = pd.DataFrame({"x": [1.0, None]})
    items = [{"expect_column_values_to_not_be_null": {"column": "x"}}]
    validation.validate(frame, "some_other_table", items, "test")  # the process's context
    source = validation._context.data_sources.get("sparkml_pandas")
    source.add_dataframe_asset(name="half_added")  # what a call that failed next leaves behind
    summary = validation.validate(frame, "half_added", items, "test")
    assert summary["success"] is False and summary["failed"][0]["unexpected_count"] == 1
