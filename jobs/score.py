"""spark-submit entry point: Batch-score entity rows (MODEL --input T --output T [--run-date D]).

Thin on purpose: it runs the same code as `sparkml score`, with the same exit codes.
"""

import sys

from sparkml_platform.cli import main

if __name__ == "__main__":
    sys.exit(main(['score', *sys.argv[1:]]))
