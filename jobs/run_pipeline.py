"""spark-submit entry point: Run a pipeline declared in pipelines.yml (PIPELINE).

Thin on purpose: it runs the same code as `sparkml run`, with the same exit codes.
"""

import sys

from sparkml_platform.cli import main

if __name__ == "__main__":
    sys.exit(main(['run', *sys.argv[1:]]))
