"""`robust train`'s own option groups (model, method, optimisation, run). The data
and device groups are shared with other commands (common.py, runtime_options.py),
and the adversarial-training group is in adv_options.py. Each group is one
decorator; train_spec.py turns its options into TrainSpec fields."""

from __future__ import annotations

from typing import Any

import click

from ..data import AUGMENT_POLICIES
from ..methods import METHODS
from ..models import MODELS, NORMALIZATIONS
from ..specs import ATTACK_PRECISIONS, OPTIMIZERS, SCHEDULES, TrainSpec
from .common import (
    batch_size_option,
    channels_last_option,
    compose,
    model_option_option,
    out_option,
    results_option,
    tensorboard_option,
    weights_option,
)

_DEFAULT = TrainSpec.__dataclass_fields__  # defaults shown in --help come from the spec itself


def _default(name: str) -> Any:
    return _DEFAULT[name].default


def _method_names() -> str:
    return ", ".join(METHODS.names())


def model_options(f):
    return compose(
        click.option(
            "--model",
            "arch",
            default="cnn",
            show_default=True,
            help=f"Architecture: {', '.join(MODELS.names())}, or tv-<name> for a torchvision model.",
        ),
        click.option("--maps", default=None, help="cnn: feature maps per block, comma list (cnn default 16,32,64)."),
        click.option(
            "--blocks",
            default=None,
            help="ResNets: residual blocks per stage, comma list (e.g. 5,5,5,5 for the seed's deeper resnet18).",
        ),
        click.option(
            "--dropout",
            type=float,
            default=None,
            help="Dropout probability after each block (model's default if not given; cnn: 0.1).",
        ),
        click.option("--bn/--no-bn", default=None, help="cnn: batch norm after each conv (default on)."),
        click.option(
            "--skip/--no-skip", default=None, help="cnn: 1x1 stride-2 conv skip around each block (default off)."
        ),
        model_option_option("model_option", "Any other model option, e.g. width=64; repeat for several."),
        click.option(
            "--normalize",
            type=click.Choice(NORMALIZATIONS),
            default="seed",
            show_default=True,
            help="Input normalization inside the model: seed = mean=std=0.5 (normalized space [-1,1], "
            "the seeds' eps convention), dataset = the dataset's statistics, none = identity.",
        ),
        click.option(
            "--pretrained",
            is_flag=True,
            default=False,
            help="Start from torchvision's ImageNet weights (tv-* models; needs a network or --weights).",
        ),
        weights_option("Start from this local ImageNet state_dict file (tv-* models; no download)."),
    )(f)


def method_options(f):
    return compose(
        click.option("--method", default="standard", show_default=True, help=f"Training loss: {_method_names()}."),
        click.option(
            "--alpha", type=float, default=None, help="mixup/cutmix: Beta(alpha, alpha) mixing parameter (default 1.0)."
        ),
        click.option(
            "--cutmix-prob", type=float, default=None, help="cutmix: probability that a batch is mixed (default 0.5)."
        ),
        click.option(
            "--label-smoothing",
            type=float,
            default=None,
            help="standard/mixup/cutmix: label smoothing in [0, 1) (default 0).",
        ),
    )(f)


