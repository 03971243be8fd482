"""Schedules rendered for cron and Oozie (checked against Oozie's own XSD schemas), their bad
inputs, and the job lock that keeps two runs of one job from overlapping."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, cli_env, make_project, run_main
from support.overlays import CHAINED

from sparkml_platform.storage import places

OOZIE_CLIENT = "org.apache.oozie:oozie-client:5.2.1"  # its jar ships the schemas


@pytest.fixture(scope="module")
def oozie_schemas():
    """Oozie's XSDs from the oozie-client jar on Maven Central (fetched once into .sparkml/)."""
    from lxml import etree

    folder = REPO / ".sparkml" / "oozie-xsd"
    if not (folder / "oozie-workflow-1.0.xsd").exists():
        jar_dir = folder / "jar"
        subprocess.run(["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={OOZIE_CLIENT}",
                        f"-DoutputDirectory={jar_dir}"], check=True, capture_output=True, timeout=600)
        with zipfile.ZipFile(next(jar_dir.glob("oozie-client-*.jar"))) as jar:
            for name in jar.namelist():
                if name.endswith(".xsd"):
                    (folder / name).write_bytes(jar.read(name))
    # A workflow's actions are `xs:any namespace="##other"`, validated strictly: the shell
    # action's schema is loaded beside the workflow's.
    (folder / "workflow_with_shell.xsd").write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">\n'
        '  <xs:import namespace="uri:oozie:workflow:1.0" schemaLocation="oozie-workflow-1.0.xsd"/>\n'
        '  <xs:import namespace="uri:oozie:shell-action:1.0" schemaLocation="shell-action-1.0.xsd"/>\n'
        '</xs:schema>\n')
    return {"workflow.xml": etree.XMLSchema(etree.parse(str(folder / "workflow_with_shell.xsd"))),
            "coordinator.xml": etree.XMLSchema(etree.parse(str(folder / "oozie-coordinator-0.5.xsd")))}


def test_rendered_oozie_workflows_and_coordinators_validate_against_oozies_schemas(tmp_path, oozie_schemas):
    from lxml import etree

    conf = make_project(tmp_path / "p", {"schedules.yml": CHAINED})
    out = tmp_path / "oozie"
    result = run_main(conf, "schedule", "render", "--target", "oozie", "--output", str(out))
    assert result.returncode == 0, result.stderr
    for schedule in ("nightly", "weekly_monitoring", "chain"):
        for name, schema in oozie_schemas.items():
            doc = etree.parse(str(out / schedule / name))
            assert schema.validate(doc), f"{schedule}/{name}: {schema.error_log}"
        assert "oozie.coord.application.path=" in (out / schedule / "job.properties").read_text()

    ns = {"w": "uri:oozie:workflow:1.0", "s": "uri:oozie:shell-action:1.0"}
    wf = etree.parse(str(out / "chain" / "workflow.xml"))
    actions = wf.findall("w:action", ns)
    # Each job after what it waits for, else in the file's order (the overlay's keys come sorted).
    assert [a.get("name") for a in actions] == ["features", "monitor", "fix", "trainset", "retrain"]
    monitor = wf.find("w:action[@name='monitor']", ns)
    argv = [monitor.find("s:shell/s:exec", ns).text] + [a.text for a in monitor.findall("s:shell/s:argument", ns)]
    assert argv[0] == str(REPO / "spark-submit.sh")
    assert argv[argv.index("--lock") + 1] == "chain.monitor"
    assert argv[argv.index("--archives") + 1] == str(conf.parent / ".sparkml" / "env.tar.gz")
    assert "--status-output" in argv and argv[argv.index("--master") + 1] == "yarn"
    assert argv[-3:] == ["flight_delays@champion", "--outcomes", "entities.flights"]
    assert monitor.find("s:shell/s:capture-output", ns) is not None
    assert [e.text for e in monitor.findall("s:shell/s:env-var", ns)] == ["HADOOP_CONF_DIR=/etc/hadoop/conf"]
    # A job that waits is entered through a decision on the statuses of what it waits for.
    decision = wf.find("w:decision[@name='if-retrain']/w:switch/w:case", ns)
    assert decision.get("to") == "retrain"
    assert decision.text == ("${wf:actionData('trainset')['status'] eq '0' and "
                             "wf:actionData('monitor')['status'] eq '0'}")
    fix = wf.find("w:decision[@name='if-fix']/w:switch/w:case", ns)
    assert fix.text == "${wf:actionData('monitor')['status'] eq '3'}"
    # Any failure ends in `failed`; a gate nothing answers (not monitor's: fix answers it) in `gate_failed`.
    assert {a.find("w:error", ns).get("to") for a in actions} == {"failed"}
    gates = [c.text for c in wf.findall("w:decision[@name='check-gates']/w:switch/w:case", ns)]
    assert gates == [f"${{wf:actionData('{j}')['status'] eq '3'}}" for j in ("features", "fix", "trainset", "retrain")]
    coord = etree.parse(str(out / "chain" / "coordinator.xml")).getroot()
    assert coord.get("frequency") == "15 3 * * MON-FRI"


