"""AttackSpec: one attack with its threat model and settings, as recorded."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ..errors import RobustError
from ..threat import ThreatModel

LOSSES = ("ce", "dlr")
TARGETING = ("none", "random", "least-likely")
STEP_RULE = {"pgd": "2.5*eps/k", "autoattack": "2*eps"}  # fgsm: see AttackSpec.step_rule


@dataclass(frozen=True)
class AttackSpec:
    name: str
    threat: ThreatModel = field(default_factory=ThreatModel)
    k: int = 10                 # PGD steps
    random_start: bool = True   # PGD random start; FGSM uses fgsm_random_start
    restarts: int = 1
    loss: str = "ce"
    targeted: str = "none"
    fgsm_random_start: bool = False
    version: str = "standard"   # AutoAttack version

    def __post_init__(self) -> None:
        from . import ATTACKS

        ATTACKS.get(self.name)  # unknown names fail here, listing the valid ones
        if not isinstance(self.threat, ThreatModel):
            raise RobustError(f"threat must be a ThreatModel, got {self.threat!r}")
        from .base import require_norm

        require_norm(self.name, self.threat.norm, ATTACKS.meta(self.name)["norms"])  # before any work
        for what in ("k", "restarts"):
            v = getattr(self, what)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise RobustError(f"{what} must be an integer >= 1, got {v!r}")
        if self.restarts > 1 and not self.random_start:
            raise RobustError("restarts > 1 need a random start (otherwise every restart repeats the first)")
        if self.loss not in LOSSES:
            raise RobustError(f"unknown loss '{self.loss}'; valid: {', '.join(LOSSES)}")
        if self.targeted not in TARGETING:
            raise RobustError(f"unknown targeting '{self.targeted}'; valid: {', '.join(TARGETING)}")
        rule = self.step_rule
        if rule is not None:  # a step not given follows this attack's rule, at this radius and k
            object.__setattr__(self, "threat", self.threat.derived(rule, self.k))

    @property
    def step_rule(self) -> str | None:
        """The rule that sets this attack's step when none is given (threat.STEP_RULES):
        PGD 2.5*eps/k (Madry et al. 2018), FGSM its one step of eps (1.25*eps from a
        random start, Wong et al. 2020), AutoAttack APGD's first step 2*eps (it adapts
        the step itself). None: the threat's own step."""
        if self.name == "fgsm":
            return "1.25*eps" if self.fgsm_random_start else "eps"
        return STEP_RULE.get(self.name)

    @property
    def label(self) -> str:
        """Column name in tables: FGSM, R+FGSM, PGD-20, PGD-20x5-DLR, AutoAttack."""
        if self.name == "fgsm":
            return "R+FGSM" if self.fgsm_random_start else "FGSM"
        if self.name == "pgd":
            s = f"PGD-{self.k}"
            if self.restarts > 1:
                s += f"x{self.restarts}"
            if self.loss != "ce":
                s += f"-{self.loss.upper()}"
            if self.targeted != "none":
                s += f"-T({self.targeted})"
            if not self.random_start:
                s += "-nors"
            return s
        if self.name == "autoattack":
            return "AutoAttack" if self.version == "standard" else f"AutoAttack-{self.version}"
        return self.name

    def with_eps(self, eps: float) -> "AttackSpec":
        """The same attack at radius eps: a derived step is derived again there, a given
        one keeps its ratio to eps."""
        return replace(self, threat=self.threat.with_eps(eps))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["threat"] = self.threat.to_dict()
        d["label"] = self.label
        if self.name != "pgd":  # keep records free of settings the attack ignores
            for key in ("k", "restarts", "loss", "targeted", "random_start"):
                d.pop(key)
        if self.name != "fgsm":
            d.pop("fgsm_random_start")
        if self.name != "autoattack":
            d.pop("version")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AttackSpec":
        d = {k: v for k, v in d.items() if k != "label"}
        threat = ThreatModel.from_dict(d.pop("threat", {}))
        return cls(threat=threat, **d)
