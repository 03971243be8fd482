"""The online store's guarantees without a served model: as-of lookups equal to a brute-force
point-in-time lookup, generations that a kill at any step leaves serving, incremental
changes all or nothing, markers that say what a store really holds (SQLite and a real
Redis), strict request checks, and a request log that a SIGKILL loses nothing of."""

from __future__ import annotations

import datetime as dt
import json
import random
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from support.servers import redis_server

from sparkml_platform.core.errors import ConfigError
from sparkml_platform.serving import publish as online
from sparkml_platform.serving.online_requests import EPOCH, BadRequest
from sparkml_platform.storage import online_stores

ROOT = Path(__file__).resolve().parents[2]


def reference(rows: list[tuple[int, dict]], at: int, lookback: int | None):
    """The newest row at or before `at`, no older than `lookback` seconds: by brute force."""
    before = [r for r in rows if r[0] <= at]
    if not before:
        return None
    event, features = max(before, key=lambda r: r[0])
    if lookback is not None and at // 1_000_000 - event // 1_000_000 > lookback:
        return None
    return features


@pytest.mark.parametrize("keep", [{"keep_seconds": 3600, "keep_rows": None}, {"keep_seconds": None, "keep_rows": 1},
                                  {"keep_seconds": None, "keep_rows": 3}])
def test_kept_rows_answer_every_time_in_the_kept_window_as_the_point_in_time_join_does(spark, keep):
    """kept_rows (Spark) then as_of (the server) against a brute-force lookup over all rows."""
    rng = random.Random(7)
    base = dt.datetime(2015, 3, 1, tzinfo=dt.timezone.utc)
    data = []
    for key in ("AUS", "ORD", "SFO"):
        seconds = sorted(rng.sample(range(0, 6 * 3600), 12))
        data += [(key, base + dt.timedelta(seconds=s, microseconds=rng.randrange(1_000_000)), float(i), None)
                 for i, s in enumerate(seconds)]
    df = spark.createDataFrame(data, "origin string, observed_at timestamp, wind double, gust double")
    stored = {json.loads(r.key)["origin"]: r.value for r in
              online.kept_rows(df, ["origin"], "observed_at", ["wind", "gust"], **keep).collect()}
    micros = {k: [((t - EPOCH) // dt.timedelta(microseconds=1), {"wind": w, "gust": g})
                   for kk, t, w, g in data if kk == k] for k in stored}
    for key, value in stored.items():
        start, kept = json.loads(value)
        newest = max(t for t, _ in micros[key])
        if keep["keep_seconds"]:  # every row within the span, and the one before it
            assert [t for t, _ in kept][1:] == [t for t, _ in micros[key] if t > newest - 3600 * 1_000_000]
        else:
            assert len(kept) == keep["keep_rows"]
        assert start == kept[0][0]  # rows were dropped: earlier times are outside the window
        for _ in range(300):
            at = rng.randrange(start - 3600 * 1_000_000, newest + 3 * 3600 * 1_000_000)
            for lookback in (None, 1800):
                got, why = online_stores.as_of(value, at, lookback)
                if at < start:
                    assert (got, why) == (None, online_stores.BEFORE_KEPT)
                else:
                    assert got == reference(micros[key], at, lookback), (key, at, lookback)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("redis")) as (url, proc):
        yield url


def open_test_store(kind: str, url: str, tmp_path: Path) -> online_stores.Store:
    if kind == "sqlite":
        return online_stores.SqliteStore(tmp_path / "online.db", 0.5)
    return online_stores.RedisStore(url, 1.0, tmp_path.name)  # a namespace of this test's own


ROWS = [(json.dumps({"k": i}), json.dumps([None, [[i, {"v": i}]]])) for i in range(2000)]

