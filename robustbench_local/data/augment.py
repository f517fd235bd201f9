"""Batched augmentation on the training device: float pixels in [0,1] in and out,
(B, C, H, W), same shape. Every op works on the whole batch at once (masks, gathers,
broadcasting), with no per-image Python loop, and draws its randomness from the
global torch RNG on the batch's device, so a reseeded run repeats exactly."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import RobustError

AUGMENT_POLICIES = ("none", "light", "basic", "strong")

# the policy used when --augment is not given; datasets not listed get 'basic'
DEFAULT_AUGMENT = {"cifar10": "basic", "cifar100": "basic", "fashion-mnist": "basic"}


def hflip(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Mirrors each image left-right with probability p."""
    if p <= 0:
        return x
    if p >= 1:
        return x.flip(3)
    mask = torch.rand(x.shape[0], device=x.device) < p
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(3), x)


def random_crop(x: torch.Tensor, padding: int, fill: float = 0.0, mode: str = "constant") -> torch.Tensor:
    """Pads every side by ``padding`` pixels of ``fill`` (or mirrored, mode 'reflect') and
    cuts a random window of the original size per image (torchvision's
    RandomCrop(size, padding, padding_mode)). The windows are taken by one gather from
    the padded batch with per-image row and column offsets."""
    if padding <= 0:
        return x
    b, c, h, w = x.shape
    pads = (padding, padding, padding, padding)
    padded = F.pad(x, pads, mode="reflect") if mode == "reflect" else F.pad(x, pads, value=fill)
    dy = torch.randint(0, 2 * padding + 1, (b,), device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)).view(b, 1, h, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device)).view(b, 1, 1, w)
    bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    ci = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[bi, ci, rows, cols]


def _factors(x: torch.Tensor, strength: float) -> torch.Tensor:
    # one factor per image, uniform in [1 - strength, 1 + strength]
    return (1 + strength * (2 * torch.rand(x.shape[0], device=x.device, dtype=x.dtype) - 1)).view(-1, 1, 1, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return 0.299 * r + 0.587 * g + 0.114 * b  # ITU-R 601 luma, as torchvision uses


def color_jitter(
    x: torch.Tensor, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2
) -> torch.Tensor:
    """Per-image random brightness (scale), contrast (blend with the image's mean gray)
    and saturation (blend with its own gray image; skipped for 1-channel images),
    clamped to [0,1] after each step like torchvision's ColorJitter."""
    if brightness > 0:
        x = (x * _factors(x, brightness)).clamp_(0, 1)
    if contrast > 0:
        m = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - m) * _factors(x, contrast) + m).clamp_(0, 1)
    if saturation > 0 and x.shape[1] == 3:
        g = _gray(x)
        x = ((x - g) * _factors(x, saturation) + g).clamp_(0, 1)
    return x


def cutout(x: torch.Tensor, size: int, fill: Sequence[float] | float = 0.0, p: float = 1.0) -> torch.Tensor:
    """Cutout (DeVries & Taylor, 2017): with probability p, a size x size square centred at a
    random pixel (clipped at the border) is set to ``fill`` (a value or one per channel)."""
    if size <= 0 or p <= 0:
        return x
    b, c, h, w = x.shape
    cy = torch.randint(0, h, (b, 1), device=x.device)
    cx = torch.randint(0, w, (b, 1), device=x.device)
    top, left = cy - size // 2, cx - size // 2
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_rows = (ys >= top) & (ys < top + size)  # (B, H)
    in_cols = (xs >= left) & (xs < left + size)  # (B, W)
    mask = in_rows[:, :, None] & in_cols[:, None, :]  # (B, H, W)
    if p < 1:
        mask &= (torch.rand(b, device=x.device) < p).view(b, 1, 1)
    fill_t = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(-1)
    fill_t = fill_t.expand(c) if fill_t.numel() == 1 else fill_t
    return torch.where(mask[:, None], fill_t.view(1, c, 1, 1), x)


class Augment:
    """A named chain of batched ops; ``repr`` lists them with their settings for records."""

    def __init__(self, policy: str, ops: list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]):
        self.policy = policy
        self.ops = ops

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for _, op in self.ops:
            x = op(x)
        return x

    def __repr__(self) -> str:
        return f"Augment({self.policy}: {', '.join(name for name, _ in self.ops)})"


def build_augment(policy: str, info) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """'none' -> None; 'light' -> random translate by up to H/16 (2 px at 32x32) with
    reflect padding + flip (airbench's, for short runs); 'basic' -> random crop (pad
    H/8, 4 px at 32x32 and 28x28) + flip; 'strong' -> basic + colour jitter 0.2 + cutout
    of an H/4 square (8 px at 32x32) filled with the dataset mean. Sizes follow the
    image side in info.input_shape."""
    if policy not in AUGMENT_POLICIES:
        raise RobustError(f"unknown augmentation policy '{policy}'; valid policies: {', '.join(AUGMENT_POLICIES)}")
    if policy == "none":
        return None
    side = min(info.input_shape[1], info.input_shape[2])
    if policy == "light":
        shift = max(1, round(side / 16))
        return Augment(
            policy,
            [
                (f"random_translate({shift}, reflect)", lambda x: random_crop(x, shift, mode="reflect")),
                ("hflip(p=0.5)", lambda x: hflip(x, 0.5)),
            ],
        )
    pad = max(1, round(side / 8))
    ops: list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = [
        (f"random_crop(pad={pad})", lambda x: random_crop(x, pad)),
        ("hflip(p=0.5)", lambda x: hflip(x, 0.5)),
    ]
    if policy == "strong":
        size = max(1, side // 4)
        fill = tuple(info.mean)
        ops += [
            ("color_jitter(0.2, 0.2, 0.2)", lambda x: color_jitter(x, 0.2, 0.2, 0.2)),
            (f"cutout(size={size})", lambda x: cutout(x, size, fill)),
        ]
    return Augment(policy, ops)


def default_augment(info) -> str:
    """The per-dataset default policy ('basic' for the built-ins and for image folders)."""
    return DEFAULT_AUGMENT.get(info.name.split(":", 1)[0], "basic")
