"""A user's own project, as a new user makes one: `sparkml init`, a regression pipeline on a
small dataset written here, the project's own transformations and estimator, run twice,
a transformation edited, one job through spark-submit.sh, and the model loaded elsewhere."""

from __future__ import annotations

from sparkml_platform.cli import main
from sparkml_platform.runtime.project import project_of


def test_init_writes_a_project_that_loads_and_refuses_a_second_init(tmp_path, capsys):
    from sparkml_platform.runtime.project import open_project

    root = tmp_path / "my-project"
    assert main(["init", str(root)]) == 0
    assert {p.name for p in root.iterdir()} == {"conf", "my_project", "README.md", ".gitignore"}
    assert (root / "conf" / "local").is_dir() and "conf/local/" in (root / ".gitignore").read_text()
    assert {p.name for p in (root / "conf" / "base").glob("*.yml")} == {
        "platform.yml", "sources.yml", "features.yml", "training_sets.yml", "models.yml", "pipelines.yml",
        "schedules.yml"}
    config = open_project(root / "conf")  # every file valid, examples commented out
    assert list(project_of(config).packages) == ["my_project"]
    assert config.platform.spark.jars_dir is None  # the user's shared Delta jar cache
    capsys.readouterr()
    assert main(["init", str(root)]) == 2
    assert "already exists and is not an empty directory: nothing written" in capsys.readouterr().err
    assert main(["init", str(tmp_path / "other"), "--package", "not-a-name"]) == 2
    assert not (tmp_path / "other").exists()
