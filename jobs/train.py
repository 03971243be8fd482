"""spark-submit entry point: Train, evaluate, register and gate a model (MODEL).

Thin on purpose: it runs the same code as `sparkml train`, with the same exit codes.
"""

import sys

from sparkml_platform.cli import main

if __name__ == "__main__":
    sys.exit(main(['train', *sys.argv[1:]]))
