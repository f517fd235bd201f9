"""Clean | adversarial | amplified-perturbation grids.

    from robustbench_local.visualize import adversarial_examples, render_grid
    ex = adversarial_examples("runs/NAME/best.pth", AttackSpec("pgd"), n=20, seed=0)
    png = render_grid(ex)           # PNG bytes; write with fileio.write_bytes

Every image gets three panels: the clean image, the adversarial one, and the
perturbation amplified x10 and centred at grey (0.5 + 10 * (x_adv - x), clipped
to [0,1]), titled with the true label and both predictions with their
confidence (green: correct, red: wrong)."""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .attacks import AttackSpec
from .eval_attack import run_attack
from .eval_clean import predict
from .eval_inputs import resolve_target, select_points
from .runtime import resolve_device
from .threat import find_std

AMPLIFY = 10.0
CORRECT, WRONG = "#1a7f37", "#cf222e"


@dataclass
class Examples:
    """Clean and adversarial images (float [0,1], CPU) with labels and predictions."""

    x: torch.Tensor
    x_adv: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor  # positions in the split
    clean_pred: torch.Tensor
    clean_conf: torch.Tensor  # softmax probability of the predicted class
    adv_pred: torch.Tensor
    adv_conf: torch.Tensor
    classes: tuple[str, ...]
    name: str  # the checkpoint's name
    attack: str  # e.g. 'PGD-10'
    threat: str  # e.g. 'linf eps 0.0313 norm = 0.01565 px (3.99/255)'
    selection: str

    def class_name(self, c: int) -> str:
        return self.classes[c] if 0 <= c < len(self.classes) else str(c)


