"""Locks. `exclusive`: between processes on one machine (and threads), with `flock`, which the
kernel releases when its holder dies. `JobLock`: between runs of one scheduled job on any
machines, a small file in the lake (so on HDFS or S3 too) naming the run that holds it."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import socket
import sys
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from ..config import load_config
from ..core.errors import ConfigError, JobLocked, SparkmlError
from . import places

log = logging.getLogger(__name__)


@contextlib.contextmanager
def exclusive(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Holder:
    job: str
    run_id: str
    host: str
    pid: int
    started_at: str  # ISO 8601, UTC
    took_over_from: str | None = None
    # The job's own process group (spark-submit's JVM and the Python driver it starts), which
    # outlives its runner when the runner is killed with SIGKILL: held while either lives.
    job_group: int | None = None

    def age_seconds(self, now: dt.datetime) -> float:
        return (now - dt.datetime.fromisoformat(self.started_at)).total_seconds()

    def is_dead_here(self) -> bool:
        """Started on this machine by processes that no longer exist: surely not running."""
        if self.host != socket.gethostname():
            return False
        return not _alive(os.kill, self.pid) and not (self.job_group and _alive(os.killpg, self.job_group))

    def shown(self) -> str:
        return f"pid {self.pid}" + (f", job process group {self.job_group}" if self.job_group else "")


def _alive(probe, pid: int) -> bool:
    """Whether the process (os.kill) or process group (os.killpg) exists."""
    try:
        probe(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobLock:
    """`lake_root/_locks/JOB.json`. Taken with the storage layer's atomic create; one left by a
    killed run is taken over once older than `stale_after` seconds (at once when its process is
    known dead on this machine), and the take-over is logged and recorded in the new lock."""

    def __init__(self, lake_root, job: str, stale_after: int):
        if not job or "/" in job or job.startswith("."):
            raise ConfigError(f"lock name {job!r}: a job name, without / (e.g. SCHEDULE.JOB)")
        self.job, self.stale_after = job, stale_after
        self.location = lake_root / "_locks" / f"{job}.json"

    def holder(self) -> Holder | None:
        text = self.location.read_or_none()
        if text is None:
            return None
        try:
            return Holder(**json.loads(text))
        except (ValueError, TypeError):  # unreadable: treated as held since its file's creation
            return None

    def acquire(self, pid: int | None = None) -> Holder:
        now = dt.datetime.now(dt.timezone.utc)
        mine = Holder(self.job, uuid.uuid4().hex[:12], socket.gethostname(), pid or os.getpid(),
                      now.isoformat(timespec="seconds"))
        for _ in range(3):
            if self.location.create(json.dumps(asdict(mine))):
                return mine
            held = self.holder()
            if held is None:
                if not self.location.exists():
                    continue  # released between our two looks: try again
                raise JobLocked(f"job {self.job}: its lock {self.location} cannot be read; remove "
                                "it if no run of the job is going on")
            age = held.age_seconds(now)
            # On this machine the holder's processes say whether it runs, whatever its age.
            alive_here = held.host == socket.gethostname() and not held.is_dead_here()
            if alive_here or (not held.is_dead_here() and age < self.stale_after):
                raise JobLocked(
                    f"job {self.job} is still running: run {held.run_id} on {held.host} "
                    f"({held.shown()}) since {held.started_at}; this run does nothing. A lock taken on another "
                    f"machine and older than {self.stale_after} s is taken over (lock_stale_after); remove "
                    f"{self.location} if you know that run is dead")
            why = "its processes are gone" if held.is_dead_here() else \
                f"it is {age:.0f} s old, more than lock_stale_after ({self.stale_after} s)"
            log.warning("job %s: taking over the lock of run %s on %s started %s: %s",
                        self.job, held.run_id, held.host, held.started_at, why)
            mine = Holder(**{**asdict(mine), "took_over_from": held.run_id})
            # Removed only if it is still the stale run's lock, then raced for like a free one.
            if self.location.read_or_none() is not None and self.holder() == held:
                self.location.unlink()
        raise JobLocked(f"job {self.job}: could not take its lock {self.location} (other runs "
                        "took it at the same time)")

    def hand_over(self, run_id: str, job_group: int) -> bool:
        """Record the job's process group in `run_id`'s lock (False: no longer its lock)."""
        held = self.holder()
        if held is None or held.run_id != run_id:
            return False
        self.location.write_text(json.dumps(asdict(Holder(**{**asdict(held), "job_group": job_group}))))
        return True

    def release(self, run_id: str) -> bool:
        """Remove the lock if `run_id` still holds it (a run whose lock was taken over leaves
        the new holder's alone): True when removed."""
        held = self.holder()
        if held is None or held.run_id != run_id:
            log.warning("job %s: lock no longer held by run %s (now: %s); left as it is", self.job,
                        run_id, held.run_id if held else "none")
            return False
        self.location.unlink()
        return True


def main(argv: list[str] | None = None) -> int:
    """For spark-submit.sh: `acquire CONF ENV JOB PID STALE_SECONDS` prints the run id;
    `hand_over CONF ENV JOB RUN_ID JOB_GROUP`; `release CONF ENV JOB RUN_ID`. Exit codes as the
    CLI's (4: the job is still running)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        action, conf, env, job, value = args[0], args[1], args[2] or None, args[3], args[4]
        config = load_config(conf, env)
        if action == "acquire":
            held = JobLock(places.lake_root(config), job, int(args[5])).acquire(pid=int(value))
            print(held.run_id)
        elif action == "hand_over":
            if not JobLock(places.lake_root(config), job, 0).hand_over(value, int(args[5])):
                print(f"error: the lock of job {job} is no longer run {value}'s", file=sys.stderr)
                return 1
        else:
            JobLock(places.lake_root(config), job, 0).release(value)
    except SparkmlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
