"""torchvision ImageNet classifiers as ``tv-<name>`` (any name in
``torchvision.models.list_models(module=torchvision.models)``; a few are registered so
they show in listings and tests).

Steps, in order:
1. build the ImageNet architecture (1000 classes), then load starting weights if asked:
   ``weights=PATH``, a state_dict file read with ``torch.load(weights_only=True)`` (with
   or without ``pretrained``), else with ``pretrained`` torchvision's weights API
   (downloaded once into the torch hub cache);
2. small-input stem (``stem``; 'auto' means 'cifar' when the image side is <= 32):
   - ResNet, ResNeXt, Wide-ResNet: the 7x7 stride-2 conv becomes 3x3 stride-1 and the
     max-pool is dropped (the new conv starts from fresh weights);
   - DenseNet: the same on features.conv0 / features.pool0;
   - every other family keeps its stem: their global pooling makes small inputs run
     (the last feature map is just 1x1), and those that cannot take the input size
     (ViT, Swin, Inception at 32x32, ConvNeXt at 28x28, ...) fail the check in step 5;
3. inputs with other than 3 channels (when step 2 kept the stem; a new small stem takes
   C channels itself): the first conv takes C channels, its pretrained
   RGB filters summed and spread over them (a grey image then gives the same response
   as the RGB image with that grey value in every channel);
4. the classifier head (the last layer with 1000 outputs) is replaced for num_classes;
5. one eval-mode forward of a blank input checks the net takes input_shape and returns
   (1, num_classes); if not, a RobustError says so.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.error import URLError

import torch
from torch import nn

from ..errors import RobustError
from .options import as_bool, as_choice, bad
from .zoo import MODELS, check_logits, register_prefix

TV_PREFIX = "tv-"  # the family's name prefix, registered with the zoo below
DOWNLOAD_TIMEOUT_S = 20.0
IMAGENET_CLASSES = 1000
SMALL_INPUT_SIDE = 32
STEMS = ("auto", "imagenet", "cifar")

REGISTERED = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "efficientnet_b0")

# Auxiliary classifiers would change what forward returns in training mode.
_EXTRA_KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}

_OPTIONS = {
    "pretrained": "start from torchvision's ImageNet weights (downloaded once into the torch hub cache)",
    "weights": "start from a local state_dict file of the ImageNet model (e.g. a downloaded torchvision .pth); "
    "used instead of downloading when pretrained is also given",
    "stem": "auto: 'cifar' for images of side <= 32, else 'imagenet'; cifar: 3x3 stride-1 first conv and no "
    "max-pool (ResNet/ResNeXt/Wide-ResNet/DenseNet only); imagenet: unchanged",
}


def _tv_models():
    import torchvision.models  # deferred: start-up time (importing torchvision slows every start-up)

    return torchvision.models


def _download(name: str) -> dict[str, torch.Tensor]:
    models = _tv_models()
    weights = models.get_model_weights(name).DEFAULT
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # urllib inherits it, so no network cannot hang
    try:
        return weights.get_state_dict(progress=False, weights_only=True)
    except OSError as e:  # URLError, timeouts, refused connections, DNS failures
        reason = e.reason if isinstance(e, URLError) else e
        raise RobustError(
            f"cannot download pretrained weights for {TV_PREFIX}{name} from {weights.url} ({reason}); "
            f"with no network, fetch that file elsewhere and pass weights=PATH (the model option)"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    # deferred: import cycle (models.tv -> foreign/__init__ -> models)
    from ..foreign.weights import read_state_dict

    return read_state_dict(Path(path).expanduser())[0]


def _load(net: nn.Module, state: dict[str, torch.Tensor], name: str, source: str) -> None:
    if "aux_logits" in _EXTRA_KWARGS.get(name, {}):
        state = {k: v for k, v in state.items() if not k.startswith("aux")}
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = [
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        ]
        raise RobustError(f"{source} does not fit {TV_PREFIX}{name} (the ImageNet model): {'; '.join(parts)}")
    net.load_state_dict(state)


def _set(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def _small_stem(net: nn.Module, in_channels: int) -> bool:
    """3x3 stride-1 first conv and no max-pool, where the family allows it."""
    if isinstance(getattr(net, "conv1", None), nn.Conv2d) and isinstance(getattr(net, "maxpool", None), nn.MaxPool2d):
        conv, pool = "conv1", "maxpool"  # ResNet, ResNeXt, Wide-ResNet
    elif isinstance(getattr(getattr(net, "features", None), "conv0", None), nn.Conv2d):
        conv, pool = "features.conv0", "features.pool0"  # DenseNet
    else:
        return False
    old = net.get_submodule(conv)
    new = nn.Conv2d(in_channels, old.out_channels, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    _set(net, conv, new)
    _set(net, pool, nn.Identity())
    return True


def _adapt_input_channels(net: nn.Module, in_channels: int) -> None:
    path, old = next((n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d))
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        old.kernel_size,
        old.stride,
        old.padding,
        old.dilation,
        old.groups,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
    )
    with torch.no_grad():
        new.weight.copy_(old.weight.sum(1, keepdim=True).expand_as(new.weight) / in_channels)
        if old.bias is not None:
            new.bias.copy_(old.bias)
    _set(net, path, new)


def _replace_head(net: nn.Module, num_classes: int, name: str) -> None:
    heads = [
        (n, m)
        for n, m in net.named_modules()
        if (isinstance(m, nn.Linear) and m.out_features == IMAGENET_CLASSES)
        or (isinstance(m, nn.Conv2d) and m.out_channels == IMAGENET_CLASSES)
    ]
    if not heads:
        raise RobustError(f"{TV_PREFIX}{name}: found no {IMAGENET_CLASSES}-way classifier layer to replace")
    path, old = heads[-1]
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    else:  # SqueezeNet's 1x1 conv classifier
        new = nn.Conv2d(
            old.in_channels, num_classes, old.kernel_size, old.stride, old.padding, bias=old.bias is not None
        )
    _set(net, path, new)


def build_torchvision(
    name: str, num_classes: int, input_shape: tuple[int, int, int], pretrained=False, weights=None, stem="auto"
) -> nn.Module:
    pretrained = as_bool("pretrained", pretrained)
    stem = as_choice("stem", stem, STEMS)
    if weights is not None and not isinstance(weights, str):
        raise bad("weights", f"must be a file path, got {weights!r}")
    c, h, w = input_shape
    net = _tv_models().get_model(name, weights=None, **_EXTRA_KWARGS.get(name, {}))
    if weights:  # a local file wins, with or without pretrained=true: nothing is downloaded
        _load(net, _read_state_dict(weights), name, f"weights file {weights}")
    elif pretrained:
        _load(net, _download(name), name, "the downloaded weights")
    if stem == "auto":
        stem = "cifar" if min(h, w) <= SMALL_INPUT_SIDE else "imagenet"
        replaced = _small_stem(net, c) if stem == "cifar" else False
    elif stem == "cifar":
        replaced = _small_stem(net, c)
        if not replaced:
            raise bad(
                "stem",
                f"stem=cifar is only defined for ResNet, ResNeXt, Wide-ResNet and DenseNet, "
                f"not {TV_PREFIX}{name}; use stem=auto or imagenet",
            )
    else:
        replaced = False
    if not replaced and c != 3:
        _adapt_input_channels(net, c)
    _replace_head(net, num_classes, name)
    check_logits(net, f"{TV_PREFIX}{name}", num_classes, input_shape)
    return net


def torchvision_constructor(name: str) -> tuple[Callable[..., nn.Module], dict[str, Any]]:
    """The constructor and registry meta for ``tv-<name>``."""
    available = _tv_models().list_models(module=_tv_models())
    if name not in available:
        raise RobustError(
            f"unknown torchvision model '{name}' in '{TV_PREFIX}{name}'; "
            f"torchvision classification models: {', '.join(available)}"
        )
    return functools.partial(build_torchvision, name), _meta(name)


def _meta(name: str) -> dict[str, Any]:
    return {"summary": f"torchvision {name} (ImageNet architecture, new head, small-input stem)", "options": _OPTIONS}


for _name in REGISTERED:
    MODELS.register(f"{TV_PREFIX}{_name}", **_meta(_name))(functools.partial(build_torchvision, _name))

register_prefix(
    TV_PREFIX,
    torchvision_constructor,
    f"any torchvision classification model (e.g. {TV_PREFIX}resnet101), same options as the registered "
    f"{TV_PREFIX} models",
)
