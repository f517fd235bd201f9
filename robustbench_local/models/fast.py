"""``fast``: the network of Keller Jordan's airbench94, sized for CPUs by ``widths``.

    whitening conv 2x2 (frozen; set from data with ``init_whitening``) -> GELU
    per width: [conv3x3, maxpool 2, BN, GELU, conv3x3, BN, GELU]
    global max-pool -> linear (no bias) -> x logit_scale

As in airbench: convs have no bias and start with identity (Dirac) filters in their
first in_channels outputs; BatchNorm has a fixed scale of 1 (no weight), a learned
shift, eps 1e-12 and momentum 0.4; the logit scale is 1/9. The global max-pool
replaces airbench's MaxPool2d(3) so that 28x28 and 64x64 inputs work; on 32x32 inputs
the last feature map is 3x3 and the two are the same.

Training recipe (airbench): label smoothing 0.2, Nesterov SGD with a higher learning
rate on BN shifts (``bias_lr_scale``: the net hands fit() its parameter groups through
``optimizer_groups``), flip + translate augmentation, and ``init_whitening`` on about
5000 training images before the first step (the whitening weight is never trained).

``tta`` (test-time augmentation, eval mode only): 'flip' averages the logits of the image
and its mirror; 'flip-translate' also averages in one-pixel shifts (reflect-padded) up-left
and down-right, each with its mirror (airbench's level 2: half the weight on the
unshifted pair). It is part of the classifier: attacks in eval mode see the averaged
logits and pay for every view."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RobustError
from .options import as_float, as_int_list, bad
from .zoo import MODELS

WHITEN_KERNEL = 2


def _dirac_init(weight: torch.Tensor) -> None:
    # airbench: the first in_channels filters pass their input channel straight through.
    torch.nn.init.dirac_(weight[: weight.size(1)])


class FastConv(nn.Conv2d):
    """3x3 'same' convolution without bias, Dirac-initialised."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, kernel_size=3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        _dirac_init(self.weight.data)


