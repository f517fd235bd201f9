"""Per-example losses an attack ascends. Each returns a (N,) tensor."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of Logits Ratio (Croce & Hein 2020), to be maximised: invariant to
    shifts and scaling of the logits, so it is not fooled by saturated softmax."""
    srt, _ = logits.sort(dim=1)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    top_is_y = (srt[:, -1] == z_y).float()
    z_other = srt[:, -2] * top_is_y + srt[:, -1] * (1.0 - top_is_y)
    return -(z_y - z_other) / (srt[:, -1] - srt[:, -3] + 1e-12)


def targeted_ce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -F.cross_entropy(logits, target, reduction="none")


def targeted_dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    srt, _ = logits.sort(dim=1)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (srt[:, -1] - 0.5 * (srt[:, -3] + srt[:, -4]) + 1e-12)


def pick_targets(logits: torch.Tensor, y: torch.Tensor, how: str) -> torch.Tensor:
    """'random': uniform over the classes other than y (global RNG);
    'least-likely': the class the clean logits rank lowest."""
    n_cls = logits.shape[1]
    if how == "least-likely":
        return logits.argmin(dim=1)
    if how == "random":
        offset = torch.randint(1, n_cls, y.shape, device=y.device)
        return (y + offset) % n_cls
    raise ValueError(f"unknown targeting '{how}'")
