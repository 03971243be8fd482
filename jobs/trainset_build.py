"""spark-submit entry point: Build the next version of a training set (NAME).

Thin on purpose: it runs the same code as `sparkml trainset build`, with the same exit codes.
"""

import sys

from sparkml_platform.cli import main

if __name__ == "__main__":
    sys.exit(main(['trainset', 'build', *sys.argv[1:]]))