class Whiten(nn.Module):
    """The 2x2 whitening convolution. Its weight is a buffer, not a parameter: it is set
    from data (``FastNet.init_whitening``) and never trained, and stays frozen even when
    other code toggles ``requires_grad`` on all parameters (as attacks do). The bias
    is learned."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int):
        super().__init__()
        probe = nn.Conv2d(c_in, c_out, kernel_size)  # the default conv initialisation
        weight = probe.weight.detach().clone()
        _dirac_init(weight)
        self.register_buffer("weight", weight)
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias)


class FastBatchNorm(nn.BatchNorm2d):
    """BatchNorm with the scale fixed at 1 and a learned shift (airbench's eps 1e-12,
    momentum 0.4). The missing scale is absent rather than frozen, so it cannot be
    unfrozen by accident."""

    def __init__(self, channels: int, momentum: float = 0.4, eps: float = 1e-12):
        super().__init__(channels, eps=eps, momentum=momentum, affine=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(
            x, self.running_mean, self.running_var, None, self.bias, self.training, self.momentum, self.eps
        )


class ConvGroup(nn.Module):
    def __init__(self, c_in: int, c_out: int, bn_momentum: float):
        super().__init__()
        self.conv1 = FastConv(c_in, c_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = FastBatchNorm(c_out, bn_momentum)
        self.conv2 = FastConv(c_out, c_out)
        self.norm2 = FastBatchNorm(c_out, bn_momentum)
        self.activ = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


TTA = ("none", "flip", "flip-translate")


class FastNet(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        widths: list[int],
        logit_scale: float,
        *,
        bn_momentum: float = 0.4,
        bias_lr_scale: float = 1.0,
        tta: str = "none",
    ):
        super().__init__()
        whiten_width = 2 * in_channels * WHITEN_KERNEL**2
        self.whiten = Whiten(in_channels, whiten_width, WHITEN_KERNEL)
        self.activ = nn.GELU()
        chans = [whiten_width, *widths]
        self.layers = nn.Sequential(*[ConvGroup(a, b, bn_momentum) for a, b in zip(chans, chans[1:])])
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(widths[-1], num_classes, bias=False)
        self.logit_scale = logit_scale
        self.bias_lr_scale = bias_lr_scale
        self.tta = tta

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.activ(self.whiten(x)))
        return self.head(self.pool(x).flatten(1)) * self.logit_scale

    def mirrored(self, x: torch.Tensor) -> torch.Tensor:
        # one batch of 2N: eval-mode batch norm makes this the same as two passes
        both = self.logits(torch.cat((x, x.flip(-1))))
        return 0.5 * (both[: len(x)] + both[len(x) :])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.tta == "none":
            return self.logits(x)
        out = self.mirrored(x)
        if self.tta == "flip-translate":
            h, w = x.shape[-2:]
            padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
            shifted = 0.5 * (self.mirrored(padded[..., :h, :w]) + self.mirrored(padded[..., 2:, 2:]))
            out = 0.5 * (out + shifted)
        return out

    def optimizer_groups(self) -> list[dict]:
        """fit()'s parameter groups: the batch-norm and whitening shifts learn
        ``bias_lr_scale`` times faster, with weight decay divided by the same factor so
        that the decay per step (lr x wd) stays the others' (airbench)."""
        shifts = [p for name, p in self.named_parameters() if name.endswith("bias") and p.requires_grad]
        ids = {id(p) for p in shifts}
        rest = [p for p in self.parameters() if id(p) not in ids and p.requires_grad]
        return [
            {"params": rest},
            {"params": shifts, "lr_scale": self.bias_lr_scale, "wd_scale": 1.0 / self.bias_lr_scale},
        ]

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters from the covariance of 2x2 patches of ``images``
        (as the net sees them, i.e. already normalized: ``model.normalize(x)``).
        Filters are the eigenvectors scaled by 1/sqrt(eigenvalue + eps), with their
        negatives, so the GELU after them keeps both signs."""
        c, k = images.shape[1], WHITEN_KERNEL
        if c != self.whiten.weight.shape[1]:
            raise RobustError(f"init_whitening got {c}-channel images for a {self.whiten.weight.shape[1]}-channel net")
        cov = torch.zeros(c * k * k, c * k * k, dtype=torch.float64, device=images.device)
        count = 0
        for chunk in images.split(256):  # chunks bound the memory of the patch matrix
            # (N, C, H', W', k, k) -> one row per patch, laid out (C, k, k) like the conv weight.
            p = chunk.float().unfold(2, k, 1).unfold(3, k, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)
            cov += (p.T @ p).double()
            count += len(p)
        cov /= count
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.T.flip(0)
        filters = (eigenvectors / torch.sqrt(eigenvalues.clamp_min(0) + eps)[:, None]).reshape(-1, c, k, k)
        weight = self.whiten.weight
        weight.copy_(torch.cat((filters, -filters)).to(weight))


@MODELS.register(
    "fast",
    summary="airbench94-style fast CIFAR net: whitening conv, 3 conv groups, max-pool, scaled linear",
    options={
        "widths": "output channels of each conv group, one group per entry (airbench94: 64,256,256)",
        "logit_scale": "factor on the logits (airbench: 1/9)",
        "bn_momentum": "batch-norm running-statistics momentum (PyTorch convention; airbench: 0.4 with lookahead, "
        "0.1 without)",
        "bias_lr_scale": "learning-rate factor for the batch-norm and whitening shifts (airbench: 64)",
        "tta": "test-time augmentation in eval mode: none, flip or flip-translate (2 or 6 views per image)",
    },
)
def fast(
    num_classes: int,
    input_shape: tuple[int, int, int],
    widths="64,128,128",
    logit_scale="1/9",
    bn_momentum="0.4",
    bias_lr_scale="1",
    tta="none",
) -> nn.Module:
    if tta not in TTA:
        raise bad("tta", f"must be one of {', '.join(TTA)}, got '{tta}'")
    scale = as_float("bias_lr_scale", bias_lr_scale, low=0.0)
    if scale == 0:
        raise bad("bias_lr_scale", "must be > 0 (it also divides the shifts' weight decay)")
    return FastNet(
        num_classes,
        input_shape[0],
        as_int_list("widths", widths, minimum=1),
        as_float("logit_scale", logit_scale, low=0.0),
        bn_momentum=as_float("bn_momentum", bn_momentum, low=0.0, high=1.0),
        bias_lr_scale=scale,
        tta=tta,
    )
