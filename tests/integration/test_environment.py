"""Environment artifacts: capture with a content-hash id, references, diffs, and the runtime
environments built from the metadata (conda file, Dockerfile), with their bad inputs."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile

import yaml
from conftest import JARS_DIR, REPO, cli_env, make_project

from sparkml_platform.cli import main
from sparkml_platform.runtime import delta_jars
from sparkml_platform.runtime import environments as environment
from sparkml_platform.runtime import packing as runtime_env
from sparkml_platform.runtime.project import open_project
from sparkml_platform.storage import places


def test_capture_is_stable_and_the_same_with_or_without_a_session(spark):
    first, second = environment.capture(spark), environment.capture()
    assert first == second and first["id"] == environment.environment_id(first)
    assert first["packages"]["pyspark"] == spark.version == first["spark"]
    assert first["java"] and first["scala"].startswith("2.13") and first["delta"]


def test_env_show_and_diff_by_id_through_the_cli(tmp_path, capsys):
    conf = make_project(tmp_path)
    assert main(["--conf", str(conf), "env", "capture", "--json"]) == 0
    env_id = json.loads(capsys.readouterr().out)["id"]
    saved = json.loads((tmp_path / ".sparkml" / "environments" / f"{env_id}.json").read_text())
    assert saved["id"] == env_id and saved["packages"]["mlflow"]
    assert main(["--conf", str(conf), "env", "diff", env_id]) == 0
    assert capsys.readouterr().out.startswith(f"{env_id} -> {env_id}: identical")
    assert main(["--conf", str(conf), "env", "show", env_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == saved


def test_conda_file_and_dockerfile_pin_exactly_the_captured_versions(tmp_path, capsys, monkeypatch):
    import dockerfile  # buildkit's own Dockerfile parser

    monkeypatch.setenv("SPARKML_JARS_DIR", str(JARS_DIR))
    conf, env = captured_project(tmp_path)
    (tmp_path / "own_code").mkdir()  # the project's package goes into the image beside conf/
    (tmp_path / "own_code" / "__init__.py").write_text("ANSWER = 42\n")
    assert main(["--conf", str(conf), "env", "pack", env["id"], "--no-archive"]) == 0
    out = tmp_path / ".sparkml" / "envs" / env["id"]
    assert json.loads(capsys.readouterr().out)["directory"] == str(out)
    pins = {f"{k}=={v}" for k, v in env["packages"].items() if k not in runtime_env.NOT_PINNED}

    requirements = (out / "requirements.txt").read_text().splitlines()
    assert set(requirements[1:]) == pins and len(requirements[1:]) == len(pins)
    conda = yaml.safe_load((out / "environment.yml").read_text())
    assert conda["dependencies"][0] == f"python={env['python']}"
    assert conda["dependencies"][1] == f"openjdk={env['java'].split('.')[0]}"
    assert set(conda["dependencies"][-1]["pip"]) == pins

    commands = dockerfile.parse_file(str(out / "Dockerfile"))
    assert all(c.cmd.lower() in dockerfile.all_cmds() for c in commands)
    stages = [c.value for c in commands if c.cmd == "FROM"]
    assert stages[0] == (f"python:{env['python']}-slim-bookworm", "AS", "base")
    assert [s[-1] for s in stages[1:]] == ["development", "training", "scoring"]
    assert all(s[0] == "base" for s in stages[1:])
    # The scoring stage serves online: sparkml serve, the model and the online store from the environment.
    scoring = commands[[i for i, c in enumerate(commands) if c.cmd == "FROM"][-1]:]
    entry = next(c for c in scoring if c.cmd == "ENTRYPOINT")
    assert entry.value[:5] == ("sparkml", "--conf", "/opt/sparkml/conf", "serve", "--host")
    declared = " ".join(" ".join(c.value) for c in scoring if c.cmd == "ENV")
    assert "SPARKML_ONLINE_STORE" in declared and "SPARKML_SERVE_MODEL" in declared
    runs = " ".join(" ".join(c.value) for c in commands if c.cmd == "RUN")
    assert "pip install --no-deps -r /opt/sparkml/requirements.txt" in runs  # nothing resolved anew
    assert f"openjdk-{env['java'].split('.')[0]}-jre-headless" in runs
    # Every COPY source is in the build context written beside it.
    for c in commands:
        if c.cmd == "COPY":
            assert all((out / src).exists() for src in c.value[:-1]), c.original
    # Delta's jars and the platform's (the S3 connector's come from the jar cache, for s3a://
    # projects only).
    assert sorted(p.name for p in (out / "project" / "jars").iterdir()) == \
        sorted([*delta_jars.jar_names(), delta_jars.platform_jar_name()])
    assert (out / "project" / "own_code" / "__init__.py").read_text() == "ANSWER = 42\n"


def test_env_pack_refuses_an_environment_for_another_python(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SPARKML_JARS_DIR", str(JARS_DIR))
    conf, env = captured_project(tmp_path, python="3.12.4")
    assert main(["--conf", str(conf), "env", "pack", env["id"]]) == 2
    err = capsys.readouterr().err
    assert f"environment {env['id']} targets Python 3.12.4, this is Python 3.11" in err
    assert not (tmp_path / ".sparkml" / "envs" / env["id"] / "environment.tar.gz").exists()


def submit(conf, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "spark-submit.sh"), "--conf-dir", str(conf), *args],
                          capture_output=True, text=True, timeout=120, env=cli_env())


def test_spark_submit_refuses_archives_it_cannot_use(tmp_path):
    conf = make_project(tmp_path)
    plain = tmp_path / "plain.tar.gz"
    with tarfile.open(plain, "w:gz") as tar:
        data = b"not an environment"
        info = tarfile.TarInfo("bin/readme.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    local = submit(conf, "--archives", str(plain), "features_build", "plane_attributes")
    assert local.returncode == 2 and "--archives needs a cluster master" in local.stderr
    missing = submit(conf, "--master", "spark://127.0.0.1:7", "--archives", str(tmp_path / "none.tar.gz"),
                     "features_build", "plane_attributes")
    assert missing.returncode == 2 and "no archive at" in missing.stderr
    foreign = submit(conf, "--master", "spark://127.0.0.1:7", "--archives", str(plain),
                     "features_build", "plane_attributes")
    assert foreign.returncode == 2
    assert f"{plain} is not an environment packed by `sparkml env pack`" in foreign.stderr


def captured_project(tmp_path, **changes):
    """A project with the running environment captured (changed as asked) under its id."""
    conf = make_project(tmp_path)
    env = {**environment.capture(), **changes}
    env["id"] = environment.environment_id(env)
    environment.save(env, places.environments_dir(open_project(conf, "test")))
    return conf, env
