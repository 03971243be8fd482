"""spark-submit entry point: Load raw sources into the lake.

Thin on purpose: it runs the same code as `sparkml sources load`, with the same exit codes.
"""

import sys

from sparkml_platform.cli import main

if __name__ == "__main__":
    sys.exit(main(['sources', 'load', *sys.argv[1:]]))
