"""The layer rule of lessons/00_reading_this_repo.md, checked on the actual import graph of
`nanogan/` (parsed with ast, nothing imported): imports point from the entry points down to the
training loop, the registry, the model files and the library, never back up; the loop reaches a
model file only through the registry; no cycles; the library never imports accelerate, typer or
rich (prepare.py's command line imports them inside its `main` only)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "nanogan"
LOOP = {"trainer"}  # train.py's loop: speaks to a model through the registry
REGISTRY = {"models", "sampling", "loading"}  # what the entry points speak to
MODEL_FILES = {"progan", "biggan", "stylegan2"}
RANK = {"loop": 3, "registry": 2, "model": 1, "library": 0}  # imports go to an equal or lower rank
CLI_LIBRARIES = {"accelerate", "typer", "rich"}
LAZY_CLI = {("prepare", "main")}  # (module, function) allowed to import them inside the function


def layer(module: str) -> str:
    return ("loop" if module in LOOP else "registry" if module in REGISTRY
            else "model" if module in MODEL_FILES else "library")


def imports(path: Path) -> list[tuple[str, int, str | None]]:
    """(imported top-level name or nanogan module, line, enclosing top-level function or None)."""
    tree, out = ast.parse(path.read_text()), []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = function
            if function is None and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner = child.name
            if isinstance(child, ast.Import):
                out.extend((alias.name, child.lineno, inner) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                if child.module == "nanogan":  # from nanogan import a, b
                    out.extend((f"nanogan.{a.name}", child.lineno, inner) for a in child.names)
                else:
                    out.append((child.module, child.lineno, inner))
            visit(child, inner)

    visit(tree, None)
    return out


def graph() -> dict[str, set[str]]:
    edges = {}
    for path in sorted(PACKAGE.glob("*.py")):
        edges[path.stem] = {name.split(".")[1] for name, _, _ in imports(path)
                            if name.startswith("nanogan.") and name.count(".") >= 1}
    return edges


def test_the_classification_covers_the_package():
    """Every module named in the rule exists (a renamed file must update the rule)."""
    stems = {p.stem for p in PACKAGE.glob("*.py")}
    assert LOOP | REGISTRY | MODEL_FILES <= stems


def test_no_import_points_up():
    """A library module never imports a model file, the registry or the loop; a model file never
    imports the registry or the loop; the registry never imports the loop."""
    wrong = [f"{a} ({layer(a)}) imports {b} ({layer(b)})" for a, deps in graph().items()
             for b in deps if RANK[layer(b)] > RANK[layer(a)]]
    assert not wrong, wrong


def past_the_registry(edges: dict[str, set[str]]) -> list[str]:
    """The imports of a model file by a module of the loop layer (it must go through the
    registry)."""
    return [f"{a} (loop) imports {b} (model)" for a, deps in sorted(edges.items())
            if layer(a) == "loop" for b in sorted(deps) if layer(b) == "model"]


def test_the_loop_speaks_to_a_model_only_through_the_registry():
    """No module of the loop layer imports a model file."""
    wrong = past_the_registry(graph())
    assert not wrong, wrong


def test_a_loop_importing_a_model_file_is_caught():
    """A loop module that imports a model file beside the registry is named."""
    edges = {"trainer": {"models", "progan", "runs"}, "models": {"progan"}}
    assert past_the_registry(edges) == ["trainer (loop) imports progan (model)"]


def test_no_cycles():
    """The import graph of nanogan/ is acyclic."""
    edges, state, cycles = graph(), {}, []

    def walk(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == "open":
                cycles.append(trail[trail.index(dep):] + [node, dep] if dep in trail
                              else [node, dep])
            elif dep not in state:
                walk(dep, trail + [node])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            walk(node, [])
    assert not cycles, cycles


def test_the_library_never_imports_the_command_line_libraries():
    """accelerate, typer and rich stay in train.py and sample.py (prepare.py's main aside)."""
    found = [f"{path.name}:{line} imports {name}" for path in sorted(PACKAGE.glob("*.py"))
             for name, line, function in imports(path)
             if name.split(".")[0] in CLI_LIBRARIES and (path.stem, function) not in LAZY_CLI]
    assert not found, found


@pytest.mark.parametrize("source, expected", [
    ("from nanogan import models\n", "models"),
    ("from nanogan.models import SPECS\n", "models"),
    ("import nanogan.models\n", "models"),
])
def test_the_parser_sees_every_import_form(tmp_path, source, expected):
    """The three ways to import a nanogan module are all edges of the graph."""
    path = tmp_path / "x.py"
    path.write_text(source)
    assert {n.split(".")[1] for n, _, _ in imports(path) if n.startswith("nanogan.")} == {expected}


def test_a_lazy_import_outside_the_allowed_function_is_caught(tmp_path):
    """An import of rich inside some other function is seen, with its enclosing function."""
    path = tmp_path / "x.py"
    path.write_text("def helper():\n    import rich\n")
    assert imports(path) == [("rich", 2, "helper")]


def test_every_module_has_its_test_file():
    """Every module in nanogan/ has a test file tests/test_<module>.py beside it."""
    tests = ROOT / "tests"
    missing = [p.name for p in sorted(PACKAGE.glob("*.py"))
               if p.stem != "__init__" and not (tests / f"test_{p.stem}.py").is_file()]
    assert not missing, missing
