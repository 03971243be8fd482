"""What a registered model version records, as one typed record.

The registry keeps a version's facts as string tags: `to_tags()` writes them when the version
is registered, `from_tags()` reads them back for training's freshness check, the report,
lineage, monitoring and retention. A version registered by an older platform (or by hand)
lacks some tags: they read as None, an empty mapping or list, never as an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

# Tags set after registration, each by the one step that owns it.
ALIASES_SET = "aliases_set"  # by the training, once its aliases are set: none means interrupted
SPEC_HASH = "model_spec_hash"  # the models.yml spec's hash and whether it was tuned
STALE = "stale_features"  # by a feature build that retired a definition the version was trained on
PROMOTED = "promoted to champion"  # the decision of a version that passed its gate


@dataclass(frozen=True)
class VersionRecord:
    """A model version's training set, features, code, environment, gate and decision."""

    model_spec: str | None = None
    training_set: str | None = None
    training_set_version: int | None = None
    training_set_digest: str | None = None
    feature_tables: dict[str, int | None] = field(default_factory=dict)  # table -> Delta version
    # table -> its definition hash at that version (None: made before they were recorded)
    feature_definitions: dict[str, str | None] = field(default_factory=dict)
    code: dict | None = None  # the project's code that trained it (runtime/project.py)
    environment_id: str | None = None
    python: str | None = None
    params: dict = field(default_factory=dict)
    gate_passed: bool | None = None
    gate_checks: list = field(default_factory=list)
    compared_with: str | None = None
    decision: str | None = None
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # per split: train, validation, test
    spec_hash: str | None = None
    aliases_set: str | None = None
    stale: str | None = None

    @property
    def promoted(self) -> bool:
        return self.decision == PROMOTED

    @property
    def training_set_ref(self) -> str | None:
        """NAME@VERSION of the training-set version it was trained on."""
        if self.training_set and self.training_set_version is not None:
            return f"{self.training_set}@{self.training_set_version}"
        return None

    def to_tags(self) -> dict[str, str]:
        """The registry's tags (strings); facts that are unknown are left out."""
        tags = {
            "model_spec": self.model_spec,
            SPEC_HASH: self.spec_hash,
            "training_set": self.training_set,
            "training_set_version": None if self.training_set_version is None else str(self.training_set_version),
            "training_set_digest": self.training_set_digest,
            "feature_tables": json.dumps(self.feature_tables),
            "feature_definitions": json.dumps(self.feature_definitions),
            "code_version": None if self.code is None else json.dumps(self.code),
            "environment_id": self.environment_id,
            "python": self.python,
            "params": json.dumps(self.params, default=str, sort_keys=True),
            "gate": None if self.gate_passed is None else ("passed" if self.gate_passed else "failed"),
            "gate_checks": json.dumps(self.gate_checks, default=str),
            "compared_with": self.compared_with,
            "decision": self.decision,
            "run_id": self.run_id,
            ALIASES_SET: self.aliases_set,
            STALE: self.stale,
            **{f"metric.{k}": f"{v:.6f}" for k, v in self.metrics.items() if v == v},  # NaN: not recorded
            **{f"{split}_rows": str(n) for split, n in self.rows.items()},
        }
        return {k: v for k, v in tags.items() if v is not None}

    @classmethod
    def from_tags(cls, tags: dict[str, str] | None) -> "VersionRecord":
        """The record a version's tags hold; what they lack (or hold damaged) reads as unknown."""
        tags = dict(tags or {})
        version = tags.get("training_set_version", "")
        gate = tags.get("gate")
        return cls(
            model_spec=tags.get("model_spec"),
            training_set=tags.get("training_set"),
            training_set_version=int(version) if version.isdigit() else None,
            training_set_digest=tags.get("training_set_digest"),
            feature_tables=_json(tags.get("feature_tables"), {}),
            feature_definitions=_json(tags.get("feature_definitions"), {}),
            code=_json(tags.get("code_version"), None),
            environment_id=tags.get("environment_id"),
            python=tags.get("python"),
            params=_json(tags.get("params"), {}),
            gate_passed=None if gate is None else gate == "passed",
            gate_checks=_json(tags.get("gate_checks"), []),
            compared_with=tags.get("compared_with"),
            decision=tags.get("decision"),
            run_id=tags.get("run_id"),
            metrics={k[len("metric."):]: float(v) for k, v in tags.items() if k.startswith("metric.") and _number(v)},
            rows={k[:-len("_rows")]: int(v) for k, v in tags.items()
                  if k in ("train_rows", "validation_rows", "test_rows") and v.isdigit()},
            spec_hash=tags.get(SPEC_HASH),
            aliases_set=tags.get(ALIASES_SET),
            stale=tags.get(STALE),
        )


def _json(text: str | None, default):
    """A JSON tag's value; a missing or damaged one is `default` (of the same kind)."""
    if not text:
        return default
    try:
        value = json.loads(text)
    except ValueError:
        return default
    return value if default is None or isinstance(value, type(default)) else default


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
