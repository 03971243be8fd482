"""Schedules rendered for cron and Oozie (checked against Oozie's own XSD schemas), their bad
inputs, and the job lock that keeps two runs of one job from overlapping."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
import yaml
from conftest import REPO, make_project, run_main
from support.overlays import CHAINED

from sparkml_platform.storage import places


def test_oozie_cron_names_week_days_and_keeps_steps():
    from sparkml_platform.orchestration.schedule import oozie_cron

    assert oozie_cron("0 6 * * 1") == "0 6 * * MON"
    assert oozie_cron("0 6 * * 0,6") == "0 6 * * SUN,SAT"
    assert oozie_cron("0 6 * * 7") == "0 6 * * SUN"
    assert oozie_cron("*/15 1-5 10 * */2") == "*/15 1-5 10 * */2"


def test_a_schedule_without_a_master_of_its_own_runs_on_platform_ymls(tmp_path):
    from sparkml_platform.orchestration.schedule import command
    from sparkml_platform.runtime.project import open_project

    schedules = {"schedules": {"plain": {"cron": "0 4 * * *", "jobs": {"f": {"job": "features_build"}}}}}
    conf = make_project(tmp_path / "p", {"schedules.yml": schedules, "platform.yml": {"spark": {"master": "local[2]"}}})
    config = open_project(conf, "test")
    argv = command(config, "plain", config.schedules.schedules["plain"], "f")
    assert argv[argv.index("--master") + 1] == "local[2]"


def test_schedule_list_gives_each_jobs_next_run(tmp_path, config):
    from croniter import croniter

    from sparkml_platform.orchestration.schedule import listing
    from sparkml_platform.runtime.project import open_project

    conf = make_project(tmp_path / "p", {"schedules.yml": CHAINED})
    now = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)  # a Friday
    rows = {(r["schedule"], r["job"]): r for r in listing(open_project(conf, "test"), now)}
    assert rows[("chain", "fix")]["next_run"] == "2026-11-30T03:15+00:00"  # Monday, 03:15
    assert rows[("chain", "fix")]["after"] == ["monitor (gate_failed)"]
    assert rows[("weekly_monitoring", "monitor")]["next_run"] == \
        croniter("0 6 * * 1", now).get_next(dt.datetime).isoformat(timespec="minutes")
    result = run_main(conf, "schedule", "list", "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert {(r["schedule"], r["job"]) for r in listed} == set(rows)


@pytest.mark.parametrize("schedule, said", [
    ({"cron": "61 * * * *", "jobs": {"a": {"job": "train", "args": ["m"]}}},
     "schedules.bad.cron: Value error, '61 * * * *' is not a cron expression"),
    ({"cron": "0 1 * *", "jobs": {"a": {"job": "train"}}}, "schedules.bad.cron: Value error, '0 1 * *' is not"),
    ({"cron": "0 1 * * *", "jobs": {"a": {"job": "train", "after": ["b"]}, "b": {"job": "score", "after": ["c"]},
                                    "c": {"job": "monitor", "after": ["a"]}}},
     "schedules.bad: Value error, jobs wait for each other in a cycle: a -> b -> c -> a"),
    ({"cron": "0 1 * * *", "jobs": {"a": {"job": "train", "after": ["nope"]}}},
     "schedules.bad: Value error, job a waits for nope, not a job of this schedule"),
    ({"cron": "0 1 * * *", "jobs": {"a": {"job": "retrain", "when": "gate_failed"}}},
     "job a: when gate_failed needs `after`"),
    ({"cron": "0 1 * * *", "jobs": {"a": {"job": "rm_rf"}}}, "schedules.bad.jobs.a.job"),
])
def test_bad_schedules_exit_2_naming_the_schedule_and_render_nothing(tmp_path, schedule, said):
    conf = make_project(tmp_path / "p", {"schedules.yml": {"schedules": {"bad": schedule}}})
    out = tmp_path / "out"
    for target in ("cron", "oozie"):
        result = run_main(conf, "schedule", "render", "--target", target, "--output", str(out))
        assert result.returncode == 2
        assert "schedules.yml" in result.stderr and said in result.stderr, result.stderr
    assert not out.exists()


def test_unknown_schedule_exits_2(tmp_path):
    conf = make_project(tmp_path / "p")
    result = run_main(conf, "schedule", "render", "--target", "cron", "--schedule", "nope",
                      "--output", str(tmp_path / "out"))
    assert result.returncode == 2 and "no schedule named 'nope'" in result.stderr
    assert "nightly, weekly_monitoring" in result.stderr


def test_a_held_lock_refuses_a_second_run_and_is_released_by_its_holder_only(config):
    from sparkml_platform.core.errors import JobLocked
    from sparkml_platform.storage.locking import JobLock

    lock = JobLock(places.lake_root(config), "test_sched.held", stale_after=3600)
    held = lock.acquire()
    try:
        saved = json.loads(lock.location.read_text())
        assert saved["run_id"] == held.run_id and saved["pid"] == os.getpid()
        assert saved["host"] == os.uname().nodename
        with pytest.raises(JobLocked, match=rf"job test_sched.held is still running: run {held.run_id} "
                                            rf"on {os.uname().nodename} \(pid {os.getpid()}\) since"):
            JobLock(places.lake_root(config), "test_sched.held", stale_after=3600).acquire()
        assert lock.release("someone-else") is False and lock.location.exists()
    finally:
        assert lock.release(held.run_id) is True
    assert not lock.location.exists()
    again = lock.acquire()  # free again
    lock.release(again.run_id)


def test_the_reference_schedules_validate_and_chain_retraining_on_monitorings_gate():
    from sparkml_platform.config import SchedulesFile

    schedules = SchedulesFile.model_validate(yaml.safe_load((REPO / "conf" / "base" / "schedules.yml").read_text()))
    weekly = schedules.schedules["weekly_monitoring"]
    assert weekly.jobs["monitor"].job == "monitor"
    retrains = [n for n, j in weekly.jobs.items() if j.job == "retrain"]
    assert retrains and all(weekly.jobs[n].after == ["monitor"] and weekly.jobs[n].when == "gate_failed"
                            for n in retrains)
