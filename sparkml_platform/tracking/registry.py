"""The MLflow model registry: versions with aliases (`challenger`, `champion`), never stages."""

from __future__ import annotations

import contextlib
import json
import logging
import re

from ..core import refs
from ..core.errors import NotFoundError
from ..storage.locking import exclusive
from .tracker import Tracker
from .version_record import ALIASES_SET, PROMOTED, STALE, VersionRecord

CHALLENGER, CHAMPION = "challenger", "champion"
log = logging.getLogger(__name__)


def register(tracker: Tracker, name: str, model_uri: str, run_id: str, manifest: dict, env: dict,
             metrics: dict, verdict: dict, params: dict | None = None,
             spec_name: str | None = None, code: dict | None = None, spec_hash: str | None = None) -> dict:
    """Register the logged model as a new version of `name`, with every tag at once (what it
    was made from and how it did), then set its aliases.

    Every new version becomes `challenger`; it takes `champion` only if every gate passed.
    The decision, and why, is recorded on the version.
    """
    import mlflow

    record = version_record(name, run_id, manifest, env, metrics, verdict, params, spec_name, code, spec_hash)
    with tracker.bound():
        version = str(mlflow.register_model(model_uri, name, tags=record.to_tags()).version)
    client = tracker.client
    client.set_registered_model_alias(name, CHALLENGER, version)
    aliases = [CHALLENGER]
    if verdict["passed"]:
        client.set_registered_model_alias(name, CHAMPION, version)
        aliases.append(CHAMPION)
    client.set_model_version_tag(name, version, ALIASES_SET, "by its training")  # done: see below
    return {"version": version, "aliases": aliases, "decision": record.decision}


def version_record(name: str, run_id: str, manifest: dict, env: dict, metrics: dict, verdict: dict,
                   params: dict | None = None, spec_name: str | None = None, code: dict | None = None,
                   spec_hash: str | None = None) -> VersionRecord:
    """What a new version of `name` records: the training-set version and the feature-table
    versions it was trained on, its code and environment, its metrics, its gate and the
    decision (promoted when every gate passed; why not, else)."""
    champion = verdict.get("champion") or {}
    return VersionRecord(
        model_spec=spec_name or name,
        spec_hash=spec_hash,  # what a pipeline re-run compares
        training_set=manifest["name"],
        training_set_version=int(manifest["version"]),
        training_set_digest=manifest["digest"],
        feature_tables={lk["table"]: lk["version"] for lk in manifest["lookups"]},
        feature_definitions={lk["table"]: lk.get("definition") for lk in manifest["lookups"]},
        code=code or manifest["code"],  # the project's code that trained it
        environment_id=env["id"],
        python=env["python"],
        params=params or {},
        gate_passed=bool(verdict["passed"]),
        gate_checks=verdict["checks"],
        compared_with=(f"champion v{champion['version']}" + (f" (skipped: {champion['skipped']})"
                       if "skipped" in champion else "")) if champion else "no champion yet",
        decision=PROMOTED if verdict["passed"] else "not promoted: " + "; ".join(verdict["failed"]),
        run_id=run_id,
        metrics=metrics,
        rows={split: manifest["rows"].get(split, 0) for split in ("train", "validation", "test")},
    )


def finish_interrupted(tracker: Tracker, name: str) -> str | None:
    """Set the aliases a training killed after registering its version did not set (call it
    under the promotion lock): the newest version is `challenger`, and `champion` when its
    recorded decision was to promote it. Returns that version if anything was set."""
    client = tracker.client
    versions = client.search_model_versions(f"name = '{name}'", max_results=1000)
    if not versions:
        return None
    newest = client.get_model_version(name, max(int(v.version) for v in versions))
    record = VersionRecord.from_tags(newest.tags)
    if record.aliases_set or record.decision is None:
        return None  # finished (a later manual alias change is the user's), or not ours
    wanted = [CHALLENGER] + ([CHAMPION] if record.promoted else [])
    for alias in wanted:
        client.set_registered_model_alias(name, alias, newest.version)
    client.set_model_version_tag(name, newest.version, ALIASES_SET, "after an interrupted training")
    log.warning("registered model %s: version %s was registered by a training that was killed "
                "before setting its aliases; set %s", name, newest.version, ", ".join(wanted))
    return newest.version


@contextlib.contextmanager
def promotion_lock(tracker: Tracker, name: str):
    """Held from reading the champion to setting the aliases, so that two trainings for one
    registered model compare and promote one after the other: the later one is compared with
    the earlier one's version, and the better one ends as champion.

    An exclusive `flock` on a file beside the SQLite store (shared by every project using
    that store), or in the project's .sparkml/locks/ with a tracking server (one machine;
    the kernel releases it when a process dies, so a kill never leaves it held)."""
    with exclusive(tracker.lock_dir / f".promote-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.lock"):
        yield


