"""Dependencies run one way: routers -> services -> database, ml -> services; no cycles."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "database", "services", "routers", "ml")


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).glob("*.py"):
            module = f"{package}.{path.stem}" if path.stem != "__init__" else package
            names = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    names.add(node.module)
                    names.update(f"{node.module}.{a.name}" for a in node.names)
                elif isinstance(node, ast.Import):
                    names.update(a.name for a in node.names)
            graph[module] = {n for n in names if n.split(".")[0] in PACKAGES}
    return graph


def test_lower_layers_never_import_higher_ones():
    forbidden = {
        "config": ("database", "services", "routers", "ml"),
        "database": ("services", "routers", "ml"),
        "services": ("routers", "ml"),
        "ml": ("routers",),
    }
    wrong = [
        (module, target)
        for module, targets in _imports().items()
        for target in targets
        if target.split(".")[0] in forbidden.get(module.split(".")[0], ())
    ]
    assert wrong == []


def test_no_import_cycles():
    graph = _imports()
    modules = set(graph)
    edges = {m: {t for t in targets if t in modules and t != m} for m, targets in graph.items()}
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                return [*path, module, target]
            if target not in state and (cycle := visit(target, [*path, module])):
                return cycle
        state[module] = 2
        return None

    for module in sorted(modules):
        if module not in state:
            assert visit(module, []) is None
