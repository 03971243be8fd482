"""`sparkml serve MODEL[@ALIAS]`: online scoring over HTTP (FastAPI on uvicorn).

(No `from __future__ import annotations` here: FastAPI reads the handlers' annotations.)

A request carries entity rows (the model's lookup keys, passthrough columns, an optional
event time), each value checked against the model's signature and the stored keys' types
(`online_requests`: 400 or 413, never 500); the server looks each row's features up in the
online store as of the row's event time, through the model's own feature spec (the tables,
keys, renames and lookbacks it was trained with), predicts with the registered model and
answers prediction and probability (or value).

The store proves what it holds: every feature table's marker is checked at start, by `/ready`
and at every poll (present, holding the rows it records, not older than what was served, of
the definition the model was trained on). A table that fails is `degraded`: `/ready` answers
503 with why, and every answer using it says so in its body and the X-Sparkml-Degraded header.

Scikit-learn models are served as they are; a Spark ML pipeline by its compiled form
(modeling/compiled.py: numpy, no JVM), when training found it equal to Spark's output
(modeling/compiled_parity.py), else refused at start naming why. A model trained on
window aggregates with temporal accuracy gets them computed as of each request's time from
the key's recent events the store holds (storage/recent_events.py). An alias is checked
again every `poll_seconds`: when it moves, the new version is loaded and swapped in without
a restart. Requests and predictions are logged (`request_log`: nothing lost to a kill).
"""


import asyncio
import contextlib
import datetime as dt
import gc
import json
import logging
import queue
import sys
import tempfile
import threading
import uuid
from collections import Counter
from concurrent.futures import Future
from pathlib import Path

from ..config import ServingSettings
from ..core import refs
from ..core.errors import ConfigError
from ..modeling import compiled, compiled_parity
from ..modeling.estimators import DECISION_THRESHOLD
from ..storage import feature_definitions, online_stores, places, recent_events, window_aggregates
from ..storage.pit import FeatureLookup
from ..storage.request_log import RequestLog, request_log_table
from ..tracking import registry
from ..tracking.version_record import VersionRecord
from .online_requests import EPOCH, BadRequest, TooLarge, check_row, kind_of, parse, rows_of, spark_key

log = logging.getLogger(__name__)
DEGRADED_HEADER = "X-Sparkml-Degraded"


