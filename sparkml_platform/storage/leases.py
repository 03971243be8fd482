"""Leases: a running reader's claim on versions that retention must not delete.

A training reads its training-set version for its whole run (tuning, fitting, logging); a
`trainset prune` or `delete` meanwhile would pull the rows from under it. A scoring or a
training-set build reads lake tables at the versions they had when it started
(`table:REF`); a `features vacuum` meanwhile could delete their files. So a reader writes
`LAKE_ROOT/_leases/ID.json` (what it reads, who it is: host, process id, start time) before it
reads, and removes it when it ends, however it ends. Retention keeps every leased version.

A lease left by a killed reader is stale: on this machine once its process is gone, on
another machine once older than `STALE_AFTER` (a run there cannot be checked from here).
Stale leases are ignored and removed by whoever lists them, and the removal is logged.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import uuid

from . import places

log = logging.getLogger(__name__)
STALE_AFTER = dt.timedelta(hours=24)


def _folder(config):
    return places.lake_root(config) / "_leases"


@contextlib.contextmanager
def held(config, holder: str, reads: dict[str, list[int]]):
    """A lease on `reads` ({"training_set:NAME": [versions], ...}) while the block runs."""
    lease = {"id": uuid.uuid4().hex[:12], "holder": holder, "reads": reads, "host": socket.gethostname(),
             "pid": os.getpid(), "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    location = _folder(config) / f"{lease['id']}.json"
    location.create(json.dumps(lease))
    try:
        yield lease
    finally:
        try:
            location.unlink()
        except Exception as exc:  # noqa: BLE001 - left behind, it goes stale with its process
            log.warning("lease %s of %s not removed (%s): it goes stale when this process ends", lease["id"],
                        holder, exc)


def reading_tables(config, holder: str, versions: dict[str, int]):
    """A lease on lake tables at `versions` ({REF: Delta version}) while the block runs:
    `features vacuum` keeps their files (training_sets.pins)."""
    return held(config, holder, {table_key(ref): [version] for ref, version in versions.items()})


def table_key(ref: str) -> str:
    return f"table:{ref}"


def active(config) -> list[dict]:
    """The leases of readers still running; stale ones are removed (and said)."""
    folder = _folder(config)
    now = dt.datetime.now(dt.timezone.utc)
    out = []
    for name in folder.names() if folder.exists() else []:
        if not name.endswith(".json"):
            continue
        location = folder / name
        try:
            lease = json.loads(location.read_or_none() or "")
            started = dt.datetime.fromisoformat(lease["started_at"])
        except (ValueError, KeyError, TypeError):
            continue  # being written, or not ours: not a lease to act on
        if _stale(lease, now - started):
            log.warning("lease %s of %s (%s, pid %s, since %s) is stale: removed", lease.get("id"),
                        lease.get("holder"), lease.get("host"), lease.get("pid"), lease["started_at"])
            with contextlib.suppress(Exception):
                location.unlink()
            continue
        out.append(lease)
    return out


def leased(config, key: str) -> dict[int, list[str]]:
    """The versions of `key` (e.g. "training_set:NAME") running readers hold, and who holds them."""
    out: dict[int, list[str]] = {}
    for lease in active(config):
        for version in lease["reads"].get(key, []):
            out.setdefault(int(version), []).append(f"{lease['holder']} (pid {lease['pid']} on {lease['host']}, "
                                                    f"since {lease['started_at']})")
    return out


def _stale(lease: dict, age: dt.timedelta) -> bool:
    if lease.get("host") == socket.gethostname():
        try:
            os.kill(int(lease["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError, TypeError):
            return False
        return False
    return age > STALE_AFTER
