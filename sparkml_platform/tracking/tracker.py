"""MLflow set-up: the one place that points MLflow at the configured tracking server."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shlex
import socket
import sqlite3
import sys
import time
from pathlib import Path

from ..config import Config, redact_uri
from ..core.errors import JobFailed
from ..storage import places
from ..storage.locking import exclusive

log = logging.getLogger(__name__)


# MLflow's defaults retry a dead server for minutes: fail within seconds instead.
HTTP_DEFAULTS = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


class Tracker:
    """One MLflow client bound to the configured tracking and registry URIs, and the
    experiment the platform's runs go to. The Workspace holds one.

    MLflow's fluent API (`start_run`, `log_model`, `register_model`, loading `models:/`)
    reads process-wide settings; `bound()` sets them for the duration of an operation and
    puts the caller's back after, so two workspaces (or a user's own MLflow set-up) in one
    process never see each other's stores."""

    def __init__(self, config: Config):
        self.uri = config.tracking_uri
        self.shown_uri = config.shown_tracking_uri
        self.artifact_root = config.artifact_root
        self.experiment = config.platform.mlflow.experiment
        self.s3_endpoint = _s3_artifact_endpoint(config)
        # Where promotion locks live with a tracking server (one machine; see registry).
        self.lock_dir = (Path(self.uri[len("sqlite:///"):]).parent if self.uri.startswith("sqlite:///")
                         else config.root / ".sparkml" / "locks")
        self._experiment_id: str | None = None
        self._client = None

    @contextlib.contextmanager
    def bound(self):
        """MLflow's fluent API on this store for the duration (checked reachable first)."""
        import mlflow

        # MLflow mirrors each URI it is set to in its environment variable: what is there now
        # is exactly what to put back (None: unset).
        before = {name: os.environ.get(name) for name in
                  ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_S3_ENDPOINT_URL", *HTTP_DEFAULTS)}
        for name, value in {**HTTP_DEFAULTS, **({"MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint}
                                                if self.s3_endpoint else {})}.items():
            os.environ.setdefault(name, value)
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        try:
            check_reachable(self.uri, self.shown_uri)
            self.client  # a new embedded store is created whole before MLflow touches it
            yield self
        finally:
            mlflow.set_tracking_uri(before["MLFLOW_TRACKING_URI"])
            mlflow.set_registry_uri(before["MLFLOW_REGISTRY_URI"])
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    @property
    def client(self):
        """The MLflow client on this store (the embedded store created on first use)."""
        if self._client is None:
            from mlflow import MlflowClient

            if self.uri.startswith("sqlite:///"):
                self._create_embedded()
            self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = _experiment(self.client, self.experiment, self.uri, self.artifact_root)
        return self._experiment_id

    def _create_embedded(self) -> None:
        # Two commands at once on a new embedded store would both create its tables (and the
        # experiment): one after the other, under a lock beside the database.
        db = Path(self.uri[len("sqlite:///"):])
        with exclusive(db.parent / f".{db.name}.init.lock"):
            _create_store(db, self.artifact_root)
            _follow_move(db, self.experiment, self.artifact_root)

    def close_abandoned_runs(self) -> list[str]:
        return close_abandoned_runs(self.client, self.experiment_id)

    def ui_command(self) -> str:
        """How to open the MLflow UI on what the platform wrote."""
        if self.uri.startswith("http"):
            return f"open {self.shown_uri}"

        # This interpreter's mlflow, by its full path: the command works from any directory
        # (a user's project is not the framework's checkout).
        mlflow = Path(sys.executable).parent / "mlflow"
        return (f"{shlex.quote(str(mlflow))} ui --backend-store-uri {shlex.quote(self.uri)} "
                f"--default-artifact-root {shlex.quote(self.artifact_root)} --host 127.0.0.1 --port 5000")


def _s3_artifact_endpoint(config: Config) -> str | None:
    """MLflow's S3 artifact repository takes its endpoint from MLFLOW_S3_ENDPOINT_URL; an
    S3-compatible store's endpoint is configured once, as the S3A settings of the bucket
    (fs.s3a.endpoint, fs.s3a.bucket.NAME.endpoint), and serves both."""
    root = config.artifact_root
    if not root.startswith("s3://"):
        return None
    return places.storage(config).location("s3a://" + root[len("s3://"):].split("/", 1)[0]).store.endpoint


def _experiment(client, name: str, uri: str, artifact_root: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    # A remote server keeps its own artifact store; a local store gets the configured root.
    location = None if uri.startswith("http") else f"{artifact_root}/{name}"
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException as exc:
        # Another command created it meanwhile (two at once on a new tracking server).
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id


def _follow_move(db: Path, name: str, artifact_root: str) -> None:
    """A project copied or moved with its embedded store: MLflow recorded absolute artifact
    locations, which still name the old place (new runs would write there, models load from
    there). When this project's artifact root holds the experiment's artifacts, every location
    under the old root is rewritten to the new one, once."""
    wanted = f"{artifact_root}/{name}"
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as connection:
        try:
            row = connection.execute("SELECT artifact_location FROM experiments WHERE name = ?",
                                     (name,)).fetchone()
        except sqlite3.OperationalError:
            return  # a new store: no tables yet
        if not row or row[0] == wanted or not row[0].endswith(f"/{name}"):
            return
        if not (wanted.startswith("file://") and Path(wanted[len("file://"):]).is_dir()):
            return  # the artifacts were not moved along: the recorded places stay right
        old, new = row[0][:-len(name) - 1], artifact_root
        with connection:
            for table, column in _LOCATIONS:
                try:
                    connection.execute(
                        f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                        f"WHERE substr({column}, 1, ?) = ?", (new, len(old) + 1, len(old) + 1, old + "/"))
                except sqlite3.OperationalError:
                    continue  # a table or column another MLflow version does not have
    log.warning("the project moved: MLflow artifact locations under %s now point to %s", old, new)


# Where MLflow's SQL store keeps artifact locations (MLflow 3 schema).
_LOCATIONS = [("experiments", "artifact_location"), ("runs", "artifact_uri"),
              ("model_versions", "source"), ("model_versions", "storage_location"),
              ("logged_models", "artifact_location")]


def _create_store(db: Path, artifact_root: str) -> None:
    """A new embedded store is created whole or not at all: MLflow builds its tables with some
    fifty migrations, and a command killed among them left a store every later command failed
    on. They are built in a temporary file, moved into place once complete.

    The store runs in WAL mode (kept in the file): readers never block a writer, so two
    trainings at once do not fail on a lock (MLflow itself waits up to 20 s on a busy one)."""
    if db.exists():
        _refuse_half_created(db)
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as connection:
            if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                connection.execute("PRAGMA journal_mode=WAL")
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db.parent.mkdir(parents=True, exist_ok=True)
    for stale in db.parent.glob(f".{db.name}.creating-*"):  # a creation killed half-way
        stale.unlink()
    creating = db.parent / f".{db.name}.creating-{os.getpid()}"
    SqlAlchemyStore(f"sqlite:///{creating}", artifact_root).engine.dispose()
    with contextlib.closing(sqlite3.connect(creating, timeout=30)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
    os.replace(creating, db)


def _refuse_half_created(db: Path) -> None:
    """A store a killed migration left behind: one clear line rather than a SQL trace."""
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as connection:
        left = [name for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '\\_alembic\\_tmp\\_%' "
            "ESCAPE '\\'")]
    if left:
        raise JobFailed(f"the MLflow store {db} was left half-migrated by a command that was "
                        f"killed (it holds {left[0]}): restore it from a backup (or, if it holds "
                        "no runs yet, remove it and run again)")


def owner_tags() -> dict[str, str]:
    """Which process a run belongs to: a run it leaves RUNNING when killed can be closed."""
    return {"sparkml.host": socket.gethostname(), "sparkml.pid": str(os.getpid())}


def close_abandoned_runs(client, experiment_id: str) -> list[str]:
    """Mark KILLED the runs a killed process left RUNNING: those started by a process of this
    host that is gone, and their nested runs (tuning trials). Returns their ids."""
    running = {r.info.run_id: r for r in client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=5000)}
    host = socket.gethostname()
    gone = {rid for rid, r in running.items() if r.data.tags.get("sparkml.host") == host
            and not _alive(r.data.tags.get("sparkml.pid"))}
    children = True
    while children:  # trials whose training run is gone (or already ended)
        children = {rid for rid, r in running.items() if rid not in gone
                    and (parent := r.data.tags.get("mlflow.parentRunId"))
                    and (parent in gone or parent not in running)}
        gone |= children
    for rid in sorted(gone):
        client.set_tag(rid, "sparkml.ended", "killed: its process ended without finishing the run")
        client.set_terminated(rid, "KILLED")
    if gone:
        log.warning("closed %d MLflow run(s) left RUNNING by a killed process: %s", len(gone),
                    ", ".join(sorted(gone)))
    return sorted(gone)


def log_dataset(dataset, context: str, attempts: int = 4) -> None:
    """`mlflow.log_input`, safe when two runs log one dataset at once: a tracking server
    checks for the dataset then inserts it, so the second insert of a pair can fail on the
    primary key; by the retry the dataset exists and is reused."""
    import mlflow
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            mlflow.log_input(dataset, context=context)
            return
        except MlflowException as exc:
            duplicate = "UniqueViolation" in str(exc) or "UNIQUE constraint" in str(exc) \
                or "Duplicate entry" in str(exc)
            if not duplicate or attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0.2, 1.0))


def _alive(pid: str | None) -> bool:
    if not pid or not pid.isdigit():
        return True  # not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_reachable(uri: str, shown: str | None = None, timeout: float = 5.0) -> None:
    """A tracking server that is down is a clear error before any work, not a hang.

    Checked at every use (one small request): a notebook or a test process outlives a server."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout).raise_for_status()
    except requests.RequestException as exc:
        reason = type(exc).__name__ + (f": {exc.response.status_code}" if getattr(exc, "response", None)
                                       is not None else "")
        raise JobFailed(f"the MLflow tracking server at {shown or redact_uri(uri)} is not reachable ({reason}): "
                        "start it, "
                        "or point platform.yml mlflow.tracking_uri (or SPARKML_MLFLOW_TRACKING_URI) "
                        "at one that runs; nothing was logged or registered") from None