class ServedModel:
    """One registered version, loaded, with its lookups checked against the online store."""

    def __init__(self, tracker, ref: str, store: online_stores.Store):
        import mlflow

        mv = registry.resolve(tracker, ref)
        spec = registry.load_feature_spec(tracker, mv.run_id)
        self.version, self.spec = mv, spec
        self.name = f"{mv.name} version {mv.version}"
        self.spark_ml = spec.get("flavor", "spark") == "spark"
        if self.spark_ml:  # served compiled, when training found it exact (modeling/compiled.py)
            record = registry.load_optional_json_artifact(tracker, mv.run_id, compiled_parity.RECORD)
            trained_by = mv.tags.get("model_spec") or "MODEL_SPEC"
            why = compiled_parity.refusal(f"model {self.name}", record, f"sparkml train {trained_by}")
            if why:
                raise ConfigError(f"{why}. Score it in batch (sparkml score), or serve another version")
        self.classifier = spec.get("task", "classification") == "classification"
        self.lookups = [FeatureLookup.from_dict({**lk, "version": None}) for lk in spec["lookups"]]
        # What each lookup reads in the store: a table's rows, or (temporal window aggregates) the
        # recent events of its keys, with the declaration its values are computed by.
        # (One table may be looked up twice, one temporal and one snapshot: by position.)
        self.stored = [recent_events.store_table(lk.table) if lk.aggregation else lk.table for lk in self.lookups]
        self.temporal = [window_aggregates.declared_of(lk.aggregation).spec if lk.aggregation else None
                         for lk in self.lookups]
        # The marker each table was served from (a newer publish of the same definition replaces it).
        self.markers = online_stores.check_published(store, list(dict.fromkeys(self.stored)))
        for table, marker in self.markers.items():
            self.mismatch(table, marker, raising=True)
        with tracker.bound():
            uri = f"models:/{mv.name}/{mv.version}"
            if self.spark_ml:
                with tempfile.TemporaryDirectory() as tmp:  # read whole, then no longer needed
                    self.model = compiled.load(str(Path(mlflow.artifacts.download_artifacts(uri, dst_path=tmp))
                                                   / "sparkml"))
            else:
                self.model = mlflow.sklearn.load_model(uri)
            signature = mlflow.models.get_model_info(uri).signature
        self.inputs = [(c.name, getattr(c.type, "name", None) or "any") for c in signature.inputs.inputs]
        entity = spec["entity"]
        self.event_time = entity["event_time"]
        self.key_columns = list(dict.fromkeys(c for lk in self.lookups for c in lk.key_map.values()))
        self.passthrough = [c for c in entity["passthrough"] if c in dict(self.inputs)]
        self.entity_keys = entity["keys"]
        # What each request column must be: keys as the stored keys' types, the rest as the signature says.
        kinds = {c: kind_of(k) for c, k in self.inputs if c in self.passthrough}
        for lookup, stored in zip(self.lookups, self.stored):
            types = self.markers[stored].get("key_types", {})
            for key, column in lookup.key_map.items():
                kinds.setdefault(column, kind_of(types.get(key)))
        self.columns = {**kinds, **{c: "any" for c in self.entity_keys if c not in kinds},
                        self.event_time: "time"}
        self.required = list(dict.fromkeys(self.key_columns + self.passthrough))  # a key may pass through too

    def mismatch(self, table: str, marker: dict, raising: bool = False) -> str | None:
        """Why `marker` (what the store serves of `table`) must not be served to this model, or
        None. The store's rows came from one table version: the model must have been trained
        on its definition (publishes made before definitions were recorded are not checked)."""
        if not marker.get("definition"):
            return None
        try:
            feature_definitions.verify(
                self.name, self.spec["lookups"],
                [{"table": online_stores.feature_table_of(table), "version": marker["version"],
                  "definition": marker["definition"]}],
                lambda _: [], feature_definitions.SERVING)
        except ConfigError as exc:
            if raising:
                raise
            return str(exc)
        return None

    def refusal(self, table: str, marker: dict | None, held: int | None = None, counted: bool = False) -> str | None:
        """Why the store's `marker` of `table` (and the rows its generation holds, when
        `counted`) must not serve this model, or None."""
        if marker is None:
            return NO_MARKER.format(table=table, name=online_stores.feature_table_of(table))
        if counted and held != marker.get("rows"):
            return (f"the online store holds {held or 0} of the {marker.get('rows')} rows the marker of feature "
                    f"table {table} records: publish it again (sparkml features publish "
                    f"{online_stores.feature_table_of(table)})")
        served = self.markers[table]["version"]
        if marker["version"] < served:
            return (f"the online store holds Delta version {marker['version']} of feature table {table}, older "
                    f"than version {served} this server served: publish it again (sparkml features publish "
                    f"{online_stores.feature_table_of(table)})")
        return self.mismatch(table, marker)

    def describe(self) -> dict:
        mv = self.version
        return {"model": mv.name, "version": str(mv.version), "run_id": mv.run_id,
                "environment_id": VersionRecord.from_tags(mv.tags).environment_id,
                "training_set": self.spec.get("training_set"),
                "feature_tables": {t: {"published_version": p["version"], "published_at": p["published_at"],
                                       "rows": p.get("rows"), "definition": p.get("definition")}
                                   for t, p in self.markers.items()},
                "request_columns": {"keys": self.key_columns, "passthrough": self.passthrough,
                                    "event_time": f"{self.event_time} (optional, default now)"}}

    def answer(self, rows: list[dict], store: online_stores.Store) -> tuple[list[dict], list[dict], dict[str, str]]:
        """Each checked row's prediction (with how many of its tables had no row for it); per
        row the tables it had no row for (`missing`) and of those the ones whose kept rows
        start after its time (`early`); and the tables the store does not serve as verified
        (emptied, or switched to what the model cannot take), with why."""
        import pandas as pd

        now = (dt.datetime.now(dt.timezone.utc) - EPOCH) // dt.timedelta(microseconds=1)
        at = [r[self.event_time] if r.get(self.event_time) is not None else now for r in rows]
        values: dict[str, list] = {c: [r.get(c) for r in rows] for c in self.passthrough}
        detail: list[dict] = [{"missing": [], "early": []} for _ in rows]
        degraded: dict[str, str] = {}
        for lookup, stored, spec in zip(self.lookups, self.stored, self.temporal):
            types = self.markers[stored].get("key_types", {})
            keys = [online_stores.key_json(list(lookup.key_map), [spark_key(r[c], types.get(k)) for k, c in
                                                           lookup.key_map.items()]) for r in rows]
            generation, found = store.lookup(stored, keys)
            if generation is None:
                degraded[stored] = NO_MARKER.format(table=stored, name=lookup.table)
            elif generation != self.markers[stored].get("generation"):
                # Published meanwhile: served when its marker passes the checks a poll makes.
                marker = store.marker(stored)
                why = self.refusal(stored, marker)
                if why:
                    degraded[stored] = why
                else:
                    self.markers[stored] = marker
            for column, output in lookup.columns.items():
                values[output] = []
            for i, value in enumerate(found):
                features, why = (online_stores.as_of(value, at[i], lookup.lookback_seconds) if spec is None
                                 else recent_events.answer(value, at[i], spec, list(lookup.columns)))
                if features is None:
                    detail[i]["missing"].append(lookup.table)
                    if why == online_stores.BEFORE_KEPT:  # batch scoring may have found an older row
                        detail[i]["early"].append(lookup.table)
                for column, output in lookup.columns.items():
                    values[output].append(None if features is None else features.get(column))
        try:
            frame = pd.DataFrame({name: _column(values.get(name, [None] * len(rows)), kind)
                                  for name, kind in self.inputs})
            if self.spark_ml:  # Spark's own answer: its probability and its predicted class
                scores, predicted = self.model.predict(frame)
                out = ([{"prediction": int(c), "probability": float(s)} for s, c in zip(scores, predicted)]
                       if self.classifier else [{"prediction": float(v), "value": float(v)} for v in scores])
            elif self.classifier:
                scores = self.model.predict_proba(frame)[:, 1]
                out = [{"prediction": int(s >= DECISION_THRESHOLD), "probability": float(s)} for s in scores]
            else:
                out = [{"prediction": float(v), "value": float(v)} for v in self.model.predict(frame)]
        except Exception as exc:  # noqa: BLE001 - the rows' values, as far as the server can tell
            raise ModelRefused(
                f"{self.name} could not score these rows (a value its signature does not type, e.g. text "
                f"in a numeric column?): {type(exc).__name__}: {str(exc)[:300]}") from exc
        for answer, row in zip(out, detail):
            answer["tables_without_row"] = len(row["missing"])
        return out, detail, degraded


