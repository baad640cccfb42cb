"""The import graph of raftkv/, client/, chaos/ and wire/, computed from the source (ast).

Used by tests/test_style.py to enforce the layering (DESIGN.md: every layer imports only
downward, no import cycles, no function-local imports in raftkv/), and runnable on its own
to print the figures the architecture issue asks for, before and after a change::

    python tests/import_graph.py            # summary
    python tests/import_graph.py --verbose  # every cycle, upward import and local import

Every import statement is classified by where it sits: at module level (``top``), inside
``if TYPE_CHECKING:`` (``typing``: no runtime effect, but still a dependency a reader
follows), or inside a function (``local``: runs on first call, and hides a dependency).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("raftkv", "client", "chaos", "wire")

# The floors, lowest first. A module may import its own floor or a lower one; anything
# else is an upward import. The longest matching prefix decides a module's floor.
FLOORS: dict[str, int] = {
    "wire": 0,
    "raftkv": 0,  # the package itself: __version__ only
    "raftkv.raft": 1,
    "raftkv.kv": 1,
    "raftkv.storage": 2,
    # Neutral helpers: anything (the runtime, the tools, client/, chaos/) may use them.
    "raftkv.log": 3,
    "raftkv.probe": 3,
    "raftkv.backoff": 3,
    "raftkv.backup_file": 3,
    "raftkv.certs": 3,
    "raftkv.node": 4,
    "raftkv.metrics": 4,  # the runtime's Prometheus collectors
    "raftkv.server": 5,
    # Programs: the composition root and the command-line tools on top of everything.
    "raftkv.serve": 6,
    "raftkv.cli": 6,
    "raftkv.cli_types": 6,  # the CLI's parameter types (a cluster id: raftkv.node's rule)
    "raftkv.__main__": 6,
    "raftkv.backup": 6,
    "raftkv.config_file": 6,
    "raftkv.local_cluster": 6,
    "raftkv.local_tls": 6,
    "raftkv.local_secrets": 6,
    "raftkv.member_cli": 6,
    "raftkv.recover": 6,
    "raftkv.restore": 6,
    "raftkv.testing": 6,
    "client": 6,
    "chaos": 6,
}
# Packages beside the runtime rather than above it: they talk to nodes over sockets and
# must not reach into the runtime's insides (raftkv.node, raftkv.server).
OUTSIDERS = ("client", "chaos")
RUNTIME = ("raftkv.node", "raftkv.server")


@attrs.frozen
class Import:
    importer: str
    target: str
    kind: str  # "top", "typing" or "local"
    line: int

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} -> {self.target} ({self.kind})"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file, for every .py file of the packages."""
    return {module_name(p, root): p
            for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement with its kind (see the module docstring)."""
    def walk(node: ast.AST, kind: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, kind
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from walk(child, "local")
            elif isinstance(child, ast.If) and _is_type_checking(child.test) and kind == "top":
                for stmt in child.body:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), "typing")
                for stmt in child.orelse:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), "top")
            else:
                yield from walk(child, kind)
    yield from walk(tree, "top")


def _resolve(name: str, modules: Iterable[str]) -> str | None:
    """The module ``name`` means: itself, else its longest known prefix (an attribute of a
    package); None for the standard library and third-party packages."""
    known = set(modules)
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def imports(files: dict[str, Path] | None = None) -> list[Import]:
    """Every import between modules of the packages."""
    files = source_files() if files is None else files
    found: list[Import] = []
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for stmt, kind in _statements(tree):
            names: list[str] = []
            if isinstance(stmt, ast.Import):
                names = [alias.name for alias in stmt.names]
            else:
                base = stmt.module or ""
                if stmt.level:
                    anchor = package.split(".")[: len(package.split(".")) - stmt.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [f"{base}.{alias.name}" for alias in stmt.names]
            for name in names:
                target = _resolve(name, files)
                if target is not None and target != module:
                    found.append(Import(module, target, kind, stmt.lineno))
    return list(dict.fromkeys(found))  # ``from m import a, b``: one import of m


def floor(module: str) -> int | None:
    parts = module.split(".")
    while parts:
        rank = FLOORS.get(".".join(parts))
        if rank is not None:
            return rank
        parts.pop()
    return None


def _under(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def upward(found: list[Import]) -> list[Import]:
    """Imports that go up a floor, or from client/ or chaos/ into the runtime."""
    bad = []
    for imp in found:
        a, b = floor(imp.importer), floor(imp.target)
        if (a is not None and b is not None and b > a) or (
                _under(imp.importer, OUTSIDERS) and _under(imp.target, RUNTIME)):
            bad.append(imp)
    return bad


def cycles(found: list[Import], kinds: Iterable[str] = ("top", "local", "typing")
           ) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    wanted = set(kinds)
    graph: dict[str, set[str]] = {}
    for imp in found:
        if imp.kind in wanted:
            graph.setdefault(imp.importer, set()).add(imp.target)
            graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth is bounded by the module count
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def local_imports(found: list[Import], under: str = "raftkv") -> list[Import]:
    return [imp for imp in found if imp.kind == "local" and _under(imp.importer, [under])]


def typing_imports(found: list[Import], under: str = "raftkv") -> list[Import]:
    return [imp for imp in found if imp.kind == "typing" and _under(imp.importer, [under])]


def local_imports_any(path: Path) -> list[int]:
    """Lines of function-local import statements of any module (stdlib too)."""
    tree = ast.parse(path.read_text(), str(path))
    return [stmt.lineno for stmt, kind in _statements(tree) if kind == "local"]


def largest_files(files: dict[str, Path], n: int = 8) -> list[tuple[int, str]]:
    sizes = [(len(p.read_text().splitlines()), m) for m, p in files.items()]
    return sorted(sizes, reverse=True)[:n]


def largest_defs(files: dict[str, Path], n: int = 8, classes: bool = False
                 ) -> list[tuple[int, str]]:
    """The longest functions (or classes), in lines, with their qualified names."""
    kinds = (ast.ClassDef,) if classes else (ast.FunctionDef, ast.AsyncFunctionDef)
    sizes = []
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        stack: list[tuple[ast.AST, str]] = [(tree, module)]
        while stack:
            node, prefix = stack.pop()
            for child in ast.iter_child_nodes(node):
                name = getattr(child, "name", None)
                qual = f"{prefix}.{name}" if name else prefix
                if isinstance(child, kinds):
                    sizes.append((child.end_lineno - child.lineno + 1, qual))  # type: ignore[operator]
                stack.append((child, qual))
    return sorted(sizes, reverse=True)[:n]


# Known exceptions, each with its reason; the layering test fails on anything else.
ALLOWED_CYCLES: dict[tuple[str, ...], str] = {}
ALLOWED_UPWARD: dict[tuple[str, str], str] = {
    ("chaos.cluster", "raftkv.node.cluster_id"): "prepares data directories like `raftkv up`",
    ("chaos.cluster", "raftkv.node.peer_auth"): "writes the peer secret file like `raftkv up`",
}


def layering_violations(root: Path = ROOT) -> dict[str, list[str]]:
    """What DESIGN.md's layering forbids, found in the tree at ``root``: each rule with
    the imports (or cycles) that break it; empty lists when the tree is clean."""
    files = source_files(root)
    found = imports(files)
    return {
        "raftkv.node imports raftkv.server": [
            str(i) for i in found
            if _under(i.importer, ["raftkv.node"]) and _under(i.target, ["raftkv.server"])],
        "client/ imports the runtime": [
            str(i) for i in found
            if _under(i.importer, ["client"]) and _under(i.target, RUNTIME)],
        "upward imports": [
            str(i) for i in upward(found) if (i.importer, i.target) not in ALLOWED_UPWARD],
        "function-local imports in raftkv/": [
            f"{m}:{line}" for m, p in files.items() if _under(m, ["raftkv"])
            for line in local_imports_any(p)],
        "import cycles": [
            " <-> ".join(c) for c in cycles(found) if tuple(c) not in ALLOWED_CYCLES],
    }


def report(verbose: bool = False) -> str:
    files = source_files()
    found = imports(files)
    runtime_cycles = cycles(found, ("top", "local"))
    all_cycles = cycles(found)
    up = upward(found)
    local = local_imports(found)
    typing_ = typing_imports(found)
    local_any = sum(len(local_imports_any(p)) for m, p in files.items() if _under(m, ["raftkv"]))
    lines = [
        f"modules: {len(files)}, imports between them: {len(found)}",
        f"cycles (SCCs > 1, runtime imports): {len(runtime_cycles)} "
        f"{[len(c) for c in runtime_cycles]}",
        f"cycles (SCCs > 1, with TYPE_CHECKING imports): {len(all_cycles)} "
        f"{[len(c) for c in all_cycles]}",
        f"upward imports: {len(up)} ({sum(i.kind == 'typing' for i in up)} of them typing-only)",
        f"function-local imports in raftkv/: {len(local)} of package modules "
        f"({local_any} statements of any module)",
        f"TYPE_CHECKING imports in raftkv/: {len(typing_)}",
        "largest files: " + ", ".join(f"{m} {n}" for n, m in largest_files(files)),
        "largest functions: " + ", ".join(f"{m} {n}" for n, m in largest_defs(files)),
        "largest classes: " + ", ".join(f"{m} {n}" for n, m in largest_defs(files, classes=True)),
    ]
    if verbose:
        lines += ["", "cycles:"] + [f"  {' '.join(c)}" for c in all_cycles]
        lines += ["upward imports:"] + [f"  {i}" for i in up]
        lines += ["function-local imports:"] + [f"  {i}" for i in local]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(verbose="--verbose" in sys.argv[1:] or "-v" in sys.argv[1:]))
