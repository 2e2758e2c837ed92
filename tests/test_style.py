"""The code base stays lint-clean and formatted (ruff settings in pyproject.toml)."""

import shutil
import subprocess

import pytest
from helpers import REPO_ROOT


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff_is_clean(command):
    ruff = shutil.which("ruff")
    assert ruff is not None, "ruff is a test dependency: pip install -e '.[test]'"
    result = subprocess.run([ruff, *command], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
