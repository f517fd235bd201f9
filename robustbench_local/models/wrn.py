"""Wide ResNets (Zagoruyko & Komodakis), as used by TRADES, MART and RobustBench:
pre-activation blocks, 3 stages of 16k-32k-64k channels, (depth - 4) / 6 blocks per stage."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .options import as_float, as_int, bad
from .zoo import MODELS


class WideBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.equal = c_in == c_out and stride == 1
        self.shortcut = None if self.equal else nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        # With a projection the shortcut also sees the pre-activated input (as in the original).
        short = x if self.equal else self.shortcut(act)
        out = F.relu(self.bn2(self.conv1(act)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        return short + self.conv2(out)


class WideResNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, depth: int, widen: int, dropout: float):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        stages = []
        for i in range(3):
            blocks = [
                WideBlock(
                    widths[i] if j == 0 else widths[i + 1],
                    widths[i + 1],
                    (1 if i == 0 else 2) if j == 0 else 1,
                    dropout,
                )
                for j in range(n)
            ]
            stages.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = stages
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn1(out))
        return self.fc(self.pool(out).flatten(1))


_OPTIONS = {
    "depth": "total depth; (depth - 4) must be a multiple of 6 (28 -> 4 blocks per stage, 34 -> 5)",
    "widen": "width multiplier k: stages have 16k, 32k, 64k channels",
    "dropout": "dropout probability between the two convs of each block, in [0, 1)",
}


def wide_resnet(num_classes: int, in_channels: int, depth, widen, dropout) -> WideResNet:
    depth = as_int("depth", depth, minimum=10)
    if (depth - 4) % 6:
        raise bad("depth", f"must be 6n+4 (10, 16, 22, 28, 34, 40, ...), got {depth}")
    return WideResNet(
        num_classes,
        in_channels,
        depth,
        as_int("widen", widen, minimum=1),
        as_float("dropout", dropout, low=0.0, high=1.0, high_open=True),
    )


@MODELS.register("wrn", summary="WideResNet-depth-widen (Zagoruyko & Komodakis)", options=_OPTIONS)
def wrn(num_classes: int, input_shape: tuple[int, int, int], depth=28, widen=10, dropout=0.0) -> nn.Module:
    return wide_resnet(num_classes, input_shape[0], depth, widen, dropout)


def _register_fixed(depth: int, default_widen: int) -> None:
    options = {k: v for k, v in _OPTIONS.items() if k != "depth"}

    @MODELS.register(
        f"wrn-{depth}-{default_widen}",
        summary=f"WideResNet-{depth}-{default_widen}, the adversarial-training standard",
        options=options,
    )
    def make(num_classes: int, input_shape: tuple[int, int, int], widen=default_widen, dropout=0.0) -> nn.Module:
        return wide_resnet(num_classes, input_shape[0], depth, widen, dropout)


_register_fixed(28, 10)
_register_fixed(34, 10)
