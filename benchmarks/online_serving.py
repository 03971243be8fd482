"""Online scoring figures, side by side on the SQLite and the Redis online stores:

- publish time of the reference feature tables: full (every key), then incremental after a
  windowed rebuild of one table (a new Delta version to diff against the published one);
- `sparkml serve` latency for one-row requests (p50, p99) and rows per second for 100-row
  requests, each server a process of its own, over real HTTP on 127.0.0.1;
- a concurrency sweep: 1, 8 and 32 clients (threads with a kept-alive connection each)
  sending one-row requests at once, p50/p99 and requests per second per store. On two cores
  the clients share the machine with the server, as they would on a busy host;
- the models side by side on SQLite: the scikit-learn model, the MLlib gradient-boosted
  trees and an MLlib random forest (the last fitted here by the platform's own pipeline on
  the newest training set and registered as `BENCH_RF`, once), the Spark ones served by
  their compiled form; one-row p50/p99 and 100-row rows per second, alternated twice.

    .venv/bin/python benchmarks/online_serving.py [--conf conf] [--env ENV] [--requests 400]
                                                  [--only models]

Needs a built project with a registered scikit-learn model (`make demo`), and Debian's
redis-server on the PATH (started here on a free port and stopped after). The online stores
are this script's own (under .sparkml/bench/), so the project's store is untouched.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import threading
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from _common import ROOT
from sparkml_platform.storage import places

TABLES = ["origin_weather_hourly", "plane_attributes", "carrier_delays", "route_delays"]
BENCH_RF = "flight_delays_bench_rf"


def sparkml(conf: Path, env: str | None, *args: str, store: str, timeout: int = 1800) -> str:
    cmd = [str(ROOT / ".venv" / "bin" / "sparkml"), "--conf", str(conf), *(["--env", env] if env else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "SPARKML_ONLINE_STORE": store}, cwd=conf.parent)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def timed_publish(ws, store: str, full: bool) -> float:
    """The four tables published to `store` by one warm session (the Workspace's)."""
    ws.config.platform.online_store.url = store
    ws._online = None  # the Workspace opens the store now configured
    started = time.perf_counter()
    for table in TABLES:
        ws.features.publish(table, full=full)
    return time.perf_counter() - started


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def serve(conf: Path, env: str | None, ref: str, store: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [str(ROOT / ".venv" / "bin" / "sparkml"), "--conf", str(conf), *(["--env", env] if env else []),
           "serve", ref, "--port", str(port), "--no-request-log"]
    proc = subprocess.Popen(cmd, env={**os.environ, "SPARKML_ONLINE_STORE": store}, cwd=conf.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(180):
        try:
            urllib.request.urlopen(url + "/ready", timeout=2)
            return proc, url
        except OSError:
            time.sleep(1)
    proc.kill()
    sys.exit(f"sparkml serve on {store} did not get ready")


def sklearn_model(conf: Path, env: str | None, spec: str = "flight_delay_sklearn", name: str = "flight_delays") -> str:
    """The newest version `spec` trained (by default the reference's scikit-learn model)."""
    from sparkml_platform import Workspace

    ws = Workspace(conf, env)
    found = [v.version for v in ws.tracker.client.search_model_versions(f"name = '{name}'")
             if v.tags.get("model_spec") == spec]
    if not found:
        sys.exit(f"no version of {name} trained by {spec} is registered: run `make demo` first")
    return f"{name}/{max(found, key=int)}"


def random_forest(conf: Path, env: str | None) -> str:
    """BENCH_RF's newest version: an MLlib random forest on the reference's newest training
    set, through the pipeline `models.yml` would build for it, fitted and logged here once."""
    from sparkml_platform import Workspace
    from sparkml_platform.config.schema import ModelSpec
    from sparkml_platform.modeling import estimators

    ws = Workspace(conf, env)
    found = [v.version for v in ws.tracker.client.search_model_versions(f"name = '{BENCH_RF}'")]
    if found:
        return f"{BENCH_RF}/{max(found, key=int)}"
    trainset = ws.training_set("flight_delays")
    manifest = trainset.manifest
    data = trainset.df
    spec = ModelSpec.model_validate({
        "training_set": "flight_delays", "preprocessing": {"categorical": ["carrier", "origin"]},
        "estimator": {"type": "random_forest_classifier", "params": {"numTrees": 30, "maxDepth": 8, "seed": 7}}})
    types = dict(data.dtypes)
    estimator = estimators.for_spec(spec, "bench_rf", manifest["feature_columns"], types, "label")
    train = data.where("split = 'train'")
    estimator.prepare(train)
    model = estimator.fit(train, spec.estimator.params)
    result = ws.log_model(model, trainset, registered_model=BENCH_RF, thresholds={})
    print(f"  fitted {BENCH_RF} version {result.version}: ROC AUC {result.metrics.get('roc_auc')}, "
          f"compiled {result.compiled}")
    return f"{BENCH_RF}/{result.version}"


def compare_models(conf: Path, env: str | None, store: str, requests: int) -> None:
    """One-row p50/p99 and 100-row throughput of each model on one store, alternated twice."""
    models = {"scikit-learn HGB": sklearn_model(conf, env),
              "MLlib GBT (compiled)": sklearn_model(conf, env, "flight_delay_gbt"),
              "MLlib RF (compiled)": random_forest(conf, env)}
    rows = rows_for(conf, env, 1000)
    print(f"models side by side (SQLite, {requests} one-row requests then 100-row requests, median of 2):")
    runs: dict[str, list] = {}
    for order in (list(models), list(reversed(models))):
        for label in order:
            proc, url = serve(conf, env, models[label], store)
            try:
                post(url + "/predict", {"rows": rows[:100]})  # warm-up
                runs.setdefault(label, []).append(measure(url, rows, requests))
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    base = statistics.median(r[1] for r in runs["scikit-learn HGB"])
    print(f"  {'model':<22} {'version':<28} {'p50 (ms)':>9} {'p99 (ms)':>9} {'rows/s (100-row)':>17} {'p99 / sklearn':>14}")
    for label, measured in runs.items():
        p50, p99, rate = (statistics.median(r[i] for r in measured) for i in range(3))
        print(f"  {label:<22} {models[label]:<28} {p50:9.1f} {p99:9.1f} {rate:17.0f} {p99 / base:13.2f}x")


def rows_for(conf: Path, env: str | None, count: int) -> list[dict]:
    from deltalake import DeltaTable

    from sparkml_platform import Workspace

    ws = Workspace(conf, env)
    table = DeltaTable(str(places.lake_root(ws.config) / "entities" / "flights_to_score")).to_pyarrow_table()
    rows = table.slice(0, count).to_pylist()
    # As of a minute after the newest weather row: inside its 3-hour lookback and after every
    # key's kept rows, so requests find features as they would when serving live.
    weather = DeltaTable(str(places.lake_root(ws.config) / "features" / "origin_weather_hourly")).to_pyarrow_table(
        columns=["observed_at"])
    at = (max(weather.column("observed_at").to_pylist()) + dt.timedelta(minutes=1)).isoformat()
    for row in rows:
        row.update({k: v.isoformat() for k, v in row.items() if isinstance(v, dt.datetime)}, sched_dep_ts=at)
    return rows


def measure(url: str, rows: list[dict], requests: int) -> tuple[float, float, float]:
    single = []
    for i in range(requests):
        started = time.perf_counter()
        post(url + "/predict", {"rows": [rows[i % len(rows)]]})
        single.append(time.perf_counter() - started)
    single.sort()
    batches = max(5, requests // 20)
    started = time.perf_counter()
    for i in range(batches):
        post(url + "/predict", {"rows": [rows[(i * 100 + j) % len(rows)] for j in range(100)]})
    rate = batches * 100 / (time.perf_counter() - started)
    return statistics.median(single) * 1000, single[int(len(single) * 0.99) - 1] * 1000, rate


def sweep(url: str, rows: list[dict], clients: int, seconds: float) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, requests/s) of one-row requests from `clients` threads at once."""
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    def client(n: int) -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        mine, i = [], n
        while time.perf_counter() < stop:
            body = json.dumps({"rows": [rows[i % len(rows)]]})
            started = time.perf_counter()
            connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            answer.read()
            mine.append(time.perf_counter() - started)
            if answer.status != 200:
                sys.exit(f"/predict answered {answer.status}")
            i += clients
        connection.close()
        latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return (statistics.median(latencies) * 1000, latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000,
            len(latencies) / elapsed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conf", default=str(ROOT / "conf"))
    parser.add_argument("--env", default=None)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--sweep-seconds", type=float, default=10.0, help="each step of the concurrency sweep")
    parser.add_argument("--only", choices=["models"], help="only the models side by side")
    parser.add_argument("--rebuild-day", default="2013-12-05",
                        help="the day of route_delays rebuilt before the incremental publish")
    args = parser.parse_args()
    conf = Path(args.conf).resolve()
    bench = ROOT / ".sparkml" / "bench" / "online"
    shutil.rmtree(bench, ignore_errors=True)
    bench.mkdir(parents=True)
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(bench)], stdout=subprocess.DEVNULL)
    stores = {"sqlite": f"sqlite:///{bench / 'online.db'}", "redis": f"redis://127.0.0.1:{port}/0"}
    try:
        time.sleep(1)
        from sparkml_platform import Workspace

        ws = Workspace(conf, args.env)
        if args.only == "models":
            for name in TABLES:
                ws.config.platform.online_store.url = stores["sqlite"]
                ws._online = None
                ws.features.publish(name)
            compare_models(conf, args.env, stores["sqlite"], args.requests)
            return
        ws.spark  # started before the clock runs
        timed_publish(ws, f"sqlite:///{bench / 'warm-up.db'}", full=True)  # untimed: Spark's first plans
        print("publish the four tables (one warm session; median of 2, alternating stores):")
        full, incremental = {n: [] for n in stores}, {n: [] for n in stores}
        for order in (list(stores), list(reversed(stores))):
            for name in order:
                full[name].append(timed_publish(ws, stores[name], full=True))
        for order in (list(stores), list(reversed(stores))):
            # A windowed rebuild of one day of one table: a new Delta version to diff against.
            sparkml(conf, args.env, "features", "build", "route_delays", "--start", args.rebuild_day,
                    "--end", args.rebuild_day, store=stores["sqlite"])
            for name in order:
                incremental[name].append(timed_publish(ws, stores[name], full=False))
        for name in stores:
            print(f"  {name:<7} full {statistics.median(full[name]):6.1f} s   "
                  f"incremental {statistics.median(incremental[name]):6.1f} s")

        ref = sklearn_model(conf, args.env)
        rows = rows_for(conf, args.env, 1000)
        print(f"serve {ref}: {args.requests} one-row requests, then 100-row requests")
        results, swept = {}, {}
        for name in ("sqlite", "redis", "sqlite", "redis"):  # alternate: neither has the warmer machine
            proc, url = serve(conf, args.env, ref, stores[name])
            try:
                post(url + "/predict", {"rows": rows[:100]})  # warm-up
                results.setdefault(name, []).append(measure(url, rows, args.requests))
                for clients in (1, 8, 32):
                    swept.setdefault((name, clients), []).append(sweep(url, rows, clients, args.sweep_seconds))
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
        print(f"  {'store':<7} {'p50 (ms)':>9} {'p99 (ms)':>9} {'rows/s (100-row)':>17}")
        for name, runs in results.items():
            p50, p99, rate = (statistics.median(r[i] for r in runs) for i in range(3))
            print(f"  {name:<7} {p50:9.1f} {p99:9.1f} {rate:17.0f}")
        print(f"concurrency sweep: one-row requests, {args.sweep_seconds:.0f} s per step (median of 2 runs)")
        print(f"  {'store':<7} {'clients':>7} {'p50 (ms)':>9} {'p99 (ms)':>9} {'requests/s':>11}")
        for (name, clients), runs in swept.items():
            p50, p99, rate = (statistics.median(r[i] for r in runs) for i in range(3))
            print(f"  {name:<7} {clients:7d} {p50:9.1f} {p99:9.1f} {rate:11.0f}")
        compare_models(conf, args.env, stores["sqlite"], args.requests)
    finally:
        redis.terminate()
        redis.wait(timeout=30)


if __name__ == "__main__":
    main()
