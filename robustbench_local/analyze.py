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

from .analysis_figures import confusion_png, gradcam_png, misclassified_png
from .attacks import AttackSpec
from .eval_attack import run_attack
from .eval_clean import predict
from .eval_inputs import resolve_target, select_points
from .fileio import write_bytes
from .gradcam import GradCAMResult, gradcam_maps, resolve_layer
from .results import wilson_interval
from .runtime import resolve_device
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


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", s).strip("_") or "x"
