"""ResNets for small images: no stride-2 stem, no max-pool.

- ``resnet18``/``resnet34``: Kuang Liu's pytorch-cifar ResNet (BasicBlock, 3x3 stride-1
  stem, widths 64-128-256-512); ``blocks`` gives other depths such as the seeds' 5,5,5,5.
- ``preact-resnet18``: the pre-activation ResNet-18 of Wong et al. "Fast is better than
  free" and Rice et al. "Overfitting in adversarially robust deep learning".
- ``resnet20`` ... ``resnet110``: He et al.'s CIFAR ResNets (6n+2 layers, 3 stages of
  16-32-64 channels), with shortcut option A (subsample and zero-pad) or B (1x1 conv).

Global average pooling is adaptive, so 28x28 and 64x64 inputs work as well as 32x32."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .options import as_choice, as_int, as_int_list
from .zoo import MODELS


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str = "B"):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.pad_shortcut: tuple[int, int] | None = None
        self.stride = stride
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            if shortcut == "A":  # parameter-free: subsample, then zero-pad the new channels
                lo = (c_out - c_in) // 2
                self.pad_shortcut = (lo, c_out - c_in - lo)
            else:
                self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.pad_shortcut is not None:
            short = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, *self.pad_shortcut))
        else:
            short = self.shortcut(x)
        return F.relu(out + short)


class PreActBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False) if stride != 1 or c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        short = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + short


class CifarResNet(nn.Module):
    """3x3 stride-1 stem, stages of blocks (stage i: width * 2**i channels, stride 2 from
    the second stage on), global average pooling, linear."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        blocks: list[int],
        width: int,
        *,
        preact: bool = False,
        shortcut: str = "B",
    ):
        super().__init__()
        self.preact = preact
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.Identity() if preact else nn.BatchNorm2d(width)
        stages = []
        c_in = width
        for i, n in enumerate(blocks):
            c_out = width * 2**i
            layer = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layer.append(PreActBlock(c_in, c_out, stride) if preact else BasicBlock(c_in, c_out, stride, shortcut))
                c_in = c_out
            stages.append(nn.Sequential(*layer))
        self.layers = nn.Sequential(*stages)
        # Pre-activation nets end with the BN-ReLU their last block left out.
        self.bn_out = nn.BatchNorm2d(c_in) if preact else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        if not self.preact:
            out = F.relu(self.bn1(out))
        out = self.layers(out)
        if self.preact:
            out = F.relu(self.bn_out(out))
        return self.linear(self.pool(out).flatten(1))


_RESNET_OPTIONS = {
    "blocks": "residual blocks per stage, one entry per stage (e.g. 5,5,5,5 for the seeds' deeper net)",
    "width": "channels of the first stage; stage i has width * 2**i",
}


def _register_liu(name: str, default_blocks: str, preact: bool, summary: str) -> None:
    @MODELS.register(name, summary=summary, options=_RESNET_OPTIONS)
    def make(num_classes: int, input_shape: tuple[int, int, int], blocks=default_blocks, width=64) -> nn.Module:
        return CifarResNet(
            num_classes,
            input_shape[0],
            as_int_list("blocks", blocks, minimum=1),
            as_int("width", width, minimum=1),
            preact=preact,
        )


_register_liu("resnet18", "2,2,2,2", False, "CIFAR ResNet-18 (Kuang Liu): 3x3 stride-1 stem, no max-pool, BasicBlocks")
_register_liu("resnet34", "3,4,6,3", False, "CIFAR ResNet-34 (Kuang Liu): 3x3 stride-1 stem, no max-pool, BasicBlocks")
_register_liu(
    "preact-resnet18",
    "2,2,2,2",
    True,
    "pre-activation ResNet-18 of Wong et al. / Rice et al. (adversarial-training baselines)",
)


def _init_he(net: nn.Module) -> nn.Module:
    # He et al. initialise convolutions and the classifier with Kaiming-normal weights.
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
    return net


def _register_he(depth: int) -> None:
    n = (depth - 2) // 6

    @MODELS.register(
        f"resnet{depth}",
        summary=f"He et al. CIFAR ResNet-{depth}: 3 stages of {n} BasicBlocks, 16-32-64 channels",
        options={
            "shortcut": "A: subsample + zero-pad channels (the paper's CIFAR choice); B: 1x1 conv + BN",
            "width": "channels of the first stage (16 in the paper); stage i has width * 2**i",
        },
    )
    def make(num_classes: int, input_shape: tuple[int, int, int], shortcut="A", width=16) -> nn.Module:
        return _init_he(
            CifarResNet(
                num_classes,
                input_shape[0],
                [n, n, n],
                as_int("width", width, minimum=1),
                shortcut=as_choice("shortcut", shortcut, ("A", "B")),
            )
        )


for _depth in (20, 32, 44, 56, 110):
    _register_he(_depth)
