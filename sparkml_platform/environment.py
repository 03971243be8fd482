"""The environment a job runs in, captured as metadata with a content-hash id."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import sys
from pathlib import Path

from .errors import NotFoundError

KEY_PACKAGES = ("pyspark", "delta-spark", "mlflow", "scikit-learn", "pandas", "numpy", "pyarrow")


def capture(spark=None) -> dict:
    """Python, every installed package, platform and (given a session) Spark/Java/Scala."""
    packages = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name:
            packages[name] = dist.version
    env = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": f"{sys.platform}-{platform.machine()}",
        "packages": dict(sorted(packages.items())),
    }
    if spark is not None:
        jvm = spark.sparkContext._jvm
        env["spark"] = spark.version
        env["java"] = jvm.java.lang.System.getProperty("java.version")
        env["scala"] = jvm.scala.util.Properties.versionNumberString()
        from .delta_jars import DELTA_VERSION

        env["delta"] = DELTA_VERSION
    env["id"] = environment_id(env)
    return env


def environment_id(env: dict) -> str:
    body = {k: v for k, v in env.items() if k != "id"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def save(env: dict, store: Path) -> Path:
    store.mkdir(parents=True, exist_ok=True)
    path = store / f"{env['id']}.json"
    if not path.exists():
        path.write_text(json.dumps(env, indent=2, sort_keys=True))
    return path


def load(store: Path, ref: str) -> dict:
    path = store / f"{ref}.json"
    if not path.exists():
        known = sorted(p.stem for p in store.glob("*.json")) if store.is_dir() else []
        raise NotFoundError(f"no environment {ref!r} in {store} (known: {', '.join(known) or 'none'})")
    return json.loads(path.read_text())


def diff(a: dict, b: dict) -> dict:
    pa, pb = a.get("packages", {}), b.get("packages", {})
    out = {
        "added": {k: pb[k] for k in sorted(set(pb) - set(pa))},
        "removed": {k: pa[k] for k in sorted(set(pa) - set(pb))},
        "changed": {k: [pa[k], pb[k]] for k in sorted(set(pa) & set(pb)) if pa[k] != pb[k]},
    }
    for key in ("python", "spark", "java", "scala", "delta", "platform"):
        if a.get(key) != b.get(key):
            out["changed"][key] = [a.get(key), b.get(key)]
    return out


# Never pinned into a built environment: the installer itself, and the project (installed
# from its source tree so the archive carries the code that is checked out).
NOT_PINNED = {"pip", "setuptools", "wheel", "sparkml-platform"}


def requirements(env: dict) -> list[str]:
    return [f"{name}=={version}" for name, version in env["packages"].items()
            if name not in NOT_PINNED]


def pack(env: dict, work_dir: Path, output: Path) -> dict:
    """Build a virtual environment from captured metadata and pack it with venv-pack.

    The running venv holds the project as an editable install, which venv-pack refuses and
    executors could not use; a fresh venv with exact pins and a normal install can be shipped.
    """
    import subprocess
    import venv

    import venv_pack

    if platform.python_version() != env["python"]:
        from .errors import ConfigError

        raise ConfigError(f"environment {env['id']} needs Python {env['python']}, this is "
                          f"{platform.python_version()}: run env pack with that Python")
    project_root = Path(__file__).resolve().parent.parent
    target = work_dir / env["id"]
    if not (target / ".complete").exists():
        venv.EnvBuilder(clear=True, with_pip=True).create(target)
        pip = [str(target / "bin" / "python"), "-m", "pip", "install", "-q"]
        reqs = work_dir / f"{env['id']}.requirements.txt"
        reqs.write_text("\n".join(requirements(env)) + "\n")
        for cmd in (pip + ["-r", str(reqs)], pip + ["--no-deps", str(project_root)]):
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                from .errors import JobFailed

                raise JobFailed(f"building environment {env['id']} failed: {result.stderr[-2000:]}")
        (target / ".complete").touch()
    output.parent.mkdir(parents=True, exist_ok=True)
    venv_pack.pack(prefix=str(target), output=str(output), force=True)
    return {"environment_id": env["id"], "archive": str(output), "python": env["python"]}


def compatibility(recorded: dict, running: dict) -> list[str]:
    """How the running environment differs from a model's, in what matters for its predictions:
    the Python minor version and the key packages (empty: compatible)."""
    def minor(version: str) -> str:
        return ".".join(version.split(".")[:2])

    problems = []
    if minor(recorded["python"]) != minor(running["python"]):
        problems.append(f"Python {running['python']} here, the model was trained on {recorded['python']}")
    for package in KEY_PACKAGES:
        want = recorded.get("packages", {}).get(package)
        have = running.get("packages", {}).get(package)
        if want and have != want:
            problems.append(f"{package} {have or 'missing'} here, the model was trained with {want}")
    return problems