def optimization_options(f):
    return compose(
        click.option(
            "--epochs", type=int, default=_default("epochs"), show_default=True, help="Passes over the training split."
        ),
        batch_size_option(
            "Images per optimizer step: the global batch; under torchrun each of N processes takes batch/N.",
            default=_default("batch_size"),
        ),
        click.option(
            "--compile/--no-compile",
            "compile_model",
            default=False,
            show_default=True,
            help="torch.compile the model for training steps and their attacks (inductor). Validation runs "
            "uncompiled. Meant for GPUs: on small CPU models compiling rarely pays for itself "
            "(measure yours with benchmarks/torch_compile.py).",
        ),
        click.option(
            "--attack-precision",
            type=click.Choice(ATTACK_PRECISIONS),
            default="fp32",
            show_default=True,
            help="Precision of adversarial training's inner attack: fp32 even with --amp, or amp (the "
            "training forward's bf16/fp16).",
        ),
        click.option(
            "--sync-bn/--no-sync-bn",
            default=False,
            show_default=True,
            help="Under torchrun on GPUs: batch-norm statistics over the global batch. CUDA only.",
        ),
        click.option(
            "--optimizer",
            type=click.Choice(OPTIMIZERS),
            default=_default("optimizer"),
            show_default=True,
            help="sgd uses --momentum/--nesterov; adam and adamw ignore them.",
        ),
        click.option(
            "--lr",
            type=float,
            default=_default("lr"),
            show_default=True,
            help="Peak learning rate (per step, before the schedule scales it).",
        ),
        click.option("--momentum", type=float, default=_default("momentum"), show_default=True, help="SGD momentum."),
        click.option(
            "--nesterov/--no-nesterov", default=_default("nesterov"), show_default=True, help="SGD Nesterov momentum."
        ),
        click.option(
            "--weight-decay",
            type=float,
            default=_default("weight_decay"),
            show_default=True,
            help="L2 weight decay coefficient (decoupled for adamw).",
        ),
        click.option(
            "--schedule",
            type=click.Choice(SCHEDULES),
            default=_default("schedule"),
            show_default=True,
            help="lr schedule: cosine to 0 and onecycle (lr/25 -> lr at 30% -> 0) per batch; step = x0.1 "
            "at 50% and 75% of the epochs; plateau = x0.1 after 2 epochs without a better "
            "validation selection metric; none = constant.",
        ),
        click.option(
            "--warmup",
            "warmup_epochs",
            type=float,
            default=_default("warmup_epochs"),
            show_default=True,
            help="Epochs of linear lr warmup from 0 (fractions allowed).",
        ),
        click.option(
            "--grad-clip",
            type=float,
            default=None,
            help="Clip the global L2 norm of the gradients to this value (default: no clipping).",
        ),
        click.option(
            "--patience",
            type=int,
            default=None,
            help="Stop after this many epochs without a better validation selection metric (default: never).",
        ),
        click.option(
            "--budget-minutes",
            type=float,
            default=None,
            help="Wall-clock budget for training and validation: --epochs becomes the most, and the lr "
            "schedule is re-planned after every epoch to end on the last epoch that fits (default: none).",
        ),
        click.option(
            "--amp/--no-amp",
            default=None,
            help="Mixed precision for training steps. Default: on for CUDA (bf16, or fp16 with loss "
            "scaling), off elsewhere; --amp on CPU uses bf16. Validation and test stay float32.",
        ),
        channels_last_option("NHWC memory layout. Default: on for CUDA and CPU (faster there), off on MPS."),
    )(f)


def run_options(f):
    return compose(
        click.option(
            "--subset",
            type=int,
            default=None,
            help="Train on this many training examples (a fixed random choice by --split-seed). Default: all.",
        ),
        click.option(
            "--val-fraction",
            type=float,
            default=0.1,
            show_default=True,
            help="Share of the training split held out for validation (model selection; test is never used).",
        ),
        click.option(
            "--split-seed",
            type=int,
            default=0,
            show_default=True,
            help="Seed of the validation split and of --subset (kept apart from --seed so runs "
            "with different seeds see the same data).",
        ),
        click.option(
            "--augment",
            type=click.Choice(AUGMENT_POLICIES),
            default=None,
            help="Batch augmentation: none, light (2 px reflect translate + flip, for short runs), basic "
            "(random crop with 4 px padding + flip) or strong (basic + colour jitter + cutout). "
            "Default: the dataset's (basic).",
        ),
        click.option(
            "--selection",
            default=_default("selection"),
            show_default=True,
            help="Validation column that picks best.pth: val_acc, val_loss, or a column added by the "
            "method; auto = the method's choice (val_acc for standard training).",
        ),
        out_option(
            "Run folder for best.pth, last.pth, history.csv, config.json. "
            "Default: runs/<dataset>-<model>-<method>-s<seed>."
        ),
        click.option(
            "--resume",
            is_flag=True,
            default=False,
            help="Continue the run in --out from its last.pth (only --epochs, --device and --patience may change).",
        ),
        click.option(
            "--init",
            type=click.Path(dir_okay=False),
            default=None,
            help="Start from this checkpoint's weights (same model, classes and normalization), e.g. to "
            "fine-tune a standard model adversarially with --adv.",
        ),
        results_option("Results folder that receives the training record.", dest="results"),
        tensorboard_option(
            "Write TensorBoard scalars to DIR, one point per epoch: train/val loss and accuracy, "
            "robust val accuracy (adversarial training), learning rate, images/s. Needs the "
            "tensorboard package. Default: off."
        ),
    )(f)
