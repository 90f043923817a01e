"""No import cycles among the project's modules, function-local imports counted (those under
``if TYPE_CHECKING:`` are not imports at run time). A cycle hidden behind a local import is still a cycle:
it decides which module must be imported first and breaks when someone hoists the import."""

import ast
from pathlib import Path

from conftest import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "src" / "bench_pipeline"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, modules: set[str]) -> set[str]:
    """The project modules ``tree`` imports: ``from a.b import c`` is ``a.b.c`` when that is a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            node.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                      for a in node.names}
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        targets = imported(ast.parse(path.read_text()), set(paths))
        graph[name] = {t for t in targets if t != name and not name.startswith(t + ".")}  # own packages: no cycle
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target] if target in path else [node, target]
            if target not in state and (cycle := visit(target, path + [target])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_the_project_has_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_check_sees_a_cycle_behind_a_function_local_import():
    a = ast.parse("def f():\n    from pkg.b import x\n")
    b = ast.parse("import pkg.a\n")
    modules = {"pkg.a", "pkg.b"}
    graph = {"pkg.a": imported(a, modules), "pkg.b": imported(b, modules)}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
