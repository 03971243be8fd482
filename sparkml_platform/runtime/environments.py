"""The environment a job runs in, captured as metadata with a content-hash id."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from ..core.errors import NotFoundError
from ..storage.files import Location
from ..tracking import registry
from ..tracking.version_record import VersionRecord
from .delta_jars import DELTA_VERSION

KEY_PACKAGES = ("pyspark", "delta-spark", "mlflow", "scikit-learn", "pandas", "numpy", "pyarrow")


def capture(spark=None) -> dict:
    """Python, every installed package, platform, and the Spark, Java, Scala and Delta versions.

    The JVM side is read from the running session when there is one, else from the same
    sources Spark would use (pyspark's jars, `java` on JAVA_HOME or PATH), so that a capture
    with and without a session gives the same id.
    """
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
    else:
        env.update(_jvm_versions())
    env["delta"] = DELTA_VERSION
    env["id"] = environment_id(env)
    return env


def _jvm_versions() -> dict:
    """Spark, Java and Scala versions without starting a JVM session."""
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    scala = next((m.group(1) for p in jars.glob("scala-library-*.jar")
                  if (m := re.fullmatch(r"scala-library-(.+)\.jar", p.name))), None)
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else "java"
    try:  # the java.version property, as the JVM itself reports it
        out = subprocess.run([java, "-XshowSettings:properties", "-version"], capture_output=True,
                             text=True, timeout=30).stderr
        java_version = re.search(r"^\s*java\.version = (\S+)", out, re.M).group(1)
    except (OSError, subprocess.SubprocessError, AttributeError):
        java_version = None
    return {"spark": pyspark.__version__, "java": java_version, "scala": scala}


def environment_id(env: dict) -> str:
    body = {k: v for k, v in env.items() if k != "id"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def save(env: dict, store: Location) -> Location:
    """Keep the record under its content id, written once (the id is its content's hash)."""
    path = store / f"{env['id']}.json"
    if not path.exists():
        path.create(json.dumps(env, indent=2, sort_keys=True))
    return path


def load(store: Location, ref: str) -> dict:
    """A saved environment by id (NotFoundError listing the known ones)."""
    text = (store / f"{ref}.json").read_or_none()
    if text is None:
        known = [n[:-5] for n in store.names() if n.endswith(".json")]
        raise NotFoundError(f"no environment {ref!r} in {store} (known: {', '.join(known) or 'none'})")
    return json.loads(text)


def resolve(store, tracker, ref: str) -> dict:
    """REF as an environment: an environment id, a model (MODEL@ALIAS, MODEL/VERSION, MODEL)
    whose version records the id it was trained in, or an MLflow run (training or scoring)."""
    if re.fullmatch(r"[0-9a-f]{16}", ref):
        return load(store, ref)
    if re.fullmatch(r"[0-9a-f]{32}", ref):  # an MLflow run id
        from mlflow.exceptions import MlflowException

        try:
            run = tracker.client.get_run(ref)
        except MlflowException:
            raise NotFoundError(f"no environment, model or MLflow run {ref!r} "
                                f"(tracking URI {tracker.shown_uri})") from None
        env_id = run.data.tags.get("sparkml.environment_id")
        if not env_id:
            raise NotFoundError(f"MLflow run {ref} records no environment (no sparkml.environment_id tag)")
        return load(store, env_id)

    mv = registry.resolve(tracker, ref)
    env_id = VersionRecord.from_tags(mv.tags).environment_id
    if not env_id:
        raise NotFoundError(f"model {mv.name} version {mv.version} records no environment id")
    return load(store, env_id)


def diff(a: dict, b: dict) -> dict:
    """Packages added, removed and changed from `a` to `b`, plus Python, JVM and platform."""
    pa, pb = a.get("packages", {}), b.get("packages", {})
    out = {
        "added": {k: pb[k] for k in sorted(set(pb) - set(pa))},
        "removed": {k: pa[k] for k in sorted(set(pa) - set(pb))},
        "changed": {k: [pa[k], pb[k]] for k in sorted(set(pa) & set(pb)) if pa[k] != pb[k]},
    }
    for key in ("python", "spark", "java", "scala", "delta", "platform"):
        if a.get(key) != b.get(key):
            out["changed"][key] = [a.get(key), b.get(key)]
    out["identical"] = not (out["added"] or out["removed"] or out["changed"])
    return {"from": a.get("id"), "to": b.get("id"), **out}


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
