"""The package's shape: stages along the data path, each importing only earlier ones (lazy
imports inside functions included) and never in a cycle; no module hidden behind a function of
the same name; the run folder's file names in one place; modules and functions short enough to
read; one version."""

import ast
import importlib
import importlib.metadata
from pathlib import Path

import cifarlab

PACKAGE = Path(cifarlab.__file__).parent
# Stages in import order: a module may import its own stage and earlier ones only. The
# top-level modules are the foundation every stage may use.
STAGES = ["foundation", "data", "models", "runs", "training", "inference", "reporting",
          "jobs", "cli"]
TOP = {"cifarlab", "cifarlab.__main__"}  # the public API and the entry point: above all
# A run folder's and a study folder's files, named only by their owners.
RUN_FILES = ("config.json", "metrics.json", "metrics.csv", "train.log", "best.pt", "last.pt",
             "state.json", "report.html", "tune.json", "study.db", "model.onnx",
             "model.torchscript.pt", "lock", "tensorboard", "trial-", "cifarlab-run.json",
             "audit.json", "audit.html", "fold-")
OWNERS = {PACKAGE / "runs" / "folder.py", PACKAGE / "runs" / "study.py",
          PACKAGE / "runs" / "package.py",  # a model package names its own config.json
          PACKAGE / "runs" / "audit_folder.py"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 2 and (PACKAGE / f"{parts[1]}.py").is_file():
        return 0
    return STAGES.index(parts[1])


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
    assert "cifarlab.runs" in graph["cifarlab.training.trainer"]
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_a_later_stage():
    graph = import_graph()
    assert {n.split(".")[1] for n in graph if n not in TOP and stage(n)} == set(STAGES[1:])
    later = [f"{module} -> {target}" for module, targets in sorted(graph.items())
             if module not in TOP for target in sorted(targets)
             if target not in TOP and stage(target) > stage(module)]
    assert not later, "imports of a later stage: " + "; ".join(later)


def test_the_stage_test_sees_a_later_import():
    assert stage("cifarlab.training.trainer") > stage("cifarlab.runs.folder")
    assert stage("cifarlab.errors") == 0 and stage("cifarlab.cli") == len(STAGES) - 1


def test_no_module_is_hidden_behind_a_public_function():
    for package in ["cifarlab", *(f"cifarlab.{s}" for s in STAGES[1:])]:
        module = importlib.import_module(package)
        for name in getattr(module, "__all__", []):
            assert not is_module(f"{package}.{name}"), f"{package}.{name}: a module and a name"
    for name in ("jobs.training_run", "inference.evaluation", "inference.loading"):
        assert importlib.import_module(f"cifarlab.{name}").__name__ == f"cifarlab.{name}"


def string_constants(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string literal in a file but its docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def names_a_run_file(text: str) -> bool:
    """A literal that is (or ends a path in) one of the run folder's files."""
    last = text.rsplit("/", 1)[-1]
    return last in RUN_FILES or any(last.startswith(n) and n.endswith("-") for n in RUN_FILES)


def test_only_the_run_folder_names_its_files():
    found = [f"{p.relative_to(PACKAGE)}:{line}: {text!r}"
             for p in sorted(PACKAGE.rglob("*.py")) if p not in OWNERS
             for line, text in string_constants(p) if names_a_run_file(text)]
    assert not found, "run-folder file names outside runs/folder.py and runs/study.py: " + \
        "; ".join(found)
    assert names_a_run_file("best.pt") and names_a_run_file("/metrics.csv")
    assert names_a_run_file("trial-") and not names_a_run_file("saved in best.pt and more")


SCREEN = 50  # lines of code a function may take: one screen, read without scrolling


def code_lines(node: ast.AST) -> int:
    """A function's lines without its docstring (prose, not code to follow)."""
    length = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
            and isinstance(first.value.value, str):
        length -= first.end_lineno - first.lineno + 1
    return length


def packed(node: ast.AST) -> bool:
    """`a, b = x, y` where one line each would do: no value reads an earlier target (a swap
    or a recurrence needs the tuple)."""
    if not (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Tuple)
            and isinstance(node.value, ast.Tuple)):
        return False
    targets = [ast.unparse(t) for t in node.targets[0].elts]
    for i, value in enumerate(node.value.elts):
        read = {ast.unparse(n) for n in ast.walk(value)
                if isinstance(n, (ast.Name, ast.Attribute, ast.Subscript))}
        if any(r == t or r.startswith((t + ".", t + "[")) for r in read for t in targets[:i]):
            return False
    return True


def test_modules_and_functions_are_short_enough_to_read():
    """Modules of at most 400 lines; functions of at most a screen of code, reached without
    packing (several independent values assigned on one line to save lines)."""
    for p in PACKAGE.rglob("*.py"):
        text = p.read_text()
        where = p.relative_to(PACKAGE)
        assert len(text.splitlines()) <= 400, f"{where} is over 400 lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert code_lines(node) <= SCREEN, f"{where}: {node.name} needs scrolling"
            assert not packed(node), f"{where}:{getattr(node, 'lineno', 0)}: one line each"


def test_packing_is_told_from_a_tuple_that_is_needed():
    def first(code: str) -> ast.AST:
        return ast.parse(code).body[0]

    assert packed(first("a, b = x, y")) and packed(first("self.a, self.b = a, b"))
    assert not packed(first("a, b = b, a")) and not packed(first("a, b = b, a + b"))
    assert not packed(first("x, y = f()")) and not packed(first("a = 1"))
    assert code_lines(first("def f():\n    \"\"\"Doc\n    more.\"\"\"\n    return 1")) == 2


def test_the_version_comes_from_the_package_metadata():
    assert cifarlab.__version__ == importlib.metadata.version("cifarlab")
    assert "__version__ =" not in (PACKAGE / "__init__.py").read_text()
