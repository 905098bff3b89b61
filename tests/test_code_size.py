"""Small functions and files in ``abstractllm/`` (issue 23, item 7): an AST walk fails on any function (or method,
nested ones too) longer than ``MAX_FUNCTION_LINES`` lines and on any module longer than ``MAX_FILE_LINES`` lines.
A function's length runs from its ``def`` line to its last line (decorators not counted, its docstring counted).
``ALLOWED`` lists what was judged to read better whole, each entry with its reason."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "abstractllm"
MAX_FUNCTION_LINES = 60
MAX_FILE_LINES = 500

#: (file, qualified name) -> why this function stays longer than MAX_FUNCTION_LINES
ALLOWED_FUNCTIONS: dict[tuple[str, str], str] = {}
#: file -> why this module stays longer than MAX_FILE_LINES
ALLOWED_FILES: dict[str, str] = {}


class _Functions(ast.NodeVisitor):
    """Every function of one module: (qualified name, first line, number of lines)."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.found: list[tuple[str, int, int]] = []

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.stack.append(node.name)
        self.found.append((".".join(self.stack), node.lineno, node.end_lineno - node.lineno + 1))
        self.generic_visit(node)
        self.stack.pop()

    visit_AsyncFunctionDef = visit_FunctionDef


def _modules() -> list[tuple[str, str]]:
    return [(p.relative_to(ROOT).as_posix(), p.read_text(encoding="utf-8")) for p in sorted(PACKAGE.rglob("*.py"))]


def _long_functions() -> list[tuple[str, str, int, int]]:
    """(file, qualified name, line, length) of every function over the limit."""
    out = []
    for rel, text in _modules():
        scan = _Functions()
        scan.visit(ast.parse(text))
        out += [(rel, name, line, length) for name, line, length in scan.found if length > MAX_FUNCTION_LINES]
    return out


def _long_files() -> list[tuple[str, int]]:
    return [(rel, n) for rel, text in _modules() if (n := len(text.splitlines())) > MAX_FILE_LINES]


def test_no_function_is_longer_than_the_limit():
    bad = [f"{rel}:{line} {name}: {length} lines (at most {MAX_FUNCTION_LINES}): split it, or add it to "
           "ALLOWED_FUNCTIONS with the reason it reads better whole"
           for rel, name, line, length in _long_functions() if (rel, name) not in ALLOWED_FUNCTIONS]
    assert not bad, "\n".join(bad)


def test_no_file_is_longer_than_the_limit():
    bad = [f"{rel}: {n} lines (at most {MAX_FILE_LINES}): split it along a seam, or add it to ALLOWED_FILES with "
           "its reason" for rel, n in _long_files() if rel not in ALLOWED_FILES]
    assert not bad, "\n".join(bad)


def test_every_allowance_is_still_needed():
    long_functions = {(rel, name) for rel, name, _, _ in _long_functions()}
    long_files = {rel for rel, _ in _long_files()}
    stale = [f"{key}: {why}" for key, why in ALLOWED_FUNCTIONS.items() if key not in long_functions]
    stale += [f"{key}: {why}" for key, why in ALLOWED_FILES.items() if key not in long_files]
    assert not stale, "allowances that match nothing any more (remove them):\n" + "\n".join(stale)


def test_the_walk_measures_nested_functions_and_methods():
    body = "\n".join(f"            x{i} = {i}" for i in range(60))
    tree = ast.parse(f"class C:\n    def m(self):\n        def inner():\n{body}\n        return inner\n")
    scan = _Functions()
    scan.visit(tree)
    lengths = {name: length for name, _, length in scan.found}
    assert lengths == {"C.m": 63, "C.m.inner": 61}
