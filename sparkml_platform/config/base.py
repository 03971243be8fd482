"""The configuration's primitives, shared by the schema's files: names, table references,
durations and the strict base model (unknown keys are errors)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

NAME = r"^[a-z][a-z0-9_]*$"
TABLE_REF = r"^((raw|entities|trainsets|predictions)\.[a-z][a-z0-9_]*|features\.[a-z][a-z0-9_]*(@[1-9][0-9]*)?)$"
DURATION = re.compile(r"^(\d+)\s*(s|m|h|d)$")


def _duration(value: str) -> str:
    parse_duration(value)
    return value


Duration = Annotated[str, AfterValidator(_duration)]  # like 90m, 3h or 7d


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def parse_duration(text: str) -> int:
    """'3h' -> 10800 seconds. Units: s, m, h, d."""
    match = DURATION.match(str(text).strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 90m, 3h or 7d")
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return int(match.group(1)) * seconds
