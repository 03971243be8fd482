"""Configuration: the schema (schema.py), the loader (loader.py) and the names it may use
(vocabulary.py). Plain data: no services, no I/O beyond reading the YAML."""

from .loader import Config, load_config  # noqa: F401
from .schema import *  # noqa: F401,F403 (the models and parsers every layer reads)
