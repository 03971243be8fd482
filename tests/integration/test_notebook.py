"""The walkthrough notebook, executed on a real Jupyter kernel (its own Python and JVM, as a
user's) on a copy of the slice project: its outputs, its registered model, and its
`score_batch` scores equal to `sparkml score` on the same rows."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, cli_env, run_main

from sparkml_platform.core.errors import ConfigError, NotFoundError

pytestmark = pytest.mark.slow
NOTEBOOK = REPO / "notebooks" / "flights_walkthrough.ipynb"
MODEL = "notebook_flight_delays"


@pytest.fixture(scope="module")
def walkthrough(flights_project, tmp_path_factory):
    """The notebook run cell by cell from the project root; then one more cell, the test's,
    reads the scores it computed (in the kernel, where they are)."""
    import nbformat
    from nbclient import NotebookClient

    root = tmp_path_factory.mktemp("notebook") / "project"
    shutil.copytree(flights_project[0].parent, root, symlinks=True)  # the slice project stays as it is
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=1200, kernel_name="python3",
                            resources={"metadata": {"path": str(root)}})
    probe = nbformat.v4.new_code_cell("import json; print(json.dumps({'version': result.version, "
                                      "'scores': scores[['flight_id', 'probability']].values.tolist()}))")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in cli_env(SPARKML_CONF=str(root / "conf"), SPARKML_ENV="test").items():
            patch.setenv(name, value)
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
            nb.cells.append(probe)
            client.execute_cell(probe, len(nb.cells) - 1)
    found = json.loads(probe.outputs[-1]["text"].strip().splitlines()[-1])
    return root / "conf", nb, found


def text_of(nb, tag: str) -> str:
    cell = next(c for c in nb.cells if tag in c.metadata.get("tags", []))
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_the_notebook_runs_and_registers_a_model_with_its_lookups(spark, walkthrough):
    from sparkml_platform import Workspace

    conf, nb, found = walkthrough
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    ws = Workspace(conf, "test", spark=spark)
    labels = ws.spark.read.format("delta").load(str(conf.parent / ".sparkml" / "lake" / "entities" / "flights"))
    expected = labels.where("arr_delay IS NOT NULL AND sched_dep_ts < TIMESTAMP '2013-10-01 00:00:00'").count()
    assert f"{expected} label rows" in "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert f"{MODEL} version {found['version']} ['challenger', 'champion'] promoted to champion" \
        in text_of(nb, "registered")
    shown = ws.models.show(f"{MODEL}/{found['version']}")
    assert shown.tags["training_set"] == MODEL and shown.tags["decision"] == "promoted to champion"
    assert set(json.loads(shown.tags["feature_tables"])) == {"origin_weather_hourly", "carrier_delays",
                                                             "route_delays"}
    assert ws.training_set(MODEL).manifest["label_source"]["dataframe"]
    lineage = text_of(nb, "lineage")  # the registered version, back to the raw sources it was made from
    assert lineage.startswith(f"model:{MODEL}/{found['version']}  [model version")
    # (at the versions the feature tables read: other slow tests load the sources again first)
    assert all(re.search(rf"<- {table}  \[source v\d+\]", lineage) for table in ("raw.weather", "raw.flights"))
    plots = next(c for c in nb.cells if "plots" in c.metadata.get("tags", []))
    assert any("image/png" in o.get("data", {}) for o in plots.outputs)  # the figure, inline


def test_score_batch_in_the_notebook_equals_sparkml_score_on_the_same_rows(spark, walkthrough):
    conf, nb, found = walkthrough
    notebook = dict(found["scores"])
    lake = conf.parent / ".sparkml" / "lake"
    days = spark.read.format("delta").load(str(lake / "entities" / "flights_to_score")) \
        .where("sched_dep_ts < TIMESTAMP '2013-11-06 00:00:00'").count()
    assert len(notebook) == days > 0 and f"{days} rows scored" in text_of(nb, "scores")
    done = run_main(conf, "score", f"{MODEL}/{found['version']}", "--input", "entities.flights_to_score",
                    "--output", "predictions.notebook_check", "--run-date", "2013-12-31")
    assert done.returncode == 0, done.stderr[-3000:]
    written = {r.flight_id: r.probability for r in spark.read.format("delta").load(
        str(lake / "predictions" / "notebook_check")).select("flight_id", "probability").collect()}
    assert set(notebook) <= set(written)
    worst = max(abs(notebook[f] - written[f]) for f in notebook)
    assert worst < 1e-9


def test_score_batch_refuses_rows_without_a_key_and_an_unknown_model(spark, walkthrough):
    from sparkml_platform import Workspace

    conf, _, found = walkthrough
    ws = Workspace(conf, "test", spark=spark)
    rows = ws.features.read("origin_weather_hourly").limit(0)  # any frame; checked before reading
    entities = spark.read.format("delta").load(str(conf.parent / ".sparkml" / "lake" / "entities" /
                                                   "flights_to_score")).limit(5)
    runs = len(ws.tracker.client.search_runs([ws.tracker.experiment_id]))
    with pytest.raises(ConfigError, match=rf"df lacks column origin that model {MODEL} version "
                                          rf"{found['version']} needs \(it has flight_id, "):
        ws.score_batch(f"{MODEL}/{found['version']}", entities.drop("origin"))
    with pytest.raises(NotFoundError, match=r"no registered model named 'no_such_model'"):
        ws.score_batch("no_such_model@champion", rows)
    assert len(ws.tracker.client.search_runs([ws.tracker.experiment_id])) == runs  # nothing logged


def test_a_running_session_without_delta_is_refused_naming_what_to_add(tmp_path):
    from conftest import make_project

    conf = make_project(tmp_path)
    script = ("import sys\nfrom pyspark.sql import SparkSession\n"
              "SparkSession.builder.master('local[1]').config('spark.ui.enabled', 'false').getOrCreate()\n"
              "from sparkml_platform import Workspace\n"
              "Workspace(sys.argv[1], 'test', spark=SparkSession.getActiveSession()).spark\n")
    done = subprocess.run([sys.executable, "-c", script, str(conf)], capture_output=True, text=True,
                          timeout=300, env=cli_env(), cwd=tmp_path)
    assert done.returncode != 0
    assert ("SetupError: the running SparkSession does not have Delta on (it lacks spark.sql.extensions="
            "io.delta.sql.DeltaSparkSessionExtension and spark.sql.catalog.spark_catalog="
            "org.apache.spark.sql.delta.catalog.DeltaCatalog)") in done.stderr
    assert not (tmp_path / ".sparkml" / "lake").exists()
