"""tools/prerequisites.py: what each `make` target needs, decided as a pure plan, and `make
test` on a PATH without chromium and redis-server stopping before any set-up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_make_test_on_a_path_without_chromium_and_redis_server_stops_before_any_set_up(tmp_path):
    # A user's PATH holding Python 3.11, a JDK, Maven, git and make, and neither chromium nor
    # redis-server nor apt-get: nothing can be installed, so the run must stop at once.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3.11").symlink_to(sys.executable)
    for program in ("java", "javac", "mvn", "git"):
        if shutil.which(program):  # one that is missing is named too, beside the two
            (bin_dir / program).symlink_to(os.path.realpath(shutil.which(program)))
    project = tmp_path / "project"
    (project / "tools").mkdir(parents=True)
    shutil.copy(REPO / "Makefile", project)
    shutil.copy(REPO / "tools" / "prerequisites.py", project / "tools")

    done = subprocess.run([shutil.which("make"), "test"], cwd=project, capture_output=True, text=True,
                          env={"PATH": str(bin_dir), "HOME": str(tmp_path)}, timeout=120)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "`make test` needs programs this machine does not have" in done.stderr
    assert "  - redis-server: Redis" in done.stderr and "  - chromium: Chromium" in done.stderr
    assert "apt-get install" in done.stderr and "redis-server chromium" in done.stderr
    assert sorted(p.name for p in project.iterdir()) == ["Makefile", "tools"]  # no .venv, nothing set up
