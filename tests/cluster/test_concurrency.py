"""Pairs of writers at once, as separate processes on a copy of the slice project: two builds of
one feature table, two scorings into one predictions table (two run dates), two builds of one
training set. Each pair has a defined outcome, and every row is checked afterwards with an
independent reader (delta-rs, not Spark). Two trainings at once are tested with a real MLflow
server (test_cluster.py) and in a user's project (test_user_project.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_env

# Six processes at once on two cores take minutes: run by `make test-cluster` with the other
# multi-process tests, keeping `make test` within its budget.
pytestmark = pytest.mark.cluster

RUN_DATES = ("2013-12-30", "2013-12-31")


def rows(table: Path, version: int | None = None) -> list[tuple]:
    """Every row of a Delta table as read by delta-rs, sorted: a reader that shares no code
    with the writer."""
    from deltalake import DeltaTable

    data = DeltaTable(str(table), version=version).to_pyarrow_table()
    names = sorted(data.column_names)
    return sorted(tuple(str(v) for v in row) for row in zip(*(data.column(n).to_pylist() for n in names)))


def predicted(table: Path) -> list[tuple[str, str]]:
    """(flight, run date) of every prediction, read by delta-rs."""
    from deltalake import DeltaTable

    data = DeltaTable(str(table)).to_pyarrow_table()
    return sorted(zip(data.column("flight_id").to_pylist(),
                      (str(d) for d in data.column("run_date").to_pylist())))


def start(conf: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "sparkml"), "--conf", str(conf), "--env", "test", *args],
        env=cli_env(), cwd=conf.parent, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_pairs_of_writers_at_once_end_consistent(flights_project, tmp_path):
    conf, _ = flights_project
    root = tmp_path / "project"
    shutil.copytree(conf.parent, root, symlinks=True)
    conf = root / "conf"
    lake = root / ".sparkml" / "lake"
    planes = lake / "features" / "plane_attributes"
    predictions = lake / "predictions" / "flight_delays"
    trainsets = lake / "trainsets" / "flight_delays"
    planes_before = rows(planes)
    versions_before = sorted(p.name for p in trainsets.glob("v*.json"))
    scored_before = predicted(predictions)

    pairs = {
        "feature builds": [start(conf, "features", "build", "plane_attributes", "--full")
                           for _ in range(2)],
        "scorings": [start(conf, "score", "flight_delays@champion", "--input",
                           "entities.flights_to_score", "--output", "predictions.flight_delays",
                           "--run-date", day) for day in RUN_DATES],
        "training-set builds": [start(conf, "trainset", "build", "flight_delays") for _ in range(2)],
    }
    done = {name: [(p, *p.communicate(timeout=1500)) for p in procs] for name, procs in pairs.items()}
    for name, results in done.items():
        assert [p.returncode for p, _, _ in results] == [0, 0], (name, [e[-2000:] for _, _, e in results])

    # Two full builds of one table: both committed, each a whole replacement; the rows are
    # the table's rows once, whichever committed last.
    assert rows(planes) == planes_before
    commits = sorted(int(p.stem) for p in (planes / "_delta_log").glob("[0-9]*.json"))
    assert len(commits) >= 3 and rows(planes, commits[-2]) == planes_before

    # Two run dates into one table: each partition holds one prediction per entity row (the
    # run date scored before was replaced, not duplicated); other run dates are untouched.
    entities = len(rows(lake / "entities" / "flights_to_score"))
    scored = predicted(predictions)
    per_day = {d: sum(1 for _, day in scored if day == d) for d in RUN_DATES}
    assert per_day == {d: entities for d in RUN_DATES}
    assert len(scored) == len(set(scored))  # one prediction per flight and run date
    assert [k for k in scored if k[1] not in RUN_DATES] == \
        [k for k in scored_before if k[1] not in RUN_DATES]

    # Two builds of one training set: two versions, each whole, with its own manifest.
    versions = sorted(p.name for p in trainsets.glob("v*.json"))
    new = [v for v in versions if v not in versions_before]
    assert len(new) == 2, versions
    manifests = [json.loads((trainsets / v).read_text()) for v in new]
    contents = [rows(trainsets / v[:-len(".json")]) for v in new]
    for manifest, content in zip(manifests, contents):
        assert manifest["rows"]["total"] == len(content)
    assert contents[0] == contents[1] and manifests[0]["digest"] == manifests[1]["digest"]
    assert not [d for d in trainsets.iterdir() if d.is_dir() and not (trainsets / f"{d.name}.json").exists()]
