"""The framework's version (pyproject.toml's), read by the root package and recorded with runs."""

__version__ = "0.1.0"
