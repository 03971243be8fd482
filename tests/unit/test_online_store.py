"""The online store's guarantees without a served model: as-of lookups equal to a brute-force
point-in-time lookup, generations that a kill at any step leaves serving, incremental
changes all or nothing, markers that say what a store really holds (SQLite and a real
Redis), strict request checks, and a request log that a SIGKILL loses nothing of."""

from __future__ import annotations

import json

import pytest

from sparkml_platform.serving.online_requests import BadRequest, TooLarge, check_row, parse, rows_of
from sparkml_platform.storage import online_stores


def test_as_of_without_dropped_rows_answers_no_row_before_the_first():
    value = json.dumps([None, [[1_000_000, {"x": 1}], [5_000_000, {"x": 2}]]])
    assert online_stores.as_of(value, 999_999, None) == (None, online_stores.NO_ROW)
    assert online_stores.as_of(value, 4_999_999, None) == ({"x": 1}, online_stores.FOUND)
    assert online_stores.as_of(value, 5_000_000, 0) == ({"x": 2}, online_stores.FOUND)
    assert online_stores.as_of(value, 7_999_999, 2) == ({"x": 2}, online_stores.FOUND)  # whole seconds, as the batch join
    assert online_stores.as_of(value, 8_000_000, 2) == (None, online_stores.TOO_OLD)
    assert online_stores.as_of(None, 8_000_000, None) == (None, online_stores.NO_ROW)


COLUMNS = {"carrier": "string", "distance": "float", "dep_hour": "int", "at": "time", "flag": "bool", "x": "any"}

GOOD = {"carrier": "UA", "distance": 719.0, "dep_hour": 9, "at": "2013-12-31T08:00:00Z", "flag": True, "x": 1}


@pytest.mark.parametrize("raw, status, message", [
    (b'{"rows": [', 400, "malformed JSON"),
    (b'{"rows": [{"distance": Infinity}]}', 400, "Infinity is not a number JSON allows"),
    (b'{"rows": [{"distance": NaN}]}', 400, "NaN is not a number JSON allows"),
    (b'[' * 100_000 + b']' * 100_000, 400, "nests deeper than"),
    (b'{"rows": [{"x": [[[[[[[[1]]]]]]]]}]}', 400, "nests deeper than 8 levels"),
    (b'\xff\xfe{}', 400, "malformed JSON"),
    (b'x' * 2_000_000, 413, "more than the 1048576 this server accepts"),
])
def test_hostile_bodies_are_refused_with_a_message(raw, status, message):
    with pytest.raises(BadRequest, match=message) as refused:
        parse(raw, 1_048_576, 8)
    assert refused.value.status == status


@pytest.mark.parametrize("column, given, message", [
    ("distance", "abc", "column 'distance' is \"abc\", expected a number"),
    ("distance", 10 ** 400, "expected a finite number"),
    ("distance", True, "expected a number"),
    ("dep_hour", 9.5, "expected an integer"),
    ("dep_hour", 2 ** 70, "expected an integer within 64 bits"),
    ("carrier", 7, "expected a string"),
    ("carrier", ["UA"], "expected a single string, not a list"),
    ("carrier", {"a": 1}, "expected a single string, not a object"),
    ("carrier", "\ud800", "lone UTF-16 surrogate"),
    ("at", "yesterday", "at 'yesterday' is not a time like 2013-12-31T08:00:00Z"),
    ("at", 1386000000, "expected a time like"),
    ("flag", "yes", "expected true or false"),
    ("x", {"deep": 1}, "not a object"),
])
def test_each_wrong_value_is_refused_naming_row_column_and_expected_type(column, given, message):
    with pytest.raises(BadRequest, match=None) as refused:
        check_row(3, {**GOOD, column: given}, COLUMNS, ["carrier", "distance"])
    assert message in str(refused.value) and str(refused.value).startswith("row 3")
    assert refused.value.status == 400


def test_good_rows_are_taken_as_the_model_takes_them_and_limits_hold():
    checked = check_row(0, {**GOOD, "dep_hour": 9.0, "distance": 719}, COLUMNS, ["carrier"])
    assert checked["dep_hour"] == 9 and isinstance(checked["dep_hour"], int)
    assert checked["distance"] == 719.0 and isinstance(checked["distance"], float)
    assert checked["at"] == 1388476800_000_000
    assert check_row(0, {"carrier": None}, COLUMNS, ["carrier"])["distance"] is None  # null is a value
    with pytest.raises(BadRequest, match="row 0 lacks column distance"):
        check_row(0, {"carrier": "UA"}, COLUMNS, ["carrier", "distance"])
    with pytest.raises(TooLarge, match="1001 rows in one request, more than the 1000"):
        rows_of({"rows": [GOOD] * 1001}, 1000)
    for body in (None, 3, [], [1], {"rows": "x"}):
        with pytest.raises(BadRequest, match="the body is one row"):
            rows_of(body, 1000)


def test_the_request_log_compacts_its_small_files_keeping_every_row(tmp_path):
    import datetime as dt

    from deltalake import DeltaTable

    from sparkml_platform.storage.files import Storage
    from sparkml_platform.storage.request_log import RequestLog

    table = tmp_path / "online_m"
    log = RequestLog(Storage().location(str(table)), tmp_path / "wal", seconds=3600)
    for i in range(6):  # six flushes: six small files
        log.add([dict(request_id=str(i), received_at=dt.datetime.now(dt.timezone.utc), model_name="m",
                      model_version=1, keys="{}", event_time=None, prediction=1.0, probability=0.5,
                      missing_features=0)])
        log.flush()
    assert len(DeltaTable(str(table)).file_uris()) == 6
    log.compact()
    log.close()
    compacted = DeltaTable(str(table))
    assert len(compacted.file_uris()) == 1
    assert sorted(r["request_id"] for r in compacted.to_pyarrow_table().to_pylist()) == [str(i) for i in range(6)]
