"""The layering holds: every module's imports, read with `ast`, go only where the architecture allows.

- `leads/` (the domain core) imports nothing of ours outside `leads`, and inside it no subpackage imports
  one above it: db <- work <- config <- ingest, scoring <- requalify <- backtest.
- `leads/`, `nurture/`, `handoff/` and `connectors/` never import Prefect: they are plain Python that flows call.
- `nurture/`, `handoff/` and `connectors/` never import the outer layer (`flows/`, `cli/`, `web/`).
- No import cycle among modules (imports under `if TYPE_CHECKING:` do not run, so they do not count).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("leads", "connectors", "nurture", "handoff", "flows", "cli", "web", "demo", "templates")
NO_PREFECT = ("leads", "nurture", "handoff", "connectors")
INNER = ("nurture", "handoff", "connectors")
OUTER = ("flows", "cli", "web")
# leads' subpackages, lowest first: each imports only those below it (and itself).
LEADS_LAYERS = {"db": 0, "work": 1, "config": 2, "ingest": 3, "scoring": 3, "requalify": 4, "backtest": 5}


def _modules() -> dict[str, Path]:
    """Every module of ours by its installed name (`leadflow.<folder>.<...>`)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(["leadflow", *parts])] = path
    return found


MODULES = _modules()


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path) -> Iterator[tuple[str, int, bool]]:
    """(imported module, line, only while type checking) for each import in the module, nested ones too."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def walk(node: ast.AST, typing_only: bool) -> Iterator[tuple[str, int, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for statement in child.body:
                    yield from walk_one(statement, True)
                for statement in child.orelse:
                    yield from walk_one(statement, typing_only)
                continue
            yield from walk_one(child, typing_only)

    def walk_one(node: ast.AST, typing_only: bool) -> Iterator[tuple[str, int, bool]]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, typing_only
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield (submodule if submodule in MODULES else base), node.lineno, typing_only
        else:
            yield from walk(node, typing_only)

    yield from walk(ast.parse(path.read_text(encoding="utf-8"), str(path)), False)


def _graph() -> dict[str, list[tuple[str, int, bool]]]:
    return {module: list(_imports(module, path)) for module, path in MODULES.items()}


def _folder(module: str) -> str:
    return module.split(".")[1] if module.startswith("leadflow.") and module.count(".") >= 1 else ""


def _forbidden(module: str, target: str) -> str | None:
    """Why `module` may not import `target`, or None."""
    source = _folder(module)
    ours = target == "leadflow" or target.startswith("leadflow.")
    if target.split(".")[0] == "prefect" and source in NO_PREFECT:
        return f"{source}/ never imports Prefect"
    if not ours:
        return None
    destination = _folder(target)
    if source == "leads" and destination != "leads":
        return "leads/ imports nothing of ours outside leads"
    if source in INNER and destination in OUTER:
        return f"{source}/ never imports the outer layer ({destination}/)"
    if source == destination == "leads":
        below, above = module.split(".")[2:3], target.split(".")[2:3]
        if below and above and below != above and below[0] in LEADS_LAYERS and above[0] in LEADS_LAYERS:
            if LEADS_LAYERS[above[0]] >= LEADS_LAYERS[below[0]]:
                return f"leads/{below[0]} may not import leads/{above[0]} (same layer or above it)"
    return None


def test_no_module_imports_across_a_forbidden_layer() -> None:
    broken = [
        f"{MODULES[module].relative_to(ROOT)}:{line}: imports {target}: {reason}"
        for module, imports in _graph().items()
        for target, line, _ in imports
        if (reason := _forbidden(module, target)) is not None
    ]
    assert not broken, "\n".join(broken)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:  # iterative: a deep chain of imports must not hit the recursion limit
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
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
                if len(component) > 1 or node in edges[node]:
                    found.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_among_modules() -> None:
    edges = {
        module: {target for target, _, typing_only in imports if target in MODULES and not typing_only}
        for module, imports in _graph().items()
    }
    assert _cycles(edges) == []


def test_the_checks_see_what_they_guard() -> None:
    """The checks would fail on the imports they forbid, and they read every package's modules."""
    assert _forbidden("leadflow.leads.ingest.store", "leadflow.connectors.sync")
    assert _forbidden("leadflow.leads.db.engine", "prefect.flows")
    assert _forbidden("leadflow.nurture.outbox", "leadflow.flows.nurture")
    assert _forbidden("leadflow.leads.db.models", "leadflow.leads.config.workspace")
    assert _forbidden("leadflow.leads.ingest.store", "leadflow.leads.scoring.rules")
    assert _forbidden("leadflow.flows.ingest", "prefect") is None
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert {"leadflow.leads.db.models", "leadflow.nurture.outbox", "leadflow.flows.pipeline"} <= set(MODULES)
