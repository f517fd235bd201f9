"""The seeds' small CNNs: the configurable ``cnn`` and the 3-block ``vgg``.

Pools use ceil_mode so odd sizes (Fashion-MNIST's 28 -> 14 -> 7 -> 4) keep the
border and line up with the stride-2 skip convolutions; on even sizes this is the
same as a plain 2x2 max-pool."""

from __future__ import annotations

import torch
from torch import nn

from .options import as_bool, as_float, as_int, as_int_list
from .zoo import MODELS


def conv_bn_relu(c_in: int, c_out: int, bn: bool) -> list[nn.Module]:
    # Without batch-norm the convolution needs its own bias.
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU(inplace=True))
    return layers


class CNNBlock(nn.Module):
    """[conv3x3, BN, ReLU, conv3x3, BN, ReLU, maxpool 2] (+ 1x1 stride-2 conv skip), dropout."""

    def __init__(self, c_in: int, c_out: int, *, bn: bool, skip: bool, dropout: float):
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn_relu(c_in, c_out, bn), *conv_bn_relu(c_out, c_out, bn), nn.MaxPool2d(2, ceil_mode=True)
        )
        self.skip = nn.Conv2d(c_in, c_out, 1, stride=2) if skip else None
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.skip is not None:
            out = out + self.skip(x)
        return self.drop(out)


class SeedCNN(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, maps: list[int], *, bn: bool, skip: bool, dropout: float):
        super().__init__()
        widths = [in_channels, *maps]
        self.features = nn.Sequential(
            *[CNNBlock(a, b, bn=bn, skip=skip, dropout=dropout) for a, b in zip(widths, widths[1:])]
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(maps[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@MODELS.register(
    "cnn",
    summary="the seeds' configurable CNN: blocks of 2x(conv3x3-BN-ReLU), maxpool, dropout; GAP; linear",
    options={
        "maps": "output channels of each block; one block per entry (e.g. 16,32,64)",
        "dropout": "dropout probability after each block, in [0, 1)",
        "bn": "batch-norm after each conv (without it the convs get a bias)",
        "skip": "add a 1x1 stride-2 conv of each block's input to its pooled output",
    },
)
def cnn(
    num_classes: int, input_shape: tuple[int, int, int], maps="16,32,64", dropout=0.1, bn=True, skip=False
) -> nn.Module:
    return SeedCNN(
        num_classes,
        input_shape[0],
        as_int_list("maps", maps),
        bn=as_bool("bn", bn),
        skip=as_bool("skip", skip),
        dropout=as_float("dropout", dropout, low=0.0, high=1.0, high_open=True),
    )


class VGG3(nn.Module):
    """32-32-pool, 64-64-pool, 128-128-pool (times width/32), flatten, [hidden FC], FC."""

    def __init__(
        self, num_classes: int, input_shape: tuple[int, int, int], width: int, *, bn: bool, dropout: float, hidden: int
    ):
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for c_out in (width, 2 * width, 4 * width):
            layers += conv_bn_relu(c, c_out, bn) + conv_bn_relu(c_out, c_out, bn)
            layers += [nn.MaxPool2d(2, ceil_mode=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            c, h, w = c_out, -(-h // 2), -(-w // 2)
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten()]
        features = c * h * w
        if hidden > 0:
            head += [nn.Linear(features, hidden), nn.ReLU(inplace=True)]
            if dropout > 0:
                head.append(nn.Dropout(dropout))
            features = hidden
        head.append(nn.Linear(features, num_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@MODELS.register(
    "vgg",
    summary="the seeds' 3-block CIFAR CNN: 32-32-pool, 64-64-pool, 128-128-pool, flatten, FC-ReLU, FC",
    options={
        "width": "channels of the first block; the others have 2x and 4x",
        "hidden": "units of the hidden fully connected layer (0: flatten straight to the output layer)",
        "dropout": "dropout probability after each pool and the hidden layer, in [0, 1)",
        "bn": "batch-norm after each conv (without it the convs get a bias)",
    },
)
def vgg(num_classes: int, input_shape: tuple[int, int, int], width=32, hidden=128, dropout=0.2, bn=True) -> nn.Module:
    return VGG3(
        num_classes,
        input_shape,
        as_int("width", width, minimum=1),
        bn=as_bool("bn", bn),
        dropout=as_float("dropout", dropout, low=0.0, high=1.0, high_open=True),
        hidden=as_int("hidden", hidden, minimum=0),
    )
