"""The tree is ruff clean, the pure layers import no I/O, and every layer imports only
downward with no import cycles (DESIGN.md's layering rules; the graph: import_graph.py)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import import_graph
import pytest

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


# -- layering (DESIGN.md: every layer imports only downward), from the import graph -------


def test_the_layering_holds() -> None:
    violations = import_graph.layering_violations()
    assert {rule: found for rule, found in violations.items() if found} == {}


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for package in import_graph.PACKAGES:
        (tmp_path / package).mkdir(parents=True, exist_ok=True)
        (tmp_path / package / "__init__.py").touch()
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text)
    return tmp_path


CLEAN = {
    "raftkv/node/node.py": "from raftkv.raft import core\nfrom wire import addr\n",
    "raftkv/server/port.py": "from raftkv.node import node\n",
    "raftkv/raft/core.py": "import heapq\n",
    "raftkv/backoff.py": "import random\n",
    "client/api.py": "from raftkv.backoff import Backoff\nfrom wire.addr import parse_addr\n",
    "wire/addr.py": "",
}
PLANTS = {  # one violation of each rule
    "raftkv.node imports raftkv.server": {
        "raftkv/node/node.py": "from raftkv.server.port import X\n"},
    "client/ imports the runtime": {"client/api.py": "from raftkv.node.node import Node\n"},
    "upward imports": {"raftkv/raft/core.py": "from raftkv.node import node\n"},
    "function-local imports in raftkv/": {
        "raftkv/backoff.py": "def f():\n    import random\n    return random\n"},
    "import cycles": {"wire/addr.py": "from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from raftkv.node.node import Node\n"},
}


def test_the_layering_checks_see_a_clean_tree_clean(tmp_path: Path) -> None:
    violations = import_graph.layering_violations(_tree(tmp_path, CLEAN))
    assert {rule: found for rule, found in violations.items() if found} == {}


@pytest.mark.parametrize("rule", sorted(PLANTS))
def test_each_layering_check_catches_its_violation(tmp_path: Path, rule: str) -> None:
    """Each rule fails on a planted violation (so the check on the real tree has teeth)."""
    violations = import_graph.layering_violations(_tree(tmp_path, {**CLEAN, **PLANTS[rule]}))
    assert violations[rule], violations


def test_test_modules_import_the_way_bare_pytest_does() -> None:
    """CI runs bare ``pytest``: test files are imported by basename (rootdir-relative
    ``tests.`` imports fail there), so basenames must be unique across tests/ and helpers
    are imported by basename (two collection errors in a fresh-clone run, caught late)."""
    tests = Path(__file__).parent
    names = [p.name for p in tests.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
    offenders = [str(p.relative_to(tests)) for p in tests.rglob("*.py")
                 if re.search(r"^\s*(from|import) tests[. ]", p.read_text(), re.M)]
    assert offenders == []
