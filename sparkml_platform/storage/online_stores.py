"""The online stores: each feature table's recent rows per key, looked up as of a request's time.

A key's stored value holds its kept rows (serving/publish.py decides which); `as_of` answers
a request from it exactly as batch scoring's point-in-time join would: the newest row at or
before the request's time, no older than the lookback. A request older than what is kept is
answered with null features and said to be outside the kept window, never with a newer row.

Generations: a full publish writes a new generation of the table (a SQLite table, a Redis
hash) beside the one serving, then switches the table's marker to it in one write, then
drops the old one; a kill at any moment leaves the previous generation serving, and the next
publish drops what was left half-written. An incremental publish (only keys whose kept rows
changed since the published Delta version) is one transaction: all of it or none.

The marker says what a generation holds: table, Delta version, definition, row count, shape.
Lookups read marker and rows in one round trip (a SQLite read transaction, a Redis script),
so an answer knows which generation it came from, and a store emptied under a server is seen
at the next request; `held` counts what the generation really holds, which "up to date" and
the server's readiness check compare with the marker.

Two stores behind one interface: a SQLite file (the embedded default, nothing to run) and
Redis (`redis://HOST:PORT/DB`, for serving from several processes or machines).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import threading
import uuid
from pathlib import Path

from ..config import redact_uri
from ..core.errors import ConfigError, JobFailed

FOUND, NO_ROW, TOO_OLD, BEFORE_KEPT = "found", "no row", "older than the lookback", "before the kept window"
# The store's table of an aggregation table's recent events (storage/recent_events.py): NAME~events.
EVENTS_SUFFIX = "~events"


def feature_table_of(stored: str) -> str:
    """The feature table a store table holds something of (its rows, or its recent events)."""
    return stored.removesuffix(EVENTS_SUFFIX)


class StoreDown(JobFailed):
    """The online store does not answer (the server says 503; publish exits 1)."""


def key_json(columns: list[str], values) -> str:
    """The stored form of a key: what Spark's to_json(struct(keys)) writes for the same values."""
    return json.dumps(dict(zip(columns, values)), separators=(",", ":"), ensure_ascii=False)


def as_of(value: str | None, at_us: int, lookback_seconds: int | None) -> tuple[dict | None, str]:
    """The features a request at `at_us` gets from a key's stored value, and why (FOUND, NO_ROW,
    TOO_OLD or BEFORE_KEPT): the newest row at or before `at_us`, no older than the lookback
    (compared in whole seconds, as the batch join does)."""
    if value is None:
        return None, NO_ROW
    start, rows = json.loads(value)
    if start is not None and at_us < start:
        return None, BEFORE_KEPT
    for event_us, features in reversed(rows):
        if event_us <= at_us:
            if lookback_seconds is not None and at_us // 1_000_000 - event_us // 1_000_000 > lookback_seconds:
                return None, TOO_OLD
            return features, FOUND
    return None, NO_ROW


class Store:
    """What publishing and serving need from a store. A table's marker names the generation
    serving it; `lookup` answers (that generation, each key's value) from one snapshot."""

    url: str

    def marker(self, table: str) -> dict | None:
        raise NotImplementedError

    def state(self, table: str) -> tuple[dict | None, int | None]:
        """The marker, and the rows the generation it names really holds (None: no marker, or
        its generation is gone), read together."""
        raise NotImplementedError

    def held(self, table: str) -> int | None:
        return self.state(table)[1]

    def lookup(self, table: str, keys: list[str]) -> tuple[str | None, list[str | None]]:
        raise NotImplementedError

    def begin(self, table: str) -> str:
        """A new, empty generation of `table`; what a cut-short publish left is dropped first."""
        raise NotImplementedError

    def fill(self, generation: str, rows: list[tuple[str, str]]) -> None:
        raise NotImplementedError

    def switch(self, table: str, marker: dict) -> None:
        """Point `table` at `marker["generation"]` in one write, then drop the one it replaced."""
        raise NotImplementedError

    def apply(self, table: str, upserts: list[tuple[str, str]], deletes: list[str], marker: dict) -> None:
        """Change the serving generation and its marker in one transaction."""
        raise NotImplementedError

    def discard_unfinished(self, table: str) -> None:
        raise NotImplementedError

    def ping(self) -> None:
        raise NotImplementedError