def softmax_top(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted class, its softmax probability) per row."""
    conf, pred = logits.float().softmax(1).max(1)
    return pred, conf


def adversarial_examples(
    model_or_checkpoint,
    spec: AttackSpec,
    *,
    n: int = 20,
    seed: int = 0,
    split: str = "test",
    data=None,
    device: str | torch.device = "auto",
    batch_size: int = 256,
    data_root: str | None = None,
    name: str | None = None,
    progress=None,
) -> Examples:
    """Attacks n test images chosen with ``seed`` (the same points `robust eval
    --n N --seed S` would use). Every image is attacked, including ones the model
    already gets wrong, so each panel shows what the attack does to it.
    ``model_or_checkpoint``: a path, a (model, meta) pair or a module. ``progress``:
    a progress.ProgressDisplay that shows the attack as it runs (None: silent)."""
    dev = resolve_device(device) if isinstance(device, str) else device
    target = resolve_target(model_or_checkpoint, dev, name)
    model: nn.Module = target.model.eval()
    points = select_points(
        data if data is not None else target.data,
        n=n,
        split=split,
        seed=seed,
        device=dev,
        meta=target.meta,
        data_root=data_root,
    )
    x, y = points.x, points.y
    clean_pred, clean_conf = softmax_top(predict(model, x, batch_size))
    everything = torch.ones_like(y, dtype=torch.bool)
    x_adv = run_attack(
        target, spec, x, y, everything, batch_size=batch_size, seed=seed, keep_adv=True, progress=progress
    ).x_adv
    adv_pred, adv_conf = softmax_top(predict(model, x_adv, batch_size))
    std = find_std(model, x.shape[1])
    return Examples(
        x=x.detach().cpu(),
        x_adv=x_adv.detach().cpu(),
        y=y.cpu(),
        index=points.index.cpu(),
        clean_pred=clean_pred.cpu(),
        clean_conf=clean_conf.cpu(),
        adv_pred=adv_pred.cpu(),
        adv_conf=adv_conf.cpu(),
        classes=tuple(points.classes),
        name=target.name,
        attack=spec.label,
        threat=spec.threat.label(std),
        selection=points.selection,
    )


def panel_arrays(
    x: torch.Tensor, x_adv: torch.Tensor, amplify: float = AMPLIFY
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three panels of one image as H x W x C float arrays in [0,1]: clean,
    adversarial, and 0.5 + amplify * (x_adv - x) clipped to [0,1]."""
    x = x.detach().float().cpu()
    x_adv = x_adv.detach().float().cpu()
    pert = (0.5 + amplify * (x_adv - x)).clamp(0.0, 1.0)
    return tuple(t.permute(1, 2, 0).numpy() for t in (x, x_adv, pert))  # type: ignore[return-value]


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, images per row) for n images: about square once each image is 3 panels wide."""
    per_row = max(1, min(n, math.ceil(math.sqrt(n * 0.8))))
    return math.ceil(n / per_row), per_row


def _show(ax, img: np.ndarray) -> None:
    if img.shape[2] == 1:
        ax.imshow(img[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(img, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def grid_figure(ex: Examples, amplify: float = AMPLIFY):
    """The matplotlib Figure (3 image axes per example, in clean, adversarial,
    perturbation order)."""
    # deferred: start-up time (matplotlib)
    import matplotlib
    from matplotlib.figure import Figure

    n = len(ex.y)
    rows, per_row = grid_shape(n)
    height = rows * 1.55 + 0.7
    with matplotlib.rc_context({"font.size": 6.5, "axes.titlesize": 6.5}):
        fig = Figure(figsize=(per_row * 3 * 1.25, height))
        # a gap between images, panels of one image close together
        outer = fig.add_gridspec(
            rows, per_row, left=0.01, right=0.99, bottom=0.01, top=1 - 0.75 / height, wspace=0.12, hspace=0.3
        )
        for i in range(n):
            r, c = divmod(i, per_row)
            inner = outer[r, c].subgridspec(1, 3, wspace=0.04)
            clean, adv, pert = panel_arrays(ex.x[i], ex.x_adv[i], amplify)
            y = int(ex.y[i])
            cp, ap = int(ex.clean_pred[i]), int(ex.adv_pred[i])
            titles = [
                (f"clean: {ex.class_name(cp)} {ex.clean_conf[i]:.0%}", CORRECT if cp == y else WRONG),
                (f"adv: {ex.class_name(ap)} {ex.adv_conf[i]:.0%}", CORRECT if ap == y else WRONG),
                (f"true: {ex.class_name(y)} #{int(ex.index[i])}", "black"),
            ]
            for j, (img, (title, color)) in enumerate(zip((clean, adv, pert), titles)):
                ax = fig.add_subplot(inner[0, j])
                _show(ax, img)
                ax.set_title(title, color=color, pad=2)
        fooled = int(((ex.clean_pred == ex.y) & (ex.adv_pred != ex.y)).sum())
        fig.suptitle(
            f"{ex.name}: {ex.attack}, {ex.threat}\n"
            f"{n} images ({ex.selection}); clean correct {int((ex.clean_pred == ex.y).sum())}, "
            f"adversarial correct {int((ex.adv_pred == ex.y).sum())}, flipped {fooled}. "
            f"Panels: clean | adversarial | perturbation x{amplify:g} around grey",
            fontsize=8,
        )
    return fig


def render_grid(ex: Examples, amplify: float = AMPLIFY) -> bytes:
    """PNG bytes of the grid (no 'Software' stamp: the same inputs give the same bytes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # deferred: start-up time (matplotlib)

    fig = grid_figure(ex, amplify)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return buf.getvalue()


def default_grid_path(results: str | Path, checkpoint_name: str, spec: AttackSpec, several: bool) -> Path:
    """results/figures/<run>-<attack>.png; with several attacks or radii the
    column label and eps are added so files do not overwrite each other."""
    run = run_name(checkpoint_name)
    tag = spec.name if not several else f"{spec.label}-eps{spec.threat.eps:g}"
    return Path(results) / "figures" / f"{_slug(run)}-{_slug(tag)}.png"


def run_name(checkpoint: str) -> str:
    """'runs/NAME/best.pth' -> 'NAME' (or the file's stem when it has no run folder)."""
    p = Path(str(checkpoint))
    return p.parent.name if p.parent.name not in ("", ".") else p.stem


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", s).strip("_") or "x"
