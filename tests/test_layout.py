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


def test_the_brief_s_modules_are_where_it_names_them_and_nothing_imports_the_command_line():
    # The brief names utils/models.py, utils/training.py and utils/metrics.py as the shared modules; the command line
    # utils/train.py beside training.py is an entry point only.
    graph = _imports_within_utils()
    assert {"models", "training", "metrics"} <= set(graph)
    assert "TrainConfig" in (REPO / "utils/training.py").read_text() and "def fit(" in (REPO / "utils/training.py").read_text()
    assert not [module for module, imported in graph.items() if "train" in imported]


def test_the_readme_layout_names_every_module():
    readme = (REPO / "README.md").read_text()
    missing = [p.name for p in sorted((REPO / "utils").glob("*.py")) if p.name != "__init__.py"
               and f"utils/{p.name}" not in readme and f"`{p.name}`" not in readme]
    assert not missing, f"README's layout does not name {missing}"


def test_the_profile_is_read_from_the_environment_only_at_entry_points():
    """``get_profile`` with a variable or no argument (which falls back to $PROFILE) is called from ``main`` only
    (and from ``as_profile``, which refuses None first); everything below receives the ``Profile`` object."""
    offenders = []
    for path in sorted((REPO / "utils").glob("*.py")):
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.FunctionDef) or function.name in ("main", "as_profile"):
                continue
            for call in ast.walk(function):
                if (isinstance(call, ast.Call) and getattr(call.func, "id", getattr(call.func, "attr", None)) == "get_profile"
                        and not (call.args and isinstance(call.args[0], ast.Constant))):
                    offenders.append(f"{path.name}:{call.lineno} in {function.name}")
    assert not offenders, offenders


def test_notebooks_only_show_what_the_library_summarised():
    """No notebook code cell writes a file of results or builds a summary itself: utils.summaries does."""
    import json
    writers = ("write_json", "write_text", "write_result", "json.dump", "study_summary", "open(", "savez")
    found = []
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "code":
                found += [f"{path.name}: {w}" for w in writers if w in source]
    assert not found, found
