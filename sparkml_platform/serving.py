"""`sparkml serve MODEL[@ALIAS]`: online scoring over HTTP (FastAPI on uvicorn).

(No `from __future__ import annotations` here: FastAPI reads the handlers' annotations.)

A request carries entity rows (the model's lookup keys, passthrough columns, an optional
event time); the server looks each row's features up in the online store through the
model's own feature spec (the tables, keys, renames and lookbacks it was trained with),
predicts with the registered model and answers prediction and probability (or value).

Single-machine (scikit-learn) models are served; a Spark ML model would need a Spark
session per request and is refused at start with what to do instead. An alias is checked
again every `poll_seconds`: when it moves, the new version is loaded and swapped in without
a restart. Requests and predictions are appended to a Delta table in batches.
"""


import datetime as dt
import json
import logging
import threading
import time
import uuid

from . import feature_definitions, online, refs, registry
from .errors import ConfigError
from .estimators import DECISION_THRESHOLD
from .pit import FeatureLookup

log = logging.getLogger(__name__)
NUMERIC = {"double", "float", "long", "integer"}


class BadRequest(ValueError):
    """What the client sent is wrong: answered 400 with this message."""


class ServedModel:
    """One registered version, loaded, with its lookups checked against the online store."""

    def __init__(self, tracker, ref: str, store: online.Store):
        import mlflow

        mv = registry.resolve(tracker, ref)
        spec = registry.load_feature_spec(tracker, mv.run_id)
        if spec.get("flavor", "spark") == "spark":
            raise ConfigError(
                f"model {mv.name} version {mv.version} is a Spark ML model: the online server scores "
                "single-machine (scikit-learn) models in its own process, and a Spark ML model would "
                "need a Spark session per request. Score it in batch (sparkml score), or register a "
                "scikit-learn model for online scoring")
        self.version, self.spec = mv, spec
        self.classifier = spec.get("task", "classification") == "classification"
        self.lookups = [FeatureLookup.from_dict({**lk, "version": None}) for lk in spec["lookups"]]
        self.published = online.check_published(store, [lk.table for lk in self.lookups])
        # The store's rows came from one table version each: the model must have been trained on
        # its definition (publishes made before definitions were recorded are not checked).
        feature_definitions.verify(
            f"{mv.name} version {mv.version}", spec["lookups"],
            [{"table": t, "version": p["version"], "definition": p.get("definition")}
             for t, p in self.published.items() if p.get("definition")], lambda table: [],
            feature_definitions.SERVING)
        with tracker.bound():
            uri = f"models:/{mv.name}/{mv.version}"
            self.model = mlflow.sklearn.load_model(uri)
            signature = mlflow.models.get_model_info(uri).signature
        self.inputs = [(c.name, getattr(c.type, "name", None) or "any") for c in signature.inputs.inputs]
        entity = spec["entity"]
        self.event_time = entity["event_time"]
        self.key_columns = list(dict.fromkeys(c for lk in self.lookups for c in lk.key_map.values()))
        self.passthrough = [c for c in entity["passthrough"] if c in dict(self.inputs)]
        self.entity_keys = entity["keys"]

    def describe(self) -> dict:
        mv = self.version
        return {"model": mv.name, "version": str(mv.version), "run_id": mv.run_id,
                "environment_id": (mv.tags or {}).get("environment_id"),
                "training_set": self.spec.get("training_set"),
                "feature_tables": {t: {"published_version": p["version"], "published_at": p["published_at"]}
                                   for t, p in self.published.items()},
                "request_columns": {"keys": self.key_columns, "passthrough": self.passthrough,
                                    "event_time": f"{self.event_time} (optional, default now)"}}

    def answer(self, rows: list[dict], store: online.Store) -> tuple[list[dict], dict[str, int]]:
        """Each row's prediction (with how many of its tables had no online row for it), and per
        feature table the rows it had no online row for."""
        import pandas as pd

        now_ms = int(time.time() * 1000)
        at = [_millis(r.get(self.event_time), i, self.event_time) if r.get(self.event_time) is not None
              else now_ms for i, r in enumerate(rows)]
        values: dict[str, list] = {c: [r.get(c) for r in rows] for c in self.passthrough}
        missing: dict[str, int] = {}
        per_row = [0] * len(rows)
        for lookup in self.lookups:
            types = self.published[lookup.table].get("key_types", {})
            keys = [online.key_json(list(lookup.key_map), [_coerce(r[c], types.get(k), c, i)
                                                           for k, c in lookup.key_map.items()])
                    for i, r in enumerate(rows)]
            found = store.get(lookup.table, keys)
            limit = lookup.lookback_seconds * 1000 if lookup.lookback_seconds else None
            absent = 0
            for column, output in lookup.columns.items():
                values[output] = []
            for i, hit in enumerate(found):
                if hit is not None and limit is not None and hit[0] is not None and at[i] - hit[0] > limit:
                    hit = None  # older than the table's lookback: not served
                absent += hit is None
                per_row[i] += hit is None
                for column, output in lookup.columns.items():
                    values[output].append(None if hit is None else hit[1].get(column))
            if absent:
                missing[lookup.table] = absent
        frame = pd.DataFrame({name: _column(values.get(name, [None] * len(rows)), kind)
                              for name, kind in self.inputs})
        if self.classifier:
            scores = self.model.predict_proba(frame)[:, 1]
            out = [{"prediction": int(s >= DECISION_THRESHOLD), "probability": float(s)} for s in scores]
        else:
            out = [{"prediction": float(v), "value": float(v)} for v in self.model.predict(frame)]
        for answer, absent in zip(out, per_row):
            answer["tables_without_row"] = absent
        return out, missing


