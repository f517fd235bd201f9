"""The model registry and ``build_model``.

Constructors are registered by name as ``fn(num_classes, input_shape, **options) ->
nn.Module`` (the raw network, taking normalized inputs). Registration meta holds a
one-line ``summary`` and an ``options`` dict of help strings; the defaults come from
the constructor's signature, so help and behaviour cannot drift apart."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import RobustError, first_line
from ..registry import Registry
from ..runtime import module_mode
from ..values import ValueProblem
from .normalize import NormalizedModel

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")

# Options that only choose starting weights; a model rebuilt from a checkpoint gets its
# weights from the state_dict, so these are kept apart from the architecture options.
INIT_ONLY_OPTIONS = ("pretrained", "weights")

# Families of outside models named by a prefix ("tv-resnet50", "timm-convnext_tiny"):
# prefix -> (resolver(name) -> (constructor, meta), one-line description for listings).
_PREFIXES: dict[str, tuple[Callable[[str], tuple[Callable[..., nn.Module], dict[str, Any]]], str]] = {}


def register_prefix(
    prefix: str, resolver: Callable[[str], tuple[Callable[..., nn.Module], dict[str, Any]]], description: str
) -> None:
    """Models named ``prefix + name`` are built by ``resolver(name)``, which imports its
    library only when such a model is asked for."""
    if prefix in _PREFIXES:
        raise KeyError(f"model prefix '{prefix}' registered twice")
    _PREFIXES[prefix] = (resolver, description)


def prefix_help() -> list[str]:
    """'PREFIX<name>: description' for every registered family."""
    return [f"{p}<name>: {d}" for p, (_, d) in sorted(_PREFIXES.items())]


def _constructor(arch: str) -> tuple[Callable[..., nn.Module], dict[str, Any]]:
    if not isinstance(arch, str):
        raise RobustError(f"model name must be a string, got {arch!r}")
    if arch in MODELS:
        return MODELS.get(arch), MODELS.meta(arch)
    for prefix, (resolver, _) in _PREFIXES.items():
        if arch.startswith(prefix) and len(arch) > len(prefix):
            return resolver(arch[len(prefix) :])
    raise RobustError(
        f"unknown model '{arch}'; valid models: {', '.join(MODELS.names())}"
        + "".join(f", or {p}<name> ({d})" for p, (_, d) in sorted(_PREFIXES.items()))
    )


def option_defaults(arch: str) -> dict[str, Any]:
    """The options a model takes, with their defaults."""
    fn, _ = _constructor(arch)
    params = list(inspect.signature(fn).parameters.values())[2:]  # after num_classes, input_shape
    return {p.name: p.default for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def _fmt_default(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def model_kwargs_help(arch: str | None = None) -> str:
    """Plain-text help on model options: for one model, its summary and each option with
    default and meaning; for None, one line per registered model."""
    if arch is None:
        lines = []
        for name in MODELS.names():
            opts = ", ".join(f"{k}={_fmt_default(v)}" for k, v in option_defaults(name).items())
            lines.append(f"{name}: {MODELS.meta(name).get('summary', '')}" + (f" [{opts}]" if opts else ""))
        lines.extend(prefix_help())
        return "\n".join(lines)
    _, meta = _constructor(arch)
    lines = [f"{arch}: {meta.get('summary', '')}"]
    helps = meta.get("options", {})
    for name, default in option_defaults(arch).items():
        lines.append(f"  {name} (default {_fmt_default(default)}): {helps.get(name, '')}")
    return "\n".join(lines)


def check_logits(net: nn.Module, label: str, num_classes: int, input_shape: tuple[int, int, int]) -> None:
    """One eval-mode forward of a blank input: the net takes ``input_shape`` and returns
    (1, num_classes) logits, or a RobustError says what it cannot do."""
    try:
        with module_mode(net, train=False), torch.no_grad():
            out = net(torch.zeros(1, *input_shape))
    except Exception as e:  # noqa: BLE001 - shape errors come as RuntimeError, ValueError or AssertionError
        raise RobustError(
            f"{label} cannot take {'x'.join(map(str, input_shape))} inputs ({first_line(e)}); "
            "resize the images (data.image_size) or pick another model"
        ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, num_classes):
        raise RobustError(f"{label} does not return plain (batch, {num_classes}) logits")


def _check_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise RobustError(f"input_shape must be (channels, height, width) of positive ints, got {input_shape!r}")
    return shape  # type: ignore[return-value]


def build_model(
    arch: str, *, num_classes: int, input_shape: Sequence[int], mean, std, **arch_kwargs: Any
) -> NormalizedModel:
    """The registered network ``arch`` behind a Normalize(mean, std) layer; it takes
    [0,1] pixels shaped ``input_shape`` (C, H, W) and returns (B, num_classes) logits.

    ``arch_kwargs`` are plain JSON values (the checkpoint stores them); strings such as
    "16,32,64" or "true" are accepted as the CLI gives them."""
    fn, _ = _constructor(arch)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise RobustError(f"num_classes must be a positive integer, got {num_classes!r}")
    shape = _check_shape(input_shape)
    valid = option_defaults(arch)
    unknown = sorted(set(arch_kwargs) - set(valid))
    if unknown:
        raise ValueProblem(
            ("model", "kwargs", unknown[0]),
            f"model '{arch}' has no option {', '.join(unknown)}; valid options: {', '.join(valid) or 'none'}",
        )
    try:
        json.dumps(arch_kwargs)
    except (TypeError, ValueError):
        raise RobustError(
            f"model options must be plain JSON values (numbers, strings, lists), got {arch_kwargs!r}"
        ) from None
    normalized = NormalizedModel(nn.Identity(), mean, std)  # validates mean/std before any heavy construction
    if normalized.mean.numel() != shape[0]:
        raise RobustError(
            f"normalization has {normalized.mean.numel()} channels but the input has {shape[0]} (input_shape {shape})"
        )
    normalized.net = fn(num_classes, shape, **arch_kwargs)
    normalized.arch = arch
    normalized.arch_kwargs = {k: v for k, v in arch_kwargs.items() if k not in INIT_ONLY_OPTIONS}
    normalized.init_kwargs = {k: v for k, v in arch_kwargs.items() if k in INIT_ONLY_OPTIONS}
    normalized.num_classes = num_classes
    normalized.input_shape = shape
    return normalized
