"""GradCAM (Selvaraju et al. 2017): choosing the layer, the maps for a few points, and
GradCAMResult, clean and adversarial."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import RobustError
from .runtime import module_mode


@dataclass
class GradCAMResult:
    """GradCAM (Selvaraju et al. 2017) of one layer for a few points: for the
    predicted class c, weights = spatial mean of d logit_c / d activation, map =
    ReLU(sum_k weight_k * activation_k), upsampled to the image and scaled to [0,1]
    per image."""

    layer: str
    x: torch.Tensor  # clean images
    y: torch.Tensor
    pred: torch.Tensor
    cam: torch.Tensor  # (N, H, W)
    x_adv: torch.Tensor | None = None
    adv_pred: torch.Tensor | None = None
    cam_adv: torch.Tensor | None = None


def conv_layers(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def last_feature_map(model: nn.Module, x: torch.Tensor) -> str | None:
    """The module whose (N, C, h, w) output (h * w > 1) is computed last in a
    forward pass: the usual GradCAM layer, the last feature map before pooling."""
    seen: list[str] = []
    handles = [
        m.register_forward_hook(
            lambda _m, _i, out, name=name: (
                seen.append(name)
                if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[-1] * out.shape[-2] > 1
                else None
            )
        )
        for name, m in model.named_modules()
        if name
    ]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    return seen[-1] if seen else None


def resolve_layer(model: nn.Module, name: str, x: torch.Tensor) -> str:
    """A module name of ``model``; 'auto' is the last feature map (see last_feature_map)."""
    convs = conv_layers(model)
    if name == "auto":
        found = last_feature_map(model, x)
        if found is None:
            raise RobustError("the model has no layer with a (N, C, h, w) output for GradCAM")
        return found
    if name not in dict(model.named_modules()) or name == "":
        raise RobustError(f"unknown layer '{name}' for GradCAM; convolution layers: {', '.join(convs) or 'none'}")
    return name


def gradcam(
    model: nn.Module, layer: str, x: torch.Tensor, target: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(maps (N, H, W) in [0,1], the class each map explains: ``target`` or the
    prediction). The layer's output must be (N, C, h, w)."""

    module = dict(model.named_modules())[layer]
    store: dict[str, torch.Tensor] = {}
    handle = module.register_forward_hook(lambda _m, _i, out: store.__setitem__("act", out))
    try:
        with module_mode(model, train=False), torch.enable_grad():
            logits = model(x.detach().clone().requires_grad_(True))
            act = store.get("act")
            if not isinstance(act, torch.Tensor) or act.dim() != 4:
                raise RobustError(
                    f"layer '{layer}' gives no (N, C, h, w) feature map for GradCAM; pick a convolution layer"
                )
            cls = logits.argmax(1) if target is None else target.to(logits.device)
            # gradients w.r.t. the feature map only: the model's parameter grads stay untouched
            (grad,) = torch.autograd.grad(logits.gather(1, cls[:, None]).sum(), act)
    except RuntimeError as e:
        raise RobustError(
            f"GradCAM cannot use layer '{layer}' ({str(e).splitlines()[0][:120]}); pick a convolution layer"
        ) from None
    finally:
        handle.remove()
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * act).sum(1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    top = cam.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    return (cam / top).detach().cpu(), cls.detach().cpu()


def gradcam_maps(
    model: nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor | None = None
) -> GradCAMResult:
    cam, pred = gradcam(model, layer, x)
    res = GradCAMResult(layer, x.detach().cpu(), y.cpu(), pred, cam)
    if x_adv is not None:
        res.cam_adv, res.adv_pred = gradcam(model, layer, x_adv)
        res.x_adv = x_adv.detach().cpu()
    return res