def _column(values: list, kind: str):
    import pandas as pd

    if kind in ("double", "float") or (kind in NUMERIC | {"any"} and any(v is None for v in values)):
        return pd.Series([float("nan") if v is None else v for v in values], dtype="float64")
    return pd.Series(values)


def _coerce(value, spark_type: str | None, column: str, index: int):
    """A request's key value as the stored key's type (a JSON number for an integer key, ...)."""
    if value is None:
        return None
    try:
        if spark_type in ("int", "bigint", "smallint", "tinyint"):
            return int(value)
        if spark_type in ("double", "float"):
            return float(value)
        if spark_type == "string":
            return str(value)
    except (TypeError, ValueError):
        raise BadRequest(f"row {index}: key column {column!r} is {value!r}, not a {spark_type}") from None
    return value


def _millis(value, index: int, column: str) -> int:
    try:
        at = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"row {index}: {column} {value!r} is not a time like 2013-12-31T08:00:00Z") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.timezone.utc)
    return int(at.timestamp() * 1000)


class RequestLog:
    """Requests and predictions appended to a Delta table in batches (delta-rs: no JVM), every
    `seconds` or `rows`, and once more at shutdown; a failed append is logged, the answers
    were already given."""

    def __init__(self, location, seconds: float = 5.0, rows: int = 1000):
        self.location, self.seconds, self.rows = location, seconds, rows
        self._pending: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def add(self, records: list[dict]) -> None:
        with self._lock:
            self._pending.extend(records)
            full = len(self._pending) >= self.rows
        if full:
            self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        from deltalake import write_deltalake

        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            write_deltalake(str(self.location), pa.Table.from_pylist(batch, schema=_log_schema()), mode="append",
                            storage_options=self.location.store.delta_options() or None)
            self.written += len(batch)
        except Exception as exc:  # noqa: BLE001 - serving goes on; the loss is said
            log.error("request log: %d rows not written to %s: %s", len(batch), self.location, exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.seconds + 1)
        self.flush()


def _log_schema():
    """The request log's columns (pyarrow imported on first use)."""
    import pyarrow as pa

    return pa.schema([("request_id", pa.string()), ("received_at", pa.timestamp("us", tz="UTC")),
                      ("model_name", pa.string()), ("model_version", pa.int64()), ("keys", pa.string()),
                      ("event_time", pa.timestamp("us", tz="UTC")), ("prediction", pa.float64()),
                      ("probability", pa.float64()), ("missing_features", pa.int64())])


