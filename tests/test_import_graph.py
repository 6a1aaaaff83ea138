"""vidcap's modules import one another without cycles, and the leaf modules stand alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
# Modules every other floor builds on: they must not pull in the engines, the pipeline or the CLI.
LEAVES = ["vidcap.errors", "vidcap.generation", "vidcap.model.locate", "vidcap.video.types", "vidcap.config"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, modules: set[str], package: str) -> set[str]:
    """The vidcap modules a module imports when it runs: at the top and inside functions alike
    (a lazy import is still a dependency), but not under ``if TYPE_CHECKING:``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, `level - 1` floors up
                parts = package.split(".")
                base = ".".join(p for p in [*parts[: len(parts) - node.level + 1], base] if p)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if candidate in modules:
                    found.add(candidate)  # `from vidcap.video import plan`: the submodule
                elif base in modules:
                    found.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """Each vidcap module and the vidcap modules it imports."""
    files = {_module_name(p): p for p in SRC.joinpath("vidcap").rglob("*.py")}
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = _imports(ast.parse(path.read_text()), set(files), package) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_checker_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert "vidcap.config" in graph and "vidcap.engines.caption_engine" in graph  # the walk found the modules
    assert cycles(graph) == []


def test_leaf_modules_import_nothing_from_upper_floors() -> None:
    graph = import_graph()
    upper = ("vidcap.engines", "vidcap.pipeline", "vidcap.cli", "vidcap.io", "vidcap.serving")

    def reach(name: str, seen: set[str]) -> set[str]:
        for nxt in graph[name] - seen:
            seen.add(nxt)
            reach(nxt, seen)
        return seen

    for leaf in LEAVES:
        assert not [m for m in reach(leaf, set()) if m.startswith(upper)], leaf


@pytest.mark.parametrize("module", LEAVES)
def test_leaf_module_imports_alone(module: str) -> None:
    """In a fresh interpreter, importing a leaf loads no engine, pipeline or heavy library."""
    code = (
        f"import sys, {module}\n"
        "heavy = [m for m in ('torch', 'transformers', 'vllm', 'av', 'vidcap.engines', 'vidcap.pipeline') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == ""


def test_no_two_modules_share_a_name() -> None:
    """One module per name (``__init__`` aside): ``probe`` means one thing wherever it is read."""
    by_name: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        if path.stem != "__init__":
            by_name.setdefault(path.stem, []).append(str(path.relative_to(SRC)))
    assert {name: paths for name, paths in by_name.items() if len(paths) > 1} == {}


def test_every_vidcap_import_names_something_that_exists() -> None:
    """A lazy import inside a function fails only when it runs: after a module moves, every
    ``from vidcap.x import y`` (at the top or in a function) must still find ``x`` and ``y``."""
    import importlib

    missing = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module):
                continue
            if node.module != "vidcap" and not node.module.startswith("vidcap."):
                continue
            try:
                module = importlib.import_module(node.module)
            except ModuleNotFoundError:
                missing.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.module}")
                continue
            for alias in node.names:
                if hasattr(module, alias.name):
                    continue
                try:
                    importlib.import_module(f"{node.module}.{alias.name}")
                except ModuleNotFoundError:
                    missing.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.module}.{alias.name}")
    assert missing == []
