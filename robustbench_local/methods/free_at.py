"""Free adversarial training (Shafahi et al. 2019, "Adversarial Training for Free!").

Each batch is replayed ``replays`` times (m). Every replay is one ordinary training
step on x + delta, and the same backward pass that gives the parameter gradients
also gives the input gradient. delta then takes one signed step of eta (default eps)
and is projected back into the eps-ball. The perturbation carries over from replay
to replay and from batch to batch, as in the paper. An epoch therefore makes m
optimizer steps per batch at the cost of m forward/backward passes, so the paper
trains for epochs / m epochs.

The input gradient is caught by a hook on the adversarial input, so fit()'s loop
(AMP scaling, clipping, DDP) stays the same. fit() reads ``replays`` and repeats
each batch that many times. The attack runs in the update's own forward pass, so
batch norm is in train mode (attack_bn train). MixUp/CutMix are refused: a replay
would draw a new mixture every time. The perturbation is not saved in last.pth, so
a resumed run starts it afresh and is not bit-identical to an uninterrupted one
(unlike the other methods)."""

from __future__ import annotations

import torch
from torch import nn

from ..threat import Ball
from ..values import ValueProblem
from .adv_options import steps
from .adversarial import AdversarialMethod
from .base import ADV_METHODS, Batch, BatchOutput

DEFAULT_REPLAYS = 8  # the paper's m on CIFAR-10


@ADV_METHODS.register("free", summary="Free AT, Shafahi et al. 2019 (--eps --eta=eps --replays, epochs / m)")
class FreeAT(AdversarialMethod):
    name = "free"
    STEP_RULE = "eps"  # the paper's step: eps per replay
    STEPS_MUST_REACH = False  # the perturbation carries over from replay to replay and batch to batch
    EXTRA = {"replays": (steps(), DEFAULT_REPLAYS)}
    REFUSED = {
        "k": "each replay takes one step; train.adv_kwargs.replays sets how many per batch",
        "attack_bn": "the perturbation comes from the update's own forward pass, in train mode",
    }

    def __init__(self, base, spec):
        super().__init__(base, spec)
        self._u: torch.Tensor | None = None  # the carried perturbation, attack space

    def check_combination(self, options: dict, spec) -> None:
        if spec.method in ("mixup", "cutmix"):
            raise ValueProblem(
                ("train", "method"),
                f"adversarial method 'free' does not combine with {spec.method}: every replay would draw a "
                "new mixture; use train.adv pgd or fgsm-rs with it",
            )
        options["attack_bn"] = "train"

    def inner(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, float]:
        """This replay's input x + delta (valid pixels), with the hook that moves delta
        when the backward pass reaches it."""
        self.bind(model, batch.x.shape[1:])
        x = batch.x
        ball = Ball(self.current_threat, self._std.expand(x.shape[1]), x.device, x.dtype)
        # one buffer the size of the largest batch; a smaller (last) batch uses its first rows
        if self._u is None or self._u.shape[1:] != x.shape[1:] or len(self._u) < len(x):
            self._u = (
                ball.random(x.shape, x.device, x.dtype)
                if self.random_start
                else torch.zeros(x.shape, device=x.device, dtype=x.dtype)
            )
        u = ball.project(self._u[: len(x)])  # the eps warm-up may have shrunk the ball
        x_adv, _ = ball.apply(x, u)
        x_adv = x_adv.detach().requires_grad_(True)
        step, scale = self.current_threat.step, ball.scale.to(x.dtype)

        def ascend(grad_x: torch.Tensor) -> None:
            # chain rule: d loss / d u = g_x * scale; a GradScaler's factor is > 0 and
            # leaves the sign (L-inf) and direction (L2) alone
            self._u[: len(x)] = ball.project(ball.ascend(u, grad_x.detach() * scale, step))

        x_adv.register_hook(ascend)
        return x_adv, 0.0

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> BatchOutput:
        batch = self.base.prepare(x, y)
        x_adv, seconds = self.inner(model, batch)
        logits = model(x_adv)
        return BatchOutput(self.base.batch_criterion(logits, batch).mean(), logits, batch.target, seconds)
