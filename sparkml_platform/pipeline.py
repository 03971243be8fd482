"""`sparkml run PIPELINE`: the ordered steps a pipeline declares in pipelines.yml, each one a
call of the Workspace's verbs."""

from __future__ import annotations

import time
from typing import Callable

from .config import Config


def validate(config: Config, name: str) -> None:
    """Every name a pipeline's steps use must exist before the first step writes anything."""
    from . import lake, refs
    from .errors import NotFoundError

    where = f"pipelines.yml: pipelines.{name}.steps"
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
                lake.table_path(config.lake_root, ref)
        else:
            names, table = (arg if isinstance(arg, list) else [arg]), known[kind]
        missing = [n for n in names if n not in table]
        if missing:
            raise NotFoundError(f"{where}.{i}.{kind}: no {kind.replace('_', ' ')} target named "
                                f"{', '.join(map(repr, missing))} (known: {', '.join(sorted(table)) or 'none'})")


def run(ws, name: str, echo: Callable[[str], None] = print) -> dict:
    """Run pipeline `name` on Workspace `ws`: its report, a record of each step's outputs."""
    validate(ws.config, name)
    pipeline = ws.config.pipeline(name)
    report: dict = {"pipeline": name, "steps": []}
    for i, step in enumerate(pipeline.steps, 1):
        kind, arg = step.kind()
        started = time.monotonic()
        echo(f"[{i}/{len(pipeline.steps)}] {kind} {_describe(arg)}")
        outputs = _run_step(ws, kind, arg)
        seconds = round(time.monotonic() - started, 1)
        report["steps"].append({"step": kind, "outputs": outputs, "seconds": seconds})
        for out in outputs:
            echo("    " + _one_line(out))
        echo(f"    ({seconds}s)")
    return report


def _run_step(ws, kind: str, arg) -> list[dict]:
    if kind == "load_sources":
        return ws.load_sources(arg)
    if kind == "build_entities":
        return ws.build_entities(arg)
    if kind == "build_features":
        return [ws.features.build(n).to_dict() for n in arg]
    if kind == "publish_features":
        return [ws.features.publish(n).to_dict() for n in arg]
    if kind == "build_trainset":
        man = ws.build_training_set(arg).manifest
        return [{"table": f"trainsets.{arg}", "version": man["version"], "rows": man["rows"],
                 "digest": man["digest"]}]
    if kind == "train":
        return [_train_candidate(ws, arg)]
    if kind == "score":
        return [ws.score(arg.model, arg.input, arg.output, arg.run_date).to_dict()]
    raise AssertionError(kind)


def _train_candidate(ws, name: str) -> dict:
    """A candidate that only lost to the champion is a normal outcome of a pipeline run (the
    champion stays); one below an absolute threshold stops it (exit 3)."""
    from .errors import GateFailed

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
