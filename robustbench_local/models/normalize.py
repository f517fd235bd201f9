"""Input normalization lives inside the model, so every model takes [0,1] pixels.

Attacks and threat models then work on pixels, and the model's ``std`` tells them
how a radius in normalized space maps to pixel space (see ``threat.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import RobustError

NORMALIZATIONS = ("seed", "dataset", "none")


def _channel_vector(values: Sequence[float] | torch.Tensor, what: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(values, dtype=torch.float32).detach().flatten().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise RobustError(f"normalization {what} {values!r} is not a list of numbers") from None
    if t.numel() == 0 or not torch.isfinite(t).all():
        raise RobustError(f"normalization {what} {values!r} must be finite numbers, one per channel")
    return t.clone()


class Normalize(nn.Module):
    """z = (x - mean) / std per channel. mean/std are buffers shaped (1, C, 1, 1): they
    are saved in the state_dict and follow ``.to(device)``."""

    def __init__(self, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor):
        super().__init__()
        m = _channel_vector(mean, "mean")
        s = _channel_vector(std, "std")
        if m.numel() != s.numel():
            raise RobustError(f"normalization mean has {m.numel()} channels but std has {s.numel()}")
        if not (s > 0).all():
            raise RobustError(f"normalization std must be > 0 in every channel, got {s.tolist()}")
        self.register_buffer("mean", m.view(1, -1, 1, 1))
        self.register_buffer("std", s.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class NormalizedModel(nn.Module):
    """A raw network behind its input normalization: ``forward`` takes pixels in [0,1].

    ``build_model`` also sets the plain attributes ``arch``, ``arch_kwargs`` (the options
    that define the architecture, enough to rebuild it), ``init_kwargs`` (pretrained /
    weights, which only choose starting weights), ``num_classes`` and ``input_shape``."""

    def __init__(self, net: nn.Module, mean, std):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))

    @property
    def mean(self) -> torch.Tensor:
        """Per-channel mean, a 1-D float tensor on the model's device."""
        return self.normalize.mean.flatten()

    @property
    def std(self) -> torch.Tensor:
        """Per-channel std, a 1-D float tensor on the model's device."""
        return self.normalize.std.flatten()


def resolve_normalization(mode: str, info) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel for a normalization mode and a DatasetInfo-like ``info``
    (with .mean, .std, .input_shape as (C, H, W)).

    seed:    mean = std = 0.5, normalized space is [-1, 1] (the seeds' convention, under
             which --eps 0.0313 is 0.0157 in pixels);
    dataset: the dataset's own per-channel statistics;
    none:    mean 0, std 1 (normalized space is pixel space)."""
    if mode not in NORMALIZATIONS:
        raise RobustError(f"unknown normalization '{mode}'; valid normalizations: {', '.join(NORMALIZATIONS)}")
    channels = int(info.input_shape[0])
    if mode == "seed":
        return (0.5,) * channels, (0.5,) * channels
    if mode == "none":
        return (0.0,) * channels, (1.0,) * channels
    mean = tuple(float(v) for v in info.mean)
    std = tuple(float(v) for v in info.std)
    if len(mean) != channels or len(std) != channels:
        raise RobustError(f"dataset statistics have {len(mean)} mean / {len(std)} std values for {channels} channels")
    if min(std) <= 0:
        raise RobustError(f"dataset std must be > 0 in every channel to normalize by it, got {list(std)}")
    return mean, std