class Server:
    """The served model (swapped when its alias moves), the store, the log and the counters."""

    def __init__(self, tracker, ref: str, store: online.Store, request_log: RequestLog | None,
                 poll_seconds: float = 30.0):
        self.tracker, self.ref, self.store, self.request_log = tracker, ref, store, request_log
        self.alias = refs.model(ref).alias
        self.model = ServedModel(tracker, ref, store)
        # The version the alias moved to that could not be loaded, and why (None: none).
        self.refused: dict | None = None
        self.counts = {"requests": 0, "rows": 0, "rows_missing_features": 0, "store_unavailable": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        if self.alias:
            threading.Thread(target=self._follow_alias, args=(poll_seconds,), name="alias",
                             daemon=True).start()

    def _follow_alias(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                mv = registry.resolve(self.tracker, self.ref)
                if str(mv.version) == str(self.model.version.version):
                    self.refused = None
                else:  # tried at every poll: a table published meanwhile may make it servable
                    try:
                        self.model = ServedModel(self.tracker, self.ref, self.store)  # one assignment: atomic
                        self.refused = None
                        log.warning("%s now version %s", self.ref, mv.version)
                    except ConfigError as exc:  # e.g. trained on features the store does not hold
                        refused = {"version": str(mv.version), "reason": str(exc)}
                        if refused != self.refused:  # said once, not at every poll
                            log.error("%s moved to version %s, which is not served: %s; still serving "
                                      "version %s", self.ref, mv.version, exc, self.model.version.version)
                        self.refused = refused
            except Exception as exc:  # noqa: BLE001 - keep serving the version loaded
                log.error("checking %s failed, still serving version %s: %s", self.ref,
                          self.model.version.version, exc)

    def predict(self, body) -> dict:
        rows = body.get("rows") if isinstance(body, dict) and "rows" in body else body
        rows = [rows] if isinstance(rows, dict) else rows
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
            raise BadRequest('the body is one row ({"column": value, ...}), a list of rows, or '
                             '{"rows": [...]}')
        model = self.model  # one version for the whole request
        for i, row in enumerate(rows):
            # Missing, not null: a null key is scored with null features, as batch scoring does.
            absent = [c for c in model.key_columns + model.passthrough if c not in row]
            if absent:
                raise BadRequest(f"row {i} lacks column {', '.join(absent)} (each row needs "
                                 f"{', '.join(model.key_columns + model.passthrough)})")
        answers, missing = model.answer(rows, self.store)
        with self._lock:
            self.counts["requests"] += 1
            self.counts["rows"] += len(rows)
            self.counts["rows_missing_features"] += sum(missing.values())
        mv = model.version
        if self.request_log is not None:
            received = dt.datetime.now(dt.timezone.utc)
            self.request_log.add([{
                "request_id": uuid.uuid4().hex, "received_at": received, "model_name": mv.name,
                "model_version": int(mv.version),
                "keys": json.dumps({c: r.get(c) for c in model.entity_keys + model.key_columns}, default=str),
                "event_time": (dt.datetime.fromtimestamp(_millis(r[model.event_time], i, model.event_time) / 1000,
                                                         dt.timezone.utc) if r.get(model.event_time) else received),
                "prediction": float(a["prediction"]), "probability": a.get("probability", a.get("value")),
                "missing_features": a["tables_without_row"]} for i, (r, a) in enumerate(zip(rows, answers))])
        return {"model": mv.name, "version": str(mv.version), "predictions": answers,
                "rows_missing_features": missing}

    def close(self) -> None:
        self._stop.set()
        if self.request_log is not None:
            self.request_log.close()


def create_app(server: Server):
    import contextlib

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        server.close()  # the request log's last rows are written

    app = FastAPI(title=f"sparkml serve {server.ref}", lifespan=lifespan)

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.get("/ready")
    def ready():
        try:
            server.store.ping()
        except online.StoreDown as exc:
            return JSONResponse({"ready": False, "reason": str(exc)}, status_code=503)
        return {"ready": True, "model": server.model.version.name, "version": str(server.model.version.version),
                # the alias moved to a version this server refused to load: still the old one
                **({"not_loaded": server.refused} if server.refused else {})}

    @app.get("/metadata")
    def metadata():
        return {**server.model.describe(), "alias": server.alias, "online_store": online.shown_url(server.store.url),
                "counts": server.counts, **({"not_loaded": server.refused} if server.refused else {})}

    @app.post("/predict")
    async def predict(request: Request):
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            return JSONResponse({"error": f"malformed JSON: {exc}"}, status_code=400)
        try:
            # Off the event loop: lookups and the model run in worker threads, so requests
            # are answered side by side and /health answers during a long one.
            return await run_in_threadpool(server.predict, body)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except online.StoreDown as exc:
            server.counts["store_unavailable"] += 1
            return JSONResponse({"error": str(exc)}, status_code=503)

    return app


def request_log_table(model: str) -> str:
    """The lake table a served model's requests go to (lineage finds them there)."""
    return "predictions.online_" + "".join(c if c.isalnum() else "_" for c in model.lower())


def serve(ws, ref: str, host: str = "127.0.0.1", port: int = 8080, poll_seconds: float = 30.0,
          log_requests: bool = True) -> None:
    """Load `ref`, check its tables are published, then answer until stopped."""
    import uvicorn

    from . import lake

    refs.model(ref)
    store = online.open_store(ws.config)
    store.ping()
    name = refs.model(ref).name
    request_log = None
    if log_requests:
        request_log = RequestLog(lake.table_path(ws.config.lake_root, request_log_table(name),
                                                 zones=("predictions",)))
    server = Server(ws.tracker, ref, store, request_log, poll_seconds)
    uvicorn.run(create_app(server), host=host, port=port, log_level="warning")
