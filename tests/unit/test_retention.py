"""Training-set retention: deleting a version, keeping N (and every version a model was
trained on), and a VACUUM of feature tables that keeps what pinned versions need. Real Delta
and a real MLflow registry (model versions tagged as training registers them)."""

from __future__ import annotations

import pytest
from conftest import make_project

from sparkml_platform.core.errors import ConfigError


def _set(table: str, **extra) -> dict:
    return {"label": {"table": "entities.rt_labels", "keys": ["id"], "event_time": "t", "label": "outcome"},
            "features": [{"table": table}], "split": {"type": "random", "test_fraction": 0.3, "seed": 3},
            **extra}


def test_retention_config_rejects_a_bad_keep(tmp_path):
    from sparkml_platform.runtime.project import open_project

    for bad, said in (({"keep": 0}, "greater than or equal to 1"), ({"keep": 2, "days": 3}, "days")):
        conf = make_project(tmp_path / str(len(said)), {"training_sets.yml": {"retention": bad}})
        with pytest.raises(ConfigError, match=said) as caught:
            open_project(conf, "test")
        assert "training_sets.yml" in str(caught.value)


def test_retention_is_not_part_of_the_definition_hash():
    from sparkml_platform.config import TrainingSet
    from sparkml_platform.core.provenance import definition_hash

    plain = TrainingSet.model_validate(_set("rt_a"))
    kept = TrainingSet.model_validate(_set("rt_a", retention={"keep": 3}))
    assert kept.retention.keep == 3 and "retention" not in kept.model_dump(mode="json")
    assert definition_hash(kept) == definition_hash(plain)  # changing it makes no "new" training set
