"""The clean pass: batched predictions (sharded under torchrun), and each point's clean
prediction with the checks on the model that need only those predictions."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from . import checks as C
from . import distributed
from .eval_inputs import Points, Target
from .results import wilson_interval
from .runtime import module_mode
from .text import acc_text


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with module_mode(model, train=False):
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def predict_sharded(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``predict`` with its batches dealt out over the ranks and the logits all-reduced
    (each entry is summed with zeros only, so the result is bit-identical)."""
    if distributed.world_size() == 1:
        return predict(model, x, batch_size)
    starts = range(0, len(x), batch_size)
    out = None
    for j in distributed.my_chunks(len(starts)):
        i = starts[j]
        logits = predict(model, x[i : i + batch_size], batch_size)
        if out is None:
            out = logits.new_zeros((len(x), logits.shape[1]))
        out[i : i + batch_size] = logits
    if out is None:  # this rank got no batch: learn the output's width and dtype from one image
        one = predict(model, x[:1], 1)
        out = one.new_zeros((len(x), one.shape[1]))
    return distributed.all_reduce_sum(out)


@dataclass
class CleanPass:
    """The clean predictions every attack starts from, and the findings on the model."""

    logits: torch.Tensor
    pred: torch.Tensor
    ok: torch.Tensor  # classified correctly clean: the points an attack works on
    seconds: float
    findings: list[C.Finding]  # model checks, ending with the degenerate-model one
    degenerate: C.Finding


def clean_pass(
    target: Target, points: Points, *, batch_size: int, seed: int, run_checks: bool, say: Callable[[str], None]
) -> CleanPass:
    """Clean predictions (computed once), the clean accuracy line, and the model checks."""
    model, x, y = target.model, points.x, points.y
    t0 = time.perf_counter()
    clean_logits = predict_sharded(model, x, batch_size)
    clean_pred = clean_logits.argmax(1)
    clean_ok = clean_pred == y
    clean_seconds = time.perf_counter() - t0
    n_clean = int(clean_ok.sum())
    say(f"{target.name}: clean accuracy {acc_text(n_clean / len(y), len(y), wilson_interval(n_clean, len(y)))}")

    model_findings: list[C.Finding] = []
    if run_checks:
        ok_idx = clean_ok.nonzero().squeeze(1)[:200]
        torch.manual_seed(seed)
        model_findings = C.model_checks(model, x[ok_idx], y[ok_idx], clean_logits[:256])
    # arithmetic on the clean predictions, so it runs even without the other checks: a
    # model that guesses or predicts one class makes every robust number meaningless
    degenerate = C.not_degenerate(clean_pred, y, clean_logits.shape[1], points.classes)
    model_findings.append(degenerate)
    return CleanPass(clean_logits, clean_pred, clean_ok, clean_seconds, model_findings, degenerate)
