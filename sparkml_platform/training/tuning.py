"""Hyperopt search over a model spec's space, parallelised the way each kind of model allows.

- scikit-learn (one machine): each trial is a Spark task on an executor (`SparkTrials`), so
  `parallelism` trials fit at once across the cluster; the data travels as a broadcast and
  each trial uses one core (BLAS/OpenMP threads limited to `spark.task.cpus`).
- MLlib (distributed fits): trials run from the driver, `parallelism` threads at a time, each
  submitting its Spark jobs to its own FAIR scheduler pool so that they share the executors.

Every trial becomes a nested MLflow run (parameters, validation metrics, seconds), and a
progress line shows trials done, the best value so far and the time left.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from ..config import ModelSpec, parse_duration
from ..core.errors import JobFailed
from ..modeling import evaluation, search_space
from ..modeling.estimators import fit_sklearn, predict_sklearn


class Progress:
    """Trials done, best metric so far, elapsed and (estimated) time left, on one line."""

    def __init__(self, name: str, metric: str, total: int, timeout: float | None, stream=None):
        self.name, self.metric, self.total, self.timeout = name, metric, total, timeout
        self.stream = stream or sys.stderr
        self.started = time.monotonic()

    def show(self, done: int, best: float | None) -> str:
        elapsed = time.monotonic() - self.started
        left = elapsed / done * (self.total - done) if done else None
        if self.timeout is not None:
            left = min(left if left is not None else self.timeout, max(0.0, self.timeout - elapsed))
        line = (f"tuning {self.name}: {done}/{self.total} trials, best {self.metric} "
                f"{'-' if best is None else f'{best:.4f}'}, {_clock(elapsed)} elapsed, "
                f"{'?' if left is None else '~' + _clock(left)} left")
        print(line, file=self.stream, flush=True)
        return line


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60:02d}:{int(seconds) % 60:02d}"


class TrialLog:
    """Nested MLflow runs under the training run, one per finished trial, written by the driver."""

    def __init__(self, client, experiment_id: str, parent_run_id: str, metric: str):
        self.client, self.experiment_id, self.parent = client, experiment_id, parent_run_id
        self.metric = metric
        self.logged: set[int] = set()
        self.results: list[dict] = []

    def add(self, tid: int, result: dict) -> None:
        from mlflow.entities import Metric, Param

        if tid in self.logged:
            return
        self.logged.add(tid)
        self.results.append(result)
        tags = {"mlflow.parentRunId": self.parent, "sparkml.kind": "trial"}
        if result.get("error"):  # the trial's exception, kept where its run is looked at
            tags["sparkml.error"] = result["error"][-7000:]  # MLflow keeps tag values to 8000 chars
        run = self.client.create_run(self.experiment_id, run_name=f"trial {tid}", tags=tags)
        now = int(time.time() * 1000)
        metrics = {f"validation_{k}": v for k, v in result.get("metrics", {}).items()}
        metrics["trial_seconds"] = result.get("seconds", 0.0)
        self.client.log_batch(
            run.info.run_id,
            params=[Param(k, str(v)) for k, v in result.get("params", {}).items()],
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if v == v],
        )
        self.client.set_terminated(run.info.run_id, "FINISHED" if result.get("status") == "ok" else "FAILED")

    def best(self) -> dict | None:
        ok = [r for r in self.results if r.get("status") == "ok"]
        return min(ok, key=lambda r: r["loss"]) if ok else None


def tune(spark, spec: ModelSpec, name: str, estimator, train, validation, log: TrialLog) -> dict:
    """Search the spec's space; returns the best trial's result (params, metrics, loss)."""
    settings = spec.tuning
    timeout = parse_duration(settings.timeout) if settings.timeout else None
    progress = Progress(name, settings.metric, settings.max_evals, timeout)
    space = search_space.to_hyperopt(spec.search_space)
    if estimator.flavor == "sklearn":
        # SparkTrials' own summary counts Spark tasks that ended, trials that failed among them
        # ("6 succeeded" before "all 6 trials failed"): this line counts trials instead.
        hyperopt_log = logging.getLogger("hyperopt-spark")
        level = hyperopt_log.level
        hyperopt_log.setLevel(logging.WARNING)
        try:
            _spark_trials(spark, spec, estimator, train, validation, space, log, progress, timeout)
        finally:
            hyperopt_log.setLevel(level)
    else:
        _threaded_trials(spark, spec, estimator, train, validation, space, log, progress, timeout)
    ok = sum(1 for r in log.results if r.get("status") == "ok")
    print(f"tuning {name}: {len(log.results)} trials, {ok} finished, {len(log.results) - ok} failed",
          file=progress.stream, flush=True)
    best = log.best()
    if best is None:
        failed = [r for r in log.results if r.get("error")]
        if failed:
            raise JobFailed(f"tuning {name}: all {len(log.results)} trials failed; the first with "
                            f"parameters {failed[0].get('params')}:\n{failed[0]['error'].rstrip()}\n"
                            "(every trial's error is on its nested MLflow run, tag sparkml.error)")
        raise JobFailed(f"tuning {name}: no trial finished within the tuning timeout")
    return best


def _failure(exc: BaseException) -> str:
    """A failed trial's exception with its traceback (the user's estimator code is in it)."""
    return "".join(traceback.format_exception(exc))[-7000:]


def _stopper(spec: ModelSpec, log: TrialLog, progress: Progress):
    """Progress and early stopping after each batch of finished trials."""
    state = {"best": None, "since": 0, "seen": 0}

    def check(results: list[dict]) -> bool:
        for result in results[state["seen"]:]:
            if result.get("status") != "ok":
                continue
            if state["best"] is None or result["loss"] < state["best"]:
                state["best"], state["since"] = result["loss"], 0
            else:
                state["since"] += 1
        state["seen"] = len(results)
        best = None if state["best"] is None else abs(state["best"])
        progress.show(len(results), best)
        rounds = spec.tuning.early_stop_rounds
        return rounds is not None and state["since"] >= rounds

    return check


# --- scikit-learn: SparkTrials --------------------------------------------------------------


def _spark_trials(spark, spec, estimator, train, validation, space, log, progress, timeout):
    import numpy as np
    from hyperopt import SparkTrials, fmin, tpe
    from hyperopt.exceptions import AllTrialsFailed

    data = spark.sparkContext.broadcast((estimator.frame(train), estimator.frame(validation)))
    objective = _SklearnTrial(estimator.spec_dict(), spec.search_space, data, spec.tuning.metric,
                              int(spark.conf.get("spark.task.cpus", "1")))
    stop = _stopper(spec, log, progress)

    def early_stop(trials, *args):
        for trial in trials.trials:
            if trial["result"].get("status") in ("ok", "fail") and "params" in trial["result"]:
                log.add(trial["tid"], trial["result"])
        return stop(log.results), args

    trials = SparkTrials(parallelism=spec.tuning.parallelism, spark_session=spark, timeout=timeout)
    try:
        fmin(objective, space, algo=tpe.suggest, max_evals=spec.tuning.max_evals, trials=trials,
             rstate=np.random.default_rng(spec.tuning.seed), early_stop_fn=early_stop,
             show_progressbar=False)
    except AllTrialsFailed:
        pass  # reported by `tune`, with the first trial's error
    early_stop(trials)  # the trials finished after the last check
    data.unpersist()


class _SklearnTrial:
    """The objective a Spark task runs: fit on train, evaluate on validation (plain, picklable)."""

    def __init__(self, spec: dict, space: dict, data, metric: str, cores: int):
        self.spec, self.space, self.data, self.metric, self.cores = spec, space, data, metric, cores

    def __call__(self, point: dict) -> dict:
        from threadpoolctl import threadpool_limits

        params = search_space.typed(self.space, point)
        (x, y), (vx, vy) = self.data.value
        started = time.monotonic()
        try:
            with threadpool_limits(limits=self.cores):
                model = fit_sklearn(self.spec, x, y, params)
                score, prediction = predict_sklearn(model, vx, self.spec["task"])
        except Exception as exc:  # noqa: BLE001 - a trial that fails is recorded, not fatal
            return {"status": "fail", "loss": None, "params": params, "error": _failure(exc),
                    "seconds": time.monotonic() - started}
        import pandas as pd

        measured = evaluation.metrics(pd.DataFrame({"label": vy.to_numpy(), "score": score,
                                                    "prediction": prediction}), self.spec["task"])
        return {"status": "ok", "loss": evaluation.loss(self.metric, measured[self.metric]),
                "params": params, "metrics": measured, "seconds": time.monotonic() - started}


# --- MLlib: threads on the driver, FAIR pools -----------------------------------------------


def _threaded_trials(spark, spec, estimator, train, validation, space, log, progress, timeout):
    import numpy as np
    from hyperopt import STATUS_FAIL, STATUS_OK, Trials, tpe
    from hyperopt.base import JOB_STATE_DONE, JOB_STATE_ERROR, Ctrl, Domain, spec_from_misc

    pools = threading.local()
    slots = iter(range(10**9))

    def objective(point: dict) -> dict:
        if not hasattr(pools, "name"):  # each thread its own pool: jobs share executors fairly
            pools.name = f"trial-{next(slots) % spec.tuning.parallelism}"
            spark.sparkContext.setLocalProperty("spark.scheduler.pool", pools.name)
        params = search_space.typed(spec.search_space, point)
        started = time.monotonic()
        try:
            measured = evaluation.metrics(
                estimator.predict(estimator.fit(train, {**spec.estimator.params, **params}),
                                  validation), estimator.task)
        except Exception as exc:  # noqa: BLE001 - a trial that fails is recorded, not fatal
            return {"status": STATUS_FAIL, "params": params, "error": _failure(exc),
                    "seconds": time.monotonic() - started}
        return {"status": STATUS_OK, "loss": evaluation.loss(spec.tuning.metric, measured[spec.tuning.metric]),
                "params": params, "metrics": measured, "seconds": time.monotonic() - started}

    domain = Domain(objective, space)
    trials = Trials()
    rstate = np.random.default_rng(spec.tuning.seed)
    stop = _stopper(spec, log, progress)
    deadline = None if timeout is None else time.monotonic() + timeout
    evaluated = 0  # failed trials leave `trials.trials`: count them here
    with ThreadPoolExecutor(spec.tuning.parallelism, thread_name_prefix="trial") as pool:
        while evaluated < spec.tuning.max_evals:
            if deadline is not None and time.monotonic() > deadline:
                break
            n = min(spec.tuning.parallelism, spec.tuning.max_evals - evaluated)
            evaluated += n
            ids = trials.new_trial_ids(n)
            trials.refresh()
            docs = tpe.suggest(ids, domain, trials, rstate.integers(2**31 - 1))
            trials.insert_trial_docs(docs)
            trials.refresh()
            batch = [t for t in trials._dynamic_trials if t["tid"] in ids]
            futures = [pool.submit(domain.evaluate, spec_from_misc(t["misc"]), Ctrl(trials, current_trial=t))
                       for t in batch]
            for trial, future in zip(batch, futures):
                result = future.result()
                trial["state"] = JOB_STATE_DONE if result["status"] == STATUS_OK else JOB_STATE_ERROR
                trial["result"] = result
                log.add(trial["tid"], result)
            trials.refresh()
            if stop(log.results):
                break
