"""The house rules, read from the code's own import graph.

- the runtime (`pipeline`, `states`) never imports the tools or the commands;
- the tools never import the commands (argument parsing lives in one package, `commands`);
- no import circle anywhere, counting imports placed inside functions too (a lazy import that
  closes a circle is still a circle, only hidden).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "states", "tools", "commands", "fixtures")
RUNTIME = ("pipeline", "states")
WINGS_THE_RUNTIME_MAY_NOT_IMPORT = ("tools", "commands")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found[_module_name(path)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules this file imports, wherever the import statement sits."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            # the longest project module that the dotted name starts with
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        # A package's __init__ is imported along with any of its modules; it is not an edge of its own.
        graph[name] = {m for m in _imports(path, modules) if m != name and not name.startswith(m + ".")}
    return graph


def test_the_runtime_never_imports_tools_or_commands() -> None:
    graph = _graph()
    bad = sorted(
        f"{src} -> {dst}"
        for src, dsts in graph.items()
        if src.split(".")[0] in RUNTIME
        for dst in dsts
        if dst.split(".")[0] in WINGS_THE_RUNTIME_MAY_NOT_IMPORT
    )
    assert not bad, "the runtime imports the tools or the commands:\n" + "\n".join(bad)


def test_the_tools_never_import_the_commands() -> None:
    graph = _graph()
    bad = sorted(f"{src} -> {dst}" for src, dsts in graph.items() if src.startswith("tools")
                 for dst in dsts if dst.startswith("commands"))
    assert not bad, "the tools import the commands:\n" + "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_anywhere() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_graph_reader_sees_lazy_imports_and_circles() -> None:
    # The rule is only as good as the reader: it must see an import inside a function and a circle.
    modules = _modules()
    runner = _imports(ROOT / "pipeline" / "runner.py", modules)
    assert "pipeline.sources.capture" in runner
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


#: No module over this many lines: past it a module is doing more than one job (issue 15).
MAX_MODULE_LINES = 650


def test_no_module_is_a_hub() -> None:
    long = sorted(
        f"{path.relative_to(ROOT)}: {n} lines"
        for package in ("pipeline", "states", "tools", "commands")
        for path in (ROOT / package).rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    )
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by job):\n" + "\n".join(long)


def _third_party_importers(library: str) -> set[str]:
    found = set()
    for name, path in _modules().items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            roots = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            if any(r == library or r.startswith(library + ".") for r in roots):
                found.add(name)
    return found


def test_the_ollama_library_lives_behind_one_module() -> None:
    # The wire to Ollama (the client and its transport) is one module; everything else asks it.
    for library in ("ollama", "httpx"):
        assert _third_party_importers(library) == {"pipeline.analyzers.ollama_transport"}, library
