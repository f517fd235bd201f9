"""Reading an experiment file: the TOML itself, and the line of each key, so that an
error names the file, the line and the key (``Problem``, values.py's ValueProblem,
carries the key path until ``Source.error`` formats it)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Container
from pathlib import Path

from ..errors import RobustError
from ..values import Key, ValueProblem

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

Path_ = Key  # a key path inside the file, e.g. ("cells", 1, "adv_kwargs", "k")

# A bad value at a key path of the experiment file: the one error type of values.py,
# formatted with the file, the key and its line by ``load_experiment``.
Problem = ValueProblem


def blame(error: RobustError, own: Key, where: Callable[[str], Path_], given: Container[str]) -> Problem | None:
    """``error``, raised while building a spec from keys of the file, as a Problem at the
    key of the file that it names: the spec's key paths start with ``own`` (e.g.
    ("train",)), the first key after it was set at ``where(key)`` when it is in ``given``.
    None when the error names no such key."""
    if not isinstance(error, ValueProblem):
        return None
    key = error.key[len(own) :] if error.key[: len(own)] == tuple(own) else error.key
    if not key or key[0] not in given:
        return None
    return Problem(tuple(where(key[0])) + key[1:], error.msg)


_BARE = r"[A-Za-z0-9_-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*'"
_DOTTED = rf"(?:{_BARE})(?:\s*\.\s*(?:{_BARE}))*"
_HEADER = re.compile(rf"^\s*(\[\[|\[)\s*({_DOTTED})\s*(\]\]|\])\s*(#.*)?$")
_KEYLINE = re.compile(rf"^\s*({_DOTTED})\s*=")
_STRINGS = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'[^']*'")


def _split_dotted(text: str) -> list[str]:
    return [p.strip().strip("\"'") for p in re.findall(_BARE, text)]


class Source:
    """The lines of a TOML file, indexed by key path (best effort: enough to name
    the line of a key in an error message)."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines: dict[tuple, int] = {}
        aot: dict[tuple, int] = {}  # array-of-tables name path -> current index
        table: tuple = ()
        depth = 0  # open brackets of a multi-line array / inline table
        in_ml = None  # inside a multi-line string: its delimiter
        for no, line in enumerate(text.splitlines(), 1):
            if in_ml:
                if in_ml in line:
                    in_ml = None
                continue
            if depth == 0:
                m = _HEADER.match(line)
                if m:
                    parts = _split_dotted(m.group(2))
                    resolved: list = []
                    for i, p in enumerate(parts):
                        resolved.append(p)
                        names = tuple(parts[: i + 1])
                        if names in aot and i < len(parts) - 1:
                            resolved.append(aot[names])
                    if m.group(1) == "[[":
                        names = tuple(parts)
                        aot[names] = aot.get(names, -1) + 1
                        resolved.append(aot[names])
                    table = tuple(resolved)
                    self.lines.setdefault(table, no)
                    continue
                m = _KEYLINE.match(line)
                if m:
                    self.lines.setdefault(table + tuple(_split_dotted(m.group(1))), no)
            for delim in ('"""', "'''"):
                if line.count(delim) % 2 == 1:
                    in_ml = delim
            code = _STRINGS.sub('""', line).split("#", 1)[0]
            depth = max(0, depth + code.count("[") + code.count("{") - code.count("]") - code.count("}"))

    def line(self, path: Path_) -> int | None:
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return None

    def error(self, path: Path_, msg: str, names: dict[tuple, str]) -> RobustError:
        """A one-line error naming the file, the line (when found) and the key."""
        no = self.line(path)
        where = f"{self.path}, line {no}" if no else f"{self.path}"
        return RobustError(f"{where}, {describe_path(path, names)}: {msg}")


def describe_path(path: Path_, names: dict[tuple, str]) -> str:
    """("cells", 1, "adv") -> "key adv of [[cells]] #2 'pgd-at'"."""
    path = tuple(path)
    for i, part in enumerate(path):
        if isinstance(part, int):
            head = f"[[{'.'.join(str(p) for p in path[:i])}]] #{part + 1}"
            name = names.get(path[: i + 1])
            if name:
                head += f" '{name}'"
            rest = ".".join(str(p) for p in path[i + 1 :])
            return f"key {rest} of {head}" if rest else head
    return "key " + ".".join(str(p) for p in path)


def read_toml(path: str | os.PathLike) -> tuple[dict, Source]:
    p = Path(path)
    if not p.is_file():
        raise RobustError(f"experiment file {p} does not exist" + (" (it is a folder)" if p.is_dir() else ""))
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RobustError(f"{p}: cannot read the experiment file ({e})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m:
            no = int(m.group(1))
            lines = text.splitlines()
            shown = lines[no - 1].strip() if 0 < no <= len(lines) else ""
            what = msg[: m.start()].strip()
            raise RobustError(
                f"{p}, line {no}, column {m.group(2)}: invalid TOML: {what}" + (f": {shown}" if shown else "")
            ) from None
        raise RobustError(f"{p}: invalid TOML: {msg}") from None
    return data, Source(p, text)