def champion(tracker: Tracker, name: str):
    """The version holding the `champion` alias, or None (no model, or no champion yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return tracker.client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if _missing(exc):
            return None
        raise


def resolve(tracker: Tracker, ref: str):
    """MODEL (newest version), MODEL@ALIAS or MODEL/VERSION -> an MLflow ModelVersion."""
    from mlflow.exceptions import MlflowException

    parsed = refs.model(ref)
    name, alias, version = parsed.name, parsed.alias, parsed.version
    client = tracker.client
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if not _missing(exc):
            raise
        raise NotFoundError(f"no registered model named {name!r} in {tracker.shown_uri}") from None
    try:
        if alias:
            return client.get_model_version_by_alias(name, alias)
        if version:
            return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if not _missing(exc):
            raise
        what = f"alias {alias!r}" if alias else f"version {version}"
        known = _aliases(client, name)
        raise NotFoundError(f"model {name} has no {what} (aliases: {known or 'none'})") from None
    versions = client.search_model_versions(f"name = '{name}'")
    if not versions:
        raise NotFoundError(f"model {name} has no versions")
    return max(versions, key=lambda v: int(v.version))


def _missing(exc) -> bool:
    """True when MLflow said the thing does not exist (not: server unreachable, etc.)."""
    return exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE")


def _aliases(client, name: str) -> str:
    model = client.get_registered_model(name)
    return ", ".join(f"{a}->{v}" for a, v in sorted((model.aliases or {}).items()))


def list_models(tracker: Tracker) -> list[dict]:
    client = tracker.client
    out = []
    for model in client.search_registered_models():
        versions = client.search_model_versions(f"name = '{model.name}'")
        out.append({
            "name": model.name,
            "description": model.description or "",
            "versions": len(versions),
            "latest_version": max((int(v.version) for v in versions), default=None),
            "aliases": dict(model.aliases or {}),
        })
    return sorted(out, key=lambda m: m["name"])


def show(tracker: Tracker, ref: str) -> dict:
    client = tracker.client
    mv = resolve(tracker, ref)
    run = client.get_run(mv.run_id)
    model = client.get_registered_model(mv.name)
    return {
        "name": mv.name,
        "version": str(mv.version),
        "aliases": [a for a, v in (model.aliases or {}).items() if str(v) == str(mv.version)],
        "run_id": mv.run_id,
        "source": mv.source,
        "created": mv.creation_timestamp,
        "tags": dict(mv.tags or {}),
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
    }


def trained_on(tracker: Tracker, training_set: str) -> dict[int, list[str]]:
    """Every registered model version trained on a version of `training_set`, as
    {training-set version: ["MODEL/VERSION", ...]} (the tags `register` sets). Reads every
    page: a guard against deleting what a model needs must not miss one."""
    client = tracker.client
    found: dict[int, list[str]] = {}
    token = None
    while True:
        page = client.search_model_versions(f"tags.training_set = '{training_set}'", page_token=token)
        for mv in page:
            version = VersionRecord.from_tags(mv.tags).training_set_version
            if version is not None:
                found.setdefault(version, []).append(f"{mv.name}/{mv.version}")
        token = page.token
        if not token:
            break
    return {v: sorted(models, key=_model_version_order) for v, models in sorted(found.items())}


def feature_users(tracker: Tracker) -> list[dict]:
    """Every model version under an alias, with the feature table versions it was trained on
    and each one's definition hash (None: recorded before definitions were kept), from the
    tags `register` sets: what a feature table build must not change under it."""
    client = tracker.client
    out, token = [], None
    while True:
        page = client.search_registered_models(page_token=token)
        for model in page:
            held: dict[str, list[str]] = {}
            for alias, version in (model.aliases or {}).items():
                held.setdefault(str(version), []).append(alias)
            for version, aliases in sorted(held.items(), key=lambda item: int(item[0])):
                record = VersionRecord.from_tags(client.get_model_version(model.name, version).tags)
                out.append({"model": model.name, "version": version, "aliases": sorted(aliases),
                            "tables": record.feature_tables,
                            "definitions": {t: record.feature_definitions.get(t) for t in record.feature_tables},
                            "stale": record.stale})
        token = page.token
        if not token:
            return out


def mark_stale(tracker: Tracker, retired: list[str], why: str) -> None:
    """Tag each MODEL/VERSION in `retired` as trained on a retired feature definition."""
    for ref in retired:
        name, _, version = ref.rpartition("/")
        tracker.client.set_model_version_tag(name, version, STALE, why)


def _model_version_order(ref: str) -> tuple[str, int]:
    name, _, version = ref.rpartition("/")
    return name, int(version)


def load_feature_spec(tracker: Tracker, run_id: str) -> dict:
    return load_json_artifact(tracker, run_id, "feature_spec.json")


def load_optional_json_artifact(tracker: Tracker, run_id: str, name: str) -> dict | None:
    """The run's JSON artifact `name`, None when the run has none."""
    import mlflow

    with tracker.bound():
        listed = {a.path for a in mlflow.MlflowClient(tracking_uri=tracker.uri).list_artifacts(run_id)}
    return load_json_artifact(tracker, run_id, name) if name in listed else None


def load_json_artifact(tracker: Tracker, run_id: str, name: str) -> dict:
    import mlflow

    with tracker.bound():
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=name,
                                                   tracking_uri=tracker.uri)
    with open(path) as handle:
        return json.load(handle)
