"""The surgery core's shape: imports point one way, no private name crosses a package, no
function is longer than a screen, and the core and the RL side never import each other (both may
import the shared file and process helpers, which import no jsurgery module)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jsurgery"
RL_SIDE = ("rl", "envs", "data")
ABOVE_BOTH = ("experiments", "commands", "cli", "__main__")
SHARED = ("atomic", "integrity", "stopping")
MAX_LINES = 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _side(name: str) -> str:
    top = name.split(".")[1] if "." in name else ""
    if top in SHARED:
        return "shared"
    return "rl" if top in RL_SIDE else "above" if top in ABOVE_BOTH else "core"


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
CORE = {n: p for n, p in MODULES.items() if _side(n) == "core"}


def _imports(path: Path) -> list[tuple[str, str]]:
    """`(module, name)` for every import of a jsurgery module anywhere in the file (function-level
    imports included: a lazy import is still an edge); `name` is "" for `import x`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jsurgery"):
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, "") for a in node.names if a.name.startswith("jsurgery")]
    return found


def _edges(name: str) -> set[str]:
    out = set()
    for module, imported in _imports(MODULES[name]):
        target = f"{module}.{imported}" if f"{module}.{imported}" in MODULES else module
        if target in MODULES and target != name:
            out.add(target)
    return out


def _cycle(graph: dict) -> list | None:
    state: dict = {}
    stack: list = []

    def visit(u):
        state[u] = "open"
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == "open":
                return stack[stack.index(v) :] + [v]
            if v not in state and (found := visit(v)):
                return found
        stack.pop()
        state[u] = "done"
        return None

    for u in sorted(graph):
        if u not in state and (found := visit(u)):
            return found
    return None


def test_the_core_has_no_import_circle():
    graph = {n: {d for d in _edges(n) if d in CORE and d != "jsurgery"} for n in CORE}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def _package(name: str) -> str:
    return name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]


def test_no_private_name_is_imported_from_another_package():
    crossing = [
        f"{name} imports {imported} from {module}"
        for name, path in CORE.items()
        for module, imported in _imports(path)
        if imported.startswith("_") and module in MODULES and _package(module) != _package(name)
    ]
    assert not crossing, crossing


@pytest.mark.parametrize("side,other", [("core", "rl"), ("rl", "core")])
def test_the_core_and_the_rl_side_never_import_each_other(side, other):
    crossing = [
        f"{name} imports {target}"
        for name in MODULES
        if _side(name) == side
        for target in _edges(name)
        if _side(target) == other and target != "jsurgery"
    ]
    assert not crossing, crossing


def test_the_shared_helpers_import_no_jsurgery_module():
    shared = [name for name in MODULES if _side(name) == "shared"]
    assert shared == [f"jsurgery.{top}" for top in sorted(SHARED)]
    assert not [(name, target) for name in shared for target in _edges(name)]


def _body_lines(node) -> int:
    """Lines of a function from its first statement after the docstring to its end."""
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:] or body
    return node.end_lineno - body[0].lineno + 1


def test_no_core_function_is_longer_than_a_screen():
    long = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({_body_lines(node)} lines)"
        for path in CORE.values()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and _body_lines(node) > MAX_LINES
    ]
    assert not long, long
