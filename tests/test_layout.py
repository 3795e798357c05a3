import ast
from pathlib import Path

from tests.conftest import REPO


def _imports_within_utils() -> dict[str, set[str]]:
    """Module -> the utils modules it imports (at the top or inside a function: both are edges)."""
    graph = {}
    for path in sorted((REPO / "utils").glob("*.py")):
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                edges |= {node.module} if node.module else {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("utils."):
                edges.add(node.module.split(".")[1])
        graph[path.stem] = edges - {path.stem}
    return graph


def test_the_utils_import_graph_has_no_cycle():
    graph = _imports_within_utils()
    assert graph["zoo"] and "models" not in graph["zoo"]  # the zoo registers into the registry, not into models
    done, on_path = set(), []

    def visit(module):
        assert module not in on_path, "import cycle: " + " -> ".join(on_path[on_path.index(module):] + [module])
        if module in done:
            return
        on_path.append(module)
        for imported in sorted(graph.get(module, ())):
            visit(imported)
        on_path.pop()
        done.add(module)

    for module in graph:
        visit(module)


def test_the_readme_layout_names_every_module():
    readme = (REPO / "README.md").read_text()
    missing = [p.name for p in sorted((REPO / "utils").glob("*.py")) if p.name != "__init__.py"
               and f"utils/{p.name}" not in readme and f"`{p.name}`" not in readme]
    assert not missing, f"README's layout does not name {missing}"
