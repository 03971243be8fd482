"""The one grammar for references to versioned artifacts.

    NAME            the newest version
    NAME@ALIAS      a registered model's alias (champion, challenger, ...)
    NAME/VERSION    a registered model's version
    NAME@VERSION    a training set's version (a number, `v` allowed: NAME@3, NAME@v0003)

A model and a training set may share a name: an alias or `/VERSION` can only mean a model,
`@NUMBER` only a training-set version.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from .errors import ConfigError

NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
REF = re.compile(rf"^(?P<name>{NAME})(?:@(?P<at>[A-Za-z0-9_-]+)|/(?P<version>\d+))?$")


@dataclass(frozen=True)
class Ref:
    name: str
    alias: str | None = None
    version: int | None = None

    @property
    def is_model_only(self) -> bool:
        """An alias or a `/VERSION`: only a registered model has those."""
        return self.alias is not None or (self.version is not None and self._slash)

    _slash: bool = False

    def __str__(self) -> str:
        if self.alias:
            return f"{self.name}@{self.alias}"
        if self.version is None:
            return self.name
        return f"{self.name}/{self.version}" if self._slash else f"{self.name}@{self.version}"


def parse(ref: str, what: str = "reference") -> Ref:
    """Any reference; `@NUMBER` is read as a version, `@WORD` as an alias."""
    match = REF.match(str(ref))
    if not match:
        raise ConfigError(f"{ref!r} is not a {what}: use NAME, NAME@ALIAS, NAME/VERSION "
                          "or (a training set) NAME@VERSION")
    at, slash = match.group("at"), match.group("version")
    if slash is not None:
        return Ref(match.group("name"), version=int(slash), _slash=True)
    if at is not None and re.fullmatch(r"[vV]?\d+", at):
        return Ref(match.group("name"), version=int(at.lstrip("vV")))
    return Ref(match.group("name"), alias=at)


def model(ref: str) -> Ref:
    """MODEL, MODEL@ALIAS or MODEL/VERSION."""
    parsed = parse(ref, "model reference")
    if parsed.version is not None and not parsed._slash:
        raise ConfigError(f"{ref!r}: a model version is written {parsed.name}/{parsed.version} "
                          f"(@ names an alias, like {parsed.name}@champion)")
    return parsed


def training_set(ref: str) -> Ref:
    """NAME or NAME@VERSION."""
    parsed = parse(ref, "training set reference")
    if parsed.alias is not None or parsed._slash:
        raise ConfigError(f"{ref!r}: the version after @ must be a number, like {parsed.name}@3")
    return parsed


def parse_run_date(value: str | None) -> dt.date:
    if value is None:
        return dt.datetime.now(dt.timezone.utc).date()
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"run_date {value!r} is not a date (use YYYY-MM-DD)") from None
