"""`sparkml schedule`: the jobs `schedules.yml` declares, rendered for cron (a crontab line and
a runner script per schedule) or Oozie (a workflow and a coordinator per schedule). Both run
each job through `spark-submit.sh` with its lock, in dependency order, and follow the same
rule: a job runs when every job it waits for ended as its `when` says (success: exit 0,
gate_failed: exit 3); otherwise it is skipped, and so are the jobs waiting for it."""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from ..config import Config, Schedule, ScheduledJob, parse_duration
from ..core.errors import ConfigError, NotFoundError

WORKFLOW_NS = "uri:oozie:workflow:1.0"
SHELL_NS = "uri:oozie:shell-action:1.0"
COORDINATOR_NS = "uri:oozie:coordinator:0.5"
EXIT_WHEN = {"success": 0, "gate_failed": 3}
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


@dataclass(frozen=True)
class Rendered:
    target: str
    files: tuple[str, ...]
    crontab: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"target": self.target, "files": list(self.files), "crontab": list(self.crontab)}


def platform_root(config: Config) -> Path:
    """Where spark-submit.sh is: `platform_root` in schedules.yml, else this checkout."""
    configured = config.schedules.platform_root
    root = config.path(configured) if configured else Path(__file__).resolve().parents[2]
    if not configured and not (root / "spark-submit.sh").is_file():
        raise ConfigError("schedules.yml: platform_root: spark-submit.sh is not beside the installed "
                          "package; give the directory holding it on the machines that run the jobs")
    return root


def _schedule(config: Config, name: str | None) -> dict[str, Schedule]:
    schedules = config.schedules.schedules
    if not schedules:
        raise NotFoundError(f"no schedules in {config.conf_dir}/*/schedules.yml")
    if name is None:
        return schedules
    if name not in schedules:
        raise NotFoundError(f"no schedule named {name!r} in schedules.yml (known: {', '.join(schedules)})")
    return {name: schedules[name]}


def command(config: Config, schedule_name: str, schedule: Schedule, job_name: str,
            status_output: bool = False) -> list[str]:
    """The spark-submit.sh command line of one job, with its lock."""
    job = schedule.jobs[job_name]
    root = platform_root(config)
    archive = job.archive or schedule.archive
    argv = [str(root / "spark-submit.sh"), "--master", schedule.master or config.platform.spark.master]
    if schedule.deploy_mode != "client":
        argv += ["--deploy-mode", schedule.deploy_mode]
    argv += ["--conf-dir", str(config.conf_dir.resolve())]
    if config.env:
        argv += ["--env", config.env]
    if archive:
        argv += ["--archives", str(config.path(archive))]
    for key, value in job.spark_conf.items():
        argv += ["--spark-conf", f"{key}={value}"]
    argv += ["--lock", f"{schedule_name}.{job_name}",
             "--lock-stale-after", str(parse_duration(schedule.lock_stale_after))]
    if status_output:
        argv.append("--status-output")
    return argv + [job.job, *job.args]


def handled_gates(schedule: Schedule) -> set[str]:
    """Jobs whose gate failure another job answers (e.g. monitor, answered by retrain)."""
    return {dep for job in schedule.jobs.values() if job.when == "gate_failed" for dep in job.after}


# --- cron ---------------------------------------------------------------------------------


def render_cron(config: Config, output: Path | None = None, name: str | None = None) -> Rendered:
    """A runner script per schedule under `output` (default: .sparkml/schedules), and the
    crontab lines that start them, writing each run's log under `logs_dir`."""
    out = output or config.path(".sparkml/schedules")
    out.mkdir(parents=True, exist_ok=True)
    logs = config.path(config.schedules.logs_dir)
    logs.mkdir(parents=True, exist_ok=True)  # cron opens each schedule's log before its script runs
    files, lines = [], []
    for sched_name, schedule in _schedule(config, name).items():
        script = out / f"{sched_name}.sh"
        tmp = script.with_suffix(".sh.tmp")
        tmp.write_text(_runner(config, sched_name, schedule, logs / sched_name))
        tmp.chmod(0o755)
        tmp.replace(script)
        files.append(str(script))
        cron_log = logs / f"{sched_name}.cron.log"
        lines.append(f"{schedule.cron} {shlex.quote(str(script))} >> {shlex.quote(str(cron_log))} 2>&1")
    return Rendered("cron", tuple(files), tuple(lines))


