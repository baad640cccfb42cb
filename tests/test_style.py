"""The tree is ruff clean and the pure layers import no I/O (DESIGN.md's layering rule)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PURE = [ROOT / "wire", ROOT / "raftkv" / "raft", ROOT / "raftkv" / "kv"]
IMPURE = re.compile(r"^\s*(import|from)\s+(trio|socket|asyncio|threading|time|os|random)\b", re.M)


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is part of the test extra"
    out = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_pure_layers_import_no_io() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for base in PURE
        for path in base.rglob("*.py")
        if IMPURE.search(path.read_text())
    ]
    assert offenders == []
