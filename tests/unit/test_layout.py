"""The layout rules of docs/architecture.md, read from the source: no import cycles among the product's
modules, the product never imports ``bench``, agents do not import each other, and the command-line
modules do not import the Faust app. Static: every ``import`` statement of every module, in functions
too (imports under ``if TYPE_CHECKING:`` are types only and do not count)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("schemas", "encoders", "detection", "streams")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> set[str]:
    """Modules ``path`` imports anywhere (a function's import is a dependency too), relative ones
    resolved; never those under ``if TYPE_CHECKING:`` (types only)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for top in PRODUCT for p in (ROOT / top).rglob("*.py")}
    return {name: {m for m in _imports(path, name) if m in modules and m != name}
            for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_among_the_product_s_modules() -> None:
    assert _cycles(_graph()) == []


def test_the_product_never_imports_bench() -> None:
    offenders = {m: sorted(i for i in _imports(p, m) if i == "bench" or i.startswith("bench."))
                 for top in PRODUCT for p in (ROOT / top).rglob("*.py") for m in [_module(p)]}
    assert {m: i for m, i in offenders.items() if i} == {}


def test_agents_do_not_import_each_other_and_commands_do_not_import_the_faust_app() -> None:
    graph = _graph()
    agents = {m for m in graph if m.startswith("streams.worker.") and m.endswith("_agent")} - {
        "streams.worker.table_agent"}  # the base the table-backed agents share
    assert len(agents) >= 4  # alerts, entities, feedback, sessions (the events agent is the app's own)
    assert {a: sorted(graph[a] & agents) for a in agents if graph[a] & agents} == {}
    commands = {m for m in graph if m.startswith("streams.cli.") or m.startswith("streams.hunt.")}
    assert {c for c in commands if "streams.worker.faust_app" in graph[c]} <= {"streams.cli.main"}


def test_test_modules_have_unique_basenames() -> None:
    """pytest's default import mode puts each test folder on ``sys.path`` and imports a test file by its
    basename, so two files of one name in different folders stop the whole run at collection (a CI run
    was refused for exactly this)."""
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.name == "__init__.py" or path.name == "conftest.py":
            continue
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(ROOT)} and {path.relative_to(ROOT)}")
        seen.setdefault(path.name, path)
    assert not clashes, "test modules share a basename: " + "; ".join(clashes)