def _runner(config: Config, name: str, schedule: Schedule, logs: Path) -> str:
    # Cron starts jobs with a bare environment: the renderer's own PATH and Java, then the schedule's.
    env = [f"export {k}={shlex.quote(v)}" for k in ("PATH", "JAVA_HOME", "SPARK_HOME", "HADOOP_CONF_DIR",
                                                      "YARN_CONF_DIR") if (v := os.environ.get(k))]
    env += [f"export {k}={shlex.quote(v)}" for k, v in schedule.env.items()]
    handled = handled_gates(schedule)
    body = []
    for job_name in schedule.order():
        job = schedule.jobs[job_name]
        run = f"run {job_name} " + " ".join(shlex.quote(a) for a in command(config, name, schedule, job_name))
        if not job.after:
            body.append(run)
            continue
        want = EXIT_WHEN[job.when]
        test = " && ".join(f'"${{STATUS[{dep}]}}" == {want}' for dep in job.after)
        why = f"runs when {', '.join(job.after)} exit{'s' if len(job.after) == 1 else ''} {want} ({job.when})"
        body.append(f"if [[ {test} ]]; then\n  {run}\nelse\n  skip {job_name} {shlex.quote(why)}\nfi")
    return f"""#!/usr/bin/env bash
# Schedule {name} ({schedule.cron}), rendered by `sparkml schedule render --target cron` from
# {config.conf_dir.resolve()}: render again rather than edit. Each job runs through spark-submit.sh
# with its lock (a run finding the job still running exits 4 and does nothing), after the jobs it
# waits for; its output goes to a log of its own. Exit: 1 when a job failed, 4 when one was still
# running, 3 when a gate said no and no job answers it, else 0.
set -u
{chr(10).join(env)}
cd {shlex.quote(str(config.root))}
LOGS={shlex.quote(str(logs))}/"$(date -u +%Y%m%dT%H%M%SZ)-$$"  # two runs in one second apart
mkdir -p "$LOGS"
declare -A STATUS=()
run() {{
  local job="$1"; shift
  echo "$(date -u +%FT%TZ) {name}.$job: start (log $LOGS/$job.log)"
  "$@" > "$LOGS/$job.log" 2>&1
  STATUS[$job]=$?
  echo "$(date -u +%FT%TZ) {name}.$job: exit ${{STATUS[$job]}}"
}}
skip() {{
  STATUS[$1]=skipped
  echo "$(date -u +%FT%TZ) {name}.$1: skipped, $2"
}}

{chr(10).join(body)}

worst=0
for job in "${{!STATUS[@]}}"; do
  case "${{STATUS[$job]}}" in
    0|skipped) ;;
    3) case " {' '.join(sorted(handled))} " in *" $job "*) ;; *) [[ $worst -eq 0 ]] && worst=3 ;; esac ;;
    4) [[ $worst -ne 1 ]] && worst=4 ;;
    *) worst=1 ;;
  esac
done
exit $worst
"""


# --- Oozie --------------------------------------------------------------------------------


def render_oozie(config: Config, output: Path, name: str | None = None) -> Rendered:
    """Per schedule, `output/NAME/`: workflow.xml (a shell action per job calling
    spark-submit.sh, decisions for the jobs that wait), coordinator.xml and job.properties."""
    files = []
    for sched_name, schedule in _schedule(config, name).items():
        folder = output / sched_name
        folder.mkdir(parents=True, exist_ok=True)
        for filename, text in (("workflow.xml", workflow_xml(config, sched_name, schedule)),
                               ("coordinator.xml", coordinator_xml(config, sched_name, schedule)),
                               ("job.properties", _job_properties(config, sched_name))):
            tmp = folder / f".{filename}.tmp"
            tmp.write_text(text)
            tmp.replace(folder / filename)
            files.append(str(folder / filename))
    return Rendered("oozie", tuple(files))


def workflow_xml(config: Config, name: str, schedule: Schedule) -> str:
    """Every job a shell action with <capture-output/> (spark-submit.sh --status-output prints
    status=EXIT_CODE); a job that waits is entered through a decision on those statuses. Any
    other exit than 0 or 3 ends the workflow in `failed`; a gate nothing answers, in `gate_failed`."""
    order = schedule.order()
    handled = handled_gates(schedule)
    unhandled = [j for j in order if j not in handled]
    entry = {j: (f"if-{j}" if schedule.jobs[j].after else j) for j in order}
    nodes = []
    for i, job_name in enumerate(order):
        job = schedule.jobs[job_name]
        after = entry[order[i + 1]] if i + 1 < len(order) else "check-gates"
        if job.after:
            want = EXIT_WHEN[job.when]
            test = " and ".join(f"wf:actionData('{dep}')['status'] eq '{want}'" for dep in job.after)
            nodes.append(f"""  <decision name="if-{job_name}">
    <switch>
      <case to="{job_name}">${{{test}}}</case>
      <default to="{after}"/>
    </switch>
  </decision>""")
        nodes.append(_shell_action(config, name, schedule, job_name, after))
    gate_cases = "\n".join(f"""      <case to="gate_failed">${{wf:actionData('{j}')['status'] eq '3'}}</case>"""
                           for j in unhandled)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Schedule {escape(name)}, rendered by sparkml schedule render (target oozie): render again rather than edit. -->