def test_rendered_crontab_lines_and_runner_scripts(tmp_path):
    from croniter import croniter

    conf = make_project(tmp_path / "p", {"schedules.yml": CHAINED})
    out = tmp_path / "cron"
    result = run_main(conf, "schedule", "render", "--target", "cron", "--output", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    for line in lines:
        fields = line.split()
        assert croniter.is_valid(" ".join(fields[:5]))
        script = Path(fields[5])
        assert script.parent == out and os.access(script, os.X_OK)
        assert fields[6:8] == [">>", str(conf.parent / ".sparkml" / "logs" / f"{script.stem}.cron.log")]
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert (conf.parent / ".sparkml" / "logs").is_dir()  # cron opens the log before the script runs
    text = (out / "chain.sh").read_text()
    runs = [line.split()[1] for line in text.splitlines() if line.strip().startswith("run ")]
    assert runs == ["features", "monitor", "fix", "trainset", "retrain"]
    assert 'if [[ "${STATUS[trainset]}" == 0 && "${STATUS[monitor]}" == 0 ]]; then' in text
    assert 'if [[ "${STATUS[monitor]}" == 3 ]]; then' in text
    assert "--lock chain.retrain --lock-stale-after 21600" in text
    assert "export HADOOP_CONF_DIR=/etc/hadoop/conf" in text


def test_a_stale_lock_is_taken_over_and_the_take_over_logged(config, caplog):
    from sparkml_platform.storage.locking import JobLock

    lock = JobLock(places.lake_root(config), "test_sched.stale", stale_after=600)
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=900)
    # Another machine's run, killed 15 minutes ago (its process cannot be checked from here).
    lock.location.write_text(json.dumps({"job": "test_sched.stale", "run_id": "killed1", "host": "elsewhere",
                                         "pid": 1, "started_at": old.isoformat(timespec="seconds")}))
    with caplog.at_level(logging.WARNING, logger="sparkml_platform.storage.locking"):
        held = lock.acquire()
    assert held.took_over_from == "killed1"
    assert json.loads(lock.location.read_text())["took_over_from"] == "killed1"
    assert "taking over the lock of run killed1 on elsewhere" in caplog.text
    assert "more than lock_stale_after (600 s)" in caplog.text
    lock.release(held.run_id)

    # On this machine, a holder whose process is gone is taken over at once, whatever its age.
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock.location.write_text(json.dumps({"job": "test_sched.stale", "run_id": "dead2", "host": os.uname().nodename,
                                         "pid": dead.pid, "started_at": dt.datetime.now(dt.timezone.utc)
                                         .isoformat(timespec="seconds")}))
    held = lock.acquire()
    assert held.took_over_from == "dead2"
    lock.release(held.run_id)

    # On this machine a holder whose process lives keeps the lock, however old (a long job).
    from sparkml_platform.core.errors import JobLocked

    lock.location.write_text(json.dumps({"job": "test_sched.stale", "run_id": "long3", "host": os.uname().nodename,
                                         "pid": os.getpid(), "started_at": old.isoformat(timespec="seconds")}))
    with pytest.raises(JobLocked, match="job test_sched.stale is still running: run long3"):
        lock.acquire()
    lock.release("long3")


