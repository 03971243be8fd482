"""The online store: each feature table's newest row per key, looked up one request at a time.

`publish` moves a Delta feature table's newest row per key into the store and records the
Delta version it published. A later publish moves only what changed between the recorded
version and the current one (a diff of the two versions' newest rows: keys whose row
changed or appeared are written, keys that disappeared are deleted), so publishing after
an incremental build is cheap and publishing twice is a no-op.

Two stores behind one small interface: a SQLite file (the embedded default, nothing to run)
and Redis (`redis://HOST:PORT/DB`, for serving from several processes or machines). A row
is stored as its event time (epoch milliseconds) and its features as JSON, under the JSON of
its key columns, so a lookup is one read per table however many features it holds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import threading
from pathlib import Path

from . import feature_definitions
from .errors import ConfigError, JobFailed, NotFoundError


class StoreDown(JobFailed):
    """The online store does not answer (the server says 503; publish exits 1)."""


def key_json(columns: list[str], values) -> str:
    """The stored form of a key: what Spark's to_json(struct(keys)) writes for the same values."""
    return json.dumps(dict(zip(columns, values)), separators=(",", ":"), ensure_ascii=False)


class Store:
    """What publishing and serving need from a store."""

    url: str

    def put(self, table: str, rows: list[tuple[str, int | None, str]]) -> None:
        raise NotImplementedError

    def delete(self, table: str, keys: list[str]) -> None:
        raise NotImplementedError

    def clear(self, table: str) -> None:
        raise NotImplementedError

    def get(self, table: str, keys: list[str]) -> list[tuple[int | None, dict] | None]:
        raise NotImplementedError

    def published(self, table: str) -> dict | None:
        raise NotImplementedError

    def record(self, table: str, info: dict) -> None:
        raise NotImplementedError

    def ping(self) -> None:
        raise NotImplementedError


