"""Runtime environments built from a captured environment's metadata: a packed virtual
environment for YARN and standalone executors, a conda file and a Dockerfile, all pinning
exactly the captured versions."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

from ..core.errors import ConfigError, JobFailed
from .delta_jars import check

# Never pinned: the installers themselves, and the project (installed from its source tree so the
# environment carries the code that is checked out).
NOT_PINNED = {"pip", "setuptools", "wheel", "uv", "sparkml-platform"}
# Inside every archive: what it was built from, read by spark-submit.sh and the job's check.
METADATA = "sparkml-environment.json"
# Executors and a cluster-mode driver run Spark's JVM from the cluster's own Spark, so
# pyspark's bundled jars (a third of the environment) are never used from the archive; nor
# are the numeric libraries' own test suites (another 130 MB). Every container unpacks it.
EXCLUDED = ["lib/python*/site-packages/pyspark/jars/*",
            *(f"lib/python*/site-packages/{package}/*tests/*" for package in
              ("pandas", "numpy", "scipy", "sklearn", "matplotlib", "pyarrow", "networkx"))]
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def requirements(env: dict) -> list[str]:
    return [f"{name}=={version}" for name, version in env["packages"].items()
            if name not in NOT_PINNED]


def minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def build(env: dict, out_dir: Path, work_dir: Path, conf_dir: Path, jars_dir: Path,
          archive: bool = True, packages: dict[str, Path | None] | None = None) -> dict:
    """Everything for environment `env` in `out_dir`: requirements.txt, environment.yml
    (conda), and a self-contained Docker build context (Dockerfile plus the platform's code,
    jobs, configuration, the project's own `packages` beside it, and the Delta jars); unless
    `archive` is false, environment.tar.gz too. (Jobs get the project's packages from
    spark-submit.sh, so the archive leaves them out.)"""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "requirements.txt").write_text(
        f"# environment {env['id']}: every package as captured\n" + "\n".join(requirements(env)) + "\n")
    (out_dir / "environment.yml").write_text(conda_file(env))
    (out_dir / "Dockerfile").write_text(dockerfile(env))
    (out_dir / METADATA).write_text(json.dumps(_metadata(env), indent=2))
    project = out_dir / "project"
    shutil.rmtree(project, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "local")
    for name in ("sparkml_platform", "jobs"):
        shutil.copytree(PROJECT_ROOT / name, project / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "spark-submit.sh", "log4j2.properties"):
        shutil.copy2(PROJECT_ROOT / name, project / name)
    shutil.copytree(conf_dir, project / "conf", ignore=ignore)
    for name, home in (packages or {}).items():  # found again beside conf/ in the image
        if home is not None:
            shutil.copytree(home, project / name, ignore=ignore)
    (project / "jars").mkdir()
    for jar in check(jars_dir):  # the Delta jars, or a SetupError saying how to fetch them
        shutil.copy2(jar, project / "jars" / jar.name)
    result = {"environment_id": env["id"], "python": env["python"], "directory": str(out_dir),
              "files": ["requirements.txt", "environment.yml", "Dockerfile", METADATA, "project/"]}
    if archive:
        result["archive"] = str(pack(env, work_dir, out_dir / "environment.tar.gz"))
        result["files"].append("environment.tar.gz")
    return result


def _metadata(env: dict) -> dict:
    return {"environment_id": env["id"], "python": env["python"], "platform": env.get("platform"),
            "spark": env.get("spark"), "java": env.get("java")}


def pack(env: dict, work_dir: Path, output: Path) -> Path:
    """A fresh virtual environment with exact pins and a normal install of the project, packed
    with venv-pack. (The development venv holds the project as an editable install, which
    venv-pack refuses and executors could not use.)

    venv-pack does not carry the interpreter: the archive's Python is the one it was built
    with, which every node must have at the same path. So it is built by that Python only.
    """
    import venv_pack

    here = platform.python_version()
    if here != env["python"]:
        raise ConfigError(f"environment {env['id']} targets Python {env['python']}, this is Python "
                          f"{here}: run `sparkml env pack` with Python {env['python']}, the Python "
                          "the cluster's nodes run")
    target = work_dir / env["id"]
    if not (target / ".complete").exists():
        uv = _uv()
        venv.EnvBuilder(clear=True, with_pip=uv is None).create(target)
        python = str(target / "bin" / "python")
        # uv installs the same pins as pip, several times faster; both compile the bytecode
        # (executors then never compile what they import).
        install = ([uv, "pip", "install", "-q", "--compile-bytecode", "--python", python] if uv else
                   [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"])
        reqs = work_dir / f"{env['id']}.requirements.txt"
        reqs.write_text("\n".join(requirements(env)) + "\n")
        # Built from a copy of its sources: a build leaves build/ and *.egg-info beside them.
        source = work_dir / f"{env['id']}.source"
        shutil.rmtree(source, ignore_errors=True)
        shutil.copytree(PROJECT_ROOT / "sparkml_platform", source / "sparkml_platform",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(PROJECT_ROOT / name, source / name)
        for what, args in (("the pinned packages", ["-r", str(reqs)]), ("the platform", [str(source)])):
            result = subprocess.run(install + ["--no-deps", *args], capture_output=True, text=True)
            if result.returncode != 0:
                raise JobFailed(f"building environment {env['id']} failed installing {what} "
                                f"({'uv' if uv else 'pip'}): {result.stderr[-2000:]}")
        shutil.rmtree(source, ignore_errors=True)
        (target / METADATA).write_text(json.dumps(_metadata(env), indent=2))
        (target / ".complete").touch()
    output.parent.mkdir(parents=True, exist_ok=True)
    venv_pack.pack(prefix=str(target), output=str(output), force=True, compress_level=1,
                   filters=[("exclude", pattern) for pattern in EXCLUDED])
    return output


def _uv() -> str | None:
    """uv, when it is installed beside this Python (as `make setup` does) or on the PATH."""
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else shutil.which("uv")


def archive_metadata(archive: Path) -> dict:
    """The metadata a packed archive carries (ConfigError when it has none)."""
    try:
        with tarfile.open(archive) as tar:
            return json.load(tar.extractfile(METADATA))
    except (OSError, KeyError, tarfile.TarError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{archive} is not an environment packed by `sparkml env pack` "
                          f"(no readable {METADATA}: {exc})") from None


def conda_file(env: dict) -> str:
    """A conda environment: the interpreter and JDK from conda-forge, every package by pip."""
    import yaml

    java_major = (env.get("java") or "17").split(".")[0]
    body = {
        "name": f"sparkml-{env['id']}",
        "channels": ["conda-forge"],
        "dependencies": [f"python={env['python']}", f"openjdk={java_major}", "pip",
                         {"pip": requirements(env)}],
    }
    return f"# environment {env['id']}, written by `sparkml env pack`\n" + yaml.safe_dump(body, sort_keys=False)


def dockerfile(env: dict) -> str:
    """A multi-stage Dockerfile whose build context is the directory `build` writes it to."""
    java_major = (env.get("java") or "17").split(".")[0]
    return f"""# syntax=docker/dockerfile:1
# Environment {env['id']} (Python {env['python']}, Spark {env.get('spark')}, Java {env.get('java')},
# Delta {env.get('delta')}), written by `sparkml env pack`. This directory is the context:
#   docker build --target training -t sparkml-training:{env['id']} DIR
# Targets: development (tests, notebooks), training (sparkml, spark-submit.sh), scoring (online).
FROM python:{env['python']}-slim-bookworm AS base
RUN apt-get update \\
 && apt-get install -y --no-install-recommends openjdk-{java_major}-jre-headless procps \\
 && rm -rf /var/lib/apt/lists/*
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 SPARKML_JARS_DIR=/opt/sparkml/jars
WORKDIR /opt/sparkml
# Exactly the captured versions, nothing resolved anew.
COPY requirements.txt /opt/sparkml/requirements.txt
RUN pip install --no-deps -r /opt/sparkml/requirements.txt
COPY project /opt/sparkml
RUN pip install --no-deps /opt/sparkml
LABEL org.opencontainers.image.title="sparkml-platform" sparkml.environment_id="{env['id']}"

FROM base AS development
CMD ["bash"]

FROM base AS training
ENTRYPOINT ["sparkml", "--conf", "/opt/sparkml/conf"]
CMD ["--help"]

FROM base AS scoring
# Online scoring: sparkml serve answers POST /predict, looking features up in the online store.
# Give the model (SPARKML_SERVE_MODEL=NAME@ALIAS), the store (SPARKML_ONLINE_STORE=redis://HOST:6379/0)
# and the registry (SPARKML_MLFLOW_TRACKING_URI) when the container starts.
ENV SPARKML_ONLINE_STORE="" SPARKML_SERVE_MODEL=""
EXPOSE 8080
ENTRYPOINT ["sparkml", "--conf", "/opt/sparkml/conf", "serve", "--host", "0.0.0.0", "--port", "8080"]
"""
