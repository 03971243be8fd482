"""A served model's requests and predictions, appended to a Delta table (delta-rs: no JVM).

Each answered request's rows are first appended to a local write-ahead file (written to the
operating system before the answer goes out, so a SIGKILL loses none of them), then written
to Delta in batches, every `seconds` or `rows`, and once more at shutdown. The write-ahead
log is cut in numbered segments; a segment's batch is committed to Delta with the segment's
number as an idempotent transaction (Delta's `txn` action, app id = the log's folder), and
only then removed. The next server to start replays what a killed one left: segments Delta
already holds are skipped, so nothing is written twice. Every `compact_minutes` the table's
small files are compacted (OPTIMIZE) and checkpointed, so a busy server's hundreds of
appends stay cheap to read.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import shutil
import threading
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)
TIMES = ("received_at", "event_time")


def schema():
    """The request log's columns (pyarrow imported on first use)."""
    import pyarrow as pa

    return pa.schema([("request_id", pa.string()), ("received_at", pa.timestamp("us", tz="UTC")),
                      ("model_name", pa.string()), ("model_version", pa.int64()), ("keys", pa.string()),
                      ("event_time", pa.timestamp("us", tz="UTC")), ("prediction", pa.float64()),
                      ("probability", pa.float64()), ("missing_features", pa.int64())])


