"""sparkml-platform: the life cycle of Spark ML models on Spark, Delta and MLflow."""

__version__ = "0.1.0"
