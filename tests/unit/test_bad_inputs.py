"""The bad-input corpus itself is whole: every case folder is listed in cases.yml (the cases
are run by integration/test_bad_inputs.py)."""

from __future__ import annotations

from support.corpus import CASES, CORPUS


def test_every_case_folder_is_listed():
    assert {p.name for p in CORPUS.iterdir() if p.is_dir()} <= set(CASES)
