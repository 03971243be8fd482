"""spark-submit entry point: Rebuild inputs and retrain a model (MODEL).

Thin on purpose: it runs the same code as `sparkml retrain`, with the same exit codes.
"""

import sys

from sparkml_platform.cli import main

if __name__ == "__main__":
    sys.exit(main(['retrain', *sys.argv[1:]]))
