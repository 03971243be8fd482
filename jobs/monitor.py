"""spark-submit entry point: Monitor a model's predictions against their outcomes (MODEL --outcomes TABLE).

Thin on purpose: it runs the same code as `sparkml monitor`, with the same exit codes
(3 when a metric is below its floor, so a schedule can chain a re-training).
"""

import sys

from sparkml_platform.cli import main

if __name__ == "__main__":
    sys.exit(main(['monitor', *sys.argv[1:]]))
