"""Configuration: typed, overlays, environment overrides, and errors that name file and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_help_imports_no_heavy_library():
    """`sparkml --help` stays fast because the CLI module imports neither Spark nor MLflow
    (its latency is measured in benchmarks/cli_help.py)."""
    exe = str(Path(sys.executable).parent / "sparkml")
    result = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "features" in result.stdout
    probe = subprocess.run([sys.executable, "-c", "import sys, sparkml_platform.cli; "
                            "print(sorted(m for m in ('pyspark', 'mlflow') if m in sys.modules))"],
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "[]"
