"""Every console script exists and answers --help (the entry points are wired)."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("script", ["raftkv", "raftkv-cli", "raftkv-chaos"])
def test_console_script_help(script: str) -> None:
    bindir = __import__("pathlib").Path(sys.executable).parent
    out = subprocess.run([str(bindir / script), "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout
