"""Sanity checks that flag an evaluation which cannot be trusted (after Carlini
et al. 2019, "On Evaluating Adversarial Robustness", and AutoAttack's checks).

Each check is a plain function returning a Finding; ``ok=False`` is a warning
printed beside the numbers and stored in the record."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attacks.pgd import pgd
from .results import wilson_interval
from .runtime import module_mode
from .threat import ThreatModel


@dataclass
class Finding:
    name: str
    ok: bool
    detail: str
    value: float | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if isinstance(d["value"], float) and not math.isfinite(d["value"]):
            d["value"] = None  # records are strict JSON; the detail still states the number
        return d


def fgsm_stronger_than_pgd(fgsm_acc: float, pgd_acc: float, n: int, label: str = "PGD") -> Finding:
    """FGSM breaking more points than PGD at the same eps on the same points means
    PGD is not finding the loss maximum: too small a step or too few steps, or
    gradient masking that a single large step happens to step over."""
    margin = 1.0 / max(n, 1)
    bad = fgsm_acc + 1e-12 < pgd_acc - margin
    return Finding(
        "fgsm_stronger_than_pgd",
        not bad,
        f"FGSM robust accuracy {fgsm_acc:.2%} is below {label}'s {pgd_acc:.2%} on the same {n} points: "
        f"{label} is not converging (try a larger --eta or more --k)"
        if bad
        else f"FGSM {fgsm_acc:.2%} >= {label} {pgd_acc:.2%}",
        value=pgd_acc - fgsm_acc,
    )


def accuracy_rises_with_eps(sweep: list[tuple[float, float]], n: int, label: str) -> Finding:
    """Robust accuracy should not rise as eps grows (a larger ball contains the
    smaller one); a rise of more than one point means the attack fails to find
    points it provably could reach."""
    pts = sorted(sweep)
    worst = 0.0
    where = None
    for (e0, a0), (e1, a1) in zip(pts, pts[1:]):
        if a1 - a0 > worst:
            worst, where = a1 - a0, (e0, e1)
    bad = worst > 0.01
    detail = (
        f"{label}: robust accuracy rises by {worst:.2%} from eps {where[0]:.4g} to {where[1]:.4g} (n={n})"
        if bad
        else f"{label}: robust accuracy does not rise with eps over {len(pts)} radii"
    )
    return Finding("accuracy_rises_with_eps", not bad, detail, value=worst)


def steps_reach_eps(k: int, step: float, eps: float, label: str = "PGD") -> Finding:
    """k steps of size eta travel at most k * eta: below eps the attack never reaches
    the edge of the ball from its centre, so robust accuracy is overstated (eps and
    eta in the same space). Only a given step can fall short: a derived one is
    2.5 * eps / k."""
    reach = k * step
    bad = reach < eps * (1 - 1e-9)  # equality up to rounding reaches
    detail = (
        f"{label}: {k} steps of {step:.4g} reach only {reach:.4g} < eps {eps:.4g}: the attack never gets to the "
        f"edge of the ball, so it is weaker than eps says; leave eta unset (2.5*eps/k = {2.5 * eps / k:.4g}) "
        f"or give at least eps/k = {eps / k:.4g}"
        if bad
        else f"{label}: {k} steps of {step:.4g} reach {reach:.4g} >= eps {eps:.4g}"
    )
    return Finding("steps_reach_eps", not bad, detail, value=reach / eps)


def no_collapse_at_large_eps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps_pixel: float = 0.5,
    steps: int = 20,
    threshold: float = 0.10,
) -> Finding:
    """Within an L-inf ball of 0.5 on [0,1] pixels every image can be turned into
    mid-grey, so accuracy must collapse; if it does not, the attack's gradients
    are broken (masked, obfuscated or clipped)."""
    threat = ThreatModel("linf", eps_pixel, eps_pixel / 4, "pixel")
    res = pgd(model, x, y, threat, k=steps, random_start=True)
    acc = 1.0 - res.fooled.float().mean().item()
    bad = acc > threshold
    return Finding(
        "no_collapse_at_large_eps",
        not bad,
        f"accuracy stays {acc:.2%} under PGD-{steps} at L-inf eps {eps_pixel} pixel (n={len(y)}): gradients look masked"
        if bad
        else f"accuracy collapses to {acc:.2%} at L-inf eps {eps_pixel} pixel (n={len(y)})",
        value=acc,
    )


def input_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, threshold: float = 0.10) -> Finding:
    """Zero or non-finite input gradients on many points (a rounding/quantising
    layer, a saturated softmax, or NaNs) starve every gradient attack, so their
    robust accuracy says nothing."""
    with module_mode(model, train=False):
        xg = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(xg), y, reduction="sum")
            (g,) = torch.autograd.grad(loss, xg)
    flat = g.flatten(1)
    nonfinite = ~torch.isfinite(flat).all(dim=1)
    zero = (flat == 0).all(dim=1) & ~nonfinite
    frac = (nonfinite | zero).float().mean().item()
    bad = frac > threshold
    return Finding(
        "input_gradients",
        not bad,
        f"{zero.sum().item()} zero and {nonfinite.sum().item()} non-finite input gradients among {len(y)} points"
        + (": gradient attacks cannot work here; add the gradient-free --attack square" if bad else ""),
        value=frac,
    )


def outputs_look_like_probabilities(logits: torch.Tensor) -> Finding:
    """A model that outputs probabilities (softmax inside) flattens the loss
    surface for cross-entropy attacks; attacks need logits."""
    in_unit = bool(((logits >= 0) & (logits <= 1)).all())
    sums_one = bool(torch.allclose(logits.sum(dim=1), torch.ones(logits.shape[0], device=logits.device), atol=1e-3))
    bad = in_unit and sums_one
    return Finding(
        "outputs_are_logits",
        not bad,
        "model outputs are in [0,1] and sum to 1: they look like probabilities, not logits; remove the softmax"
        if bad
        else "model outputs look like logits",
    )


def deterministic(model: nn.Module, x: torch.Tensor) -> Finding:
    """Two forward passes in eval mode must agree; a randomised defence needs
    EOT (gradients averaged over several passes, --eot N, or AutoAttack's 'rand'
    version), not a single-sample estimate."""
    with module_mode(model, train=False), torch.no_grad():
        a, b = model(x), model(x)
    diff = (a - b).abs().max().item()
    bad = diff > 1e-5 * max(1.0, a.abs().max().item())
    return Finding(
        "deterministic",
        not bad,
        f"two forward passes differ by up to {diff:.3g}: the model is randomised; attack it with --eot 20 "
        "(every gradient attack) or --attack autoattack --aa-version rand"
        if bad
        else "model is deterministic in eval mode",
        value=diff,
    )


def pgd_converged(acc_k: float, acc_2k: float, n: int, k: int, label: str) -> Finding:
    """If doubling the number of PGD steps still lowers robust accuracy by more than
    one point, the k-step number is an overestimate: the attack has not converged."""
    drop = acc_k - acc_2k
    bad = drop > 0.01
    return Finding(
        "pgd_converged",
        not bad,
        f"{label}: doubling k to {2 * k} lowers robust accuracy by {drop:.2%} (n={n}); the number is not converged"
        if bad
        else f"{label}: PGD-{2 * k} is within 1 point of PGD-{k} ({drop:+.2%}, n={n})",
        value=drop,
    )


def model_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> list[Finding]:
    """The checks that need only the model and some clean points (run once per
    checkpoint); x, y should be correctly classified points."""
    out = [outputs_look_like_probabilities(logits)]
    if len(y):  # a model right on no point is flagged as degenerate; these checks need points
        out.append(deterministic(model, x[:64]))
        out.append(input_gradients(model, x, y))
        out.append(no_collapse_at_large_eps(model, x, y))
    return out


# A model is called collapsed when one class takes at least this share of its
# predictions while holding under COLLAPSE_LABEL_SHARE of the labels. A weak but
# working model on a balanced set spreads its predictions (its most frequent class
# rarely takes more than 2-3 times its label share); 80% is far beyond that on any
# set of 3 or more balanced classes, and the label bound spares a model that is right
# on a set dominated by one class.
COLLAPSE_SHARE = 0.80
COLLAPSE_LABEL_SHARE = 0.50


def degenerate_counts(correct: int, n: int, pred_counts, label_counts, classes=()) -> Finding:
    """not_degenerate from counts: ``correct`` of ``n`` right, ``pred_counts[c]`` and
    ``label_counts[c]`` predictions and labels of class c (training sums these over
    batches and ranks)."""
    pred_counts, label_counts = [int(v) for v in pred_counts], [int(v) for v in label_counts]
    num_classes = len(pred_counts)
    if n <= 0 or num_classes < 2:
        return Finding("not_degenerate", True, f"nothing to judge (n={n}, {num_classes} classes)")
    top = max(range(num_classes), key=lambda c: pred_counts[c])
    share, label_share = pred_counts[top] / n, label_counts[top] / n
    name = f"class {top}" + (f" ({classes[top]})" if top < len(classes) else "")
    if share >= COLLAPSE_SHARE and label_share < COLLAPSE_LABEL_SHARE:
        return Finding(
            "not_degenerate",
            False,
            f"predicts one class: {share:.1%} of the n={n:,} predictions are {name}, "
            f"which is {label_share:.1%} of the labels",
            value=share,
        )
    # a model must be shown better than guessing: chance at or above the interval's low end fails
    chance = 1.0 / num_classes
    lo, hi = wilson_interval(correct, n)
    acc = correct / n
    if lo <= chance:
        how = "is indistinguishable from" if chance <= hi else "is below"
        return Finding(
            "not_degenerate",
            False,
            f"accuracy {acc:.1%} (95% CI {lo:.1%}-{hi:.1%}, n={n:,}) {how} chance "
            f"({chance:.1%} for {num_classes} classes)",
            value=share,
        )
    return Finding(
        "not_degenerate",
        True,
        f"accuracy {acc:.1%} is above chance ({chance:.1%}, n={n:,}); the most frequent prediction, "
        f"{name}, takes {share:.1%}",
        value=share,
    )


def not_degenerate(pred: torch.Tensor, y: torch.Tensor, num_classes: int, classes=()) -> Finding:
    """A model whose clean accuracy cannot be told from chance (chance inside or above
    the 95% Wilson interval), or whose predictions collapse onto one class, has robust
    accuracy equal to its clean accuracy for no good reason: its robust numbers mean
    nothing. ``pred`` and ``y`` are predicted and true labels of the same points. The
    detail of a failed finding says which, with the numbers and n."""
    pred, y = pred.flatten().cpu().long(), y.flatten().cpu().long()
    return degenerate_counts(
        int((pred == y).sum()),
        len(y),
        torch.bincount(pred, minlength=num_classes).tolist(),
        torch.bincount(y, minlength=num_classes).tolist(),
        classes,
    )


def square_below_whitebox(square_acc: float, whitebox_acc: float, n: int, whitebox_label: str) -> Finding:
    """A gradient-free attack (Square) should not beat a white-box attack that sees the
    gradients at the same threat on the same points; when Square's robust accuracy is
    below the 95% Wilson interval of the white-box number, the white-box attack is being
    starved, most likely by masked or obfuscated gradients (Carlini et al. 2019)."""
    if n <= 0:
        return Finding("square_below_whitebox", True, "nothing to compare (n=0)")
    lo, hi = wilson_interval(round(whitebox_acc * n), n)
    bad = square_acc + 1e-12 < lo
    return Finding(
        "square_below_whitebox",
        not bad,
        f"Square robust accuracy {square_acc:.2%} is below {whitebox_label}'s {whitebox_acc:.2%} "
        f"(95% CI {lo:.2%}-{hi:.2%}, n={n}): the black-box attack breaks points the white-box attack misses, "
        f"so the model likely masks its gradients and {whitebox_label} overstates its robustness"
        if bad
        else f"Square {square_acc:.2%} is not below {whitebox_label}'s 95% interval ({lo:.2%}-{hi:.2%}, n={n})",
        value=whitebox_acc - square_acc,
    )