class RequestLog:
    def __init__(self, location, wal_root: Path, seconds: float = 5.0, rows: int = 1000,
                 compact_minutes: float = 10.0):
        self.location, self.seconds, self.rows = location, seconds, rows
        self.compact_seconds = compact_minutes * 60
        self.written = 0
        self._lock = threading.Lock()
        self._pending: list[dict] = []
        self._unwritten: list[tuple[int, list[dict]]] = []  # segments whose Delta write failed
        self._stop = threading.Event()
        self._due = threading.Event()
        self._writing = threading.Lock()  # one flush at a time: segments reach Delta in order
        wal_root.mkdir(parents=True, exist_ok=True)
        # Made under a hidden name and locked before it is named: never taken for an orphan.
        making = wal_root / f".{uuid.uuid4().hex}"
        making.mkdir()
        self._held = open(making / "lock", "w")  # held while this server lives
        fcntl.flock(self._held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.wal = making.rename(wal_root / making.name[1:])
        self._replay_orphans(wal_root)
        self._segment = 0
        self._file = open(self._path(0), "a", encoding="utf-8")
        self._compacted = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def _path(self, segment: int) -> Path:
        return self.wal / f"{segment:012d}.jsonl"

    def add(self, records: list[dict]) -> None:
        """Rows of one answered request: in the write-ahead file before this returns."""
        text = "".join(json.dumps(_stored(r), separators=(",", ":"), default=str) + "\n" for r in records)
        with self._lock:
            try:
                self._file.write(text)
                self._file.flush()  # in the OS's hands: a killed process loses nothing
            except OSError as exc:  # e.g. a full disk: the answer is given, the rows wait in memory
                log.error("request log: %d rows not in the write-ahead file %s: %s", len(records),
                          self._file.name, exc)
            self._pending.extend(records)
            if len(self._pending) >= self.rows:
                self._due.set()  # written by the log's thread: the caller may be an event loop

    def _run(self) -> None:
        while not self._stop.is_set():
            self._due.wait(self.seconds)
            self._due.clear()
            try:
                self.flush()
                if self.compact_seconds and time.monotonic() - self._compacted > self.compact_seconds:
                    self.compact()
            except Exception as exc:  # noqa: BLE001 - the log's thread must outlive any failure
                log.error("request log: %s", exc)

    def flush(self) -> None:
        """Cut the write-ahead file into a segment and write every unwritten segment to Delta,
        oldest first, stopping at the first failure (a later segment committed first would
        make Delta's transaction version skip the earlier one)."""
        with self._writing:
            with self._lock:
                batch, self._pending = self._pending, []
                if batch:
                    try:
                        following = open(self._path(self._segment + 1), "a", encoding="utf-8")
                    except OSError as exc:  # no new segment: these rows stay in this one, and wait
                        log.error("request log: no new write-ahead segment in %s: %s", self.wal, exc)
                        self._pending = batch + self._pending
                        return
                    self._file.close()
                    self._unwritten.append((self._segment, batch))
                    self._segment += 1
                    self._file = following
                todo = list(self._unwritten)
            for segment, rows in todo:
                try:
                    self._append(self.wal.name, segment, rows)
                except Exception as exc:  # noqa: BLE001 - serving goes on; retried at the next flush
                    log.error("request log: %d rows not yet written to %s (kept in %s, retried): %s",
                              len(rows), self.location, self._path(segment), exc)
                    return
                self._path(segment).unlink(missing_ok=True)
                self.written += len(rows)
                with self._lock:
                    self._unwritten.pop(0)

    def _append(self, app: str, segment: int, rows: list[dict]) -> None:
        import pyarrow as pa
        from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
        from deltalake.exceptions import TableNotFoundError

        options = self.location.store.delta_options() or None
        try:
            done = DeltaTable(str(self.location), storage_options=options).transaction_version(app)
        except TableNotFoundError:  # nothing of this log is in it yet
            done = None
        if done is not None and done >= segment:
            return  # committed before the segment file could be removed
        write_deltalake(str(self.location), pa.Table.from_pylist(rows, schema=schema()), mode="append",
                        storage_options=options,
                        commit_properties=CommitProperties(app_transactions=[Transaction(app, segment)]))

    def _replay_orphans(self, root: Path) -> None:
        """Write what servers killed before their last flush left, then remove it."""
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                             and p != self.wal):
            with open(folder / "lock", "a") as held:
                try:
                    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a running server's
                try:
                    for path in sorted(folder.glob("*.jsonl")):  # in order: see flush
                        rows = _rows(path)
                        if rows:
                            self._append(folder.name, int(path.stem), rows)
                        log.warning("request log: %d rows a stopped server left in %s written to %s",
                                    len(rows), path, self.location)
                        path.unlink()
                except Exception as exc:  # noqa: BLE001 - left for the next start
                    log.error("request log: replaying %s failed (left for the next start): %s", folder, exc)
                    continue
                shutil.rmtree(folder, ignore_errors=True)  # still locked: no other start takes it

    def compact(self) -> None:
        """OPTIMIZE the table's small files and checkpoint its log."""
        from deltalake import DeltaTable

        self._compacted = time.monotonic()
        try:
            table = DeltaTable(str(self.location), storage_options=self.location.store.delta_options() or None)
            table.optimize.compact()
            table.create_checkpoint()
        except Exception as exc:  # noqa: BLE001 - tried again next time
            log.warning("request log: compacting %s failed: %s", self.location, exc)

    def close(self) -> None:
        self._stop.set()
        self._due.set()
        self._thread.join(timeout=60)
        self.flush()  # after the thread's: flushes take turns
        with self._lock:
            self._file.close()
            left = self._unwritten or self._pending
        if not left:
            shutil.rmtree(self.wal, ignore_errors=True)
        self._held.close()  # what is left is replayed by the next start


def _rows(path: Path) -> list[dict]:
    """A segment's rows; a line the kill cut short is no row."""
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rows.append(_loaded(json.loads(line)))
        except (ValueError, TypeError):
            continue
    return rows


def _stored(record: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in record.items()}


def _loaded(record: dict) -> dict:
    return {k: (dt.datetime.fromisoformat(v) if k in TIMES and v else v) for k, v in record.items()}


def request_log_table(model: str) -> str:
    """The lake table a served model's requests go to (lineage finds them there)."""
    return "predictions.online_" + "".join(c if c.isalnum() else "_" for c in model.lower())
