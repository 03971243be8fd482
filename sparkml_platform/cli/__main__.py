"""`python -m sparkml_platform.cli`: the `sparkml` command."""

import sys

from . import main

sys.exit(main())
