"""The set-up a session needs, once per user: the jars (Delta's, the S3 connector's and the
platform's own, delta_jars.py), then the class archive made from them (class_archive.py).

    python -m sparkml_platform.runtime.setup fetch [JARS_DIR]   # what `make setup` runs
    python -m sparkml_platform.runtime.setup jars [JARS_DIR]    # the jars only (`make test`
                                                                # makes the archive beside its unit tests)
    python -m sparkml_platform.runtime.setup check [JARS_DIR]   # what is missing, and the fix
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..core.errors import SetupError
from . import class_archive
from .delta_jars import check, default_dir, fetch


def setup(jars_dir: Path) -> list[Path]:
    """The jars fetched (a no-op when the cache is whole), then the class archive built from
    the jars its session loads (a no-op when it is current)."""
    paths = fetch(jars_dir)
    class_archive.build(jars_dir)
    return paths


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or argv[0] not in ("fetch", "jars", "check"):
        print("usage: python -m sparkml_platform.runtime.setup fetch|jars|check [DIR] "
              f"(default: {default_dir()})", file=sys.stderr)
        return 2
    try:
        paths = {"fetch": setup, "jars": fetch, "check": check}[argv[0]](
            Path(argv[1]) if len(argv) == 2 else default_dir())
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print("\n".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
