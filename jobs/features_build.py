"""spark-submit entry point: Build a feature table (NAME [--start D --end D]).

Thin on purpose: it runs the same code as `sparkml features build`, with the same exit codes.
"""

import sys

from sparkml_platform.cli import main

if __name__ == "__main__":
    sys.exit(main(['features', 'build', *sys.argv[1:]]))