class SqliteStore(Store):
    """One SQLite file in WAL mode (readers never wait for a publish): a SQLite table per
    generation, and `sparkml_markers` naming each feature table's serving one."""

    def __init__(self, path: Path, timeout: float):
        self.path, self.timeout = path, timeout
        self.url = f"sqlite:///{path}"
        self._local = threading.local()
        self._markers: dict[str, dict] = {}  # the marker text's parse, by text
        self._counts: dict[str, int] = {}  # the rows of the generation a marker names, by its text

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Readers never wait (WAL); a publisher waits this long for another publisher.
            db = sqlite3.connect(self.path, timeout=max(self.timeout, 5.0), isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS sparkml_markers (name TEXT PRIMARY KEY, marker TEXT NOT NULL)")
            self._local.db = db
        return db

    @contextlib.contextmanager
    def _answering(self):
        try:
            yield
        except (sqlite3.Error, OSError, ValueError, KeyError) as exc:  # KeyError, ValueError: a marker not ours
            raise StoreDown(f"the online store {self.url} does not answer: {type(exc).__name__}: {exc}") from None

    def _parsed(self, text: str | None) -> dict | None:
        if text is None:
            return None
        parsed = self._markers.get(text)
        if parsed is None:
            if len(self._markers) > 256:
                self._markers.clear()
            parsed = self._markers[text] = json.loads(text)
        return parsed

    def marker(self, table):
        if not self.path.exists():
            return None  # nothing published yet; asking creates nothing
        with self._answering():
            row = self._db().execute("SELECT marker FROM sparkml_markers WHERE name = ?", (table,)).fetchone()
            return self._parsed(row[0]) if row else None

    def state(self, table):
        if not self.path.exists():
            return None, None
        with self._answering():
            db = self._db()
            with _reading(db):
                row = db.execute("SELECT marker FROM sparkml_markers WHERE name = ?", (table,)).fetchone()
                if not row:
                    return None, None
                marker = self._parsed(row[0])
                generation = marker["generation"]
                if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                  (generation,)).fetchone():
                    return marker, None
                # Counted once per marker (a scan of the whole key index): only a publish,
                # which writes a new marker, changes a generation's rows.
                if row[0] not in self._counts:
                    if len(self._counts) > 256:
                        self._counts.clear()
                    self._counts[row[0]] = db.execute(f'SELECT COUNT(*) FROM "{generation}"').fetchone()[0]
                return marker, self._counts[row[0]]

    def lookup(self, table, keys):
        if not self.path.exists():
            raise StoreDown(f"the online store {self.url} does not exist (nothing was published to it)")
        with self._answering():
            db = self._db()
            with _reading(db):  # marker and rows from one snapshot
                row = db.execute("SELECT marker FROM sparkml_markers WHERE name = ?", (table,)).fetchone()
                if not row:
                    return None, [None] * len(keys)
                generation = self._parsed(row[0])["generation"]
                found = {}
                try:
                    for start in range(0, len(keys), 500):  # SQLite's limit on bound parameters
                        part = keys[start:start + 500]
                        found.update(db.execute(f'SELECT key, value FROM "{generation}" WHERE key IN '
                                                f"({','.join('?' * len(part))})", part))
                except sqlite3.OperationalError as exc:
                    if "no such table" in str(exc):
                        return None, [None] * len(keys)
                    raise
        return generation, [found.get(k) for k in keys]

    def _generations(self, table: str) -> list[str]:
        prefix = _generation_prefix(table)
        return [n for (n,) in self._db().execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                if n.startswith(prefix)]

    def begin(self, table):
        self.discard_unfinished(table)
        generation = f"{_generation_prefix(table)}{uuid.uuid4().hex[:12]}"
        with self._answering():
            self._db().execute(f'CREATE TABLE "{generation}" (key TEXT PRIMARY KEY, value TEXT NOT NULL)')
        return generation

    def fill(self, generation, rows):
        with self._answering():
            db = self._db()
            with _transaction(db):
                db.executemany(f'INSERT OR REPLACE INTO "{generation}" VALUES (?, ?)', rows)

    def switch(self, table, marker):
        with self._answering():
            db = self._db()
            with _transaction(db):
                db.execute("INSERT OR REPLACE INTO sparkml_markers VALUES (?, ?)",
                           (table, json.dumps(marker, default=str)))
            self.discard_unfinished(table)

    def apply(self, table, upserts, deletes, marker):
        generation = marker["generation"]
        with self._answering():
            db = self._db()
            with _transaction(db):
                current = db.execute("SELECT marker FROM sparkml_markers WHERE name = ?", (table,)).fetchone()
                if not current or self._parsed(current[0]).get("generation") != generation:
                    raise StoreDown(f"feature table {table}'s generation in {self.url} changed under this "
                                    "publish (another publish ran): publish again")
                db.executemany(f'INSERT OR REPLACE INTO "{generation}" VALUES (?, ?)', upserts)
                db.executemany(f'DELETE FROM "{generation}" WHERE key = ?', [(k,) for k in deletes])
                rows = db.execute(f'SELECT COUNT(*) FROM "{generation}"').fetchone()[0]
                db.execute("INSERT OR REPLACE INTO sparkml_markers VALUES (?, ?)",
                           (table, json.dumps({**marker, "rows": rows}, default=str)))

    def discard_unfinished(self, table):
        if not self.path.exists():
            return
        with self._answering():
            current = (self.marker(table) or {}).get("generation")
            for name in self._generations(table) + [f"features:{table}"]:  # and a store's before markers
                if name != current:
                    self._db().execute(f'DROP TABLE IF EXISTS "{name}"')

    def ping(self):
        if not self.path.exists():
            return  # nothing published yet: asking creates nothing
        with self._answering():
            self._db().execute("SELECT 1").fetchone()


