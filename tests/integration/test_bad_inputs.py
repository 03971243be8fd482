"""The bad-input corpus (tests/support/bad_inputs/): each hostile or broken input exits with its
documented code and message, writing nothing.

A case's folder holds an overlay (conf/test/) on a copy of the reference configuration.
`steps` are commands run first (each must succeed); `lake: true` runs the case on a copy of
the slice project instead (its lake and MLflow store built), after `damage` to its lake.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import make_project, run_cli, run_main
from support.corpus import CASES, CORPUS


def _params():
    for case in sorted(CASES):
        marks = [pytest.mark.slow] if CASES[case].get("lake") else []
        yield pytest.param(case, marks=marks, id=case)


def _table(root: Path, ref: str) -> Path:
    zone, name = ref.split(".")
    return root / ".sparkml" / "lake" / zone / name


def _newest_commit(table: Path) -> Path:
    return sorted((table / "_delta_log").glob("[0-9]*.json"))[-1]


def _damage(root: Path, damage: dict) -> None:
    """Break the copied project's lake the way an operator's mistake or a full disk would."""
    for action, target in damage.items():
        if action == "truncate_commit":  # cut short mid-line
            commit = _newest_commit(_table(root, target))
            commit.write_bytes(commit.read_bytes()[: commit.stat().st_size // 2])
        elif action == "remove_commit":
            commit = _newest_commit(_table(root, target))
            commit.unlink()
            commit.with_suffix(".crc").unlink(missing_ok=True)
        elif action == "truncate_manifest":
            manifest = sorted(_table(root, f"trainsets.{target}").glob("v*.json"))[-1]
            manifest.write_text(manifest.read_text()[:40])
        elif action == "edit_manifest":
            manifest = sorted(_table(root, f"trainsets.{target['trainset']}").glob("v*.json"))[-1]
            manifest.write_text(json.dumps({**json.loads(manifest.read_text()), **target["set"]}))
        elif action == "link_outside":  # the table's folder is a link to a place outside
            table, outside = _table(root, target), root / "outside" / target
            outside.parent.mkdir()
            table.rename(outside)
            table.symlink_to(outside, target_is_directory=True)
        else:
            raise AssertionError(f"unknown damage {action}")


def _snapshot(root: Path) -> dict:
    lake = root / ".sparkml" / "lake"
    return {str(p.relative_to(lake)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in lake.rglob("*") if p.is_file()} if lake.is_dir() else {}


@pytest.fixture
def case_project(request, tmp_path):
    """(project root, conf dir) for the case: a fresh configuration, or a copy of the slice
    project (moved: its lake and MLflow store now live elsewhere) with its lake damaged."""
    case = CASES[request.param]
    if not case.get("lake"):
        return tmp_path, make_project(tmp_path)
    conf, _ = request.getfixturevalue("flights_project")
    root = tmp_path / "moved"
    shutil.copytree(conf.parent, root, symlinks=True)
    _damage(root, case.get("damage", {}))
    return root, root / "conf"


@pytest.mark.parametrize("case_project", list(_params()), indirect=True)
def test_bad_input(case_project, request, spark):
    expected = CASES[request.node.callspec.id]
    root, conf = case_project
    overlay = CORPUS / request.node.callspec.id  # none for a case that only damages a lake
    for path in sorted(overlay.iterdir()) if overlay.is_dir() else []:
        shutil.copyfile(path, conf / "test" / path.name)
    for name, megabytes in expected.get("generate", {}).items():  # too big to keep in git
        line = b"# " + b"x" * 1021 + b"\n"
        (conf / "test" / name).write_bytes(b"feature_tables: {}\n" + line * (megabytes * 1024))
    for step in expected.get("steps", []):
        done = run_main(conf, *step)
        assert done.returncode == 0, done.stderr[-3000:]
    before = _snapshot(root)
    environment = dict(expected.get("environment", {}))
    if expected.get("before_jvm"):
        # Said from the configuration alone: a process of its own, where a session could not
        # even start (no jar cache), so the message cannot come from after one.
        environment["SPARKML_JARS_DIR"] = str(root / "no-jar-cache")
        result = run_cli(conf, *expected["args"], timeout=120, **environment)
    else:
        result = run_main(conf, *expected["args"], **environment)
    said = result.stderr + result.stdout
    assert result.returncode == expected["exit"], said[-3000:]
    assert expected["message"] in said, said[-3000:]
    assert _snapshot(root) == before  # nothing written, not even half
