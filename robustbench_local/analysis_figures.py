"""The figures of an Analysis, each rendered to PNG bytes: the row-normalized confusion
matrix, the grid of misclassified inputs, and the GradCAM panels."""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the figures only read an Analysis; analyze.py imports this module
    from .analyze import Analysis


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # deferred: start-up time (matplotlib)

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None}, bbox_inches="tight")
    return buf.getvalue()


def _heading(a: Analysis) -> str:
    what = "clean" if a.threat is None else f"{a.mode.split('-eps')[0]} at {a.threat}"
    return f"{a.name}: {what}; n={a.n}"


def confusion_png(a: Analysis) -> bytes:
    """Row-normalized confusion matrix (each row sums to 1 over its class count)."""
    # deferred: start-up time (matplotlib)
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
    # deferred: start-up time (matplotlib)
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


def gradcam_png(a: Analysis) -> bytes:
    """Per point: image and its GradCAM overlay, clean (and adversarial)."""
    # deferred: start-up time (matplotlib)
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
