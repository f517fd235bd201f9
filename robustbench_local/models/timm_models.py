"""timm models as ``timm-<name>`` (any name ``timm.is_model`` knows, a pretrained tag such
as ``resnet18.a1_in1k`` included).

timm builds the network for the dataset itself: ``num_classes`` sets the head and
``in_chans`` the first conv (pretrained RGB filters are adapted by timm). timm is
imported only when such a model is asked for, so the package works without it.
After building, one eval-mode forward of a blank input checks the net takes the input
size and returns (1, num_classes) logits."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import RobustError, first_line
from .options import as_bool
from .zoo import check_logits, register_prefix

TIMM_PREFIX = "timm-"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_OPTIONS = {
    "pretrained": "start from timm's pretrained weights (downloaded once from the Hugging Face hub; with no "
    "network, pass a local state_dict with --weights instead)",
}


def _timm():
    try:
        import timm  # deferred: optional dependency (imported when a timm model is asked for)
    except ImportError:
        raise RobustError("timm-NAME needs timm: pip install timm (or the project's [timm] extra)") from None
    return timm


def build_timm(name: str, num_classes: int, input_shape: tuple[int, int, int], pretrained=False) -> nn.Module:
    pretrained = as_bool("pretrained", pretrained)
    timm = _timm()
    try:
        net = timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=input_shape[0])
    except Exception as e:  # noqa: BLE001 - hub errors (offline, no such file) and size asserts come in many types
        if pretrained:
            raise RobustError(
                f"cannot get pretrained weights for {TIMM_PREFIX}{name} ({first_line(e)}); with no "
                "network, fetch them elsewhere and pass the state_dict with --weights"
            ) from None
        raise RobustError(
            f"timm cannot build {TIMM_PREFIX}{name} for {num_classes} classes and "
            f"{'x'.join(map(str, input_shape))} inputs ({first_line(e)})"
        ) from None
    check_logits(net, f"{TIMM_PREFIX}{name}", num_classes, input_shape)
    return net


def timm_constructor(name: str) -> tuple[Callable[..., nn.Module], dict[str, Any]]:
    """The constructor and registry meta for ``timm-<name>``."""
    timm = _timm()
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        hint = f"close names: {', '.join(close)}" if close else "see timm.list_models() for the names"
        raise RobustError(f"unknown timm model '{name}' in '{TIMM_PREFIX}{name}'; {hint}")
    meta = {
        "summary": f"timm {name} (head for the dataset's classes, first conv for its channels)",
        "options": _OPTIONS,
    }
    return functools.partial(build_timm, name), meta


def _adapt(values, channels: int) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) == channels:
        return values
    if len(values) == 1:
        return values * channels
    return (sum(values) / len(values),) * channels  # grey (or other) images: one mean of the colour values


def timm_normalization(name: str, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of the model's timm ``pretrained_cfg`` (read from timm's registry, no
    model is built), ImageNet's when it has none; adapted to ``channels``."""
    cfg = _timm().get_pretrained_cfg(name)
    mean = getattr(cfg, "mean", None) or IMAGENET_MEAN
    std = getattr(cfg, "std", None) or IMAGENET_STD
    return _adapt(mean, channels), _adapt(std, channels)


register_prefix(TIMM_PREFIX, timm_constructor, "any timm model (pip install timm)")