def _generation_prefix(table: str) -> str:
    return f"gen:{table}:"


@contextlib.contextmanager
def _transaction(db, begin: str = "BEGIN IMMEDIATE"):
    """A write transaction (BEGIN IMMEDIATE: the write lock first), or with `begin="BEGIN"` a
    read transaction whose every SELECT sees one snapshot (WAL). Ended whatever happens in it,
    so the connection is never left inside a transaction."""
    if db.in_transaction:
        db.execute("ROLLBACK")
    db.execute(begin)
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _reading(db):
    return _transaction(db, "BEGIN")


# Marker and rows in one round trip, from one moment: Redis runs a script atomically.
_LOOKUP = """
local generation = redis.call('GET', KEYS[1])
if not generation then return {false, {}} end
return {generation, redis.call('HMGET', generation, unpack(ARGV))}
"""


# The marker and the rows of the generation it names, together (both are set in one MULTI).
_STATE = """
local marker = redis.call('GET', KEYS[2])
local generation = redis.call('GET', KEYS[1])
if not generation then return {marker or false, false} end
return {marker or false, redis.call('HLEN', generation)}
"""


class RedisStore(Store):
    """Redis: a hash per generation (`PREFIX:gen:TABLE:ID`, key -> value), the serving one
    named by `PREFIX:current:TABLE` and described by `PREFIX:marker:TABLE`, both set in one
    transaction. Every call gives up after `timeout` seconds (the server answers 503)."""

    def __init__(self, url: str, timeout: float, namespace: str):
        import redis

        self.url = url
        self.prefix = f"sparkml:{namespace}"
        self._redis = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._errors = (redis.exceptions.RedisError, ValueError, KeyError)  # the last two: a value not ours
        self._lookup = self._redis.register_script(_LOOKUP)
        self._state = self._redis.register_script(_STATE)

    @contextlib.contextmanager
    def _answering(self):
        try:
            yield
        except self._errors as exc:
            raise StoreDown(f"the online store {shown_url(self.url)} does not answer: {exc}") from None

    def _current(self, table: str) -> str:
        return f"{self.prefix}:current:{table}"

    def _marker(self, table: str) -> str:
        return f"{self.prefix}:marker:{table}"

    def marker(self, table):
        with self._answering():
            value = self._redis.get(self._marker(table))
        return json.loads(value) if value else None

    def state(self, table):
        with self._answering():
            marker, held = self._state(keys=[self._current(table), self._marker(table)])
            return (json.loads(marker) if marker else None), held  # an empty generation is no key: 0

    def lookup(self, table, keys):
        if not keys:
            return None, []
        with self._answering():
            for _ in range(3):  # a switch between two parts: the whole lookup again
                values: list = []
                generation = None
                for start in range(0, len(keys), 1000):  # a script's arguments are a few thousand at most
                    got, part = self._lookup(keys=[self._current(table)], args=keys[start:start + 1000])
                    if not got:
                        return None, [None] * len(keys)  # emptied
                    if generation is not None and got.decode() != generation:
                        break
                    generation = got.decode()
                    values += [v.decode() if v is not None else None for v in part]
                else:
                    return generation, values
        raise StoreDown(f"the online store {shown_url(self.url)} switched feature table {table} three times "
                        "during one lookup")

    def _generations(self, table: str) -> list[str]:
        return [k.decode() for k in self._redis.scan_iter(match=f"{self.prefix}:gen:{table}:*", count=1000)]

    def begin(self, table):
        self.discard_unfinished(table)
        return f"{self.prefix}:gen:{table}:{uuid.uuid4().hex[:12]}"

    def fill(self, generation, rows):
        with self._answering():
            self._redis.hset(generation, mapping=dict(rows))

    def switch(self, table, marker):
        with self._answering():
            with self._redis.pipeline(transaction=True) as tx:
                tx.set(self._current(table), marker["generation"])
                tx.set(self._marker(table), json.dumps(marker, default=str))
                tx.execute()
        self.discard_unfinished(table)

    def apply(self, table, upserts, deletes, marker):
        import redis

        with self._answering():
            with self._redis.pipeline(transaction=True) as tx:  # queued here, run at once by EXEC
                generation = marker["generation"]
                tx.watch(self._current(table))  # another publish switching it aborts this one
                if (tx.get(self._current(table)) or b"").decode() != generation:
                    raise StoreDown(f"feature table {table}'s generation in {shown_url(self.url)} changed under "
                                    "this publish (another publish ran): publish again")
                tx.multi()
                for start in range(0, len(upserts), 5000):
                    tx.hset(generation, mapping=dict(upserts[start:start + 5000]))
                for start in range(0, len(deletes), 5000):
                    tx.hdel(generation, *deletes[start:start + 5000])
                tx.set(self._marker(table), json.dumps(marker, default=str))
                try:
                    tx.execute()
                except redis.exceptions.WatchError:
                    raise StoreDown(f"feature table {table}'s generation in {shown_url(self.url)} changed "
                                    "under this publish (another publish ran): publish again") from None

    def discard_unfinished(self, table):
        with self._answering():
            current = self._redis.get(self._current(table))
            current = current.decode() if current else None
            for name in self._generations(table):
                if name != current:
                    self._redis.unlink(name)

    def ping(self):
        with self._answering():
            self._redis.ping()


