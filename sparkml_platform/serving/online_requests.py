"""What `sparkml serve` accepts in a /predict body, checked before anything is looked up or
scored, so that nothing a client sends is answered 500: a body too large or with too many
rows is 413, anything else wrong is 400 naming the row, the column and what was expected.

Each column has a kind: `int`, `float`, `string`, `bool`, `time` (ISO 8601 text) or `any` (a
scalar). Null is accepted for every column (scored with null, as batch scoring does).
"""

from __future__ import annotations

import datetime as dt
import json
import math

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
INT64 = 1 << 63


class BadRequest(ValueError):
    """What the client sent is wrong: answered with `status` and this message."""

    status = 400


class TooLarge(BadRequest):
    status = 413


def kind_of(type_name: str | None) -> str:
    """A column's kind from an MLflow signature type or a Spark type name."""
    name = (type_name or "").lower()
    if name in ("long", "integer", "int", "bigint", "smallint", "tinyint"):
        return "int"
    if name in ("double", "float"):
        return "float"
    if name == "string":
        return "string"
    if name in ("boolean", "bool"):
        return "bool"
    if name in ("datetime", "timestamp", "timestamp_ntz", "date"):
        return "time"
    return "any"


def parse(raw: bytes, max_bytes: int, max_depth: int):
    """The body's JSON: no NaN or Infinity, at most `max_depth` levels of nesting."""
    if len(raw) > max_bytes:
        raise TooLarge(f"the body is {len(raw)} bytes, more than the {max_bytes} this server accepts "
                       "(serving.max_request_bytes): send fewer rows per request")

    def refuse(constant):
        raise BadRequest(f"malformed JSON: {constant} is not a number JSON allows")

    try:
        body = json.loads(raw, parse_constant=refuse)
    except RecursionError:
        raise BadRequest(f"the body nests deeper than {max_depth} levels") from None
    except UnicodeDecodeError as exc:
        raise BadRequest(f"malformed JSON: the body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:
        if isinstance(exc, BadRequest):
            raise
        raise BadRequest(f"malformed JSON: {exc}") from None
    _depth(body, max_depth)
    return body


def _depth(body, limit: int) -> None:
    level = [body]
    for depth in range(1, limit + 2):
        inner = [v for x in level for v in (x.values() if isinstance(x, dict) else x if isinstance(x, list) else ())
                 if isinstance(v, (dict, list))]
        if not inner:
            return
        if depth >= limit:
            raise BadRequest(f"the body nests deeper than {limit} levels (serving.max_json_depth)")
        level = inner


def rows_of(body, max_rows: int) -> list[dict]:
    """The rows of a body: one row, a list of rows, or {"rows": [...]}."""
    rows = body.get("rows") if isinstance(body, dict) and "rows" in body else body
    rows = [rows] if isinstance(rows, dict) else rows
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise BadRequest('the body is one row ({"column": value, ...}), a list of rows, or {"rows": [...]}')
    if len(rows) > max_rows:
        raise TooLarge(f"{len(rows)} rows in one request, more than the {max_rows} this server accepts "
                       "(serving.max_rows): send them in several requests")
    return rows


def check_row(index: int, row: dict, columns: dict[str, str], required: list[str]) -> dict:
    """The row's values of `columns` (name -> kind), each checked and as the model takes it;
    a column in `required` must be present (null is a value)."""
    absent = [c for c in required if c not in row]
    if absent:
        raise BadRequest(f"row {index} lacks column {', '.join(absent)} (each row needs {', '.join(required)})")
    return {name: value(index, name, row.get(name), kind) for name, kind in columns.items()}


def value(index: int, column: str, given, kind: str):
    """One value, checked against its kind (an integral float is an int; an int is a float)."""
    if given is None:
        return None

    def wrong(expected: str):
        shown = json.dumps(given, ensure_ascii=True, default=str)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return BadRequest(f"row {index}: column {column!r} is {shown}, expected {expected}")

    if isinstance(given, (dict, list)):
        raise wrong(f"a single {_expected(kind)}, not a {'list' if isinstance(given, list) else 'object'}")
    if isinstance(given, str):
        try:
            given.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(f"row {index}: column {column!r} holds a lone UTF-16 surrogate, which is "
                             "no character") from None
    if kind == "int":
        if isinstance(given, bool) or not isinstance(given, (int, float)):
            raise wrong("an integer")
        if isinstance(given, float) and not given.is_integer():
            raise wrong("an integer")
        if not -INT64 <= int(given) < INT64:
            raise wrong("an integer within 64 bits")
        return int(given)
    if kind == "float":
        if isinstance(given, bool) or not isinstance(given, (int, float)):
            raise wrong("a number")
        try:
            number = float(given)
        except OverflowError:
            raise wrong("a finite number") from None
        if not math.isfinite(number):
            raise wrong("a finite number")
        return number
    if kind == "string":
        if not isinstance(given, str):
            raise wrong("a string")
        return given
    if kind == "bool":
        if not isinstance(given, bool):
            raise wrong("true or false")
        return given
    if kind == "time":
        if not isinstance(given, str):
            raise wrong("a time like 2013-12-31T08:00:00Z")
        return micros(given, index, column)
    return given


def _expected(kind: str) -> str:
    return {"int": "integer", "float": "number", "string": "string", "bool": "boolean",
            "time": "time"}.get(kind, "value")


def micros(text: str, index: int, column: str) -> int:
    """An ISO 8601 time (UTC when it names no zone) as microseconds since 1970."""
    try:
        at = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"row {index}: {column} {text[:60]!r} is not a time like 2013-12-31T08:00:00Z") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.timezone.utc)
    try:
        at = at.astimezone(dt.timezone.utc)
    except OverflowError:
        raise BadRequest(f"row {index}: {column} {text[:60]!r} falls outside the years 1 to 9999 in UTC") from None
    return (at - EPOCH) // dt.timedelta(microseconds=1)


def spark_key(value, spark_type: str | None):
    """A checked key value as Spark's to_json writes it in a stored key: a timestamp (held
    here in microseconds) as ISO text in UTC to the millisecond, a date as its day."""
    if value is None or spark_type not in ("timestamp", "date"):
        return value
    at = EPOCH + dt.timedelta(microseconds=value)
    if spark_type == "date":
        return at.date().isoformat()
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
