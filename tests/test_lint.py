"""``ruff check`` on src, tests and benchmarks (rules in pyproject.toml's ``[tool.ruff]``) is part of the suite."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed in this environment: pip install -e '.[test]' brings it")
    command = [sys.executable, "-m", "ruff", "check", "src", "tests", "benchmarks"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
