"""No import cycles in the package: every import (module level, inside functions and
under TYPE_CHECKING) is an edge of a graph read from the source with ast; a cycle is a
strongly connected set of two or more modules."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import robustbench_local

PACKAGE = Path(robustbench_local.__file__).parent

# Package-to-plugin loops that run in one order only: a package's __init__ imports its
# submodules inside a function (attacks: registry.load_all(); corruptions: evaluate on first
# use, so --help needs no scipy) and the submodules read constants the package defines.
KNOWN_CYCLES: set[frozenset[str]] = {
    frozenset(
        {
            "attacks",
            "attacks.autoattack",
            "attacks.base",
            "attacks.fgsm",
            "attacks.pgd",
            "attacks.registry",
            "attacks.spec",
        }
    ),
    frozenset({"corruptions", "corruptions.evaluate", "corruptions.functions", "corruptions.sets"}),
}


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted name (relative to the package, '' for its __init__) -> file."""
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that runs: at module level or inside functions, but not under
    ``if TYPE_CHECKING:``, whose names serve annotations only and never execute."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        children = node.orelse if _type_checking(node) else list(ast.iter_child_nodes(node))
        todo.extend(children)


def _targets(name: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: dict) -> Iterator[str]:
    top = PACKAGE.name
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name == top or alias.name.startswith(top + "."):
                yield alias.name[len(top) + 1 :]
        return
    if node.level:
        here = name.split(".") if name else []
        base = here if is_package else here[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    elif node.module and (node.module == top or node.module.startswith(top + ".")):
        target = node.module[len(top) + 1 :]
    else:
        return
    for alias in node.names:  # `from . import x` imports the module x when there is one
        sub = f"{target}.{alias.name}" if target else alias.name
        yield sub if sub in known else target


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    known = modules(root)
    graph: dict[str, set[str]] = {m: set() for m in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _imports(tree):
            graph[name] |= {t for t in _targets(name, path.name == "__init__.py", node, known) if t in known}
        graph[name].discard(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected sets of two or more modules (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
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
                members = set()
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    members.add(m)
                    if m == node:
                        break
                if len(members) > 1:
                    found.append(frozenset(members))
    return found


def test_the_graph_sees_every_kind_of_import(tmp_path):
    pkg = tmp_path / PACKAGE.name
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\nfrom .sub.d import Y\nimport os\n"
    )
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "d.py").write_text(f"from {PACKAGE.name} import a\nfrom .. import b\n")
    graph = import_graph(pkg)
    assert graph["a"] == {"b"} and graph["b"] == {"c"} and graph["c"] == {"sub.d"}
    assert graph["sub.d"] == {"a", "b"}
    assert cycles(graph) == [frozenset({"a", "b", "c", "sub.d"})]
    (pkg / "sub" / "d.py").write_text("import json\n")
    assert cycles(import_graph(pkg)) == []


def test_the_package_has_no_new_import_cycles():
    found = set(cycles(import_graph()))
    new = [sorted(c) for c in found - KNOWN_CYCLES]
    assert not new, f"import cycles: {new}; break them (a shared module, a registry) rather than import back"
    gone = [sorted(c) for c in KNOWN_CYCLES - found]
    assert not gone, f"these cycles are gone: remove them from KNOWN_CYCLES: {gone}"


def test_specs_and_the_model_zoo_know_nothing_of_their_users():
    graph = import_graph()
    assert "methods" not in graph["specs"] and not any(m.startswith("methods.") for m in graph["specs"])
    assert "models.tv" not in graph["models.zoo"] and "models.timm_models" not in graph["models.zoo"]
