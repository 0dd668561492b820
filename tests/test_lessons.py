"""Lessons cannot rot: their code is the modules' code, their sentences are the tests' docstrings,
and their examples run.

A lesson (`lessons/NN_topic.md`) uses three markers:

    <!-- include: nanogan/pixelnorm.py::pixel_norm -->      the next ```python block must be
                                                             exactly that symbol's source
    <!-- property: tests/test_pixelnorm.py::test_unit_rms --> the next "> ..." quote must be
                                                             exactly that test's docstring
    ```python                                                any other python block is run,
                                                             in order, in one namespace per lesson

Run `python tests/test_lessons.py --fix` to copy the current sources into the include blocks.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.md"))
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
MARKER = re.compile(r"<!--\s*(include|property):\s*(\S+?)::(\S+?)\s*-->")
LINK = re.compile(r"\]\(((?!https?:|#|mailto:)[^)#\s]+)")


def _symbol_node(path: Path, symbol: str) -> tuple[list[str], ast.AST]:
    lines = path.read_text().splitlines()
    body = ast.parse("\n".join(lines)).body
    node = None
    for part in symbol.split("."):
        node = next(
            (n for n in body if getattr(n, "name", None) == part
             or (isinstance(n, (ast.Assign, ast.AnnAssign)) and part in _targets(n))),
            None,
        )
        if node is None:
            raise LookupError(f"{path.relative_to(ROOT)} has no symbol {symbol!r}")
        body = getattr(node, "body", [])
    return lines, node


def _targets(node: ast.AST) -> list[str]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return [t.id for t in targets if isinstance(t, ast.Name)]


def symbol_source(path: Path, symbol: str) -> str:
    """Source lines of a top-level (or `Class.method`) symbol, decorators included, dedented."""
    lines, node = _symbol_node(path, symbol)
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    chunk = lines[first - 1 : node.end_lineno]
    indent = len(chunk[0]) - len(chunk[0].lstrip())
    return "\n".join(line[indent:] for line in chunk) + "\n"


def docstring_of(path: Path, name: str) -> str:
    _, node = _symbol_node(path, name)
    doc = ast.get_docstring(node)
    if not doc:
        raise LookupError(f"{path.relative_to(ROOT)}::{name} has no docstring")
    return " ".join(doc.split())


def blocks(text: str):
    """Yield (kind, target, language, code, span) for each fenced block in order.

    kind is "include"/"property" when a marker precedes the block (or quote), else "code".
    """
    pos = 0
    for fence in FENCE.finditer(text):
        between = text[pos : fence.start()]
        markers = list(MARKER.finditer(between))
        kind, target = "code", None
        if markers and markers[-1].group(1) == "include":
            m = markers[-1]
            if not between[m.end():].strip():
                kind, target = "include", (m.group(2), m.group(3))
        yield kind, target, fence.group(1), fence.group(2), fence.span(2)
        pos = fence.end()


def properties(text: str):
    """Yield (test file, test name, quoted sentence) for each property marker."""
    for m in MARKER.finditer(text):
        if m.group(1) != "property":
            continue
        rest = text[m.end():].lstrip("\n")
        quote = []
        for line in rest.splitlines():
            if not line.startswith(">"):
                break
            quote.append(line.lstrip("> ").strip())
        yield m.group(2), m.group(3), " ".join(" ".join(quote).split())


def fix(lesson: Path) -> bool:
    text = lesson.read_text()
    out, pos = [], 0
    for kind, target, _, code, (start, end) in blocks(text):
        if kind == "include":
            out.append(text[pos:start])
            out.append(symbol_source(ROOT / target[0], target[1]))
            pos = end
    out.append(text[pos:])
    new = "".join(out)
    if new != text:
        lesson.write_text(new)
    return new != text


def lesson_id(path: Path) -> str:
    return path.stem


def test_there_are_lessons():
    """The course exists: lesson 00 explains how to read the repository."""
    assert (ROOT / "lessons" / "00_reading_this_repo.md").exists()


@pytest.mark.parametrize("lesson", LESSONS, ids=lesson_id)
def test_included_code_is_the_module_code(lesson):
    """Every code block a lesson includes from a module is identical to that module's source."""
    for kind, target, lang, code, _ in blocks(lesson.read_text()):
        if kind == "include":
            assert lang == "python", f"{lesson.name}: include of {target} must be a python block"
            expected = symbol_source(ROOT / target[0], target[1])
            assert code == expected, (
                f"{lesson.name}: the block included from {target[0]}::{target[1]} differs from "
                "the module; run `python tests/test_lessons.py --fix`"
            )


@pytest.mark.parametrize("lesson", LESSONS, ids=lesson_id)
def test_property_sentences_are_the_test_docstrings(lesson):
    """Every property a lesson states is, word for word, the docstring of the test that checks it."""
    for test_file, name, sentence in properties(lesson.read_text()):
        assert sentence == docstring_of(ROOT / test_file, name), (
            f"{lesson.name}: the property quoted for {test_file}::{name} is not its docstring"
        )


@pytest.mark.parametrize("lesson", LESSONS, ids=lesson_id)
def test_links_resolve(lesson):
    """Every relative link in a lesson points to a file or folder that exists."""
    prose = FENCE.sub("", lesson.read_text())  # `f(a)[i](x)` in code is not a link
    for target in LINK.findall(prose):
        assert (lesson.parent / target).exists(), f"{lesson.name}: broken link {target}"


@pytest.mark.parametrize("lesson", LESSONS, ids=lesson_id)
def test_examples_run(lesson, tmp_path, monkeypatch):
    """Every python example in a lesson runs, top to bottom, in a fresh folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    namespace: dict = {"__name__": f"lesson_{lesson.stem}"}
    for kind, _, lang, code, (start, _) in blocks(lesson.read_text()):
        if kind == "code" and lang == "python":
            line = lesson.read_text()[:start].count("\n") + 1
            exec(compile(code, f"{lesson.name}:{line}", "exec"), namespace)


def test_readme_links_and_images_resolve():
    """Every relative link and image in the README points to a file that exists."""
    prose = FENCE.sub("", (ROOT / "README.md").read_text())
    for target in LINK.findall(prose):
        assert (ROOT / target).exists(), f"README.md: broken link {target}"


def test_every_module_names_a_lesson_that_exists():
    """Each module's `Lesson:` line points to lesson files that exist."""
    for module in sorted((ROOT / "nanogan").glob("*.py")):
        doc = ast.get_docstring(ast.parse(module.read_text())) or ""
        for line in doc.splitlines():
            if line.startswith("Lesson:"):
                for target in re.findall(r"lessons/\S+?\.md", line):
                    assert (ROOT / target).is_file(), f"{module.name}: {target} does not exist"


if __name__ == "__main__":
    if "--fix" in sys.argv:
        changed = [p.name for p in LESSONS if fix(p)]
        print("updated: " + (", ".join(changed) if changed else "nothing"))
    else:
        sys.exit(pytest.main([os.fspath(Path(__file__)), "-q"]))
