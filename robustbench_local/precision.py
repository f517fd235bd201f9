"""How the training forward and backward run: the AMP dtype (Precision), autocast,
the fp16 GradScaler, the torch.compile backend, and TrainingModel, which routes each
forward through DDP / compile / autocast by what it is for. Validation and test
always run in float32, on the unwrapped model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import distributed
from .values import AUTO, ValueProblem


@dataclass(frozen=True)
class Precision:
    """Mixed precision for the training forward pass. CUDA: bf16 where supported,
    else fp16 with a GradScaler; CPU: bf16 when asked for (so the path runs on CPU
    too). Validation and test always run in float32."""

    dtype: torch.dtype | None  # None = float32 throughout
    device_type: str

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def label(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype or torch.bfloat16, enabled=self.enabled)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """fp16 gradients underflow without loss scaling; bf16 and fp32 need none."""
        return torch.amp.GradScaler(self.device_type) if self.needs_scaler else None


def resolve_precision(amp: bool | str, device: torch.device) -> Precision:
    on = device.type == "cuda" if amp == AUTO else bool(amp)
    if not on:
        return Precision(None, device.type)
    if device.type == "cuda":
        return Precision(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16, "cuda")
    if device.type == "cpu":
        return Precision(torch.bfloat16, "cpu")
    raise ValueProblem(("train", "amp"), f"mixed precision is not supported on {device.type}; turn it off")


def resolve_compile(value: bool | str) -> str | None:
    """The torch.compile backend, or None for eager."""
    if value is False:
        return None
    backend = "inductor" if value is True else value
    import torch._dynamo  # deferred: start-up time (importing dynamo is slow and only --compile needs it)

    known = torch._dynamo.list_backends(exclude_tags=())
    if backend not in known:
        raise ValueProblem(
            ("train", "compile"), f"unknown torch.compile backend '{backend}'; valid: {', '.join(sorted(known))}"
        )
    return backend


def scaled_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    params,
    clip: float | None,
) -> None:
    """One optimizer step on ``loss``: backward (scaled for fp16), optional gradient
    clipping of ``params`` (on unscaled gradients), step."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        if clip is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(params, clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()


class TrainingModel(nn.Module):
    """What fit() hands to the training method: ``model(x)``, routed by what the
    forward is for, so methods need to know nothing of DDP, compile or AMP.

    - A forward that can give parameter gradients (grad mode on and some parameter
      requiring grad) is a training forward: it goes through DDP (which all-reduces
      the gradients in backward; two forwards before one backward, as TRADES does,
      are fine) and torch.compile when on, under AMP when on, and returns float32
      logits, so every loss is computed in float32.
    - Any other forward is an attack's (attacks turn parameter gradients off, see
      attacks/base.py) or a no-grad one: it runs on the plain module (compiled when
      on) in float32, or in the AMP dtype with attack_precision 'amp'. DDP has nothing
      to synchronise there; bypassing it keeps its reducer out of the k attack steps
      and saves a buffer broadcast per step.

    ``fast`` holds the same weights as the registered ``train_forward`` and is kept
    out of the module tree, so ``parameters()`` and ``train()`` see each weight once."""

    def __init__(self, fast: nn.Module, train_forward: nn.Module, precision: Precision, attack_precision: str = "fp32"):
        super().__init__()
        self.train_forward = train_forward
        self.__dict__["fast"] = fast
        self.precision = precision
        self.attack_amp = attack_precision == "amp" and precision.enabled
        self._params = list(fast.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and any(p.requires_grad for p in self._params):
            with self.precision.autocast():
                return self.train_forward(x).float()
        with torch.autocast(
            self.precision.device_type, dtype=self.precision.dtype or torch.bfloat16, enabled=self.attack_amp
        ):
            return self.fast(x).float()


def build_training_model(
    model: nn.Module,
    device: torch.device,
    precision: Precision,
    *,
    compile_backend: str | None = None,
    attack_precision: str = "fp32",
) -> TrainingModel:
    """model -> [torch.compile] -> [DDP under torchrun] -> TrainingModel. ``model``
    keeps the weights (checkpoints and validation use it unwrapped)."""
    fast = torch.compile(model, backend=compile_backend) if compile_backend else model
    return TrainingModel(fast, distributed.wrap_ddp(fast, device), precision, attack_precision)
