"""Imports inside functions stay only where they save start-up time (a heavy library), load
an optional dependency, or break an import cycle, and each says which: a ``deferred:``
comment on its own line, or in the comment lines directly above its block of imports.
Everything else is imported at the top of its module."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import robustbench_local

PACKAGE = Path(robustbench_local.__file__).parent
MARK = "deferred:"


def _comments(source: str) -> dict[int, str]:
    """Line number -> the comment on that line."""
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string
    return out


def undeclared(source: str) -> list[int]:
    """Line numbers of the imports inside function bodies that carry no ``deferred:`` comment."""
    tree = ast.parse(source)
    lines = source.splitlines()
    comments = _comments(source)
    import_lines = {
        i
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for i in range(node.lineno, node.end_lineno + 1)
    }

    def declared(node: ast.Import | ast.ImportFrom) -> bool:
        if any(MARK in comments.get(i, "") for i in range(node.lineno, node.end_lineno + 1)):
            return True
        i = node.lineno - 1  # up through the imports and comment lines just above it
        while i >= 1:
            if i in import_lines:
                i -= 1
            elif lines[i - 1].lstrip().startswith("#"):
                if MARK in lines[i - 1]:
                    return True
                i -= 1
            else:
                return False
        return False

    found = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and not declared(node):
                    found.add(node.lineno)
    return sorted(found)


PLANTED = '''
import os


def plain():
    x = 1
    import json

    return json.dumps(x)


def commented():
    import matplotlib  # deferred: start-up time (matplotlib)

    # deferred: optional dependency (timm)
    import timm
    from timm.models import swin

    # not a reason
    from .x import y

    return matplotlib, timm, swin, y


class Holder:
    def method(self):
        # deferred: start-up time
        value = 1
        from .z import w

        return value, w
'''


def test_the_check_finds_an_import_without_a_reason():
    lines = PLANTED.splitlines()
    found = [lines[n - 1].strip() for n in undeclared(PLANTED)]
    assert found == ["import json", "from .x import y", "from .z import w"]
    fixed = PLANTED.replace("    import json\n", "    import json  # deferred: start-up time\n")
    assert [lines[n - 1].strip() for n in undeclared(fixed)] == ["from .x import y", "from .z import w"]


def test_every_import_inside_a_function_says_why_it_is_deferred():
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        rel = path.relative_to(PACKAGE.parent)
        missing += [f"{rel}:{n}: {lines[n - 1].strip()}" for n in undeclared(source)]
    assert not missing, (
        "imports inside functions without a '# deferred: start-up time | optional dependency | "
        "import cycle (...)' comment; move them to the top of the module or say why not:\n" + "\n".join(missing)
    )
