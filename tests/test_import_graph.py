"""No import circle inside ``abstractllm/``.

Every module under ``abstractllm/`` is parsed with :mod:`ast` (nothing is imported). Every import statement
counts wherever it stands: at module level, inside a function or method, inside ``try``/``if`` blocks, and
inside ``if TYPE_CHECKING:`` blocks too. TYPE_CHECKING imports are not executed, but a type that two modules
need from each other is still a tie between them that belongs in one owner module, so they are counted.

``import a.b.c`` and ``from a.b import c`` are resolved to the deepest of abstractllm's own modules that the
statement names (``from pkg import sub`` adds an edge to ``pkg.sub`` when ``sub`` is a submodule, and to
``pkg`` otherwise); relative imports are resolved against the importing module's package. A package's
``__init__`` counts as the package itself. Importing a submodule also runs its parent packages' ``__init__``,
but those implicit edges are not added: they would make every ``__init__`` that re-exports from its own
submodules a circle, which is the ordinary, harmless shape of a package facade.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "abstractllm"
PACKAGE = "abstractllm"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve_relative(module: str, path: Path, level: int, name: str | None) -> str:
    base = module.split(".")
    if not _is_package(path):
        base = base[:-1]  # a plain module's package
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _own(name: str, modules: dict[str, Path]) -> str | None:
    """The deepest of abstractllm's modules that ``name`` (dotted) names or lies inside, if any."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = (_resolve_relative(module, path, node.level, node.module) if node.level
                          else node.module or "")
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    targets.append(sub if sub in modules else source)
            for target in targets:
                if target != PACKAGE and not target.startswith(PACKAGE + "."):
                    continue
                owner = _own(target, modules)
                if owner is not None and owner != module:
                    graph[module].add(owner)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each with one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)

    cycles = []
    for component in components:
        members = set(component)
        start = component[0]
        # shortest path back to ``start`` inside the component, by breadth-first search
        previous: dict[str, str] = {}
        frontier = [start]
        found = None
        while frontier and found is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & members):
                    if w == start:
                        found = v
                        break
                    if w not in previous:
                        previous[w] = v
                        nxt.append(w)
                if found is not None:
                    break
            frontier = nxt
        path = [start]
        v = found
        back = []
        while v is not None and v != start:
            back.append(v)
            v = previous.get(v)
        path += list(reversed(back)) + [start]
        cycles.append(path)
    return cycles


def test_the_walker_sees_the_package():
    graph = import_graph()
    assert "abstractllm" in graph and "abstractllm.providers.base" in graph
    assert "abstractllm.messages" in graph["abstractllm.providers.base"]


def test_the_walker_finds_a_circle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    cycles = find_cycles(import_graph())
    assert not cycles, "import circles in abstractllm/:\n" + "\n".join(" -> ".join(c) for c in cycles)
