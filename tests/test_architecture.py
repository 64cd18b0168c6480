"""The library's layering, read from the source with ``ast`` (nothing is imported).

Every import of every module under ``pipeline/`` counts: module level, inside functions, under
``if TYPE_CHECKING:``, and the ``"module:NAME"`` strings resolved with importlib at run time. Three rules:

- no import cycles between modules (imports under ``if TYPE_CHECKING:`` never run, so they do not
  make a cycle; they count for the other rules);
- imports run down the stages: core <- sources <- graph <- dataset <- precompute <- stream
  (a stage imports only the stages before it, and itself); the top-level modules
  (``pipeline/__init__``, ``config``, ``sequence``, ``build``, ``verify``) may import any of them,
  and no stage imports a top-level module;
- the library imports nothing from the repository's other trees (benchmarks, synth, trainers,
  flows) nor the tools they use (prefect, pandas, networkx).

A failure prints every offending edge as ``importer -> imported (file:line)``.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import astuple, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "pipeline"

#: The stages, in order: each may import itself and those before it.
STAGES = ("core", "sources", "graph", "dataset", "precompute", "stream")
#: Top-level modules (``pipeline.X``): they may import any stage; no stage imports them.
TOP = ("pipeline", "pipeline.config", "pipeline.sequence", "pipeline.build", "pipeline.verify")
#: Top-level import names the library must never use.
FORBIDDEN = ("benchmarks", "synth", "trainers", "flows", "prefect", "prefect_dask", "pandas", "networkx")

_DYNAMIC = re.compile(r"(pipeline(?:\.\w+)+):\w+")  # "pipeline.x.y:NAME", for importlib.import_module


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str  # a module of pipeline, or a top-level name outside it
    file: str
    line: int
    lazy: bool = False  # inside a function
    typing_only: bool = False  # under `if TYPE_CHECKING:`


    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported} ({self.file}:{self.line})"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py")) if "__pycache__" not in p.parts}


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The longest prefix of dotted ``name`` that is a module of the library (``a.b.func`` -> ``a.b``)."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _edges() -> tuple[dict[str, Path], list[Edge]]:
    modules = _modules()
    edges = []
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        rel = str(path.relative_to(REPO))
        tree = ast.parse(path.read_text(), filename=rel)
        in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for n in ast.walk(f)}
        typing_only = {id(n) for f in ast.walk(tree) if isinstance(f, ast.If) and _is_type_checking(f.test)
                       for stmt in f.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the importer's package
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                # `from pkg import sub` imports the submodule when there is one, else a name of pkg
                targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix
                           for a in node.names]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                m = _DYNAMIC.fullmatch(node.value)
                if m:
                    targets = [m.group(1)]
            for t in targets:
                top = t.split(".")[0]
                if top == "pipeline":
                    t = _resolve(t, modules)
                    if t == mod:
                        continue
                elif top not in FORBIDDEN:
                    continue
                edge = Edge(mod, t, rel, node.lineno, id(node) in in_function, id(node) in typing_only)
                if edge not in edges:  # `from m import a, b`: one edge
                    edges.append(edge)
    return modules, edges


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
            or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _layer(mod: str) -> str:
    """``core`` ... ``stream`` for a module of a stage, ``top`` for the top-level modules, else ``?``."""
    if mod in TOP:
        return "top"
    parts = mod.split(".")
    if len(parts) >= 2 and parts[1] in STAGES:
        return parts[1]
    return "?"


def _allowed(importer: str, imported: str) -> bool:
    a, b = _layer(importer), _layer(imported)
    if a == "top":
        return b != "?"
    if a == "?" or b in ("top", "?"):
        return False
    return STAGES.index(b) <= STAGES.index(a)


def _cycles(modules: dict[str, Path], edges: list[Edge]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each in a cycle's order."""
    graph: dict[str, set[str]] = defaultdict(set)
    for e in edges:
        if e.imported in modules and not e.typing_only:
            graph[e.importer].add(e.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth is bounded by the module count (~100)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(modules):
        if v not in index:
            visit(v)
    return out


def test_the_scan_sees_the_library():
    modules, edges = _edges()
    assert len(modules) > 40 and "pipeline.core.errors" in modules and "pipeline.stream.order" in modules
    assert any(e.importer == "pipeline.stream.dataset" and not e.lazy for e in edges)
    assert any(e.lazy for e in edges)  # function-level imports are seen too (many modules import lazily)
    assert {_layer(m) for m in modules} - {"?"} == set(STAGES) | {"top"}


def test_every_module_is_in_a_stage_or_declared_top_level():
    modules, _ = _edges()
    stray = sorted(m for m in modules if _layer(m) == "?")
    assert not stray, ("modules outside the stages and not in TOP (move them into a stage, or add them to "
                       "TOP in tests/test_architecture.py):\n  " + "\n  ".join(stray))


def test_no_import_cycles():
    modules, edges = _edges()
    cycles = _cycles(modules, edges)
    lines = []
    for comp in cycles:
        members = set(comp)
        lines.append("cycle among " + ", ".join(comp) + ":")
        lines += [f"    {e}" for e in edges if e.importer in members and e.imported in members and not e.typing_only]
    assert not cycles, "import cycles:\n" + "\n".join(lines)


def test_imports_run_down_the_stages():
    _, edges = _edges()
    bad = [e for e in edges if e.imported.split(".")[0] == "pipeline" and not _allowed(e.importer, e.imported)]
    assert not bad, ("imports against the stage order (" + " <- ".join(STAGES) + "; top-level modules import "
                     "stages, never the reverse):\n  " + "\n  ".join(f"[{_layer(e.importer)} -> "
                                                                    f"{_layer(e.imported)}] {e}" for e in bad))


def test_the_library_imports_nothing_outside_it():
    _, edges = _edges()
    bad = [e for e in edges if e.imported.split(".")[0] in FORBIDDEN]
    assert not bad, ("pipeline/ imports from outside the library (" + ", ".join(FORBIDDEN) + "):\n  "
                     + "\n  ".join(map(str, bad)))


def test_the_checks_catch_what_they_are_for():
    """The rules on hand-made edges: a test of the test, so a rule that cannot fail is caught."""
    mods = {m: ROOT for m in ("pipeline.core.a", "pipeline.core.b", "pipeline.graph.c")}
    e = [Edge("pipeline.core.a", "pipeline.core.b", "x", 1), Edge("pipeline.core.b", "pipeline.core.a", "x", 2),
         Edge("pipeline.core.b", "pipeline.graph.c", "x", 3)]
    assert _cycles(mods, e) == [["pipeline.core.a", "pipeline.core.b"]]
    assert _cycles(mods, e[:1] + e[2:]) == []
    assert _cycles(mods, [e[0], Edge(*astuple(e[1])[:4], typing_only=True)]) == []  # never runs: no cycle
    assert not _allowed("pipeline.core.b", "pipeline.graph.c")
    assert _allowed("pipeline.graph.c", "pipeline.core.b") and _allowed("pipeline.stream.x", "pipeline.dataset")
    assert not _allowed("pipeline.graph.stages", "pipeline.config")  # a stage never imports a top-level module
    assert _allowed("pipeline.sequence", "pipeline.stream.dataset") and _allowed("pipeline", "pipeline.core")
    assert not _allowed("pipeline.stray", "pipeline.core") and not _allowed("pipeline.core", "pipeline.stray")
