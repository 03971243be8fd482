"""tools/prerequisites.py: what each `make` target needs, decided as a pure plan, and `make
test` on a PATH without chromium and redis-server stopping before any set-up."""

from __future__ import annotations

import prerequisites
from prerequisites import plan

EVERYTHING = {n: f"/found/{n}" for n in prerequisites.NEEDS}


def without(*needs: str) -> dict:
    return {n: (None if n in needs else where) for n, where in EVERYTHING.items()}


def test_each_target_needs_what_the_one_before_it_needs_and_more():
    assert set(prerequisites.TARGETS["demo"]) == {"python3.11", "java", "mvn", "blas"}
    assert set(prerequisites.TARGETS["test"]) - set(prerequisites.TARGETS["demo"]) == \
        {"git", "redis-server", "chromium"}
    assert set(prerequisites.TARGETS["test-cluster"]) - set(prerequisites.TARGETS["test"]) == {"postgresql"}


def test_a_machine_with_everything_goes_on_silently():
    assert plan("test-cluster", EVERYTHING, "Linux", apt=True, may_install=False, sudo=False) == ("ok", [], "")


def test_missing_programs_where_nothing_may_be_installed_stop_the_run_naming_each_and_the_command():
    action, missing, message = plan("test", without("chromium", "redis-server"), "Linux",
                                    apt=True, may_install=False, sudo=False)
    assert action == "stop" and missing == ["redis-server", "chromium"]
    assert "`make test` needs" in message
    assert "  - redis-server: Redis" in message and "  - chromium: Chromium" in message
    assert message.splitlines()[-1] == "  sudo apt-get install redis-server chromium"


def test_on_macos_the_command_is_homebrews_with_chromium_as_a_cask():
    _, _, message = plan("test-cluster", without("chromium", "redis-server", "postgresql"), "Darwin",
                         apt=False, may_install=False, sudo=False)
    assert message.splitlines()[-2:] == [
        "  brew install redis postgresql@16 && brew install --cask chromium",
        '  then put their programs on PATH: PATH="$(brew --prefix postgresql@16)/bin:$PATH"']


def test_where_packages_may_be_installed_apt_get_installs_every_missing_one_optional_too():
    action, missing, command = plan("test", without("blas", "chromium"), "Linux",
                                    apt=True, may_install=True, sudo=True)
    assert action == "install" and missing == ["blas", "chromium"]
    assert command == ("sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
                       "libopenblas0 chromium")
    _, _, as_root = plan("test", without("chromium"), "Linux", apt=True, may_install=True, sudo=False)
    assert as_root == "apt-get install -y -q --no-install-recommends chromium"
    _, _, on_ubuntu = plan("test", without("chromium"), "ubuntu", apt=True, may_install=True, sudo=False)
    assert on_ubuntu == "apt-get install -y -q --no-install-recommends chromium-browser"


def test_a_missing_optional_program_is_noted_and_never_stops_a_run():
    action, missing, note = plan("demo", without("blas"), "Linux", apt=True, may_install=False, sudo=False)
    assert action == "ok" and missing == ["blas"]
    assert note.startswith("note: not found, libopenblas") and note.endswith("sudo apt-get install libopenblas0")


def test_a_program_is_found_only_on_the_path_given(tmp_path):
    (tmp_path / "redis-server").write_text("#!/bin/sh\n")
    (tmp_path / "redis-server").chmod(0o755)
    assert prerequisites.find("redis-server", path=str(tmp_path)) == str(tmp_path / "redis-server")
    assert prerequisites.find("chromium", path=str(tmp_path / "nothing-here")) is None
