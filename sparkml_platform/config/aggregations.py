"""Declared time-window aggregations: a feature table computed by the platform from a source's
events instead of a hand-written transformation (features.yml `aggregations:`).

Semantics, the same in a table's snapshots, in training sets and online: an event is visible
at its event time plus the source's `availability` lag; the value of a window `w` at time t
covers the events visible in `t - w < visible <= t` (`lifetime`: every event visible at or
before t). Each function ignores null inputs; a window holding no non-null value gives null,
`count` included, so a key never seen and a key quiet for a window read alike.

This module is the declaration and what follows from it alone (the generated column names,
their types, the windows in seconds): plain data, checked when the YAML is loaded.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from .base import NAME, TABLE_REF, Duration, Strict, parse_duration

LIFETIME = "lifetime"
# Function -> the type of what it gives (count-like: bigint; the rest: double).
FUNCTIONS = {"count": "bigint", "approx_distinct": "bigint", "sum": "double", "mean": "double",
             "min": "double", "max": "double", "stddev": "double", "first": "double", "last": "double"}
# Functions that read any column type; the others need numbers (or booleans, as 0 and 1).
ANY_TYPE = ("count", "approx_distinct")
PERCENTILE = re.compile(r"^p(\d{1,2})(?:\.(\d+))?$")  # p50, p95, p99.9: an exact percentile


def percentile_of(function: str) -> float | None:
    """`p95` -> 0.95, `p99.9` -> 0.999; None for any other function."""
    match = PERCENTILE.match(function)
    if not match:
        return None
    return float(f"{match.group(1)}.{match.group(2) or '0'}") / 100


def function_type(function: str) -> str:
    return "double" if percentile_of(function) is not None else FUNCTIONS[function]


def window_seconds(window: str) -> int | None:
    """`7d` -> 604800; `lifetime` -> None (unbounded)."""
    return None if window == LIFETIME else parse_duration(window)


def column_name(column: str, function: str, window: str) -> str:
    """The generated name: `arr_delay_mean_7d`, `arr_delay_p99_9_30d`, `n_count_lifetime`."""
    return f"{column}_{function.replace('.', '_')}_{window}"


class WindowedColumn(Strict):
    """One input column, its functions and its windows: every function over every window."""

    column: str = Field(pattern=NAME)
    functions: list[str] = Field(min_length=1)
    windows: list[str] = Field(min_length=1)

    @field_validator("functions")
    @classmethod
    def _functions(cls, value: list[str]) -> list[str]:
        for function in value:
            if function not in FUNCTIONS and percentile_of(function) is None:
                raise ValueError(f"unknown function {function!r}: use {', '.join(FUNCTIONS)}, or a "
                                 "percentile like p50, p95 or p99.9")
            if (q := percentile_of(function)) is not None and not 0 < q < 1:
                raise ValueError(f"percentile {function!r} is not between p0 and p100")
        if len(set(value)) != len(value):
            raise ValueError(f"a function is given twice: {value}")
        return value

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        for window in value:
            if window != LIFETIME:
                try:
                    parse_duration(window)
                except ValueError:
                    raise ValueError(f"window {window!r} is not a duration like 1h, 7d or 30d (or "
                                     f"{LIFETIME})") from None
                if parse_duration(window) <= 0:
                    raise ValueError(f"window {window!r} is empty: give a positive duration")
        if len(set(value)) != len(value):
            raise ValueError(f"a window is given twice: {value}")
        return value


class Aggregations(Strict):
    """features.yml `feature_tables.NAME.aggregations`: the source's events, optionally
    filtered and with derived input columns (Spark SQL expressions), aggregated per the
    table's keys over each window. `snapshot`: the period of the table's rows (one per key at
    each period end where a value changes); every finite window is a whole number of periods."""

    source: str = Field(pattern=TABLE_REF)
    event_time: str
    filter: str | None = None
    columns: dict[str, str] = {}  # derived input column -> Spark SQL expression over the source
    availability: Duration | None = None  # how long after its event time an event lands
    snapshot: Duration = "1d"
    aggregate: list[WindowedColumn] = Field(min_length=1)
    rename: dict[str, str] = {}  # generated column name -> the name the table gives it

    @field_validator("columns")
    @classmethod
    def _derived(cls, value: dict[str, str]) -> dict[str, str]:
        for name, expression in value.items():
            if not re.match(NAME, name):
                raise ValueError(f"derived column name {name!r} must be lower case letters, digits and _")
            if not str(expression).strip():
                raise ValueError(f"derived column {name!r} has an empty expression")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        period = parse_duration(self.snapshot)
        for item in self.aggregate:
            for window in item.windows:
                seconds = window_seconds(window)
                if seconds is not None and seconds % period:
                    raise ValueError(f"window {window} of column {item.column} is not a whole number "
                                     f"of snapshot periods ({self.snapshot}): snapshots are taken at "
                                     "period ends, so each window must span whole periods")
        generated = self.generated()
        unknown = [name for name in self.rename if name not in generated]
        if unknown:
            raise ValueError(f"rename: {', '.join(unknown)} is not a generated column (they are "
                             f"{', '.join(generated)})")
        for new in self.rename.values():
            if not re.match(NAME, new):
                raise ValueError(f"rename: {new!r} must be lower case letters, digits and _")
        names = list(self.output_columns())
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two aggregates would be named {', '.join(twice)}: rename one")
        return self

    def generated(self) -> dict[str, tuple[str, str, str]]:
        """Generated name -> (input column, function, window), in declaration order."""
        out = {}
        for item in self.aggregate:
            for function in item.functions:
                for window in item.windows:
                    out[column_name(item.column, function, window)] = (item.column, function, window)
        return out

    def output_columns(self) -> dict[str, tuple[str, str, str]]:
        """The table's column name (renamed where asked) -> (input column, function, window)."""
        return {self.rename.get(name, name): spec for name, spec in self.generated().items()}

    def feature_types(self) -> dict[str, str]:
        return {name: function_type(function) for name, (_, function, _) in self.output_columns().items()}

    @property
    def inputs(self) -> list[str]:
        """The input columns aggregated, each once, in declaration order."""
        return list(dict.fromkeys(item.column for item in self.aggregate))

    @property
    def period_seconds(self) -> int:
        return parse_duration(self.snapshot)

    @property
    def availability_seconds(self) -> int:
        return parse_duration(self.availability) if self.availability else 0

    @property
    def longest_seconds(self) -> int | None:
        """The longest finite window (None: only lifetime windows)."""
        finite = [s for item in self.aggregate for w in item.windows if (s := window_seconds(w)) is not None]
        return max(finite) if finite else None
