"""The evaluations of an experiment file: ``[eval]`` defaults and each ``[[attacks]]``
entry become EvalUnits, one per attack and radius. An entry takes the common keys and
its attack's own options, by name or by CLI flag, checked against the attack registry.
An entry's ``cells`` (names or globs) limits it to those cells, e.g. a costly attack run on
one model of a study."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..attacks import AttackSpec, registry
from ..errors import RobustError
from ..threat import NORMS, SPACES, ThreatModel
from ..values import choice, known, positive, string, strings
from .cells import name_matches
from .source import Path_, Problem
from .values import integer

# keys of an [[attacks]] entry alone, not defaults in [eval]
ENTRY_ONLY_KEYS = ("name", "cells")
# keys every attack entry takes; its own options come from the attack registry (attack_keys)
COMMON_ATTACK_KEYS = ENTRY_ONLY_KEYS + tuple("norm eps eta eps_space sweep eot n split seed batch_size".split())
# the defaults `robust eval` uses, so a file and the CLI mean the same thing
# (eta None: each attack derives its step from eps, PGD 2.5*eps/k; see AttackSpec.step_rule)
# (an attack option not given takes the attack's own default, as on the CLI)
EVAL_DEFAULTS = {
    "norm": "linf",
    "eps": 0.0313,
    "eta": None,
    "eps_space": "normalized",
    "eot": 1,
    "n": 1000,
    "split": "test",
    "seed": 0,
    "batch_size": 256,
    "cascade": False,
    "checks": True,
    "check_convergence": False,
}


@dataclass(frozen=True)
class EvalUnit:
    """One attack at one radius on one set of points: the unit a record stands for."""

    spec: Any  # AttackSpec
    n: int | None  # None: the whole split
    split: str
    seed: int
    batch_size: int
    origin: Path_ = ()  # the [[attacks]] entry
    n_origin: Path_ = ()  # where n was set
    cells: tuple[str, ...] = ()  # names or globs of the cells it runs on; () every cell

    @property
    def key(self) -> tuple:
        return (self.spec, self.n, self.split, self.seed)

    def runs_on(self, cell: str) -> bool:
        return not self.cells or name_matches(cell, self.cells)

    @property
    def label(self) -> str:
        return f"{self.spec.label}@{self.spec.threat.eps:g}"


def attack_keys() -> tuple[str, ...]:
    """Every key an [[attacks]] entry may hold: the common ones, then each registered
    attack's options by name and by CLI flag."""
    keys = list(COMMON_ATTACK_KEYS)
    for name in registry.names():
        for key in _option_keys(registry.info(name)):
            if key not in keys:
                keys.append(key)
    return tuple(keys)


def _option_keys(info) -> dict:
    """TOML key -> option: the option's name, and its CLI flag (fgsm_rs, aa_version) too."""
    out = {}
    for o in info.options.values():
        out[o.name] = o
        out.setdefault(o.flag.replace("-", "_"), o)
    return out


def parse_units(attacks_raw: Any, eval_raw: dict) -> list[EvalUnit]:
    """Every evaluation of the file, in order; the same unit twice runs once."""
    if attacks_raw is None:
        raise Problem(("attacks",), "the experiment declares no attacks; add [[attacks]] entries (e.g. name = \"pgd\")")
    if not isinstance(attacks_raw, list) or not attacks_raw or not all(isinstance(a, dict) for a in attacks_raw):
        raise Problem(("attacks",), "must be one or more [[attacks]] tables")
    units: dict[tuple, EvalUnit] = {}
    for i, entry in enumerate(attacks_raw):
        known(("attacks", i), entry, attack_keys())
        for unit in make_units(("attacks", i), entry, eval_raw):
            # the same attack twice (e.g. a sweep through the main eps) runs once, on the cells of both
            first = units.setdefault(unit.key, unit)
            if first is not unit and first.cells:
                units[unit.key] = replace(first, cells=(first.cells + unit.cells) if unit.cells else ())
    return list(units.values())


