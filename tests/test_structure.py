"""The package's shape: no import cycles between ppo2's modules (counting imports inside functions too)."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "ppo2"


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in PKG.glob("*.py"):
        name = path.stem
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module:
                    deps.add(node.module.split(".")[0])
                elif node.level == 1:  # from . import x: the module x, or a name from the package's __init__
                    deps.update(a.name if (PKG / f"{a.name}.py").exists() else "__init__" for a in node.names)
                elif node.module and node.module.startswith("ppo2."):
                    deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[1] for a in node.names if a.name.startswith("ppo2."))
        graph[name] = {d for d in deps if (PKG / f"{d}.py").exists() and d != name}
    return graph


def test_no_import_cycles():
    graph = import_graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert {"trainer", "collector", "update", "outputs", "fused", "model", "hf_hub", "torch_hub"} <= set(graph)
    assert "model" not in graph["hf_hub"] and "trainer" not in graph["fused"]
