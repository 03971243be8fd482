"""Configuration: the schema (schema.py), the loader (loader.py) and the names it may use
(vocabulary.py). Plain data: no services, no I/O beyond reading the YAML."""

from .loader import Config, load_config  # noqa: F401
from .schema import *  # noqa: F401,F403
from .schema import (DURATION, FEATURE_REF, FILES, NAME, SCHEDULED_JOBS, TABLE_REF,  # noqa: F401
                     parse_duration, parse_instant, redact_uri, split_version, versioned)
