"""What a feature-table build will do, decided without Spark: the pure core of `build.py`.

The edge (build.py) reads the facts (the table's last build record, the hashes of its
definition now, the sources' versions, the newest day already built) and executes the
decision: this module only decides, so every rule is tested without a JVM.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ..core.errors import ConfigError

FULL, INCREMENTAL, WINDOW, UP_TO_DATE = "full", "incremental", "window", "up to date"


@dataclass(frozen=True)
class BuildPlan:
    """The decision: the mode, the window of event days it replaces (None: the whole table;
    an open end: up to the newest event computed), why a whole build, and the chunks written
    one commit each."""

    mode: str
    window: tuple[dt.date, dt.date | None] | None = None
    reason: str | None = None
    chunks: list = field(default_factory=lambda: [None])


def parse_window(start: str | None, end: str | None) -> tuple[dt.date, dt.date] | None:
    """`start`/`end` (both days included) -> dates; None when no window is given."""
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise ConfigError("start and end go together: give both dates or neither")
    try:
        first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    except ValueError as exc:
        raise ConfigError(f"start/end: {exc} (use YYYY-MM-DD)") from None
    if last < first:
        raise ConfigError(f"end {end} is before start {start}")
    return first, last


def check_chunk_days(chunk_days: int | None) -> None:
    if chunk_days is not None and chunk_days < 1:
        raise ConfigError(f"chunk_days {chunk_days}: give a number of days, 1 or more")


def mode(last: dict | None, now: dict, *, full: bool) -> tuple[str, str | None]:
    """(FULL or INCREMENTAL, why a full build) for a build without a window, from the last
    build's record (None: never built) and the hashes of the definition and suite now."""
    if full:
        return FULL, "a full rebuild was asked for"
    if last is None:
        return FULL, "first build"
    if last.get("definition_hash") != now["definition_hash"]:
        return FULL, why_changed(last, now)  # earlier rows were computed by another definition
    if last.get("expectations_hash", now["expectations_hash"]) != now["expectations_hash"]:
        return FULL, (f"the expectation suite changed (hash {last.get('expectations_hash')} -> "
                      f"{now['expectations_hash']}): every row is validated against it")
    return INCREMENTAL, None


def plan(last: dict | None, now: dict, *, window=None, full: bool = False, chunk_days: int | None = None,
         newest_day: dt.date | None = None) -> BuildPlan:
    """The build: an explicit `window` is replaced as given; else a whole build (see `mode`),
    or an incremental one from `newest_day` (the newest event day built: it may have been
    partial, so it is computed again) with an open end. Chunks of `chunk_days` each."""
    check_chunk_days(chunk_days)
    if window is not None:
        return BuildPlan(WINDOW, window, None, chunks(window, chunk_days))
    kind, reason = mode(last, now, full=full)
    if kind == FULL:
        return BuildPlan(FULL, None, reason, [None])
    if newest_day is None:
        raise ValueError("an incremental build needs the newest event day built")
    window = (newest_day, None)
    return BuildPlan(INCREMENTAL, window, None, chunks(window, chunk_days))


def chunks(window, days: int | None) -> list:
    """A closed window cut into chunks of `days` days (the last one shorter); an open-ended
    window, or no `days`, is one chunk."""
    first, last = window
    if not days or last is None:
        return [window]
    out = []
    while first <= last:
        upper = min(last, first + dt.timedelta(days=days - 1))
        out.append((first, upper))
        first = upper + dt.timedelta(days=1)
    return out


def why_changed(last: dict, now: dict) -> str:
    """What changed in a table's definition since its last build, as a user reads it."""
    reasons = []
    if last.get("code_hash") and last["code_hash"] != now["code_hash"]:
        reasons.append(f"the transformation's code changed (code hash {last['code_hash']} -> "
                       f"{now['code_hash']})")
    if last.get("config_hash") and last["config_hash"] != now["config_hash"]:
        reasons.append(f"the definition in features.yml changed (hash {last['config_hash']} -> "
                       f"{now['config_hash']})")
    return "; ".join(reasons) or (f"the definition changed (hash {last.get('definition_hash')} -> "
                                  f"{now['definition_hash']})")


def fresh(commit_kinds: list[str | None], last: dict | None, now: dict, sources_now: dict[str, int] | None,
          has_statistics: bool) -> bool:
    """Whether building again would write the same rows: the newest build (a whole or an
    incremental one, not a window) was the last write but for description changes, with this
    definition and suite, from the sources at the versions they have now (`sources_now`,
    None when one is missing), and its statistics are recorded."""
    built = [i for i, kind in enumerate(commit_kinds) if kind == "feature_table"]
    if not built or any(kind != "table_metadata" for kind in commit_kinds[built[-1] + 1:]) or last is None:
        return False
    if last.get("mode") not in (FULL, INCREMENTAL) or last.get("definition_hash") != now["definition_hash"]:
        return False
    # Builds recorded before suites were: their suite is taken as the current one.
    if last.get("expectations_hash", now["expectations_hash"]) != now["expectations_hash"]:
        return False
    return sources_now is not None and last.get("sources") == sources_now and has_statistics
