"""The package's import structure: no import circle, and no module imports another's private
names (STYLE.md, "No circles, no borrowed privates").

The imports are read from the source with ``ast`` (nothing is imported), over the three folders
the package maps (engine/ as ``stratabatch``, ipc/ as ``stratabatch.ipc``, monitor/ as
``stratabatch.monitor``). Every import counts, the ones inside functions too (a deferred import
ties two modules as much as one at the top: it only moves the failure to the first call); not
the ones under ``if TYPE_CHECKING:``, which never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"stratabatch": "engine", "stratabatch.ipc": "ipc", "stratabatch.monitor": "monitor"}

# The dedup path: text and words, guards, embedders, the leader index and their kernels.
DEDUP = {
    f"stratabatch.{m}"
    for m in (
        "text", "lexicon", "canon", "guards", "explain", "wordkeys", "dedup", "embed",
        "semantic", "index", "candidates", "hashtable", "sketches", "wordtable", "greedy",
        "pairs", "cosine", "kernels", "textkernels", "embedkernels",
    )
}  # fmt: skip


def _modules() -> dict[str, Path]:
    """Module name -> source file, for every module of the package."""
    out = {}
    for package, folder in PACKAGES.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return out


MODULES = _modules()


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def _imports(name: str, path: Path) -> Iterator[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for each import of ours in ``path``."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("stratabatch"):
                    yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("stratabatch"):
                continue
            names = [a.name for a in node.names]
            # "from . import x" / "from .pkg import mod": a module, not a name of the package
            modules = [n for n in names if f"{target}.{n}" in MODULES]
            for n in modules:
                yield f"{target}.{n}", [], node.lineno
            rest = [n for n in names if n not in modules]
            if rest or not names:
                yield target, rest, node.lineno


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for target, _, _ in _imports(name, path):
            if target in MODULES and target != name:
                graph[name].add(target)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
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
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _describe(circle: set[str], graph: dict[str, set[str]]) -> str:
    return "; ".join(f"{a} -> {b}" for a in sorted(circle) for b in sorted(graph[a] & circle))


def test_the_walk_sees_the_package() -> None:
    graph = _graph()
    assert {"stratabatch", "stratabatch.ipc.ring", "stratabatch.monitor.app"} <= set(graph)
    assert DEDUP <= set(graph), sorted(DEDUP - set(graph))
    # a deferred import and a relative "from . import module" are both edges
    assert "stratabatch.candidates" in graph["stratabatch.index"]
    assert "stratabatch.textkernels" in graph["stratabatch.embed"]


def test_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [{"a", "b", "c"}]


def test_no_import_circle_among_the_dedup_modules() -> None:
    graph = _graph()
    tangled = [c for c in _circles(graph) if c & DEDUP]
    assert not tangled, [_describe(c, graph) for c in tangled]


# Known outside the dedup path, each for its owner to untie; when one is, its test fails until
# it leaves this list, so a new circle or borrowed name never hides behind an old one.
KNOWN_CIRCLES = [
    # the warm-up: core -> warmup -> warm -> processor -> core
    {"stratabatch.core", "stratabatch.processor", "stratabatch.warm", "stratabatch.warmup"},
    # the monitor: cli -> app (deferred) -> draw -> cli (model_text, options_line)
    {"stratabatch.monitor.app", "stratabatch.monitor.cli", "stratabatch.monitor.draw"},
]
KNOWN_BORROWED = [
    "ipc/ring.py: _spin_until_at_least from stratabatch.ipc.wait",
]


def _borrowed() -> list[tuple[str, str, str, int]]:
    """(importer, name, module it is taken from, line) of each private name a module takes."""
    return [
        (name, n, target, line)
        for name, path in MODULES.items()
        for target, names, line in _imports(name, path)
        if target != name
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]


def test_no_other_import_circle_in_the_package() -> None:
    graph = _graph()
    circles = _circles(graph)
    new = [c for c in circles if c not in KNOWN_CIRCLES]
    assert not new, [_describe(c, graph) for c in new]
    gone = [c for c in KNOWN_CIRCLES if c not in circles]
    assert not gone, f"untied: take {gone} out of KNOWN_CIRCLES"


def test_no_dedup_module_imports_private_names() -> None:
    found = [b for b in _borrowed() if b[0] in DEDUP or b[2] in DEDUP]
    assert not found, [f"{MODULES[a].relative_to(ROOT)}:{k}: {n} from {t}" for a, n, t, k in found]


def test_no_other_module_imports_another_modules_private_names() -> None:
    found = [f"{MODULES[a].relative_to(ROOT)}: {n} from {t}" for a, n, t, _ in _borrowed()]
    new = [b for b in found if b not in KNOWN_BORROWED]
    assert not new, new
    gone = [b for b in KNOWN_BORROWED if b not in found]
    assert not gone, f"mended: take {gone} out of KNOWN_BORROWED"
