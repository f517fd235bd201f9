"""The attack-suite options of eval, visualize and analyze, generated from the attack
registry: one flag per attack option name (an option several attacks share, such as
--k, sets it for each of them), plus --attack-option NAME.KEY=VALUE for one attack
alone and --eot for every gradient attack."""

from __future__ import annotations

import functools

import click

from ..attacks import AttackSpec, registry
from ..errors import RobustError
from ..threat import ThreatModel
from .common import compose
from .runtime_options import NUMBER, parse_eps_list, threat_options

# flags the commands already own: an attack option may not take one of them
RESERVED = {
    "attack",
    "attack-option",
    "eot",
    "norm",
    "eps",
    "eta",
    "eps-space",
    "n",
    "split",
    "seed",
    "batch-size",
    "device",
    "out",
    "results",
    "data-root",
    "transfer-from",
}
TEXT = object()  # a flag whose options differ in type
# what a flag several attacks share means for all of them (an attack's own help says it for one)
SHARED_HELP = {
    "k": "Iterations (steps) of an iterative attack.",
    "restarts": "Restarts; a point counts as broken if any restart breaks it.",
    "loss": "Loss the attack optimises.",
    "targets": "Target classes of a targeted attack (the most likely wrong classes).",
    "targeted": "Targeting of the attack.",
    "n-queries": "Model queries per point of a query-based attack.",
}
SUITE_PARAMS = ("attack_names", "norm", "eps", "eta", "eps_space", "attack_option", "eot")


def _flag_option(flag: str, entries):
    """One CLI flag for every attack that has an option under this flag."""
    if flag in RESERVED:
        raise TypeError(
            f"attack option flag --{flag} ({', '.join(a for a, _ in entries)}) is one the commands "
            "own; give the option another name or Opt(flag=...)"
        )
    types = {o.type for _, o in entries}
    # options typed differently across attacks share a text flag that each attack parses itself
    typ = types.pop() if len(types) == 1 else TEXT
    defaults = ", ".join(f"{a} {str(o.default).lower() if o.type is bool else o.default}" for a, o in entries)
    what = entries[0][1].help if len(entries) == 1 else SHARED_HELP.get(flag, entries[0][1].help)
    help_ = f"{what} Default per attack: {defaults}."
    param = flag.replace("-", "_")
    if typ is TEXT:
        return click.option(f"--{flag}", param, type=str, metavar="VALUE", default=None, help=help_)
    if typ is bool:
        return click.option(f"--{flag}/--no-{flag}", param, default=None, help=help_)
    if typ is str:
        choices = []
        for _, o in entries:
            choices += [c for c in (o.choices or ()) if c not in choices]
        ptype = click.Choice(choices) if choices else str
    else:
        ptype = int if typ is int else NUMBER
    return click.option(f"--{flag}", param, type=ptype, default=None, help=help_)


def suite_options(f):
    """--attack, the threat options, one flag per attack option, --attack-option and
    --eot. The command receives them bundled as ``suite`` (a dict for build_specs)."""
    flags = registry.all_options()
    names = registry.names()

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        suite = {p: kwargs.pop(p) for p in SUITE_PARAMS}
        suite["flags"] = {flag: kwargs.pop(flag.replace("-", "_")) for flag in flags}
        return f(*args, suite=suite, **kwargs)

    cmd = compose(
        click.option(
            "--attack",
            "attack_names",
            multiple=True,
            default=("pgd",),
            show_default=True,
            help=f"Attack to run: {', '.join(names)} (`robust attacks` lists them with their options); "
            "repeat for a suite, run in the given order.",
        ),
        threat_options(multi_eps=True),
        *[_flag_option(flag, flags[flag]) for flag in sorted(flags)],
        click.option(
            "--attack-option",
            "attack_option",
            multiple=True,
            metavar="NAME.KEY=VALUE",
            help="Set one attack's option, e.g. apgd.k=50 or square.n-queries=1000; overrides the flag "
            "of the same name; repeat for several.",
        ),
        click.option(
            "--eot",
            type=int,
            default=1,
            show_default=True,
            help="Expectation over Transformation: average each input gradient over this many forward "
            "passes, for every gradient attack (against randomized defences).",
        ),
    )(wrapper)
    return cmd


def build_specs(suite: dict) -> list:
    """The AttackSpecs of a suite: every attack at every radius (grouped by radius)."""
    names = list(suite["attack_names"])
    for a in names:
        registry.info(a)  # unknown names fail here, listing the valid ones
    options: dict[str, dict] = {a: {} for a in names}
    all_flags = registry.all_options()
    for flag, value in suite["flags"].items():
        if value is None:
            continue
        takers = [(a, o) for a, o in all_flags[flag] if a in options]
        if not takers:
            raise RobustError(
                f"--{flag} applies to {', '.join(a for a, _ in all_flags[flag])}, "
                f"not to the attacks given ({', '.join(names)})"
            )
        for a, o in takers:
            options[a][o.name] = o.parse(a, value) if isinstance(value, str) and o.type is not str else value
    for item in suite["attack_option"]:
        a, key, value = _attack_option(item, names)
        options[a][key.name] = key.parse(a, value)
    eps_list = parse_eps_list(suite["eps"])
    if not eps_list:
        raise RobustError("--eps needs at least one value")
    specs = []
    for e in eps_list:
        # eta None: each attack derives its step from eps
        threat = ThreatModel(norm=suite["norm"], eps=e, step=suite["eta"], space=suite["eps_space"])
        for a in names:
            eot = suite["eot"] if registry.info(a).takes("eot") else 1
            if suite["eot"] > 1 and all(not registry.info(n).takes("eot") for n in names):
                raise RobustError(f"--eot applies to gradient attacks; none of {', '.join(names)} computes gradients")
            specs.append(AttackSpec(a, threat, options[a], eot=eot))
    return specs


def _attack_option(item: str, names: list[str]):
    head, sep, value = item.partition("=")
    a, dot, key = head.strip().partition(".")
    if not sep or not dot or not key:
        raise RobustError(f"--attack-option '{item}' must read NAME.KEY=VALUE, e.g. apgd.k=50")
    if a not in names:
        raise RobustError(f"--attack-option '{item}': {a} is not among the attacks given ({', '.join(names)})")
    opts = registry.info(a).options
    wanted = key.strip().replace("-", "_")
    if wanted not in opts:
        raise RobustError(
            f"--attack-option '{item}': {a} has no option '{key}'; its options: {', '.join(opts) or 'none'}"
        )
    return a, opts[wanted], value
