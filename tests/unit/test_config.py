"""Configuration: typed, overlays, environment overrides, and errors that name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import make_project

from sparkml_platform.cli import main
from sparkml_platform.config import parse_duration
from sparkml_platform.core.errors import ConfigError
from sparkml_platform.runtime.delta_jars import jars_dir
from sparkml_platform.runtime.project import open_project
from sparkml_platform.storage import places


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))


def test_base_configuration_loads_with_embedded_defaults(tmp_path):
    conf = make_project(tmp_path)
    config = open_project(conf)
    assert places.lake_root(config).local == tmp_path / ".sparkml" / "lake"
    assert config.tracking_uri == f"sqlite:///{tmp_path}/.sparkml/mlflow.db"
    assert config.artifact_root == (tmp_path / ".sparkml" / "mlartifacts").as_uri()
    assert "origin_weather_hourly" in config.features.feature_tables
    assert config.pipeline("flights").steps[0].kind()[0] == "load_sources"


def test_env_overlay_merges_over_base(tmp_path):
    conf = make_project(tmp_path, {"platform.yml": {"spark": {"shuffle_partitions": 3}}}, env="dev")
    config = open_project(conf, "dev")
    assert config.platform.spark.shuffle_partitions == 3
    assert config.platform.spark.master == "local[*]"  # untouched keys keep the base value


def test_sparkml_variables_override_yaml(tmp_path, monkeypatch):
    conf = make_project(tmp_path)
    monkeypatch.setenv("SPARKML_MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    monkeypatch.setenv("SPARKML_LAKE_ROOT", str(tmp_path / "elsewhere"))
    config = open_project(conf)
    assert config.tracking_uri == "http://127.0.0.1:5999"
    assert places.lake_root(config).local == tmp_path / "elsewhere"


@pytest.mark.parametrize("filename, data, key", [
    ("platform.yml", {"spark": {"shuffle_partitons": 4}}, "spark.shuffle_partitons"),
    ("sources.yml", {"sources": {"flights": {"paht": "x"}}}, "sources.flights.paht"),
    ("features.yml", {"feature_tables": {"plane_attributes": {"ownr": "me"}}},
     "feature_tables.plane_attributes.ownr"),
    ("training_sets.yml", {"training_sets": {"flight_delays": {"lable": {}}}},
     "training_sets.flight_delays.lable"),
    ("models.yml", {"models": {"flight_delay_gbt": {"treshold": 1}}}, "models.flight_delay_gbt.treshold"),
    ("pipelines.yml", {"pipelines": {"flights": {"stpes": []}}}, "pipelines.flights.stpes"),
    ("expectations/plane_attributes.yml", {"expectations": [{"expect_x": {}}], "owner": "me"}, "owner"),
])
def test_unknown_key_names_file_and_key(tmp_path, filename, data, key):
    conf = make_project(tmp_path, {filename: data}, env="dev")
    with pytest.raises(ConfigError) as err:
        open_project(conf, "dev")
    message = str(err.value)
    assert str(conf / "dev" / filename) in message
    assert f"{key}: unknown key" in message


@pytest.mark.parametrize("filename, data, key", [
    ("platform.yml", {"spark": {"shuffle_partitions": "many"}}, "spark.shuffle_partitions"),
    ("features.yml", {"feature_tables": {"plane_attributes": {"keys": "tailnum"}}},
     "feature_tables.plane_attributes.keys"),
    ("features.yml", {"feature_tables": {"plane_attributes": {"lookback": "soon"}}},
     "feature_tables.plane_attributes.lookback"),
    ("models.yml", {"models": {"flight_delay_gbt": {"estimator": {"type": "svm"}}}},
     "models.flight_delay_gbt.estimator.type"),
])
def test_wrong_type_names_file_and_key(tmp_path, filename, data, key):
    conf = make_project(tmp_path, {filename: data}, env="dev")
    with pytest.raises(ConfigError) as err:
        open_project(conf, "dev")
    assert str(conf / "dev" / filename) in str(err.value)
    assert key in str(err.value)


def test_error_in_base_file_names_the_base_file(tmp_path):
    conf = make_project(tmp_path)
    text = (conf / "base" / "models.yml").read_text().replace("training_set:", "trainingset:")
    (conf / "base" / "models.yml").write_text(text)
    with pytest.raises(ConfigError, match=r"base/models.yml: models.flight_delay_gbt.trainingset: unknown key"):
        open_project(conf)


def test_invalid_yaml_names_the_file(tmp_path):
    conf = make_project(tmp_path)
    (conf / "base" / "features.yml").write_text("feature_tables: [unclosed\n")
    with pytest.raises(ConfigError, match="features.yml: not valid YAML"):
        open_project(conf)


def test_cli_exits_2_on_bad_config_and_writes_nothing(tmp_path, capsys):
    conf = make_project(tmp_path, {"features.yml": {"feature_tables": {"plane_attributes": {"x": 1}}}})
    code = main(["--conf", str(conf), "--env", "test", "features", "build", "plane_attributes"])
    err = capsys.readouterr().err
    assert code == 2
    assert "features.yml: feature_tables.plane_attributes.x: unknown key" in err
    assert not (tmp_path / ".sparkml").exists()


def test_cli_exits_2_on_missing_conf_directory(tmp_path, capsys):
    code = main(["--conf", str(tmp_path / "nowhere"), "features", "list"])
    assert code == 2
    assert f"configuration directory {tmp_path / 'nowhere' / 'base'} not found" in capsys.readouterr().err


def test_cli_exits_2_on_missing_overlay(tmp_path, capsys):
    conf = make_project(tmp_path)
    assert main(["--conf", str(conf), "--env", "prod", "features", "list"]) == 2
    assert "overlay directory" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["features", "show", "no_such_table"], "no feature table named 'no_such_table'"),
    (["features", "build", "no_such_table"], "no feature table named 'no_such_table'"),
    (["train", "no_such_model"], "no model named 'no_such_model'"),
    (["trainset", "build", "no_such_set"], "no training set named 'no_such_set'"),
    (["run", "no_such_pipeline"], "no pipeline named 'no_such_pipeline'"),
    (["features", "build", "plane_attributes", "--start", "2013-02-01", "--end", "2013-01-01"],
     "end 2013-01-01 is before start 2013-02-01"),
    (["features", "build", "plane_attributes", "--start", "2013-02-01"], "start and end go together"),
])
def test_cli_names_what_was_not_found_and_writes_nothing(tmp_path, capsys, args, message):
    conf = make_project(tmp_path)
    assert main(["--conf", str(conf), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / ".sparkml").exists()


def test_durations():
    assert parse_duration("90m") == 5400
    assert parse_duration("3h") == 10800
    assert parse_duration("7d") == 604800
    with pytest.raises(ValueError):
        parse_duration("3 weeks")


def test_unknown_name_in_a_pipeline_step_fails_before_any_step_writes(tmp_path, capsys):
    conf = make_project(tmp_path, {"pipelines.yml": {"pipelines": {"flights": {"steps": [
        {"load_sources": ["weather"]}, {"build_features": ["no_such_table"]}]}}}})
    assert main(["--conf", str(conf), "--env", "test", "run", "flights"]) == 2
    assert "pipelines.flights.steps.1.build_features: no build features target named 'no_such_table'" \
        in capsys.readouterr().err
    assert not (tmp_path / ".sparkml").exists()


def test_unknown_source_fails_before_any_load(tmp_path, capsys):
    conf = make_project(tmp_path)
    assert main(["--conf", str(conf), "sources", "load", "weather", "no_such_source"]) == 2
    assert "no source named 'no_such_source'" in capsys.readouterr().err
    assert not (tmp_path / ".sparkml").exists()


def test_expectation_item_must_be_one_expectation(tmp_path):
    conf = make_project(tmp_path, {"expectations/plane_attributes.yml": {
        "expectations": [{"column": {"name": "seats"}}]}}, env="dev")
    with pytest.raises(ConfigError, match=r"expectations/plane_attributes.yml: expectations: .*one `expect_"):
        open_project(conf, "dev")


def test_unknown_suite_named_by_a_feature_table(tmp_path):
    conf = make_project(tmp_path, {"features.yml": {"feature_tables": {
        "plane_attributes": {"expectations": "no_such_suite"}}}}, env="dev")
    with pytest.raises(ConfigError, match="feature_tables.plane_attributes.expectations: no suite 'no_such_suite'"):
        open_project(conf, "dev").expectation_suite("plane_attributes")


def test_table_name_outside_the_allowed_characters(tmp_path):
    conf = make_project(tmp_path)
    text = (conf / "base" / "features.yml").read_text().replace("  plane_attributes:", "  plane-attributes:")
    (conf / "base" / "features.yml").write_text(text)
    with pytest.raises(ConfigError, match="feature_tables: .*table name 'plane-attributes' must be lower case"):
        open_project(conf)


@pytest.mark.parametrize("spec, key, message", [
    ({"search_space": {"maxBins": {"gaussian": [3, 8]}}}, "models.flight_delay_gbt.search_space",
     "maxBins: unknown distribution 'gaussian' (use uniform, loguniform, quniform, choice)"),
    ({"search_space": {"impurity": {"choice": []}}}, "models.flight_delay_gbt.search_space",
     "impurity: choice needs at least one option"),
    ({"search_space": {"stepSize": {"loguniform": [0, 1]}}}, "models.flight_delay_gbt.search_space",
     "stepSize: loguniform needs low > 0"),
    ({"thresholds": {"rmse": {"max": 3}}}, "models.flight_delay_gbt",
     "metric 'rmse' is not computed for classification (computed: roc_auc, pr_auc"),
    ({"tuning": {"metric": "auc"}}, "models.flight_delay_gbt", "metric 'auc' is not computed"),
    ({"estimator": {"type": "sklearn"}}, "models.flight_delay_gbt.estimator", "type sklearn needs `class`"),
])
def test_bad_model_specs_name_the_file_and_key(tmp_path, spec, key, message):
    conf = make_project(tmp_path, {"models.yml": {"models": {"flight_delay_gbt": spec}}}, env="dev")
    with pytest.raises(ConfigError) as err:
        open_project(conf, "dev")
    assert f"{conf / 'dev' / 'models.yml'}: {key}" in str(err.value)
    assert message in str(err.value)


def test_search_space_maps_to_hyperopt_with_the_declared_types():
    from hyperopt import pyll

    from sparkml_platform.modeling import search_space

    space = {"depth": {"quniform": [3, 8, 1]}, "rate": {"loguniform": [0.01, 0.3]},
             "frac": {"uniform": [0.5, 1.0]}, "kind": {"choice": ["gini", "entropy"]}}
    for seed in range(20):
        point = search_space.typed(space, pyll.stochastic.sample(search_space.to_hyperopt(space),
                                                                 rng=__import__("numpy").random.default_rng(seed)))
        assert isinstance(point["depth"], int) and 3 <= point["depth"] <= 8
        assert 0.01 <= point["rate"] <= 0.3 and 0.5 <= point["frac"] <= 1.0
        assert point["kind"] in ("gini", "entropy")


@pytest.mark.parametrize("split, message", [
    ({"validation_start": "2007-13-01"},
     "split.validation_start: Value error, '2007-13-01' is not a date or time like 2013-08-01"),
    ({"validation_start": "2013-09-01", "test_start": "2013-08-01"},
     "split: Value error, validation_start 2013-09-01 must be before test_start 2013-08-01"),
    ({"type": "time", "test_start": None, "validation_start": None},
     "split: Value error, a time split needs test_start"),
])
def test_split_cut_offs_are_checked_when_the_configuration_loads(tmp_path, capsys, split, message):
    conf = make_project(tmp_path, {"training_sets.yml": {"training_sets": {"flight_delays": {
        "split": split}}}})
    assert main(["--conf", str(conf), "--env", "test", "trainset", "build", "flight_delays"]) == 2
    err = capsys.readouterr().err
    assert f"training_sets.yml: training_sets.flight_delays.{message}" in err, err
    assert not (tmp_path / ".sparkml").exists()


def test_the_delta_jar_cache_is_the_users_unless_configured(tmp_path, monkeypatch):
    monkeypatch.delenv("SPARKML_JARS_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    conf = make_project(tmp_path / "one")
    assert jars_dir(open_project(conf)) == tmp_path / "cache" / "sparkml" / "jars"
    assert jars_dir(open_project(make_project(tmp_path / "two"))) == jars_dir(open_project(conf))
    write(conf / "test" / "platform.yml", {"spark": {"jars_dir": "jars"}})
    assert jars_dir(open_project(conf, "test")) == tmp_path / "one" / "jars"


def test_sessions_hold_openblas_to_a_thread_per_task_core_unless_the_user_says_otherwise():
    from sparkml_platform.config import SparkSettings
    from sparkml_platform.runtime.spark_conf import BLAS_THREADS, spark_conf

    key = f"spark.executorEnv.{BLAS_THREADS}"
    assert spark_conf(SparkSettings(), [])[key] == "1"
    assert spark_conf(SparkSettings(conf={"spark.task.cpus": "2"}), [])[key] == "2"
    assert spark_conf(SparkSettings(conf={key: "4"}), [])[key] == "4"
