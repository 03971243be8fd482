"""A registered model version resolved for use: its MLflow version and the feature spec it
was trained with (which entity columns it needs, which feature tables it looks up). What
scoring, monitoring and training read of a model, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config
from ..storage import feature_definitions
from ..storage.pit import FeatureLookup
from ..storage.training_sets import feature_commits, read_feature_tables
from . import registry


@dataclass(frozen=True)
class ScoringModel:
    """A registered model version resolved for scoring: its feature spec says which entity
    columns it needs and which feature tables to look its features up in."""

    version: object  # MLflow ModelVersion
    spec: dict

    @property
    def classifier(self) -> bool:
        return self.spec.get("task", "classification") == "classification"

    @property
    def lookups(self) -> list[FeatureLookup]:
        return [FeatureLookup.from_dict({**lk, "version": None}) for lk in self.spec["lookups"]]

    @property
    def key_columns(self) -> list[str]:
        entity = self.spec["entity"]
        return list(dict.fromkeys([*entity["keys"], *[c for lk in self.lookups for c in lk.key_map.values()]]))

    @property
    def needed(self) -> list[str]:
        """The entity columns scoring reads: keys, event time, lookup keys, passthrough."""
        entity = self.spec["entity"]
        return list(dict.fromkeys([*entity["keys"], entity["event_time"], *self.key_columns,
                                   *entity["passthrough"]]))

    def missing(self, columns: list[str]) -> list[str]:
        return [c for c in self.needed if c not in columns]

    def read_features(self, spark, config: Config, pinned: dict[str, int] | None = None
                      ) -> list[tuple[FeatureLookup, object]]:
        """The model's feature tables as they are now (or at the `pinned` versions), refused
        (nothing scored) when one holds another definition than the model was trained on."""
        tables = read_feature_tables(spark, config, self.lookups, pinned)
        mv = self.version
        feature_definitions.verify(
            f"{mv.name} version {mv.version}", self.spec["lookups"], [lk.to_dict() for lk, _ in tables],
            feature_commits(config))
        return tables


def resolve(tracker, ref: str) -> ScoringModel:
    mv = registry.resolve(tracker, ref)
    return ScoringModel(mv, registry.load_feature_spec(tracker, mv.run_id))
