"""Imports point one way (docs/architecture.md): a new upward import or import cycle fails here.

Counted are all imports of `parley` modules, those under `if TYPE_CHECKING:` and inside functions too:
a type-only cycle is still a cycle in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "parley"

# Packages (and top-level modules) any layer may import: they import nothing of ours but each other.
BASE = {"settings", "logging", "support"}

# package -> the packages it may import besides BASE (and itself). Read top to bottom: a layer may use
# what is listed for it and nothing above it.
ALLOWED: dict[str, set[str]] = {
    "media": set(),
    "sip": {"media"},
    "providers": {"media"},
    "agents": {"providers", "media"},
    "engine": {"agents", "providers", "media"},
    "tasks": {"agents", "providers", "media"},
    "calls": {"engine", "agents", "providers", "media"},
    "telephony": {"calls", "engine", "agents", "providers", "media", "sip"},
    "webrtc": {"calls", "telephony", "engine", "agents", "providers", "media"},
    "campaigns": {"calls", "engine", "agents", "providers", "media"},
    "api": {"calls", "telephony", "engine", "agents", "providers", "media", "sip", "tasks", "webrtc", "campaigns"},
    "cli": {"api", "calls", "telephony", "engine", "agents", "providers", "media", "sip", "tasks", "webrtc",
            "campaigns"},
}
BASE_ALLOWED: dict[str, set[str]] = {"settings": {"logging"}, "logging": set(), "support": {"logging"}}


def _module_name(path: Path) -> str:
    parts = ("parley",) + path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The parley modules `name` imports (a `from X import y` names module X.y when it is one, else X)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "parley")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "parley":
                continue
            subs = {f"{target}.{a.name}" for a in node.names} & known
            found.update(subs or {target})
    return {m for m in found if m != name}


def _graph() -> dict[str, set[str]]:
    """Parsed on a thread of its own: CPython 3.11.7's `ast.parse` can raise "AST constructor recursion
    depth mismatch" on a thread whose recursion bookkeeping earlier tests left skewed (seen once)."""
    from concurrent.futures import ThreadPoolExecutor

    def build() -> dict[str, set[str]]:
        modules = _modules()
        known = set(modules)
        return {name: _imports(name, path, known) & known for name, path in modules.items()}

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(build).result()


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_imports_point_one_way() -> None:
    wrong = []
    for module, targets in sorted(_graph().items()):
        layer = _layer(module)
        if not layer:
            continue
        allowed = BASE_ALLOWED.get(layer)
        if allowed is None:
            assert layer in ALLOWED, f"{module}: package {layer!r} has no place in ALLOWED; add it to the map"
            allowed = ALLOWED[layer] | BASE
        for target in sorted(targets):
            to = _layer(target)
            if to and to != layer and to not in allowed:
                wrong.append(f"{module} imports {target} ({layer} may not use {to})")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (types included):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_a_cycle_and_an_upward_import() -> None:
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert _layer("parley.sip.call") == "sip" and "engine" not in ALLOWED["sip"]
