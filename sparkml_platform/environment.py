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
