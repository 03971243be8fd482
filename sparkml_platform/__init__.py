"""sparkml-platform: the life cycle of Spark ML models on Spark, Delta and MLflow.

    from sparkml_platform import Workspace, FeatureLookup

The tree is the architecture (docs/reference/layout.md): cli → api → orchestration → the
stages (features, trainsets, training, serving, insight) → modeling → runtime → tracking →
storage → config → core, each importing only below it (pyproject.toml `[tool.importlinter]`, checked by `make test`).
"""

from .core.version import __version__

__all__ = ["Workspace", "FeatureLookup", "TrainingSet", "__version__"]


def __getattr__(name: str):
    # Imported on first use: `sparkml --help` stays fast (no pydantic, no pyspark).
    if name in ("Workspace", "FeatureLookup", "TrainingSet"):
        from .api import workspace  # lazy: `import sparkml_platform` stays light

        return getattr(workspace, name)
    raise AttributeError(f"module 'sparkml_platform' has no attribute {name!r}")