MARKER = {"version": 3, "definition": "d" * 16, "shape": {}, "published_at": "2026-12-07T00:00:00+00:00"}


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_publish_killed_at_any_step_leaves_the_previous_generation_serving(kind, redis_url, tmp_path):
    store = open_test_store(kind, redis_url, tmp_path)
    online_stores.write_full(store, "t", iter(ROWS[:1000]), MARKER, batch_rows=300)
    keys = [k for k, _ in ROWS[:1000]]
    # A child process publishes 2000 rows in batches of 300 and is killed (SIGKILL) after step
    # N: 0 = the new generation created, 1..7 = batches written, 8 = the marker switched.
    script = textwrap.dedent(f"""
        import json, os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from sparkml_platform.storage import online_stores
        kind, url, where, step = sys.argv[1:5]
        store = (online_stores.SqliteStore(__import__("pathlib").Path(where) / "online.db", 0.5) if kind == "sqlite"
                 else online_stores.RedisStore(url, 1.0, os.path.basename(where)))
        steps = [0]
        def counted(method):
            def call(*args, **kwargs):
                out = method(*args, **kwargs)
                if steps[0] == int(step):
                    os.kill(os.getpid(), signal.SIGKILL)
                steps[0] += 1
                return out
            return call
        store.begin, store.fill, store.switch = counted(store.begin), counted(store.fill), counted(store.switch)
        rows = [(json.dumps({{"k": i}}), json.dumps([None, [[i, {{"v": -i}}]]])) for i in range(2000)]
        online_stores.write_full(store, "t", iter(rows), {{"version": 4, "definition": "e" * 16, "shape": {{}},
                                                   "published_at": "2026-12-07T01:00:00+00:00"}}, batch_rows=300)
    """)
    for step in range(9):
        done = subprocess.run([sys.executable, "-c", script, kind, redis_url, str(tmp_path), str(step)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == -signal.SIGKILL, done.stderr
        generation, values = store.lookup("t", keys)
        if step < 8:  # before the switch: the previous generation, all of it
            assert store.marker("t")["version"] == 3 and store.held("t") == 1000
            assert [json.loads(v)[1][0][1]["v"] for v in values] == list(range(1000))
        else:  # switched, the old generation not yet dropped: the new one, all of it
            assert store.marker("t")["version"] == 4 and store.held("t") == 2000
            assert all(json.loads(v)[1][0][1]["v"] <= 0 for v in values)
            online_stores.write_full(store, "t", iter(ROWS[:1000]), MARKER)  # back to version 3 for the next step
    # What a killed publish left beside the serving generation is dropped by the next one's start.
    subprocess.run([sys.executable, "-c", script, kind, redis_url, str(tmp_path), "3"], timeout=60)
    assert len(store._generations("t")) == 2
    store.discard_unfinished("t")  # what a publish's begin() does first
    assert store._generations("t") == [store.marker("t")["generation"]]


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_an_incremental_publish_killed_inside_its_transaction_changes_nothing(kind, redis_url, tmp_path):
    store = open_test_store(kind, redis_url, tmp_path)
    online_stores.write_full(store, "t", iter(ROWS[:1000]), MARKER)
    # A child applies 500 changed rows and 100 deletions and is SIGKILLed inside the
    # transaction: on SQLite when the deletions start (the upserts done), on Redis as it
    # sends the queued transaction.
    script = textwrap.dedent(f"""
        import json, os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from sparkml_platform.storage import online_stores
        kind, url, where = sys.argv[1:4]
        def die(*_):
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "sqlite":
            store = online_stores.SqliteStore(__import__("pathlib").Path(where) / "online.db", 0.5)
            store._db().set_trace_callback(lambda sql: sql.startswith("DELETE") and die())
        else:
            import redis.client
            store = online_stores.RedisStore(url, 1.0, os.path.basename(where))
            redis.client.Pipeline.execute = die
        marker = store.marker("t")
        changed = [(json.dumps({{"k": i}}), json.dumps([None, [[i, {{"v": -1}}]]])) for i in range(500)]
        online_stores.write_incremental(store, "t", changed, [json.dumps({{"k": i}}) for i in range(900, 1000)],
                                 {{**marker, "version": 9, "rows": 900}})
    """)
    done = subprocess.run([sys.executable, "-c", script, kind, redis_url, str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    generation, values = store.lookup("t", [k for k, _ in ROWS[:1000]])
    assert store.state("t") == (store.marker("t"), 1000) and store.marker("t")["version"] == 3
    assert [json.loads(v)[1][0][1]["v"] for v in values] == list(range(1000))
    # The next publish does the work.
    changed = [(k, json.dumps([None, [[1, {"v": -1}]]])) for k, _ in ROWS[:500]]
    assert online_stores.write_incremental(store, "t", changed, [k for k, _ in ROWS[900:1000]],
                                    {**store.marker("t"), "version": 9, "rows": 900})
    assert store.state("t")[1] == 900 and store.marker("t")["version"] == 9


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_readers_never_see_fewer_rows_during_a_full_or_incremental_publish(kind, redis_url, tmp_path):
    store = open_test_store(kind, redis_url, tmp_path)
    online_stores.write_full(store, "t", iter(ROWS), MARKER)
    keys = [k for k, _ in ROWS[::7]]
    seen, stop = [], threading.Event()

    def read():
        reader = open_test_store(kind, redis_url, tmp_path)
        while not stop.is_set():
            generation, values = reader.lookup("t", keys)
            seen.append((generation, sum(v is not None for v in values)))

    thread = threading.Thread(target=read)
    thread.start()
    try:
        # Three rounds at least, and on until the reader has read 21 times (a busy machine's
        # reader reads fewer times per round).
        round_ = 0
        while round_ < 3 or (len(seen) <= 20 and round_ < 200):
            online_stores.write_full(store, "t", iter(ROWS), {**MARKER, "version": 4 + 2 * round_}, batch_rows=200)
            changed = [(k, json.dumps([None, [[1, {"v": round_}]]])) for k, _ in ROWS[:500]]
            assert online_stores.write_incremental(store, "t", changed, [],
                                                   {**store.marker("t"), "version": 5 + 2 * round_})
            round_ += 1
    finally:
        stop.set()
        thread.join()
    assert len(seen) > 20 and {n for _, n in seen} == {len(keys)}
    assert len({g for g, _ in seen}) >= 2  # readers did follow the switches


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_an_incremental_publish_is_all_or_nothing_and_the_marker_counts_what_is_held(kind, redis_url, tmp_path):
    store = open_test_store(kind, redis_url, tmp_path)
    online_stores.write_full(store, "t", iter(ROWS[:10]), MARKER)
    marker = store.marker("t")
    upserts = [(ROWS[0][0], json.dumps([None, [[9, {"v": 99}]]])), ROWS[10]]
    assert online_stores.write_incremental(store, "t", upserts, [ROWS[1][0]], {**marker, "version": 5, "rows": 10})
    assert store.held("t") == 10 and store.marker("t")["version"] == 5
    if kind == "sqlite":  # a failing statement inside rolls all of it back
        with pytest.raises(Exception):
            store.apply("t", [(ROWS[2][0], "[null,[]]"), (ROWS[3][0], None)], [], {**marker, "version": 6})
        assert json.loads(store.lookup("t", [ROWS[2][0]])[1][0]) == json.loads(ROWS[2][1])
        assert store.marker("t")["version"] == 5
    # A marker that claims other than what is held: write_incremental says so (publish anew).
    assert not online_stores.write_incremental(store, "t", [], [], {**store.marker("t"), "rows": 11})


def test_a_redis_restarted_empty_has_no_marker_and_serving_refuses_or_degrades(tmp_path):
    with redis_server(tmp_path) as (url, proc):
        store = online_stores.RedisStore(url, 1.0, "ns")
        online_stores.write_full(store, "t", iter(ROWS[:5]), MARKER)
        assert online_stores.check_published(store, ["t"])["t"]["rows"] == 5
        store._redis.flushall()  # what a restart without persistence leaves
        assert store.marker("t") is None and store.held("t") is None
        assert store.lookup("t", [ROWS[0][0]]) == (None, [None])
        with pytest.raises(ConfigError, match="was never published"):
            online_stores.check_published(store, ["t"])
        online_stores.write_full(store, "t", iter(ROWS[:5]), MARKER)
        store._redis.hdel(store._redis.get(store._current("t")), ROWS[0][0])  # evicted
        with pytest.raises(ConfigError, match="holds 4 rows of feature table t, its marker records 5"):
            online_stores.check_published(store, ["t"])


def test_a_killed_server_loses_no_logged_request_and_none_is_written_twice(tmp_path):
    from deltalake import DeltaTable

    table, wal = tmp_path / "lake" / "online_m", tmp_path / "wal"
    # A child logs 300 requests, flushing after each 100 of the first 200, and is SIGKILLed:
    # the first right after its second Delta commit (before that segment's file is removed),
    # the second with its last 100 rows not yet flushed.
    script = textwrap.dedent(f"""
        import datetime as dt, os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from sparkml_platform.storage.request_log import RequestLog
        from sparkml_platform.storage.files import Location
        from sparkml_platform.storage.files import Storage
        log = RequestLog(Storage().location({str(table)!r}), __import__("pathlib").Path({str(wal)!r}),
                         seconds=3600)
        appended = log._append
        def committed_then_killed(app, segment, rows):
            appended(app, segment, rows)
            if segment == 1 and sys.argv[2] == "commit":
                os.kill(os.getpid(), signal.SIGKILL)
        log._append = committed_then_killed
        start = int(sys.argv[1])
        for i in range(start, start + 300):
            log.add([dict(request_id=str(i), received_at=dt.datetime.now(dt.timezone.utc), model_name="m",
                          model_version=1, keys="{{}}", event_time=None, prediction=1.0, probability=0.5,
                          missing_features=0)])
            if i % 100 == 99 and i - start < 200:
                log.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    for start, kill in ((0, "commit"), (1000, "end")):
        done = subprocess.run([sys.executable, "-c", script, str(start), kill], capture_output=True, text=True,
                              timeout=120, cwd=ROOT)
        assert done.returncode == -signal.SIGKILL, done.stderr
    assert len(list(wal.iterdir())) == 1  # the second's start replayed what the first left

    from sparkml_platform.storage.files import Storage
    from sparkml_platform.storage.request_log import RequestLog

    RequestLog(Storage().location(str(table)), wal, seconds=3600).close()  # the next start replays
    ids = [r["request_id"] for r in DeltaTable(str(table)).to_pyarrow_table().to_pylist()]
    assert sorted(ids, key=int) == [str(i) for i in [*range(0, 200), *range(1000, 1300)]]
    assert list(wal.iterdir()) == []


def test_time_and_date_keys_are_looked_up_as_spark_stores_them(spark):
    import datetime as dt

    from pyspark.sql import functions as F

    from sparkml_platform.serving.online_requests import micros, spark_key

    at = "2013-06-01T08:30:15.123456+02:00"
    instant = dt.datetime(2013, 6, 1, 6, 30, 15, 123456, tzinfo=dt.timezone.utc)
    df = spark.createDataFrame([(instant, dt.date(2013, 6, 1))], "ts timestamp, day date")
    stored = df.select(F.to_json(F.struct("ts")).alias("ts"), F.to_json(F.struct("day")).alias("day")).first()
    held = micros(at, 0, "ts")
    assert online_stores.key_json(["ts"], [spark_key(held, "timestamp")]) == stored.ts
    assert online_stores.key_json(["day"], [spark_key(held, "date")]) == stored.day
    with pytest.raises(BadRequest, match="outside the years 1 to 9999"):
        micros("9999-12-31T23:59:59-05:00", 0, "ts")


def test_kept_rows_and_statistics_in_this_process_equal_sparks(spark, tmp_path):
    """A small table is published and summarized without a JVM (delta-rs and Arrow): the same
    keys and parsed values as Spark's kept_rows, and the same statistics (distinct counts
    exact), over every key and feature type a feature table holds, with nulls and NaN."""
    import datetime as dt

    import pyarrow as pa

    from sparkml_platform.storage import lake, statistics
    from sparkml_platform.storage.files import Storage

    rng = random.Random(11)
    base = dt.datetime(2015, 3, 1, tzinfo=dt.timezone.utc)
    rows = []
    for i in range(400):
        at = base + dt.timedelta(seconds=rng.randrange(0, 30 * 86400), microseconds=rng.randrange(1_000_000))
        rows.append((rng.choice(["AUS", "ORD", "Zürich \"N\""]), rng.randrange(3), base.date() + dt.timedelta(days=rng.randrange(3)),
                     base + dt.timedelta(hours=rng.randrange(2)), at if i % 50 else None,
                     rng.choice([None, float("nan"), rng.uniform(-1e12, 1e12), 1e-7]), rng.uniform(0, 1),
                     rng.choice([None, 1, -(2 ** 40)]), rng.choice([None, 7]), rng.choice([None, True, False]),
                     rng.choice([None, "a", "ü\n\\"]), rng.choice([None, at])))
    schema = ("name string, n int, day date, hour timestamp, at timestamp, x double, y float, big bigint, "
              "small int, flag boolean, text string, seen timestamp")
    df = spark.createDataFrame(rows, schema).dropDuplicates(["name", "n", "day", "hour", "at"])
    path = Storage().location(str(tmp_path / "table"))
    df.write.format("delta").save(str(path))
    keys, features = ["name", "n", "day", "hour"], ["x", "y", "big", "small", "flag", "text", "seen"]
    table = lake.read_arrow(path)
    for keep in ({"keep_seconds": 7 * 86400, "keep_rows": None}, {"keep_seconds": None, "keep_rows": 2}):
        by_spark = {r.key: r.value for r in online.kept_rows(lake.read(spark, path), keys, "at", features,
                                                                **keep).collect()}
        here = online.kept_rows_arrow(table, keys, "at", features, **keep)
        assert sorted(here) == sorted(by_spark) and len(here) > 20
        for key, value in by_spark.items():
            assert _same(json.loads(here[key]), json.loads(value)), (key, here[key], value)
    kinds = {"x": "double", "y": "float", "big": "bigint", "small": "int", "flag": "boolean", "text": "string"}
    spark_stats = statistics.summarize(lake.read(spark, path), kinds, "at")
    local = statistics.summarize_arrow(table, kinds, "at")
    assert (local["rows"], local["event_time_range"]) == (spark_stats["rows"], spark_stats["event_time_range"])
    for name, measures in spark_stats["features"].items():
        for measure, value in measures.items():
            got = local["features"][name][measure]
            if measure == "distinct_approx":  # Spark estimates, within its 5 % error
                assert abs(got - value) <= max(1, 0.05 * got), (name, got, value)
            else:
                assert _same(got, value), (name, measure, got, value)

    # A bigint beyond 2^53 (no exact double), and a table with no row holding an event time.
    odd = spark.createDataFrame([("a", None, 2 ** 60), ("b", None, -(2 ** 62))], "k string, at timestamp, big bigint")
    odd_path = Storage().location(str(tmp_path / "odd"))
    odd.write.format("delta").save(str(odd_path))
    odd_table = lake.read_arrow(odd_path)
    assert online.kept_rows_arrow(odd_table, ["k"], "at", ["big"], None, 1) == {} == {
        r.key: r.value for r in online.kept_rows(lake.read(spark, odd_path), ["k"], "at", ["big"], None, 1).collect()}
    assert _same(statistics.summarize_arrow(odd_table, {"big": "bigint"}, "at"),
                 statistics.summarize(lake.read(spark, odd_path), {"big": "bigint"}, "at"))
    # A string key with a control character, which Spark escapes otherwise: left to Spark.
    with pytest.raises(TypeError, match="control characters"):
        online.kept_rows_arrow(pa.table({"k": ["a\x1fb"], "at": pa.array([0], pa.timestamp("us", "UTC")),
                                         "x": [1.0]}), ["k"], "at", ["x"], None, 1)


def _same(a, b) -> bool:
    """Equal, NaN equal to NaN and to Spark's "NaN", floats to 1e-12 relative."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and (a != a):
        return b in ("NaN",) or (isinstance(b, float) and b != b)
    if isinstance(a, float) and isinstance(b, (int, float)):
        return abs(a - b) <= 1e-12 * max(1.0, abs(a), abs(b))
    return a == b