class ModelRefused(BadRequest):
    """Rows of the right shape that the model raised on: answered 422 with its error."""

    status = 422


def _settle() -> None:
    """Move what is loaded (the model, MLflow, pandas: millions of objects) out of the garbage
    collector's sight: a full collection over them pauses every request for ~200 ms."""
    gc.unfreeze()  # what a swapped-out model left is collected too
    gc.collect()
    gc.freeze()


class Batcher:
    """One thread scores what the request threads hand it. A model call costs about the same
    for one row as for a hundred (pandas and scikit-learn's checks, ~10 ms), and concurrent
    calls only contend for the interpreter and oversubscribe the model's own threads; so every
    request waiting when a batch starts goes into one lookup per table and one model call."""

    def __init__(self, store: online_stores.Store, max_rows: int):
        self.store, self.max_rows = store, max_rows
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name="scorer", daemon=True).start()

    def submit(self, model: "ServedModel", rows: list[dict]) -> Future:
        """What `model.answer(rows)` returns, once the scorer has come to it."""
        done: Future = Future()
        self._queue.put((model, rows, done))
        return done

    def close(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            batch, size = [first], len(first[1])
            while size < self.max_rows:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
                size += len(item[1])
            # A request whose waiter gave up (cancelled) is not scored.
            batch = [(m, rows, done) for m, rows, done in batch if done.set_running_or_notify_cancel()]
            for model in {id(m): m for m, _, _ in batch}.values():  # one version per request throughout
                try:
                    self._answer(model, [(rows, done) for m, rows, done in batch if m is model])
                except Exception as exc:  # noqa: BLE001 - the scorer must outlive anything
                    log.error("scoring a batch failed: %s", exc)
                    for m, _, done in batch:
                        if m is model and not done.done():
                            done.set_exception(exc)

    def _answer(self, model: "ServedModel", requests: list) -> None:
        try:
            out, detail, degraded = model.answer([r for rows, _ in requests for r in rows], self.store)
        except ModelRefused as exc:
            if len(requests) > 1:  # one request's values must not fail the others batched with it
                for request in requests:
                    self._answer(model, [request])
                return
            log.warning("%s", exc)
            requests[0][1].set_exception(exc)
            return
        except Exception as exc:  # noqa: BLE001 - e.g. the store down: every request is answered with it
            for _, done in requests:
                done.set_exception(exc)
            return
        start = 0
        for rows, done in requests:
            done.set_result((out[start:start + len(rows)], detail[start:start + len(rows)], degraded))
            start += len(rows)


NO_MARKER = ("the online store holds no marker for feature table {table} (emptied, or restarted without "
             "its data): its features are null; publish it again (sparkml features publish {name})")


def _column(values: list, kind: str):
    """A model input column, typed as pandas would infer it from the values (numpy arrays
    where that is plain: a Series per column costs more than the lookups)."""
    import numpy as np
    import pandas as pd

    if kind in ("double", "float") or (kind in {"double", "float", "long", "integer", "any"}
                                       and any(v is None for v in values)):
        return np.array([np.nan if v is None else v for v in values], dtype="float64")
    if all(isinstance(v, str) for v in values):
        return np.array(values, dtype=object)
    if all(type(v) is int and -(1 << 63) <= v < (1 << 63) for v in values):
        return np.array(values, dtype="int64")
    return pd.Series(values)


class Server:
    """The served model (swapped when its alias moves), the store, the log and the counters."""

    def __init__(self, tracker, ref: str, store: online_stores.Store, request_log: RequestLog | None,
                 poll_seconds: float = 30.0, limits=None):
        self.tracker, self.ref, self.store, self.request_log = tracker, ref, store, request_log
        self.limits = limits or ServingSettings()
        self.alias = refs.model(ref).alias
        self.model = ServedModel(tracker, ref, store)
        _settle()
        self.batcher = Batcher(store, max(self.limits.max_rows, 1000))
        # The version the alias moved to that could not be loaded, and why (None: none).
        self.refused: dict | None = None
        # Feature tables the store does not serve as the model needs (from the last check), and why.
        self.degraded: dict[str, str] = {}
        self.counts = {"requests": 0, "rows": 0, "rows_missing_features": 0, "store_unavailable": 0,
                       "degraded_answers": 0, "refused_requests": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._poll, args=(poll_seconds,), name="poll", daemon=True).start()

    def check(self) -> dict[str, str]:
        """Verify each feature table's marker against what the store holds and what the model
        needs; remembers and returns the tables that are not served right, with why."""
        model, reasons = self.model, {}
        for table in list(model.markers):
            marker, held = self.store.state(table)
            why = model.refusal(table, marker, held, counted=True)
            if why:
                reasons[table] = why
            else:
                model.markers[table] = marker
        if reasons != self.degraded:
            for table, why in reasons.items():
                log.error("serving %s degraded: %s", model.name, why)
            if not reasons and self.degraded:
                log.warning("serving %s: every feature table is served again", model.name)
        self.degraded = reasons
        return reasons

    def _poll(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                if self.alias:
                    self._follow_alias()
                self.check()
            except Exception as exc:  # noqa: BLE001 - keep serving the version loaded
                log.error("checking %s failed, still serving version %s: %s", self.ref,
                          self.model.version.version, exc)

    def _follow_alias(self) -> None:
        mv = registry.resolve(self.tracker, self.ref)
        if str(mv.version) == str(self.model.version.version):
            self.refused = None
            return
        try:  # tried at every poll: a table published meanwhile may make it servable
            self.model = ServedModel(self.tracker, self.ref, self.store)  # one assignment: atomic
            _settle()
            self.refused = None
            log.warning("%s now version %s", self.ref, mv.version)
        except ConfigError as exc:  # e.g. a Spark ML model, or features the store does not hold
            refused = {"version": str(mv.version), "reason": str(exc)}
            if refused != self.refused:  # said once, not at every poll
                log.error("%s moved to version %s, which is not served: %s; still serving "
                          "version %s", self.ref, mv.version, exc, self.model.version.version)
            self.refused = refused

    def predict(self, body) -> dict:
        """A request's answer, scored in this thread's turn (the app awaits the same steps)."""
        model, checked = self.accept(body)
        return self.finish(model, checked, self.batcher.submit(model, checked).result(timeout=300))

    def accept(self, body) -> tuple[ServedModel, list[dict]]:
        """The version that answers the request (one throughout), and its rows checked."""
        rows = rows_of(body, self.limits.max_rows)
        model = self.model
        return model, [check_row(i, row, model.columns, model.required) for i, row in enumerate(rows)]

    def finish(self, model: ServedModel, checked: list[dict], scored: tuple) -> dict:
        """The answer to a scored request, counted and logged."""
        answers, detail, degraded = scored
        missing = dict(Counter(t for row in detail for t in row["missing"]))
        early = dict(Counter(t for row in detail for t in row["early"]))
        degraded = {**self.degraded, **degraded}
        with self._lock:
            self.counts["requests"] += 1
            self.counts["rows"] += len(checked)
            self.counts["rows_missing_features"] += sum(missing.values())
            self.counts["degraded_answers"] += bool(degraded)
        mv = model.version
        request_id = uuid.uuid4().hex
        if self.request_log is not None:  # logged before answered: a kill after this loses nothing
            received = dt.datetime.now(dt.timezone.utc)
            self.request_log.add([{
                "request_id": f"{request_id}-{i}", "received_at": received, "model_name": mv.name,
                "model_version": int(mv.version),
                "keys": json.dumps({c: r.get(c) for c in model.entity_keys + model.key_columns}, default=str),
                "event_time": (EPOCH + dt.timedelta(microseconds=r[model.event_time])
                               if r.get(model.event_time) is not None else received),
                "prediction": float(a["prediction"]), "probability": a.get("probability", a.get("value")),
                "missing_features": a["tables_without_row"]} for i, (r, a) in enumerate(zip(checked, answers))])
        return {"model": mv.name, "version": str(mv.version), "request_id": request_id, "predictions": answers,
                "rows_missing_features": missing,
                **({"rows_before_kept_window": early} if early else {}),
                **({"degraded": degraded} if degraded else {})}

    def close(self) -> None:
        self._stop.set()
        self.batcher.close()
        if self.request_log is not None:
            self.request_log.close()


def create_app(server: Server):
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response

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
        model = server.model
        try:
            server.store.ping()
            degraded = server.check()
        except online_stores.StoreDown as exc:
            return JSONResponse({"ready": False, "reason": str(exc)}, status_code=503)
        shown = {"model": model.version.name, "version": str(model.version.version),
                 # the alias moved to a version this server refused to load: still the old one
                 **({"not_loaded": server.refused} if server.refused else {})}
        if degraded:
            return JSONResponse({"ready": False, "reason": "; ".join(degraded.values()), "degraded": degraded,
                                 **shown}, status_code=503)
        return {"ready": True, **shown}

    @app.get("/metadata")
    def metadata():
        return {**server.model.describe(), "alias": server.alias, "online_store": online_stores.shown_url(server.store.url),
                "counts": server.counts, "degraded": server.degraded,
                **({"not_loaded": server.refused} if server.refused else {})}

    @app.post("/predict")
    async def predict(request: Request):
        limits = server.limits
        try:
            declared = int(request.headers.get("content-length") or 0)
            if declared > limits.max_request_bytes:  # refused unread
                raise TooLarge(f"the body is {declared} bytes, more than the {limits.max_request_bytes} this "
                               "server accepts (serving.max_request_bytes): send fewer rows per request")
            raw = bytearray()
            async for chunk in request.stream():  # a body without a length is cut at the limit too
                raw += chunk
                if len(raw) > limits.max_request_bytes:
                    break
            body = parse(bytes(raw), limits.max_request_bytes, limits.max_json_depth)
            model, checked = server.accept(body)
            # Lookups and the model run in the scorer's thread, off the event loop: /health
            # answers during a long batch, and no worker thread waits for it.
            scored = await asyncio.wrap_future(server.batcher.submit(model, checked))
            answer = server.finish(model, checked, scored)
        except BadRequest as exc:
            server.counts["refused_requests"] += 1
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except online_stores.StoreDown as exc:
            server.counts["store_unavailable"] += 1
            return JSONResponse({"error": str(exc)}, status_code=503)
        except Exception as exc:  # noqa: BLE001 - the server's fault: said, and the server stays up
            log.exception("answering a request failed")
            return JSONResponse({"error": f"the server failed: {type(exc).__name__}: {exc}"}, status_code=500)
        # Rendered here: the answer is plain JSON already, FastAPI's encoder would walk it again.
        return Response(json.dumps(answer, separators=(",", ":")), media_type="application/json",
                        headers={DEGRADED_HEADER: ",".join(sorted(answer["degraded"]))} if "degraded" in answer
                        else None)

    return app


def serve(ws, ref: str, host: str = "127.0.0.1", port: int = 8080, poll_seconds: float = 30.0,
          log_requests: bool = True) -> None:
    """Load `ref`, check its tables are published, then answer until stopped."""
    import uvicorn

    refs.model(ref)
    store = online_stores.open_store(ws.config)
    store.ping()
    name = refs.model(ref).name
    limits = ws.config.platform.serving
    server = Server(ws.tracker, ref, store, None, poll_seconds, limits)  # refused: nothing written
    if log_requests:
        table = request_log_table(name)
        server.request_log = RequestLog(places.table(ws.config, table, ("predictions",)),
                                        ws.config.path(".sparkml/request-log") / table.split(".", 1)[1],
                                        compact_minutes=limits.compact_minutes)
    print(f"serving {ref} (version {server.model.version.version}) on http://{host}:{port} "
          "(POST /predict, GET /health /ready /metadata)", file=sys.stderr, flush=True)
    uvicorn.run(create_app(server), host=host, port=port, log_level="warning")