class SqliteStore(Store):
    """One SQLite file (WAL: readers never wait for a publish); a table per feature table."""

    def __init__(self, path: Path, timeout: float):
        self.path, self.timeout = path, timeout
        self.url = f"sqlite:///{path}"
        self._local = threading.local()

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=max(self.timeout, 5.0), isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS sparkml_published (name TEXT PRIMARY KEY, info TEXT)")
            self._local.db = db
        return db

    @staticmethod
    def _table(name: str) -> str:
        return f'"features:{name}"'

    def _ensure(self, name: str) -> None:
        self._db().execute(f"CREATE TABLE IF NOT EXISTS {self._table(name)} "
                           "(key TEXT PRIMARY KEY, event_ms INTEGER, features TEXT)")

    def put(self, table, rows):
        self._ensure(table)
        db = self._db()
        with _transaction(db):
            db.executemany(f"INSERT OR REPLACE INTO {self._table(table)} VALUES (?, ?, ?)", rows)

    def delete(self, table, keys):
        self._ensure(table)
        db = self._db()
        with _transaction(db):
            db.executemany(f"DELETE FROM {self._table(table)} WHERE key = ?", [(k,) for k in keys])

    def clear(self, table):
        self._db().execute(f"DROP TABLE IF EXISTS {self._table(table)}")

    def get(self, table, keys):
        if not self.path.exists():
            raise StoreDown(f"the online store {self.url} does not exist (nothing was published to it)")
        try:
            found = {}
            for start in range(0, len(keys), 500):  # SQLite's limit on bound parameters
                part = keys[start:start + 500]
                found.update((k, (t, json.loads(f))) for k, t, f in self._db().execute(
                    f"SELECT key, event_ms, features FROM {self._table(table)} WHERE key IN "
                    f"({','.join('?' * len(part))})", part))
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return [None] * len(keys)
            raise StoreDown(f"the online store {self.url} does not answer: {exc}") from None
        return [found.get(k) for k in keys]

    def published(self, table):
        if not self.path.exists():
            return None  # nothing published yet; asking creates nothing
        try:
            row = self._db().execute("SELECT info FROM sparkml_published WHERE name = ?", (table,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreDown(f"the online store {self.url} does not answer: {exc}") from None
        return json.loads(row[0]) if row else None

    def record(self, table, info):
        self._db().execute("INSERT OR REPLACE INTO sparkml_published VALUES (?, ?)",
                           (table, json.dumps(info, default=str)))

    def ping(self):
        try:
            self._db().execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreDown(f"the online store {self.url} does not answer: {exc}") from None


@contextlib.contextmanager
def _transaction(db):
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class RedisStore(Store):
    """Redis: a string per key (`PREFIX:TABLE:KEY` -> `EVENT_MS FEATURES_JSON`), one MGET per
    table and request; every call gives up after `timeout` seconds (the server answers 503)."""

    def __init__(self, url: str, timeout: float, namespace: str):
        import redis

        self.url = url
        self.prefix = f"sparkml:{namespace}"
        self._redis = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

    def _key(self, table: str, key: str) -> str:
        return f"{self.prefix}:{table}:{key}"

    @contextlib.contextmanager
    def _answering(self):
        try:
            yield
        except self._errors as exc:
            raise StoreDown(f"the online store {shown_url(self.url)} does not answer: {exc}") from None

    def put(self, table, rows):
        with self._answering():
            self._redis.mset({self._key(table, k): f"{'' if t is None else t} {f}" for k, t, f in rows})

    def delete(self, table, keys):
        with self._answering():
            for start in range(0, len(keys), 1000):
                self._redis.delete(*[self._key(table, k) for k in keys[start:start + 1000]])

    def clear(self, table):
        with self._answering():
            stale = list(self._redis.scan_iter(match=f"{self.prefix}:{table}:*", count=1000))
            for start in range(0, len(stale), 1000):
                self._redis.delete(*stale[start:start + 1000])

    def get(self, table, keys):
        if not keys:
            return []
        with self._answering():
            values = self._redis.mget([self._key(table, k) for k in keys])
        out = []
        for value in values:
            if value is None:
                out.append(None)
                continue
            millis, _, features = value.decode().partition(" ")
            out.append((int(millis) if millis else None, json.loads(features)))
        return out

    def published(self, table):
        with self._answering():
            value = self._redis.get(f"{self.prefix}:__published__:{table}")
        return json.loads(value) if value else None

    def record(self, table, info):
        with self._answering():
            self._redis.set(f"{self.prefix}:__published__:{table}", json.dumps(info, default=str))

    def ping(self):
        with self._answering():
            self._redis.ping()


def shown_url(url: str) -> str:
    """A store's URL for messages: a password in it is masked."""
    from .config import redact_uri

    return redact_uri(url)


def open_store(config) -> Store:
    """The configured store (platform.yml online_store, or SPARKML_ONLINE_STORE)."""
    settings = config.platform.online_store
    url = settings.url
    if url.startswith("sqlite:///"):
        return SqliteStore(config.path(url[len("sqlite:///"):]), settings.timeout_seconds)
    return RedisStore(url, settings.timeout_seconds, config.project.name)


# --- publishing ----------------------------------------------------------------------------


def newest_rows(df, keys: list[str], event_time: str, features: list[str]):
    """Each key's newest row as (key, event_ms, features): the store's three columns. A feature
    table holds one row per (key, event time), so the newest is unique."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    newest = Window.partitionBy(*keys).orderBy(F.col(event_time).desc())
    return (df.where(F.col(event_time).isNotNull())
            .withColumn("__n", F.row_number().over(newest)).where("__n = 1")
            .select(F.to_json(F.struct(*keys)).alias("key"),
                    F.unix_millis(F.col(event_time).cast("timestamp")).alias("event_ms"),
                    F.to_json(F.struct(*[_plain(df, c) for c in features]),
                              {"ignoreNullFields": "false"}).alias("features")))


def _plain(df, column: str):
    """A feature as JSON carries it: instants as ISO text in UTC (the session's zone)."""
    from pyspark.sql import functions as F

    kind = df.schema[column].dataType.simpleString()
    if kind.startswith("timestamp") or kind == "date":
        return F.date_format(F.col(column), "yyyy-MM-dd'T'HH:mm:ss.SSSSSS").alias(column)
    if kind == "float":  # as the double a batch scorer widens it to (JSON text of a float is not)
        return F.col(column).cast("double").alias(column)
    return F.col(column)


def up_to_date(config, store: Store, name: str) -> dict | None:
    """What `publish` reports when the store already holds the table's newest version in its
    current shape (nothing to do), else None: from the table's log and the store's record."""
    from . import lake

    definition, ref, path = _built_table(config, name)
    name = ref.removeprefix("features.")
    version = lake.version(None, path, ref)
    last = store.published(name)
    if last and last.get("version") == version and last.get("shape") == _shape(definition):
        return {"table": ref, "version": version, "mode": "up to date", "written": 0, "deleted": 0}
    return None


def _built_table(config, name: str):
    """(definition, lake reference, path) of feature table `name` (NAME: the declared version,
    or NAME@N), refused if not built yet. Each version is stored apart, under its own name
    (NAME@N), so models trained on different versions are each served their own."""
    from . import features, lake

    table = features.resolve(config, name)
    path = table.path(config)
    if not lake.exists(path):
        raise NotFoundError(f"feature table {table.name} has not been built yet (build it: "
                            f"features build {table.name})")
    return table.definition, table.ref, path


def _shape(definition) -> dict:
    return {"keys": definition.keys, "event_time": definition.event_time, "features": list(definition.features)}


def publish(spark, config, store: Store, name: str, full: bool = False) -> dict:
    """Publish feature table `name`'s newest row per key; returns what was done."""
    from . import lake

    if not full and (done := up_to_date(config, store, name)):
        return done
    definition, ref, path = _built_table(config, name)
    name = ref.removeprefix("features.")
    version = lake.version(spark, path, ref)
    features = list(definition.features)
    last = store.published(name)
    shape = _shape(definition)
    table = lake.read(spark, path, version, ref)
    current = newest_rows(table, definition.keys, definition.event_time, features)
    incremental = bool(last) and not full and last.get("shape") == shape and \
        last.get("version", -1) < version
    if incremental:
        try:
            before = newest_rows(lake.read(spark, path, last["version"], ref), definition.keys,
                                 definition.event_time, features)
            changed = current.subtract(before)
            removed = [r.key for r in before.select("key").subtract(current.select("key")).collect()]
        except Exception:  # noqa: BLE001 - the published version is vacuumed away: publish it all
            incremental = False
    if not incremental:
        store.clear(name)
        changed, removed = current, []
    written = 0
    batch: list[tuple[str, int | None, str]] = []
    for row in changed.toLocalIterator():
        batch.append((row.key, row.event_ms, row.features))
        if len(batch) >= 5000:
            store.put(name, batch)
            written, batch = written + len(batch), []
    if batch:
        store.put(name, batch)
        written += len(batch)
    if removed:
        store.delete(name, removed)
    key_types = {c: table.schema[c].dataType.simpleString() for c in definition.keys}  # requests are coerced to them
    built = feature_definitions.definition_at(lake.commits(path, ref), version)
    info = {"version": version, "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "mode": "incremental" if incremental else "full", "written": written, "deleted": len(removed),
            "shape": shape, "key_types": key_types,
            "lookback": definition.lookback,
            "definition": built.definition if built else None}  # what a served model is checked against
    store.record(name, info)  # last: a publish cut short is redone from the version before
    return {"table": ref, "version": version, "mode": info["mode"], "written": written,
            "deleted": len(removed)}


def online_status(store: Store, name: str, newest_version: int | None) -> dict | None:
    """What `features show` says of the online copy: version, age, and whether it is behind."""
    info = store.published(name)
    if info is None:
        return None
    at = dt.datetime.fromisoformat(info["published_at"])
    return {"version": info["version"], "published_at": info["published_at"],
            "age_seconds": round((dt.datetime.now(dt.timezone.utc) - at).total_seconds()),
            "behind": newest_version is not None and info["version"] < newest_version,
            "store": shown_url(store.url)}


def check_published(store: Store, tables: list[str]) -> dict[str, dict]:
    """Each table's publish record; a table never published is refused, naming the command."""
    out = {}
    for table in tables:
        info = store.published(table)
        if info is None:
            raise ConfigError(f"feature table {table} was never published to the online store "
                              f"{shown_url(store.url)}: publish it first (sparkml features publish {table})")
        out[table] = info
    return out