<workflow-app xmlns="{WORKFLOW_NS}" name={quoteattr(f"sparkml-{name}")}>
  <start to="{entry[order[0]]}"/>
{chr(10).join(nodes)}
  <decision name="check-gates">
    <switch>
{gate_cases}
      <default to="end"/>
    </switch>
  </decision>
  <kill name="gate_failed">
    <message>a gate said no (exit 3) and no job of schedule {escape(name)} answers it</message>
  </kill>
  <kill name="failed">
    <message>job ${{wf:lastErrorNode()}} of schedule {escape(name)} failed: ${{wf:errorMessage(wf:lastErrorNode())}} (exit 4: the same job was still running)</message>
  </kill>
  <end name="end"/>
</workflow-app>
"""


def _shell_action(config: Config, name: str, schedule: Schedule, job_name: str, ok: str) -> str:
    argv = command(config, name, schedule, job_name, status_output=True)
    args = "\n".join([f"      <argument>{escape(a)}</argument>" for a in argv[1:]]
                     + [f"      <env-var>{escape(k)}={escape(v)}</env-var>" for k, v in schedule.env.items()])
    return f"""  <action name="{job_name}">
    <shell xmlns="{SHELL_NS}">
      <resource-manager>${{resourceManager}}</resource-manager>
      <name-node>${{nameNode}}</name-node>
      <exec>{escape(argv[0])}</exec>
{args}
      <capture-output/>
    </shell>
    <ok to="{ok}"/>
    <error to="failed"/>
  </action>"""


def oozie_cron(expression: str) -> str:
    """Oozie's cron syntax numbers week days 1-7 from Sunday; names mean the same in both."""
    fields = expression.split()
    # Day numbers become names; a step (*/2) stays a number.
    day = re.sub(r"(?<![/\d])([0-7])(?!\d)", lambda m: DAYS[int(m.group(1))], fields[4])
    return " ".join(fields[:4] + [day])


def coordinator_xml(config: Config, name: str, schedule: Schedule) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Schedule {escape(name)} ({escape(schedule.cron)}), rendered by sparkml schedule render (target oozie). -->
<coordinator-app xmlns="{COORDINATOR_NS}" name={quoteattr(f"sparkml-{name}")}
                 frequency={quoteattr(oozie_cron(schedule.cron))} start="${{start}}" end="${{end}}"
                 timezone={quoteattr(schedule.timezone)}>
  <controls>
    <concurrency>1</concurrency>
    <execution>FIFO</execution>
  </controls>
  <action>
    <workflow>
      <app-path>${{workflowAppPath}}</app-path>
    </workflow>
  </action>
</coordinator-app>
"""


def _job_properties(config: Config, name: str) -> str:
    oozie = config.schedules.oozie
    app = f"${{nameNode}}{oozie.application_dir.rstrip('/')}/{name}"
    return "\n".join([
        f"# Schedule {name}: copy workflow.xml and coordinator.xml to {app}, then",
        "# oozie job -config job.properties -run",
        f"nameNode={oozie.name_node}",
        f"resourceManager={oozie.resource_manager}",
        f"workflowAppPath={app}",
        f"oozie.coord.application.path={app}",
        f"start={oozie.start}",
        f"end={oozie.end}",
        "oozie.use.system.libpath=true",
        ""])


# --- listing ------------------------------------------------------------------------------


def listing(config: Config, now: dt.datetime | None = None) -> list[dict]:
    """Every job of every schedule with its schedule's next run (in the machine's time zone,
    as cron reads it) and what it waits for."""
    from croniter import croniter

    now = now or dt.datetime.now().astimezone()
    rows = []
    for sched_name, schedule in config.schedules.schedules.items():
        next_run = croniter(schedule.cron, now).get_next(dt.datetime)
        for job_name in schedule.order():
            job: ScheduledJob = schedule.jobs[job_name]
            rows.append({"schedule": sched_name, "job": job_name, "cron": schedule.cron,
                         "next_run": next_run.isoformat(timespec="minutes"),
                         "runs": " ".join([job.job, *job.args]),
                         "after": [f"{d} ({job.when})" for d in job.after]})
    return rows
