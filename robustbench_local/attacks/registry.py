"""The attack registry: an attack is one module that registers one function.

    @attack("cw", norms=("l2",), kind="minimal-norm", label=lambda o: f"CW-L2-{o['k']}")
    def cw(model, x, y, threat, *,
           k: Annotated[int, Opt("Adam steps per binary-search step.", min=1)] = 100,
           std=None, seed: int = 0, eot: int = 1) -> AttackResult: ...

- Options are the keyword parameters annotated with an ``Opt``: their type (int,
  float, bool, or str with ``Literal`` choices), default and one-line help are read
  from the signature. AttackSpec validates against them; the CLI flags, the TOML
  keys of ``[[attacks]]`` and the records all come from them.
- Context parameters are passed by evaluate() when the function accepts them:
  ``std`` (the model's normalization std, for a model without its own Normalize),
  ``seed``, ``eot`` (gradient samples per step: EOT), ``init`` (per-point random
  starts drawn up front, one tensor per start; see ``starts``) and ``on_progress``
  (``on_progress(stage, still_robust, total)``, for attacks that run as one batch) and
  ``chunk`` (evaluate()'s batch size, for one-batch attacks that chunk their own work).
- Metadata: ``norms`` it supports; ``kind`` (white-box, black-box, minimal-norm);
  ``step_rule`` (a threat.STEP_RULES name, or a function of the options; None: the
  attack sets its own steps) with ``steps_option`` naming the option that is k;
  ``label`` (a function of the options, the column name in tables); ``starts`` (a
  function of the options: how many random starts evaluate() should draw up front);
  ``one_batch`` (runs all points at once, with its own bookkeeping); ``nchw`` (computes
  in NCHW whatever the layout); ``single_step`` (FGSM-like: never stronger than an
  iterative attack, a sanity check); ``check`` (a function of the options raising
  RobustError for settings that do not go together); ``quick`` (cheap options for the
  registry-wide tests).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import RobustError
from ..registry import Registry
from ..threat import parse_number

KINDS = ("white-box", "black-box", "minimal-norm")
CONTEXT = ("std", "seed", "eot", "init", "on_progress", "chunk")

ATTACKS: Registry = Registry("attack")


@dataclass(frozen=True)
class Opt:
    """An attack option's help and bounds. ``flag``: the CLI flag when the option's own
    name would read ambiguously across attacks (e.g. FGSM's random start is --fgsm-rs)."""

    help: str
    min: float | None = None
    max: float | None = None
    flag: str | None = None


@dataclass(frozen=True)
class Option:
    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    flag: str = ""

    def check(self, attack: str, value: Any) -> Any:
        """The value converted to the option's type, or a RobustError naming the problem."""
        where = f"{attack} option '{self.name}'"
        if self.type is bool:
            if not isinstance(value, bool):
                raise RobustError(f"{where} must be true or false, got {value!r}")
            return value
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise RobustError(f"{where} must be an integer, got {value!r}")
        elif self.type is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RobustError(f"{where} must be a number, got {value!r}")
            value = float(value)
            if value != value or value in (float("inf"), float("-inf")):
                raise RobustError(f"{where} must be finite, got {value}")
        elif self.type is str:
            if not isinstance(value, str):
                raise RobustError(f"{where} must be a string, got {value!r}")
            if self.choices is not None and value not in self.choices:
                raise RobustError(f"unknown {self.name} '{value}' for {attack}; valid: {', '.join(self.choices)}")
            return value
        if self.min is not None and value < self.min:
            raise RobustError(f"{where} must be >= {self.min:g}, got {value}")
        if self.max is not None and value > self.max:
            raise RobustError(f"{where} must be <= {self.max:g}, got {value}")
        return value

    def parse(self, attack: str, text: str) -> Any:
        """A value given as text (--attack-option NAME.KEY=VALUE)."""
        t = text.strip()
        try:
            if self.type is bool:
                low = t.lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return self.check(attack, low in ("true", "1", "yes"))
            if self.type is int:
                return self.check(attack, int(t))
            if self.type is float:
                return self.check(attack, parse_number(t, f"{attack} option '{self.name}'"))
        except ValueError:
            raise RobustError(
                f"{attack} option '{self.name}' takes {self.type.__name__} values, got '{text}'"
            ) from None
        return self.check(attack, t)


@dataclass(frozen=True)
class AttackInfo:
    """Everything the registry knows of one attack."""

    name: str
    fn: Callable
    norms: tuple[str, ...]
    kind: str
    options: dict[str, Option]
    context: tuple[str, ...]
    step_rule: str | Callable[[dict], str | None] | None = None
    steps_option: str = "k"
    label: Callable[[dict], str] | None = None
    starts: Callable[[dict], int] | None = None
    one_batch: bool = False
    nchw: bool = False
    single_step: bool = False
    check: Callable[[dict], None] | None = None
    quick: dict = field(default_factory=dict)
    summary: str = ""

    def defaults(self) -> dict:
        return {k: o.default for k, o in self.options.items()}

    def rule(self, options: dict) -> str | None:
        return self.step_rule(options) if callable(self.step_rule) else self.step_rule

    def title(self, options: dict) -> str:
        return self.label(options) if self.label is not None else self.name.upper()

    def n_starts(self, options: dict) -> int:
        return self.starts(options) if self.starts is not None and "init" in self.context else 0

    def takes(self, what: str) -> bool:
        return what in self.context


def _options(name: str, fn: Callable) -> tuple[dict[str, Option], tuple[str, ...]]:
    hints = typing.get_type_hints(fn, include_extras=True)
    opts: dict[str, Option] = {}
    context = []
    for p in inspect.signature(fn).parameters.values():
        if p.name in CONTEXT:
            context.append(p.name)
            continue
        hint = hints.get(p.name)
        if typing.get_origin(hint) is not typing.Annotated:
            continue
        base, *extra = typing.get_args(hint)
        meta = next((e for e in extra if isinstance(e, Opt)), None)
        if meta is None:
            continue
        if p.kind is not p.KEYWORD_ONLY or p.default is p.empty:
            raise TypeError(f"attack {name}: option '{p.name}' must be keyword-only with a default")
        choices = None
        if typing.get_origin(base) is Literal:
            choices, base = tuple(typing.get_args(base)), str
        if base not in (int, float, bool, str):
            raise TypeError(f"attack {name}: option '{p.name}' has type {base}; use int, float, bool, str or Literal")
        opts[p.name] = Option(
            p.name, base, p.default, meta.help, choices, meta.min, meta.max, meta.flag or p.name.replace("_", "-")
        )
    return opts, tuple(context)


def attack(name: str, *, norms: tuple[str, ...], kind: str = "white-box", **meta: Any) -> Callable:
    """Registers ``fn`` as attack ``name`` (see the module docstring for ``meta``)."""
    if kind not in KINDS:
        raise ValueError(f"attack kind must be one of {KINDS}, got {kind!r}")

    def deco(fn: Callable) -> Callable:
        options, context = _options(name, fn)
        doc = (inspect.getdoc(fn) or "").strip().split("\n\n")[0].replace("\n", " ")
        info = AttackInfo(name, fn, tuple(norms), kind, options, context, summary=doc, **meta)
        ATTACKS.register(name, info=info)(fn)
        return fn

    return deco


def info(name: str) -> AttackInfo:
    """The registry's entry for ``name`` (unknown names fail listing the valid ones)."""
    load_all()
    return ATTACKS.meta(name)["info"]


def names() -> list[str]:
    load_all()
    return ATTACKS.names()


def all_options() -> dict[str, list[tuple[str, Option]]]:
    """CLI flag -> [(attack, option)] over every registered attack."""
    load_all()
    out: dict[str, list[tuple[str, Option]]] = {}
    for n in ATTACKS.names():
        for o in info(n).options.values():
            out.setdefault(o.flag, []).append((n, o))
    return out


_loaded = False


def load_all() -> None:
    """Imports every module of the attacks package, so a new file is all an attack needs."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from .. import attacks as pkg  # deferred: import cycle (attacks/__init__ imports this module)

    for m in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{m.name}")
