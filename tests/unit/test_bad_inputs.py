"""The bad-input corpus (tests/support/bad_inputs/): each hostile or broken input exits with its
documented code and message, writing nothing.

A case's folder holds an overlay (conf/test/) on a copy of the reference configuration.
`steps` are commands run first (each must succeed); `lake: true` runs the case on a copy of
the slice project instead (its lake and MLflow store built), after `damage` to its lake.
"""

from __future__ import annotations

from pathlib import Path

import yaml

CORPUS = Path(__file__).resolve().parents[1] / "support" / "bad_inputs"

CASES = yaml.safe_load((CORPUS / "cases.yml").read_text())


def test_every_case_folder_is_listed():
    assert {p.name for p in CORPUS.iterdir() if p.is_dir()} <= set(CASES)
