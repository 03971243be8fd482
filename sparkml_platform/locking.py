"""An exclusive lock on a file, between processes on one machine (and threads): `flock`,
which the kernel releases when its holder dies, so a killed command never leaves it held."""

from __future__ import annotations

import contextlib
from pathlib import Path


@contextlib.contextmanager
def exclusive(path: Path):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