def test_spark_submit_with_a_held_lock_exits_4_before_starting_spark(project, config):
    from sparkml_platform.storage.locking import JobLock

    lock = JobLock(places.lake_root(config), "test_sched.submit", stale_after=3600)
    held = lock.acquire()
    try:
        started = time.monotonic()
        result = subprocess.run([str(REPO / "spark-submit.sh"), "--conf-dir", str(project), "--env", "test",
                                 "--lock", "test_sched.submit", "features_build", "origin_weather_hourly"],
                                capture_output=True, text=True, timeout=120, env=cli_env())
        assert result.returncode == 4, result.stderr
        assert f"job test_sched.submit is still running: run {held.run_id}" in result.stderr
        assert "SparkContext" not in result.stderr and time.monotonic() - started < 30
        assert json.loads(lock.location.read_text())["run_id"] == held.run_id  # left as it was
    finally:
        lock.release(held.run_id)


def test_a_runner_killed_leaves_the_lock_to_its_running_job_and_a_stopped_one_stops_its_job(
        project, config, tmp_path):
    """SIGKILL of spark-submit.sh while its job runs: the lock names the job's process group, so
    a second run exits 4 until the job itself has ended. SIGTERM: handed to the job, and the lock
    released only once the job is gone. The job is a sleep run by a real spark-submit, from a
    copy of the script whose jobs/ folder holds it."""
    import shutil
    import signal
    import sys

    from sparkml_platform.storage.locking import JobLock

    root = tmp_path / "runner"
    (root / "jobs").mkdir(parents=True)
    shutil.copy(REPO / "spark-submit.sh", root / "spark-submit.sh")
    for shared in ("sparkml_platform", "log4j2.properties"):
        (root / shared).symlink_to(REPO / shared)
    (root / "jobs" / "slow.py").write_text("import time\ntime.sleep(600)\n")
    env = cli_env(SPARKML_VENV=str(Path(sys.executable).parent.parent))
    lock = JobLock(places.lake_root(config), "test_sched.killed", stale_after=3600)

    def run(wait: bool):
        cmd = [str(root / "spark-submit.sh"), "--conf-dir", str(project), "--env", "test", "--lock",
               "test_sched.killed", "slow"]
        if wait:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)

    def group_alive(group: int) -> bool:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        return True

    def job_group(runner) -> int:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            held = lock.holder()
            if held and held.job_group:
                return held.job_group
            assert runner.poll() is None, "the runner ended before its job started"
            time.sleep(0.2)
        raise TimeoutError("the lock never named the job")

    # SIGKILL of the runner: the job goes on, and holds the lock.
    runner = run(wait=False)
    group = job_group(runner)
    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=30)
    assert group_alive(group)
    second = run(wait=True)
    assert second.returncode == 4, second.stderr
    assert f"job process group {group}" in second.stderr
    os.killpg(group, signal.SIGKILL)  # the job ends
    deadline = time.monotonic() + 30
    while group_alive(group) and time.monotonic() < deadline:
        time.sleep(0.2)
    held = lock.acquire()
    assert held.took_over_from  # its processes are gone: taken over at once
    lock.release(held.run_id)

    # SIGTERM of the runner: handed to the job, then the lock released.
    runner = run(wait=False)
    group = job_group(runner)
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=60) != 0
    assert not group_alive(group) and lock.holder() is None
    # What the killed runner's staging left is removed by the next run (its processes are gone).
    assert [p.name for p in (root / ".sparkml").glob("submit.*")] == []
