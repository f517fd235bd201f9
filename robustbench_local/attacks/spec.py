"""AttackSpec: one attack with its threat model and settings, as recorded."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ..errors import RobustError
from ..threat import ThreatModel

LOSSES = ("ce", "dlr")
TARGETING = ("none", "random", "least-likely")


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
        if self.k < 1:
            raise RobustError(f"--k must be >= 1 PGD step, got {self.k}")
        if self.restarts < 1:
            raise RobustError(f"--restarts must be >= 1, got {self.restarts}")
        if self.restarts > 1 and not self.random_start:
            raise RobustError("--restarts > 1 needs --random-start (otherwise every restart repeats the first)")
        if self.loss not in LOSSES:
            raise RobustError(f"unknown loss '{self.loss}'; valid: {', '.join(LOSSES)}")
        if self.targeted not in TARGETING:
            raise RobustError(f"unknown targeting '{self.targeted}'; valid: {', '.join(TARGETING)}")

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
