"""The bad-input corpus (support/bad_inputs/): each case's exit code and message in cases.yml,
its configuration overlay in a folder of its name."""

from pathlib import Path

import yaml

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
CASES = yaml.safe_load((CORPUS / "cases.yml").read_text())
