"""Which definition of a feature table each Delta version holds, and whether a model may use
it: decided from the table's commit list (`lake.commits`), with no Spark and no storage.

Every build commits `kind: feature_table` metadata carrying `definition_hash` (features.yml
entry and transformation source, `features/build.py` `definition_hashes`). Version v of a table holds
the definition of the newest build at or before v. Training-set manifests, model feature
specs and online publishes record, per lookup, that hash next to the Delta version read;
scoring and serving compare it with the definition of the version they would read.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import ConfigError
from .lake import iso_time

BUILD = "feature_table"


@dataclass(frozen=True)
class Build:
    """A build commit: the Delta version it made, its definition hash, when (ms since 1970)."""

    version: int
    definition: str
    timestamp: int | None = None
    retired: tuple[str, ...] = ()  # MODEL/VERSION marked stale by this build (features build --retire)
    sources: dict | None = None  # source table reference -> the Delta version the build read


def builds(commits: list[dict]) -> list[Build]:
    """The retained build commits that record a definition, oldest first."""
    out = []
    for commit in commits:
        meta = commit.get("metadata") if isinstance(commit.get("metadata"), dict) else {}
        if meta.get("kind") == BUILD and meta.get("definition_hash"):
            out.append(Build(int(commit["version"]), str(meta["definition_hash"]), commit.get("timestamp"),
                             tuple(meta.get("retired") or ()),
                             meta.get("sources") if isinstance(meta.get("sources"), dict) else None))
    return sorted(out, key=lambda b: b.version)


def definition_at(commits: list[dict], version: int | None) -> Build | None:
    """The build whose definition version `version` holds (None: unknown, e.g. folded into a
    checkpoint, or the table was not built by the platform)."""
    if version is None:
        return None
    done = [b for b in builds(commits) if b.version <= version]
    return done[-1] if done else None


def changed_since(commits: list[dict], version: int, until: int | None = None,
                  definition: str | None = None) -> Build | None:
    """The first build after `version` (up to `until`) whose definition differs from
    `definition` (default: the one `version` holds; unknown: the first retained build after
    it). None when the history shows no change."""
    reference = definition or getattr(definition_at(commits, version), "definition", None)
    for build in builds(commits):
        if build.version <= version or (until is not None and build.version > until):
            continue
        if reference is None:
            reference = build.definition
        elif build.definition != reference:
            return build
    return None


def mismatch(model: str, recorded: dict, read: dict, commits_of) -> str | None:
    """Why the model must not use the table version `read` (a lookup as read now: `table`,
    `version`, `definition`), given `recorded` (its lookup as trained), or None when it may.
    `commits_of(table)` is asked for the table's commits only when the two hashes differ or
    one is unknown.

    A lookup recorded before definitions were kept ("unknown") mismatches only when the
    table's history shows a change of definition since the Delta version it was trained on."""
    table, trained, trained_version = read["table"], recorded.get("definition"), recorded.get("version")
    if trained and read.get("definition") in (None, trained):
        return None  # the same definition, or a table version no platform build made
    if not trained and trained_version is None:
        return None
    commits = commits_of(table)
    built = definition_at(commits, read["version"])
    now = read.get("definition") or (built.definition if built else None)
    if trained:
        since = changed_since(commits, trained_version if trained_version is not None else -1,
                              read["version"], trained) or built
    else:
        since = changed_since(commits, int(trained_version), read["version"])
        if since is None:
            return None
    return (f"model {model} was trained on feature table {table} with definition "
            f"{trained or 'unknown'} (Delta version {trained_version}); version {read['version']} of "
            f"the table holds definition {now or 'unknown'}"
            + (f", changed by the build of version {since.version} at {iso_time(since.timestamp) or 'an unknown time'}"
               + (" (features build --retire: the definition it was trained on is retired)"
                  if since.retired else "") if since else ""))


SCORING = ("Scoring it would use features the model was not trained on; nothing was scored. "
           "Retrain the model on the table as it is now (sparkml train), or rebuild the table "
           "with the definition the model was trained on")
SERVING = ("The online store holds features the model was not trained on; it is not served. "
           "Publish a table version of the model's definition, or serve a model trained on the "
           "published one")


def verify(model: str, recorded: list[dict], read: list[dict], commits_of, consequence: str = SCORING) -> None:
    """Refuse (ConfigError, exit 2) a model whose lookups (`recorded`, as its feature spec
    keeps them) would read table versions (`read`, as `training_sets.read_feature_tables`
    resolved them) of another definition than it was trained on."""
    problems = mismatches(model, recorded, read, commits_of)
    if problems:
        raise ConfigError("; ".join(problems) + ". " + consequence)


def mismatches(model: str, recorded: list[dict], read: list[dict], commits_of) -> list[str]:
    """`mismatch` for every table read that the model recorded a lookup of."""
    trained = {lk["table"]: lk for lk in recorded}
    return [p for lk in read if lk["table"] in trained
            and (p := mismatch(model, trained[lk["table"]], lk, commits_of))]

