"""sparkml-platform: the life cycle of Spark ML models on Spark, Delta and MLflow.

    from sparkml_platform import Workspace, FeatureLookup
"""

__version__ = "0.1.0"
__all__ = ["Workspace", "FeatureLookup", "TrainingSet"]


def __getattr__(name: str):
    # Imported on first use: `sparkml --help` stays fast (no pydantic, no pyspark).
    if name in __all__:
        from . import workspace

        return getattr(workspace, name)
    raise AttributeError(f"module 'sparkml_platform' has no attribute {name!r}")
