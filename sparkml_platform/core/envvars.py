"""Every environment variable the platform reads, declared once with its default.

Click options bind to these names with `envvar=`; config overrides read them in `config/loader.py`.
"""

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str | None
    help: str

    def get(self) -> str | None:
        value = os.environ.get(self.name)
        return value if value not in (None, "") else self.default


SPARKML_CONF = EnvVar("SPARKML_CONF", "conf", "configuration directory (holds base/ and overlays)")
SPARKML_ENV = EnvVar("SPARKML_ENV", None, "overlay conf/NAME/ on conf/base/")
SPARKML_LAKE_ROOT = EnvVar("SPARKML_LAKE_ROOT", None, "overrides platform.yml lake_root")
SPARKML_MLFLOW_TRACKING_URI = EnvVar(
    "SPARKML_MLFLOW_TRACKING_URI", None, "overrides platform.yml mlflow.tracking_uri"
)
SPARKML_MLFLOW_ARTIFACT_ROOT = EnvVar(
    "SPARKML_MLFLOW_ARTIFACT_ROOT", None, "overrides platform.yml mlflow.artifact_root"
)
SPARKML_SPARK_MASTER = EnvVar("SPARKML_SPARK_MASTER", None, "overrides platform.yml spark.master")
SPARKML_RUN_ID = EnvVar("SPARKML_RUN_ID", None,
                        "run id recorded with every commit (default: a new random id)")
SPARKML_CODE_VERSION = EnvVar("SPARKML_CODE_VERSION", None,
                              "the project's code version as base64 JSON (quotes do not survive "
                              "YARN's launch script), set by spark-submit.sh for a cluster-mode "
                              "driver, which runs far from the project's checkout")
SPARKML_JARS_DIR = EnvVar("SPARKML_JARS_DIR", None, "overrides platform.yml spark.jars_dir")
SPARKML_ONLINE_STORE = EnvVar("SPARKML_ONLINE_STORE", None,
                              "overrides platform.yml online_store.url (sqlite:///PATH or redis://HOST:PORT/DB)")

# Overrides applied on top of the merged YAML of platform.yml: (variable, key path).
PLATFORM_OVERRIDES = [
    (SPARKML_LAKE_ROOT, ("lake_root",)),
    (SPARKML_MLFLOW_TRACKING_URI, ("mlflow", "tracking_uri")),
    (SPARKML_MLFLOW_ARTIFACT_ROOT, ("mlflow", "artifact_root")),
    (SPARKML_SPARK_MASTER, ("spark", "master")),
    (SPARKML_JARS_DIR, ("spark", "jars_dir")),
    (SPARKML_ONLINE_STORE, ("online_store", "url")),
]
