"""The package's modules import one another without cycles, each only from its own floor or below.

Read from the source (no module is imported): every `import` or `from ... import` of a `tts_service`
module is an edge, inside functions too; the only imports allowed inside a function are the ones
named in DEFERRED, each with why.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "tts_service"

# Imports that run later on purpose: (importer, imported) -> why.
DEFERRED = {
    ("tts_service.routing", "tts_service.engines.dsm.engine"): "moshi is loaded only where a language is routed to DSM",
    ("tts_service.routing", "tts_service.engines.pocket.engine"): "pocket-tts is loaded only where it is routed to",
}

# The floors, from the bottom: a module imports from its own floor or a lower one, never from above.
# The first prefix that matches names a module's floor.
FLOORS = (
    ("tts_service.config", "tts_service.logs", "tts_service.heap", "tts_service.threads", "tts_service.metrics",
     "tts_service.durable",
     "tts_service.speech.refusals", "tts_service.text"),
    ("tts_service.engines", "tts_service.scheduler.realtime", "tts_service.audio"),
    ("tts_service.scheduler", "tts_service.routing", "tts_service.voices"),
    ("tts_service.speech",),
    ("tts_service.service", "tts_service.jobs"),
    ("tts_service.routes",),
    ("tts_service",),
)


def floor(module: str) -> int:
    for level, prefixes in enumerate(FLOORS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return level
    raise AssertionError(f"{module} is on no floor: add it to FLOORS")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level:
        base = module.split(".")
        if not is_package:
            base = base[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    names = [f"{target}.{alias.name}" for alias in node.names]
    return [target, *names]


def _imports(module: str, path: Path, node: ast.AST) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if isinstance(node, ast.ImportFrom):
        return set(resolve(module, path.name == "__init__.py", node))
    return set()


def import_graph(*, deferred: bool = False) -> dict[str, set[str]]:
    """Module -> the package modules it imports: at module level, or (deferred=True) inside functions."""
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        in_functions = {id(node) for function in ast.walk(tree)
                        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
                        for node in ast.walk(function)}
        edges: set[str] = set()
        for node in ast.walk(tree):
            if (id(node) in in_functions) == deferred:
                edges |= _imports(module, path, node)
        graph[module] = {edge for edge in edges if edge in files and edge != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            # A package's __init__ importing its own submodules is how packages are built, not a cycle.
            if node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_is_read():
    graph = import_graph()
    assert "tts_service.speech.session" in graph
    assert "tts_service.scheduler" in graph["tts_service.speech.session"]


def test_no_import_cycles():
    graph = import_graph()
    for module, edges in import_graph(deferred=True).items():
        graph[module] |= edges
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_imports_inside_functions_are_only_the_named_ones():
    found = {(module, edge) for module, edges in import_graph(deferred=True).items() for edge in edges}
    assert found <= set(DEFERRED), sorted(found - set(DEFERRED))


def test_a_function_level_import_is_read():
    assert ("tts_service.routing", "tts_service.engines.pocket.engine") in {
        (module, edge) for module, edges in import_graph(deferred=True).items() for edge in edges}


def test_no_module_imports_from_a_higher_floor():
    graph = import_graph()
    for module, edges in import_graph(deferred=True).items():
        graph[module] |= edges
    upward = sorted(f"{module} -> {edge}" for module, edges in graph.items() for edge in edges
                    if floor(edge) > floor(module) and not module.startswith(edge + "."))
    assert not upward, "\n".join(upward)


def test_a_cycle_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_core_and_the_engines_know_no_protocol():
    graph = import_graph()
    protocols = {name for name in graph if name.startswith("tts_service.routes")}
    assert "tts_service.routes.wyoming" in protocols and "tts_service.routes.errors" in protocols
    for module, edges in graph.items():
        if not module.startswith("tts_service.routes") and module != "tts_service":
            assert not edges & protocols, f"{module} imports {edges & protocols}"
