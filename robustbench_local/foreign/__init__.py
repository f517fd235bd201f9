"""Open evaluation: models we did not train, taken in as a Target the evaluation
runs on exactly as it runs on our own checkpoints.

Routes (``ModelRequest.route``):
- ``weights``: ``arch`` (our zoo, ``tv-NAME``, ``timm-NAME``) built for the dataset,
  then a plain state_dict file loaded into it (see weights.py);
- ``robustbench``: an architecture of RobustBench's model zoo, weights from a file
  or RobustBench's own download (robustbench_zoo.py);
- ``torchscript`` and ``model-fn``: code the user trusts (code.py), opt-in only.

Every route ends as a NormalizedModel: the foreign network behind the normalization
the user stated, or the one its route implies (normalization.py); the record says
which was used and where it came from. Before any attack, one forward pass checks
that the model takes the dataset's images and returns one logit per class."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import file_sha256, load_state
from ..data import load_dataset
from ..errors import RobustError, first_line
from ..eval_inputs import Target
from ..models import build_model
from ..models.normalize import NormalizedModel
from ..models.timm_models import timm_normalization
from ..models.tv import TV_PREFIX
from ..runtime import module_mode
from . import normalization as N
from .code import load_factory, load_torchscript
from .robustbench_zoo import build as build_rb
from .robustbench_zoo import default_dataset
from .weights import read_state_dict, split_normalized

ROUTES = ("weights", "robustbench", "torchscript", "model-fn")
RB_THREAT_MODELS = ("Linf", "L2", "corruptions")


@dataclass
class ModelRequest:
    """What the user said about a foreign model (the CLI's --arch, --weights, ...)."""

    arch: str | None = None
    weights: str | None = None
    arch_options: dict = field(default_factory=dict)
    robustbench: str | None = None
    threat_model: str = "Linf"
    torchscript: str | None = None
    model_fn: str | None = None
    trust_code: bool = False
    dataset: str | None = None
    data_root: str | None = None
    image_size: int | None = None
    num_classes: int | None = None
    normalization: str | None = None
    mean: str | None = None
    std: str | None = None

    def given(self) -> bool:
        return any(v is not None for v in (self.arch, self.weights, self.robustbench, self.torchscript, self.model_fn))

    @property
    def route(self) -> str:
        routes = [
            r
            for r, on in (
                ("robustbench", self.robustbench),
                ("torchscript", self.torchscript),
                ("model-fn", self.model_fn),
            )
            if on
        ]
        if len(routes) > 1:
            raise RobustError(f"give one model source: {' and '.join('--' + r for r in routes)} were both given")
        if routes:
            if self.arch is not None:
                raise RobustError(f"--arch builds a zoo model; it does not go with --{routes[0]}")
            if routes[0] == "torchscript" and self.weights:
                raise RobustError("a TorchScript archive holds its weights; drop --weights")
            return routes[0]
        if self.arch is None or self.weights is None:
            missing = "--weights FILE" if self.weights is None else "--arch NAME"
            raise RobustError(f"plain weights need both --arch NAME and --weights FILE; {missing} is missing")
        return "weights"


def load_foreign(req: ModelRequest, device: str | torch.device = "cpu"):
    """The Target for ``req``, its data bundle attached (``Target.data``)."""
    route = req.route
    dataset = req.dataset
    if dataset is None and route == "robustbench":
        dataset = default_dataset(req.robustbench)
    if dataset is None:
        raise RobustError(
            "say which data the model was made for with --dataset NAME (cifar10, cifar100, "
            "fashion-mnist, imagefolder:PATH); its test split is evaluated"
        )
    bundle = load_dataset(dataset, data_root=req.data_root, image_size=req.image_size)
    info = bundle.info
    if req.num_classes is not None and req.num_classes != info.num_classes:
        raise RobustError(
            f"--num-classes {req.num_classes} does not match {info.name}, which has "
            f"{info.num_classes} classes; evaluate the model on data with its classes"
        )
    k, shape = info.num_classes, tuple(info.input_shape)
    stated = N.from_flags(req.normalization, req.mean, req.std, shape[0], (info.mean, info.std))
    source: dict = {"route": route}
    file = None
    if route == "weights":
        model, norm, arch, arch_kwargs, source_extra = _from_weights(req, k, shape, stated, info.name)
        file = req.weights
        source.update(source_extra)
    else:
        if route == "robustbench":
            net, rb = build_rb(req.robustbench, dataset=info.name, threat_model=req.threat_model, weights=req.weights)
            arch = f"robustbench:{req.robustbench}"
            file = req.weights or rb.get("weights")
            source.update(rb)
            implied = "RobustBench zoo models take [0,1] pixels and normalize inside"
        elif route == "torchscript":
            net = load_torchscript(req.torchscript, trust_code=req.trust_code)
            arch, file = "torchscript", req.torchscript
            implied = "not stated: the TorchScript model is taken to normalize its own [0,1] inputs"
        else:
            net, py_file = load_factory(req.model_fn, trust_code=req.trust_code, num_classes=k)
            arch = f"model-fn:{req.model_fn}"
            source["factory"] = req.model_fn
            if py_file:
                source["factory_sha256"] = file_sha256(py_file)
            if req.weights:
                state, under = read_state_dict(req.weights)
                load_state(net, state, req.weights)
                source["state_key"] = under
            file = req.weights or py_file
            implied = "not stated: the factory's model is taken to normalize its own [0,1] inputs"
        norm = stated or N.named("none", shape[0], implied)
        model = NormalizedModel(net, norm.mean, norm.std)
        arch_kwargs = {}
    check_forward(model, arch, shape, info)
    meta = foreign_meta(arch, arch_kwargs, info, norm, source, req.data_root, req.image_size)
    if file is not None:
        source["file"] = str(file)
    model.to(device).eval()
    name = _display_name(req, route, file)
    return Target(
        model,
        meta,
        name,
        str(file) if file else None,
        file_sha256(file) if file and Path(file).is_file() else None,
        data=bundle,
    )


def foreign_meta(
    arch: str,
    arch_kwargs: dict,
    info,
    norm: N.Normalization,
    source: dict,
    data_root: str | None,
    image_size: int | None,
) -> dict:
    """The metadata a Target of a foreign model carries: what a checkpoint of ours holds
    (REQUIRED_META), the dataset it is evaluated on, and where it came from."""
    return {
        "arch": arch,
        "arch_kwargs": arch_kwargs,
        "num_classes": info.num_classes,
        "input_shape": list(info.input_shape),
        **norm.to_meta(),
        "dataset": info.name,
        "classes": list(info.classes),
        "data": {"data_root": data_root, "image_size": image_size},
        "source": source,
    }


def _from_weights(req: ModelRequest, k: int, shape, stated, dataset: str):
    """Plain weights into an architecture of our zoo, torchvision or timm."""
    state, under = read_state_dict(req.weights)
    state, in_file = split_normalized(state)
    arch_kwargs = dict(req.arch_options)
    if req.arch.startswith(TV_PREFIX) and "stem" not in arch_kwargs:
        arch_kwargs.update(_tv_stem(state))
    if in_file is not None:
        norm = N.Normalization(*in_file, "file", "the weights file (its normalize.mean/std buffers)")
        if len(norm.mean) != shape[0]:
            raise RobustError(
                f"the model in {req.weights} takes {len(norm.mean)}-channel images (its normalization "
                f"has {len(norm.mean)} channels) but {dataset}'s have {shape[0]}; evaluate it on the "
                "data it was made for"
            )
        if stated is not None and not _same(stated, norm):
            raise RobustError(
                f"the weights file holds its own normalization (mean {_fmt(norm.mean)}, std "
                f"{_fmt(norm.std)}), which differs from {stated.source}; drop {stated.source}"
            )
    elif stated is not None:
        norm = stated
    else:
        norm = _implied_normalization(req.arch, shape[0])
    model = build_model(req.arch, num_classes=k, input_shape=shape, mean=norm.mean, std=norm.std, **arch_kwargs)
    load_state(model.net, state, req.weights)
    return model, norm, req.arch, model.arch_kwargs, {"state_key": under}


def _implied_normalization(arch: str, channels: int) -> N.Normalization:
    if arch.startswith(TV_PREFIX):
        return N.named(
            "imagenet",
            channels,
            "not stated: torchvision's ImageNet statistics, the convention of "
            "its architectures (say otherwise with --normalization)",
        )
    if arch.startswith("timm-"):
        mean, std = timm_normalization(arch[len("timm-") :], channels)
        return N.Normalization(
            mean,
            std,
            "timm",
            f"not stated: timm's pretrained_cfg for {arch[len('timm-') :]} (say otherwise with --normalization)",
        )
    raise RobustError(
        f"the weights of {arch} carry no input normalization; say what the model was trained with: "
        "--normalization seed|dataset|cifar10|imagenet|none|M,S or --mean/--std "
        "(robust train's default is seed)"
    )


def _tv_stem(state: dict) -> dict:
    """A torchvision ResNet/DenseNet state_dict shows its stem: a 7x7 first conv is
    ImageNet's, a 3x3 one the small-input stem (no max-pool) that CIFAR code uses."""
    for key in ("conv1.weight", "features.conv0.weight"):
        w = state.get(key)
        if w is not None and w.dim() == 4:
            return {"stem": "cifar" if w.shape[-1] == 3 else "imagenet"}
    return {}


def check_forward(model: nn.Module, arch: str, shape, info) -> None:
    """One forward pass of two blank images: the model takes the dataset's images and
    returns (batch, classes) logits, or it is refused before any attack runs."""
    try:
        with module_mode(model, train=False), torch.no_grad():
            out = model(torch.zeros(2, *shape))
    except Exception as e:  # noqa: BLE001 - shape errors come as RuntimeError, ValueError or AssertionError
        raise RobustError(
            f"{arch} cannot take {info.name}'s {'x'.join(map(str, shape))} images "
            f"({first_line(e)}); pick the dataset the model was made for, or --image-size"
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise RobustError(f"{arch} returns {got} for a batch of 2, not (batch, classes) logits")
    if out.shape[1] != info.num_classes:
        raise RobustError(
            f"{arch} returns {out.shape[1]} logits but {info.name} has {info.num_classes} classes; "
            "evaluate it on data with its classes"
        )


def _display_name(req: ModelRequest, route: str, file) -> str:
    if route == "robustbench":
        return f"robustbench/{req.robustbench}"
    if route == "model-fn" and not req.weights:
        return req.model_fn
    p = Path(file)
    return p.parent.name + "/" + p.name if p.parent.name else p.name


def _same(a: N.Normalization, b: N.Normalization) -> bool:
    return all(abs(x - y) < 1e-4 for x, y in zip(a.mean + a.std, b.mean + b.std))


def _fmt(v) -> str:
    return "[" + ", ".join(f"{x:.4g}" for x in v) + "]"