def shown_url(url: str) -> str:
    """A store's URL for messages: a password in it is masked."""
    return redact_uri(url)


def open_store(config) -> Store:
    """The configured store (platform.yml online_store, or SPARKML_ONLINE_STORE)."""
    settings = config.platform.online_store
    url = settings.url
    if url.startswith("sqlite:///"):
        return SqliteStore(config.path(url[len("sqlite:///"):]), settings.timeout_seconds)
    return RedisStore(url, settings.timeout_seconds, config.project_name)


def write_full(store: Store, table: str, rows, marker: dict, batch_rows: int = 5000) -> int:
    """Every (key, value) of `rows` into a new generation, then the marker switched to it."""
    generation = store.begin(table)
    written = 0
    batch: list[tuple[str, str]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= batch_rows:
            store.fill(generation, batch)
            written, batch = written + len(batch), []
    if batch:
        store.fill(generation, batch)
        written += len(batch)
    store.switch(table, {**marker, "generation": generation, "rows": written, "mode": "full"})
    return written


def write_incremental(store: Store, table: str, upserts: list, deletes: list, marker: dict) -> bool:
    """The changes and the marker in one transaction; False when the generation then holds
    other than the rows its marker records (it was not what its old marker said: publish anew)."""
    store.apply(table, upserts, deletes, {**marker, "mode": "incremental"})
    return store.held(table) == marker["rows"]


def online_status(store: Store, name: str, newest_version: int | None) -> dict | None:
    """What `features show` says of the online copy: version, age, rows held, and whether it is
    behind (an older version, or fewer rows held than its marker records)."""
    info, held = store.state(name)
    if info is None:
        return None
    at = dt.datetime.fromisoformat(info["published_at"])
    return {"version": info["version"], "published_at": info["published_at"],
            "age_seconds": round((dt.datetime.now(dt.timezone.utc) - at).total_seconds()),
            "rows": info.get("rows"), "rows_held": held,
            "behind": (newest_version is not None and info["version"] < newest_version) or held != info.get("rows"),
            "store": shown_url(store.url)}


def check_published(store: Store, tables: list[str]) -> dict[str, dict]:
    """Each table's marker; a table never published, or whose rows the store lost, is refused,
    naming the command."""
    out, unpublished, short = {}, [], []
    for table in tables:
        info, held = store.state(table)
        if info is None:
            unpublished.append(table)
        elif held != info.get("rows"):
            short.append(f"{held or 0} rows of feature table {table}, its marker records {info.get('rows')}")
        else:
            out[table] = info
    if unpublished:  # every one named, with the commands that fix it
        raise ConfigError(f"feature table{'s' if len(unpublished) > 1 else ''} {', '.join(unpublished)} "
                          f"{'were' if len(unpublished) > 1 else 'was'} never published to the online store "
                          f"{shown_url(store.url)} (or only by a platform version before markers): publish "
                          f"first: {'; '.join(f'sparkml features publish {feature_table_of(t)}' for t in unpublished)}")
    if short:
        raise ConfigError(f"the online store {shown_url(store.url)} holds {'; '.join(short)}: publish "
                          f"again: {'; '.join(f'sparkml features publish {feature_table_of(t)}' for t in tables if t not in out)}")
    return out
