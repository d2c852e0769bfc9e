"""The package's shape: no import cycle (lazy imports inside functions included), no module
hidden behind a function of the same name, one version."""

import ast
import importlib
import importlib.metadata
from pathlib import Path

import cifarlab

PACKAGE = Path(cifarlab.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    """Whether cifarlab.X.Y names a module (a file or a package folder) of the package."""
    path = PACKAGE.joinpath(*name.split(".")[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def type_checking_lines(tree: ast.AST) -> set[int]:
    """Lines inside `if TYPE_CHECKING:` blocks: imports for annotations only."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, child.end_lineno + 1))
    return lines


def imports_of(path: Path) -> set[str]:
    """The cifarlab modules a file imports, anywhere in it."""
    tree = ast.parse(path.read_text())
    skip = type_checking_lines(tree)
    found = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "cifarlab")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "cifarlab":
            for a in node.names:  # `from cifarlab import plots` imports a module
                sub = f"{node.module}.{a.name}"
                found.add(sub if is_module(sub) else node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = "open", stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node], _ = "done", stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "cifarlab.trainer" in graph and "cifarlab.runs" in graph["cifarlab.trainer"]
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_is_hidden_behind_a_public_function():
    for name in cifarlab.__all__:
        assert not is_module(f"cifarlab.{name}"), f"cifarlab.{name} is both a module and a name"
    for name in ("training", "evaluation", "inference"):
        assert importlib.import_module(f"cifarlab.{name}").__name__ == f"cifarlab.{name}"


def test_the_version_comes_from_the_package_metadata():
    assert cifarlab.__version__ == importlib.metadata.version("cifarlab")
    assert "__version__ =" not in (PACKAGE / "__init__.py").read_text()
