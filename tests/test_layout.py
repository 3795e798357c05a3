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


def test_the_layout_page_names_every_module():
    layout = (REPO / "docs" / "layout.md").read_text()
    missing = [p.name for p in sorted((REPO / "utils").glob("*.py")) if p.name != "__init__.py"
               and f"utils/{p.name}" not in layout and f"`{p.name}`" not in layout]
    assert not missing, f"docs/layout.md does not name {missing}"


def test_the_readme_is_one_page_and_links_the_report_on_its_first_screen():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move detail to docs/"
    assert any("report/report.pdf" in line for line in lines[:15])
    for name in ("LICENSE", "CITATION.cff"):
        assert (REPO / name).is_file()


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


def test_a_notebook_runs_in_the_profile_it_is_committed_in_unless_profile_is_set(monkeypatch):
    # Issue #34: a laptop run of a full-profile notebook resolved the cpu profile and replaced the committed figures.
    from pathlib import Path
    from utils.profiles import get_profile, output_dir
    monkeypatch.delenv("PROFILE", raising=False)
    assert get_profile(committed="full").name == "full" and output_dir("figures", get_profile(committed="full")) == \
        Path("figures")
    monkeypatch.setenv("PROFILE", "cpu")
    elsewhere = get_profile(committed="full")
    assert elsewhere.name == "cpu" and output_dir("figures", elsewhere) == Path("build/cpu/figures")
    assert output_dir("figures", get_profile(committed="cpu")) == Path("figures")


def test_every_notebook_names_its_committed_profile_and_its_outputs_were_made_in_it():
    import nbformat
    from tests.conftest import REPO
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        committed = nb.metadata["medcnn"]["committed_profile"]
        first = next(c for c in nb.cells if c.cell_type == "code")
        assert f'COMMITTED_PROFILE = "{committed}"' in first.source, path.name
        printed = "".join(o.get("text", "") for o in first.outputs)
        assert f"profile: {committed} (the profile this notebook is committed in)" in printed, path.name
