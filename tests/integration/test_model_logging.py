"""What a training run records about its model and data, without training one."""

from __future__ import annotations

import json

from sparkml_platform.storage import lake
from sparkml_platform.training.train import _dataset_input


def test_the_training_set_input_survives_types_mlflow_cannot_name(spark, tmp_path):
    """A timestamp_ntz event time is allowed in training sets; MLflow's schema inference
    refuses it, which must not stop the training run: the input is logged without a schema."""
    from sparkml_platform.storage.files import Storage

    path = Storage().location(str(tmp_path / "v0001"))
    data = spark.sql("SELECT 1.5 AS x, TIMESTAMP_NTZ '2013-01-01 10:00:00' AS at, 1 AS label")
    lake.write(data, path)
    rows = {"total": 1, "train": 1, "validation": 0, "test": 0}
    dataset = _dataset_input(spark, lake.read(spark, path),
                             {"name": "t", "version": 1, "digest": "1-ab", "rows": rows}, "label",
                             path)
    logged = dataset._to_mlflow_entity()
    assert (logged.name, logged.digest, logged.schema) == ("t@1", "1-ab", None)
    assert json.loads(logged.source) == {"path": str(path)}
    assert json.loads(logged.profile) == {"num_rows": 1, "rows_per_split": rows, "targets": "label"}
