"""Classification analytics of one model, on clean or attacked inputs: confusion
matrix, most-confused class pairs, per-class accuracy, top-1/top-5 accuracy,
a predictions table and a grid of misclassified examples.

    from robustbench_local.analyze import analyze
    a = analyze("runs/NAME/best.pth")                     # clean, whole test split
    a = analyze((model, meta), AttackSpec("pgd"), n=1000)  # attacked
    a.write("results/analysis/NAME")

Under an attack, points the model already gets wrong clean are not attacked
(they are counted with their clean prediction), as robust accuracy counts them;
top-5 accuracy is measured on the same adversarial inputs, which target top-1."""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from .attacks import AttackSpec
from .errors import RobustError
from .evaluation import predict, resolve_target, run_attack, select_points
from .results import wilson_interval
from .runtime import module_mode, resolve_device
from .threat import find_std

MISCLASSIFIED_SHOWN = 32


@dataclass
class Analysis:
    name: str  # checkpoint name
    mode: str  # 'clean' or the attack's column label
    threat: str | None  # threat label (both eps spaces) under an attack
    classes: tuple[str, ...]
    selection: str
    predictions: pd.DataFrame  # index, true, true_name, pred, pred_name, confidence, correct
    confusion: np.ndarray  # counts, rows = true class, columns = predicted class
    top1: float
    top5: float
    top_k: int  # 5, or the number of classes when there are fewer
    x_wrong: torch.Tensor  # up to MISCLASSIFIED_SHOWN misclassified images (float [0,1], CPU)
    wrong_rows: pd.DataFrame  # their rows of ``predictions``
    gradcam: GradCAMResult | None = None

    @property
    def n(self) -> int:
        return len(self.predictions)

    @property
    def tag(self) -> str:
        """File-name prefix: 'clean' or e.g. 'PGD-10-eps0.0313'."""
        return self.mode if self.mode == "clean" else re.sub(r"[^A-Za-z0-9_.+-]+", "_", self.mode)

    def normalized_confusion(self) -> np.ndarray:
        """Each row divided by its class count (rows of absent classes stay 0)."""
        counts = self.confusion.sum(axis=1, keepdims=True)
        return np.divide(self.confusion, counts, out=np.zeros(self.confusion.shape, dtype=float), where=counts > 0)

    def per_class(self) -> pd.DataFrame:
        """class, n, correct, accuracy with its 95% interval, predicted (how often the
        class was predicted) and precision."""
        rows = []
        for c, name in enumerate(self.classes):
            k, n = int(self.confusion[c, c]), int(self.confusion[c].sum())
            predicted = int(self.confusion[:, c].sum())
            lo, hi = wilson_interval(k, n) if n else (math.nan, math.nan)
            rows.append(
                {
                    "class": c,
                    "name": name,
                    "n": n,
                    "correct": k,
                    "accuracy": k / n if n else math.nan,
                    "ci95_lo": lo,
                    "ci95_hi": hi,
                    "predicted": predicted,
                    "precision": k / predicted if predicted else math.nan,
                }
            )
        return pd.DataFrame(rows)

    def confused_pairs(self, top: int = 10) -> pd.DataFrame:
        """The off-diagonal cells with the most examples: true, predicted, count and
        the share of the true class they take."""
        cm = self.confusion
        counts = cm.sum(axis=1)
        pairs = [(int(cm[i, j]), i, j) for i in range(len(cm)) for j in range(len(cm)) if i != j and cm[i, j] > 0]
        pairs.sort(key=lambda t: (-t[0], t[1], t[2]))
        return pd.DataFrame(
            [
                {
                    "true": i,
                    "true_name": self.classes[i],
                    "predicted": j,
                    "predicted_name": self.classes[j],
                    "count": k,
                    "share_of_true_class": k / counts[i],
                }
                for k, i, j in pairs[:top]
            ],
            columns=["true", "true_name", "predicted", "predicted_name", "count", "share_of_true_class"],
        )

    def summary(self) -> dict:
        k = int(self.predictions["correct"].sum())
        return {
            "checkpoint": self.name,
            "mode": self.mode,
            "threat": self.threat,
            "n": self.n,
            "selection": self.selection,
            "top1": self.top1,
            "top1_ci95": list(wilson_interval(k, self.n)),
            f"top{self.top_k}": self.top5,
            "classes": list(self.classes),
        }

    def files(self) -> dict[str, bytes]:
        """File name -> content, everything ``write`` puts in the folder."""
        t = self.tag
        return {
            f"{t}-predictions.csv": _csv(self.predictions),
            f"{t}-per-class.csv": _csv(self.per_class()),
            f"{t}-confused-pairs.csv": _csv(self.confused_pairs()),
            f"{t}-confusion.png": confusion_png(self),
            f"{t}-misclassified.png": misclassified_png(self),
            f"{t}-summary.json": (json.dumps(self.summary(), indent=2, sort_keys=True) + "\n").encode(),
            **({f"{t}-gradcam-{_slug(self.gradcam.layer)}.png": gradcam_png(self)} if self.gradcam else {}),
        }

    def write(self, out: str | Path) -> list[Path]:
        """All files, rendered first, then each written atomically."""
        from .fileio import write_bytes

        files = self.files()
        paths = []
        for name, content in files.items():
            write_bytes(Path(out) / name, content)
            paths.append(Path(out) / name)
        return paths


