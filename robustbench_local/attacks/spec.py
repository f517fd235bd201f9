"""AttackSpec: one attack, its threat model and its options, as recorded.

The options are validated against the attack's registration (registry.py), so a
spec that builds is one the attack can run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import RobustError
from ..threat import ThreatModel
from . import registry
from .base import require_norm

# record fields renamed since: old records still read and still match
_LEGACY = {"fgsm": {"fgsm_random_start": "random_start"}}


def upgrade_fields(d: Mapping) -> dict:
    """A record's attack fields with old option names renamed to today's."""
    out = dict(d)
    for old, new in _LEGACY.get(out.get("name"), {}).items():
        if old in out:
            out[new] = out.pop(old)
    return out


class AttackSpec:
    """``AttackSpec("pgd", threat, k=20)`` or ``AttackSpec("pgd", threat, {"k": 20})``.

    Options not given take the attack's defaults. Options read as attributes
    (``spec.k``). ``eot`` > 1 averages each input gradient over that many forward
    passes (gradient attacks only). A step not given follows the attack's step rule
    at this radius (and its k)."""

    __slots__ = ("name", "threat", "options", "eot")

    def __init__(
        self,
        name: str,
        threat: ThreatModel | None = None,
        options: Mapping[str, Any] | None = None,
        *,
        eot: int = 1,
        **kw: Any,
    ):
        info = registry.info(name)  # unknown names fail here, listing the valid ones
        given = upgrade_fields({"name": name, **dict(options or {}), **kw})
        given.pop("name")
        unknown = sorted(set(given) - set(info.options))
        if unknown:
            has = ", ".join(info.options) or "none"
            raise RobustError(f"{name} has no option '{unknown[0]}'; its options: {has}")
        values = {k: o.check(name, given[k]) if k in given else o.default for k, o in info.options.items()}
        if info.check is not None:
            info.check(values)
        threat = ThreatModel() if threat is None else threat
        if not isinstance(threat, ThreatModel):
            raise RobustError(f"threat must be a ThreatModel, got {threat!r}")
        require_norm(name, threat.norm, info.norms)  # before any work
        if isinstance(eot, bool) or not isinstance(eot, int) or eot < 1:
            raise RobustError(f"eot must be an integer >= 1, got {eot!r}")
        if eot > 1 and not info.takes("eot"):
            raise RobustError(f"{name} computes no input gradients, so EOT (--eot {eot}) does not apply to it")
        rule = info.rule(values)
        if rule is not None:  # a step not given follows this attack's rule, at this radius and k
            threat = threat.derived(rule, values.get(info.steps_option, 1))
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "threat", threat)
        object.__setattr__(self, "options", values)
        object.__setattr__(self, "eot", eot)

    # --- value semantics -----------------------------------------------------------
    def __setattr__(self, key, value):
        raise AttributeError("AttackSpec is immutable; use spec.replace(...)")

    def __getattr__(self, item: str):
        if item in ("options", "__setstate__"):  # not yet set (copy/unpickle)
            raise AttributeError(item)
        try:
            return self.options[item]
        except KeyError:
            raise AttributeError(f"{self.name} has no option '{item}'") from None

    def _key(self):
        return self.name, self.threat, tuple(sorted(self.options.items())), self.eot

    def __eq__(self, other) -> bool:
        return isinstance(other, AttackSpec) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"AttackSpec({self.name!r}, {self.threat!r}{', ' + opts if opts else ''}" + (
            f", eot={self.eot})" if self.eot > 1 else ")"
        )

    def __reduce__(self):
        return (_rebuild, (self.name, self.threat, dict(self.options), self.eot))

    def replace(self, *, threat: ThreatModel | None = None, eot: int | None = None, **options: Any) -> AttackSpec:
        return AttackSpec(
            self.name,
            self.threat if threat is None else threat,
            {**self.options, **options},
            eot=self.eot if eot is None else eot,
        )

    # --- what the registry says of it ------------------------------------------------
    @property
    def info(self) -> registry.AttackInfo:
        return registry.info(self.name)

    @property
    def step_rule(self) -> str | None:
        """The rule that sets this attack's step when none is given (threat.STEP_RULES),
        or None when the attack sets its own steps."""
        return self.info.rule(self.options)

    @property
    def label(self) -> str:
        """Column name in tables: FGSM, R+FGSM, PGD-20, PGD-20x5-DLR, APGD-CE, AutoAttack."""
        s = self.info.title(self.options)
        return s + (f"-EOT{self.eot}" if self.eot > 1 else "")

    def with_eps(self, eps: float) -> AttackSpec:
        """The same attack at radius eps: a derived step is derived again there, a given
        one keeps its ratio to eps."""
        return self.replace(threat=self.threat.with_eps(eps))

    def call_kwargs(self) -> dict:
        """Keyword arguments for the attack function: its options, and EOT if it takes it."""
        kw = dict(self.options)
        if self.info.takes("eot"):
            kw["eot"] = self.eot
        return kw

    def to_dict(self) -> dict:
        d = {"name": self.name, "threat": self.threat.to_dict(), **self.options, "label": self.label}
        if self.eot > 1:  # records made before EOT stay equal to today's
            d["eot"] = self.eot
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> AttackSpec:
        """From to_dict() or a record's attack fields (other fields are ignored)."""
        d = upgrade_fields(d)
        info = registry.info(d["name"])
        threat = ThreatModel.from_dict(d["threat"]) if isinstance(d.get("threat"), dict) else ThreatModel.from_dict(d)
        return cls(d["name"], threat, {k: d[k] for k in info.options if k in d}, eot=d.get("eot", 1))


def _rebuild(name, threat, options, eot):
    return AttackSpec(name, threat, options, eot=eot)
