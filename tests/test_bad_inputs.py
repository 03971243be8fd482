"""The bad-input corpus (tests/bad_inputs/): each hostile or broken input, dropped as an
overlay (conf/test/) on a copy of the reference configuration, exits with its documented code
and message, writing nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from conftest import make_project
from sparkml_platform.cli import main

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
CASES = yaml.safe_load((CORPUS / "cases.yml").read_text())


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, tmp_path, capsys, spark):
    expected = CASES[case]
    conf = make_project(tmp_path)
    for path in sorted((CORPUS / case).iterdir()):
        shutil.copyfile(path, conf / "test" / path.name)
    code = main(["--conf", str(conf), "--env", "test", *expected["args"]])
    err = capsys.readouterr().err
    assert code == expected["exit"], err
    assert expected["message"] in err, err
    assert not (tmp_path / ".sparkml" / "lake").exists()  # nothing written


def test_every_case_folder_is_listed():
    assert {p.name for p in CORPUS.iterdir() if p.is_dir()} == set(CASES)