def _csv(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue().encode("utf-8")


def confusion_counts(y: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """K x K counts: row = true class, column = predicted class."""
    return np.bincount(y * num_classes + pred, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def analyze(
    model_or_checkpoint,
    spec: AttackSpec | None = None,
    *,
    n: int | None = None,
    seed: int = 0,
    split: str = "test",
    data=None,
    device: str | torch.device = "auto",
    batch_size: int = 256,
    data_root: str | None = None,
    name: str | None = None,
    gradcam_layer: str | None = None,
    gradcam_n: int = 8,
    progress=None,
) -> Analysis:
    """Predictions of the model on ``split`` (all of it, or n points chosen with
    ``seed``), clean or under ``spec``. ``model_or_checkpoint``: a path, a
    (model, meta) pair or a module. ``gradcam_layer`` (a module name, or 'auto'
    for the last convolution) adds GradCAM maps of the first ``gradcam_n`` points,
    clean and, under an attack, adversarial. ``progress``: a progress.ProgressDisplay
    that shows the attack as it runs (None: silent)."""
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
    logits = predict(model, x, batch_size)
    num_classes = logits.shape[1]
    classes = tuple(points.classes) if len(points.classes) == num_classes else tuple(str(c) for c in range(num_classes))
    layer = resolve_layer(model, gradcam_layer, x) if gradcam_layer else None  # a bad name fails before any attack
    threat, mode, x_used = None, "clean", x
    if spec is not None:
        clean_ok = logits.argmax(1) == y
        x_adv = run_attack(
            target, spec, x, y, clean_ok, batch_size=batch_size, seed=seed, keep_adv=True, progress=progress
        ).x_adv
        logits = predict(model, x_adv, batch_size)
        x_used = x_adv
        threat = spec.threat.label(find_std(model, x.shape[1]))
        mode = f"{spec.label}-eps{spec.threat.eps:g}"
    probs = logits.float().softmax(1)
    conf, pred = probs.max(1)
    top_k = min(5, num_classes)
    in_top = (logits.topk(top_k, dim=1).indices == y[:, None]).any(1)
    y_np, pred_np = y.cpu().numpy(), pred.cpu().numpy()
    preds = pd.DataFrame(
        {
            "index": points.index.cpu().numpy().astype(np.int64),
            "true": y_np.astype(np.int64),
            "true_name": [classes[i] for i in y_np],
            "pred": pred_np.astype(np.int64),
            "pred_name": [classes[i] for i in pred_np],
            "confidence": conf.cpu().numpy().astype(np.float64),
            "correct": pred_np == y_np,
        }
    )
    wrong = np.flatnonzero(pred_np != y_np)[:MISCLASSIFIED_SHOWN]
    cam = None
    if layer is not None:
        k = min(gradcam_n, len(y))
        cam = gradcam_maps(model, layer, x[:k], y[:k], x_used[:k] if spec is not None else None)
    return Analysis(
        name=target.name,
        mode=mode,
        threat=threat,
        classes=classes,
        selection=points.selection,
        predictions=preds,
        confusion=confusion_counts(y_np, pred_np, num_classes),
        top1=float((pred_np == y_np).mean()),
        top5=float(in_top.cpu().numpy().mean()),
        top_k=top_k,
        x_wrong=x_used[torch.as_tensor(wrong, device=x_used.device)].detach().cpu(),
        wrong_rows=preds.iloc[wrong].reset_index(drop=True),
        gradcam=cam,
    )


# ----------------------------------------------------------------------------- figures


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None}, bbox_inches="tight")
    return buf.getvalue()


def _heading(a: Analysis) -> str:
    what = "clean" if a.threat is None else f"{a.mode.split('-eps')[0]} at {a.threat}"
    return f"{a.name}: {what}; n={a.n}"


def confusion_png(a: Analysis) -> bytes:
    """Row-normalized confusion matrix (each row sums to 1 over its class count)."""
    import matplotlib
    from matplotlib.figure import Figure

    cm = a.normalized_confusion()
    k = len(a.classes)
    side = max(4.5, 0.45 * k + 2.5)
    with matplotlib.rc_context({"font.size": 8}):
        fig = Figure(figsize=(side + 1.0, side))
        ax = fig.add_subplot(1, 1, 1)
        im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        ticks = range(k)
        ax.set_xticks(ticks, labels=list(a.classes), rotation=45, ha="right")
        ax.set_yticks(ticks, labels=list(a.classes))
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        if k <= 20:
            for i in range(k):
                for j in range(k):
                    if a.confusion[i, j]:
                        ax.text(
                            j,
                            i,
                            f"{cm[i, j]:.2f}",
                            ha="center",
                            va="center",
                            fontsize=6.5,
                            color="white" if cm[i, j] > 0.5 else "black",
                        )
        fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
        ax.set_title(
            f"confusion matrix, rows normalized\n{_heading(a)}; top-1 {a.top1:.2%}, top-{a.top_k} {a.top5:.2%}",
            fontsize=8,
        )
        return _png(fig)


def misclassified_png(a: Analysis) -> bytes:
    """Up to 32 misclassified inputs (adversarial ones under an attack), titled
    true -> predicted with the confidence."""
    import matplotlib
    from matplotlib.figure import Figure

    m = len(a.wrong_rows)
    cols = 8
    rows = max(1, math.ceil(m / cols))
    with matplotlib.rc_context({"font.size": 6.5}):
        fig = Figure(figsize=(cols * 1.35, rows * 1.5 + 0.5))
        if m == 0:
            fig.text(0.5, 0.5, "no misclassified examples", ha="center", va="center")
        for i in range(m):
            ax = fig.add_subplot(rows, cols, i + 1)
            img = a.x_wrong[i].permute(1, 2, 0).numpy()
            if img.shape[2] == 1:
                ax.imshow(img[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
            r = a.wrong_rows.iloc[i]
            ax.set_title(
                f"{r['true_name']} -> {r['pred_name']}\n{r['confidence']:.0%} (#{int(r['index'])})",
                color="#cf222e",
                fontsize=6.5,
                pad=2,
            )
            ax.set_xticks([])
            ax.set_yticks([])
        total = int((~a.predictions["correct"]).sum())
        fig.suptitle(
            f"misclassified: first {m} of {total} (in evaluation order); true -> predicted, confidence\n{_heading(a)}",
            fontsize=8,
        )
        return _png(fig)


# ----------------------------------------------------------------------------- GradCAM


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


def gradcam_png(a: Analysis) -> bytes:
    """Per point: image and its GradCAM overlay, clean (and adversarial)."""
    import matplotlib
    from matplotlib.figure import Figure

    g = a.gradcam
    cols = 2 if g.x_adv is None else 4
    k = len(g.y)
    with matplotlib.rc_context({"font.size": 6.5}):
        fig = Figure(figsize=(cols * 1.4, k * 1.5 + 0.5))
        for i in range(k):
            panels = [(g.x[i], None, g.pred[i], "clean"), (g.x[i], g.cam[i], g.pred[i], "GradCAM")]
            if g.x_adv is not None:
                panels += [
                    (g.x_adv[i], None, g.adv_pred[i], "adv"),
                    (g.x_adv[i], g.cam_adv[i], g.adv_pred[i], "GradCAM"),
                ]
            for j, (img, cam, pred, what) in enumerate(panels):
                ax = fig.add_subplot(k, cols, i * cols + j + 1)
                im = img.permute(1, 2, 0).numpy()
                ax.imshow(
                    im[:, :, 0] if im.shape[2] == 1 else im,
                    cmap="gray" if im.shape[2] == 1 else None,
                    vmin=0,
                    vmax=1,
                    interpolation="nearest",
                )
                if cam is not None:
                    ax.imshow(cam.numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="bilinear")
                ok = int(pred) == int(g.y[i])
                ax.set_title(f"{what}: {a.classes[int(pred)]}", color="#1a7f37" if ok else "#cf222e", pad=2)
                ax.set_xticks([])
                ax.set_yticks([])
        fig.suptitle(f"GradCAM of layer {g.layer} for the predicted class\n{_heading(a)}", fontsize=7)
        fig.subplots_adjust(top=1 - 0.45 / (k * 1.5 + 0.5), hspace=0.3)
        return _png(fig)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", s).strip("_") or "x"
