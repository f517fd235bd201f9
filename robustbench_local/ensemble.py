"""Ensembles: several checkpoints as one model that averages their logits, so an
attack on it targets the whole ensemble."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .checkpoint import file_sha256, load_checkpoint
from .errors import RobustError


class Ensemble(nn.Module):
    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)
        # a shared normalization, so eps in normalized space means one thing
        self.register_buffer("mean", members[0].mean.detach().clone())
        self.register_buffer("std", members[0].std.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(dim=0)


def load_ensemble(paths: Sequence[str | Path], device: str | torch.device = "cpu"):
    """(Ensemble, meta) from checkpoints that share dataset, classes and
    normalization; evaluate() accepts the pair directly."""
    if len(paths) < 2:
        raise RobustError("--ensemble needs at least two checkpoints")
    models, metas = zip(*(load_checkpoint(p, device=device) for p in paths))
    ref = metas[0]
    for p, m in zip(paths[1:], metas[1:]):
        for key in ("num_classes", "classes", "mean", "std"):
            if m.get(key) != ref.get(key):
                raise RobustError(f"cannot ensemble {p} with {paths[0]}: their {key} differ")
    meta = dict(ref)
    meta.update(
        {
            "arch": "ensemble",
            "arch_kwargs": {},
            "members": [
                {
                    "path": str(p),
                    "sha256": file_sha256(p),
                    "arch": m.get("arch"),
                    "method": m.get("method"),
                    "adv": m.get("adv"),
                }
                for p, m in zip(paths, metas)
            ],
            "method": "+".join(sorted({str(m.get("method")) for m in metas})),
            "adv": "+".join(sorted({str(m.get("adv")) for m in metas})),
        }
    )
    name = "ensemble(" + ",".join(Path(p).parent.name or Path(p).stem for p in paths) + ")"
    return Ensemble(models).eval(), meta, name
