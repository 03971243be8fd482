"""`sparkml run PIPELINE`: the ordered steps a pipeline declares in pipelines.yml, each one a
call of the Workspace's verbs."""

from __future__ import annotations

import time
from typing import Callable

from ..config import Config
from ..core import refs
from ..core.errors import GateFailed, NotFoundError
from ..storage import places
from . import freshness


def validate(config: Config, name: str) -> None:
    """Every name a pipeline's steps use must exist before the first step writes anything."""
    where = config.where(f"pipelines.yml: pipelines.{name}.steps")
    known = {
        "load_sources": config.sources.sources,
        "build_entities": config.sources.entity_tables,
        "build_features": config.features.feature_tables,
        "publish_features": config.features.feature_tables,
        "build_trainset": config.training_sets.training_sets,
        "train": config.models.models,
    }
    for i, step in enumerate(config.pipeline(name).steps):
        kind, arg = step.kind()
        if kind == "score":
            names = [refs.model(arg.model).name]
            table = {**config.models.models, **{s.registered_model: s for s in config.models.models.values()
                                                if s.registered_model}}
            for ref in (arg.input, arg.output):
                places.table(config, ref)
        else:
            names, table = (arg if isinstance(arg, list) else [arg]), known[kind]
        missing = [n for n in names if n not in table]
        if missing:
            raise NotFoundError(f"{where}.{i}.{kind}: no {kind.replace('_', ' ')} target named "
                                f"{', '.join(map(repr, missing))} (known: {', '.join(sorted(table)) or 'none'})")


def run(ws, name: str, echo: Callable[[str], None] = print, force: bool = False) -> dict:
    """Run pipeline `name` on Workspace `ws`: its report, a record of each step's outputs.

    A step whose inputs have not changed since it last ran (same source files, table
    versions, definitions and code, as Delta logs, manifests and the registry record them)
    is skipped as "up to date", without starting Spark; `force` runs every step anyway."""
    validate(ws.config, name)
    ws.check_setup()
    pipeline = ws.config.pipeline(name)
    report: dict = {"pipeline": name, "steps": []}
    for i, step in enumerate(pipeline.steps, 1):
        kind, arg = step.kind()
        started = time.monotonic()
        echo(f"[{i}/{len(pipeline.steps)}] {kind} {_describe(arg)}")
        outputs = _run_step(ws, kind, arg, force)
        seconds = round(time.monotonic() - started, 1)
        report["steps"].append({"step": kind, "outputs": outputs, "seconds": seconds})
        for out in outputs:
            echo("    " + _one_line(out))
        echo(f"    ({seconds}s)")
    outputs = [out for step in report["steps"] for out in step["outputs"]]
    # A publish of an aggregation table reports its recent events apart (they may be written alone).
    report["up_to_date"] = bool(outputs) and all(
        out.get("mode") == freshness.UP_TO_DATE
        and (out.get("recent_events") or {}).get("mode", freshness.UP_TO_DATE) == freshness.UP_TO_DATE
        for out in outputs)
    if report["up_to_date"]:
        echo(f"nothing new: every step of {name} was up to date; nothing was written"
             + ("" if ws.spark_started else ", and Spark was not started"))
    return report


def _run_step(ws, kind: str, arg, force: bool) -> list[dict]:
    """Each target of the step: its record as it stands when it is up to date (freshness.py),
    else what running it made."""
    targets = arg if isinstance(arg, list) else [arg]
    return [freshness.current(ws, kind, target, force) or _run(ws, kind, target) for target in targets]


def _run(ws, kind: str, target) -> dict:
    if kind == "load_sources":
        return ws.load_sources([target])[0]
    if kind == "build_entities":
        return ws.build_entities([target])[0]
    if kind == "build_features":
        return ws.features.build(target, force=True).to_dict()  # freshness was asked already
    if kind == "publish_features":
        return ws.features.publish(target).to_dict()
    if kind == "build_trainset":
        return freshness.trainset_record(ws.build_training_set(target).manifest, "built")
    if kind == "train":
        return _train_candidate(ws, target)
    if kind == "score":
        return ws.score(target.model, target.input, target.output, target.run_date).to_dict()
    raise AssertionError(kind)


def _train_candidate(ws, name: str) -> dict:
    """A candidate that only lost to the champion is a normal outcome of a pipeline run (the
    champion stays); one below an absolute threshold stops it (exit 3)."""
    try:
        return ws.train(name).to_dict()
    except GateFailed as exc:
        result = exc.result.to_dict() if hasattr(exc.result, "to_dict") else exc.result
        failed = [c for c in (result or {}).get("gate", {}).get("checks", []) if not c["passed"]]
        if result and failed and all(c["kind"] == "champion" for c in failed):
            return result
        raise


def _describe(arg) -> str:
    if hasattr(arg, "model_dump"):
        return " ".join(f"{k}={v}" for k, v in arg.model_dump().items() if v is not None)
    return ", ".join(arg) if isinstance(arg, list) else str(arg)


def _one_line(out: dict) -> str:
    keys = ("table", "output", "model", "spec", "version", "mode", "rows", "written", "metrics", "aliases",
            "decision", "predicted_positive")
    return "  ".join(f"{k}={out[k]}" for k in keys if k in out)