def check_unit_cells(units: list[EvalUnit], cells: list[str]) -> None:
    """Refuse an entry's ``cells`` pattern that names no cell of the file (a typo would
    otherwise leave the attack silently unrun)."""
    for u in units:
        for pattern in u.cells:
            if not any(name_matches(c, (pattern,)) for c in cells):
                raise Problem(u.origin + ("cells",), f"'{pattern}' matches no cell; cells: {', '.join(cells)}")


def make_units(apath: Path_, entry: dict, defaults: dict) -> list[EvalUnit]:
    def get(key: str):
        if key in entry:
            return entry[key], apath + (key,)
        if key in defaults:
            return defaults[key], ("eval", key)
        return EVAL_DEFAULTS.get(key), apath

    if "name" not in entry:
        raise Problem(apath, f"an attack needs a name ({', '.join(registry.names())})")
    name = string(apath + ("name",), entry["name"])
    if name not in registry.names():
        raise Problem(apath + ("name",), f"unknown attack '{name}'; valid attacks: {', '.join(registry.names())}")
    info = registry.info(name)
    own = _option_keys(info)
    options, option_at = {}, {}
    for where, entries in ((("eval",), defaults), (apath, entry)):  # the entry overrides [eval]
        for key, value in entries.items():
            if key in own:
                options[own[key].name], option_at[own[key].name] = value, where + (key,)
            elif where == apath and key not in COMMON_ATTACK_KEYS:
                raise Problem(
                    apath + (key,), f"{name} has no option '{key}'; its options: {', '.join(info.options) or 'none'}"
                )
    for key, value in options.items():
        try:
            options[key] = info.options[key].check(name, value)
        except RobustError as e:
            raise Problem(option_at[key], str(e)) from None
    v = {}
    v["norm"] = choice(get("norm")[1], get("norm")[0], NORMS)
    v["eps_space"] = choice(get("eps_space")[1], get("eps_space")[0], SPACES)
    eps, eps_at = get("eps")
    eps_list = [positive(eps_at, e) for e in eps] if isinstance(eps, list) else [positive(eps_at, eps)]
    if not eps_list:
        raise Problem(eps_at, "needs at least one radius")
    eta_raw, eta_at = get("eta")
    eta = None if eta_raw is None else positive(eta_at, eta_raw)  # None: derived per attack and radius
    eot = integer(get("eot")[1], get("eot")[0], 1)
    n_raw, n_at = get("n")
    n = None if n_raw == "all" else integer(n_at, n_raw, 1)
    split = choice(get("split")[1], get("split")[0], ("test", "val"))
    seed = integer(get("seed")[1], get("seed")[0], 0)
    batch_size = integer(get("batch_size")[1], get("batch_size")[0], 1)
    cells = strings(apath + ("cells",), entry["cells"]) if "cells" in entry else ()

    threats = [ThreatModel(norm=v["norm"], eps=e, step=eta, space=v["eps_space"]) for e in eps_list]
    sweep, sweep_at = get("sweep")
    if sweep is not None:
        if len(eps_list) > 1:
            raise Problem(
                sweep_at, "give a sweep with a single eps (its step keeps the ratio eta/eps), or list the radii in eps"
            )
        if not isinstance(sweep, list) or not sweep:
            raise Problem(sweep_at, f"must be a list of radii, got {sweep!r}")
        threats += [threats[0].with_eps(positive(sweep_at, e)) for e in sweep]
    units = []
    for t in threats:
        try:
            # [eval] eot applies to the gradient attacks; an entry's own eot must fit its attack
            spec = AttackSpec(name, t, options, eot=eot if info.takes("eot") or "eot" in entry else 1)
        except RobustError as e:
            raise Problem(apath, str(e)) from None
        units.append(EvalUnit(spec, n, split, seed, batch_size, apath, n_at, cells))
    return units
