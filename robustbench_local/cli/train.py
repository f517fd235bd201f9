"""`robust train`: options -> TrainSpec -> train.fit.

Options come in groups (data, model, method, optimisation, run, device). Each
group is a decorator plus, where it feeds the spec, a function turning the parsed
options into TrainSpec fields; a new group (e.g. adversarial training) adds one
of each to OPTION_GROUPS and SPEC_FIELDS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..data import AUGMENT_POLICIES
from ..methods import ADV_METHODS, METHODS
from ..models import MODELS, NORMALIZATIONS
from ..outputs import ensure_writable_dir
from ..results import ResultsStore
from ..specs import ATTACK_PRECISIONS, OPTIMIZERS, SCHEDULES, DataSpec, ModelSpec, TrainSpec
from ..tensorboard_log import require as require_tensorboard
from ..threat import NORMS, SPACES
from ..train import fit
from .common import NUMBER, compose, data_options, device_options
from .model_source import parse_model_options

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
        click.option(
            "--model-option",
            "model_option",
            multiple=True,
            metavar="KEY=VALUE",
            help="Any other model option, e.g. width=64; repeat for several.",
        ),
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
        click.option(
            "--weights",
            type=click.Path(dir_okay=False),
            default=None,
            help="Start from this local ImageNet state_dict file (tv-* models; no download).",
        ),
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
        click.option(
            "--batch-size",
            type=int,
            default=_default("batch_size"),
            show_default=True,
            help="Images per optimizer step: the global batch; under torchrun each of N processes takes batch/N.",
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
            "--amp/--no-amp",
            default=None,
            help="Mixed precision for training steps. Default: on for CUDA (bf16, or fp16 with loss "
            "scaling), off elsewhere; --amp on CPU uses bf16. Validation and test stay float32.",
        ),
        click.option(
            "--channels-last/--no-channels-last",
            default=None,
            help="NHWC memory layout. Default: on for CUDA and CPU (faster there), off on MPS.",
        ),
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
        click.option(
            "--out",
            type=click.Path(file_okay=False),
            default=None,
            help="Run folder for best.pth, last.pth, history.csv, config.json. "
            "Default: runs/<dataset>-<model>-<method>-s<seed>.",
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
        click.option(
            "--results",
            type=click.Path(file_okay=False),
            default="results",
            show_default=True,
            help="Results folder that receives the training record.",
        ),
        click.option(
            "--tensorboard",
            type=click.Path(file_okay=False),
            default=None,
            metavar="DIR",
            help="Write TensorBoard scalars to DIR, one point per epoch: train/val loss and accuracy, "
            "robust val accuracy (adversarial training), learning rate, images/s. Needs the "
            "tensorboard package. Default: off.",
        ),
    )(f)


def _adv_names() -> list[str]:
    return ADV_METHODS.names()


# --adv options -> adv_kwargs keys (only the options given are passed: each method
# resolves its own defaults, e.g. --eta is 1.25 * eps for fgsm-rs)
ADV_OPTIONS = {
    "eps": "eps",
    "eta": "eta",
    "k": "k",
    "eps_space": "eps_space",
    "norm": "norm",
    "random_start": "random_start",
    "adv_weight": "adv_weight",
    "beta": "beta",
    "attack_bn": "attack_bn",
    "eps_warmup": "eps_warmup",
    "early_stop": "early_stop",
    "val_robust_n": "val_n",
    "val_robust_k": "val_k",
    "val_robust_eta": "val_eta",
    "replays": "replays",
}


def adversarial_options(f):
    return compose(
        click.option(
            "--adv",
            default="none",
            show_default=True,
            help=f"Adversarial training: {', '.join(_adv_names())}. pgd = PGD-AT (Madry et al. 2018), "
            "trades = TRADES (Zhang et al. 2019), fgsm-rs = FGSM from a random start (Wong et al. "
            "2020; pair it with --schedule onecycle), free = free AT (Shafahi et al. 2019; each batch "
            "replayed --replays times, so train epochs / replays). Combines with --method (ova: OVA "
            "loss inside and outside the attack; mixup/cutmix: the mixed images are attacked).",
        ),
        click.option(
            "--eps",
            type=NUMBER,
            default=None,
            help="Threat radius in --eps-space units; 8/255 style fractions work. Default 0.0313 "
            "(normalized = 0.0157 pixel, about 4/255, with --normalize seed).",
        ),
        click.option(
            "--eta",
            type=NUMBER,
            default=None,
            help="Attack step size in --eps-space units. Default: derived from eps, pgd and trades "
            "2.5 * eps / k (Madry et al. 2018; eps/4 at k 10), fgsm-rs 1.25 * eps (Wong et al. 2020), "
            "free eps (Shafahi et al. 2019). --eta 0.002 is the seeds' step (0.001 pixel with "
            "--normalize seed). A given eta with k * eta < eps is warned about and recorded.",
        ),
        click.option("--k", type=int, default=None, help="Attack steps of pgd and trades. Default 10."),
        click.option(
            "--eps-space",
            type=click.Choice(SPACES),
            default=None,
            help="normalized (default): eps measured after the model's (x-mean)/std, the seeds' "
            "convention; pixel: eps on [0,1] pixels, RobustBench's convention.",
        ),
        click.option(
            "--norm",
            type=click.Choice(NORMS),
            default=None,
            help="Threat-model norm: linf (default) or l2 (l1 is for robust eval --attack autoattack).",
        ),
        click.option(
            "--random-start/--no-random-start",
            default=None,
            help="Start the attack at a uniform random point of the ball. Default on (trades: always, "
            "from x + 0.001 N(0,1) pixels).",
        ),
        click.option(
            "--adv-weight",
            type=NUMBER,
            default=None,
            help="pgd: weight w in (0, 1] of the adversarial loss, w * adv + (1 - w) * clean. Default 1 "
            "(adversarial loss only).",
        ),
        click.option(
            "--beta",
            type=NUMBER,
            default=None,
            help="trades: weight of the KL(clean || adversarial) term, >= 0. Default 6.",
        ),
        click.option(
            "--replays",
            type=int,
            default=None,
            help="free: times each batch is replayed, one optimizer step and one perturbation step each. "
            "Default 8 (the paper's m on CIFAR-10).",
        ),
        click.option(
            "--attack-bn",
            type=click.Choice(["eval", "train"]),
            default=None,
            help="Batch norm during the attack: eval (default) = running statistics, model in eval mode "
            "(MadryLab); train = batch statistics (the attack's passes also update the running ones).",
        ),
        click.option(
            "--eps-warmup",
            type=int,
            default=None,
            help="Epochs E over which eps (and the step) ramp linearly up to --eps: epoch e = 1, 2, ... "
            "trains at eps * min(1, e/E). Default 0 (off).",
        ),
        click.option(
            "--early-stop/--no-early-stop",
            default=None,
            help="Stop when the catastrophic-overfitting guard fires (robust val accuracy below half its "
            "best or under 5% while clean val accuracy rises); best.pth is kept either way. "
            "Default: on for fgsm-rs, off otherwise.",
        ),
        click.option(
            "--val-robust-n",
            type=int,
            default=None,
            help="Validation images (a fixed subset) for the PGD robust accuracy that picks best.pth. Default 1000.",
        ),
        click.option("--val-robust-k", type=int, default=None, help="PGD steps of that robust validation. Default 10."),
        click.option(
            "--val-robust-eta",
            type=NUMBER,
            default=None,
            help="Step of that robust validation in --eps-space units. Default 2.5 * eps / k "
            "(Madry et al. 2018), whatever the training step.",
        ),
    )(f)


def adversarial_fields(o: dict) -> dict:
    kwargs = {key: o[opt] for opt, key in ADV_OPTIONS.items() if o[opt] is not None}
    return {"adv": o["adv"], "adv_kwargs": kwargs}


def data_fields(o: dict) -> dict:
    return {
        "data": DataSpec(
            dataset=o["dataset"],
            data_root=o["data_root"],
            image_size=o["image_size"],
            subset=o["subset"],
            val_fraction=o["val_fraction"],
            augment=o["augment"],
            split_seed=o["split_seed"],
        )
    }


def model_fields(o: dict) -> dict:
    kwargs = parse_model_options(o["model_option"])
    for name in ("maps", "blocks", "dropout", "bn", "skip", "weights"):
        if o[name] is not None:
            kwargs[name] = o[name]
    if o["pretrained"]:
        kwargs["pretrained"] = True
    return {"model": ModelSpec(arch=o["arch"], kwargs=kwargs, normalize=o["normalize"])}


def method_fields(o: dict) -> dict:
    kwargs = {name: o[name] for name in ("alpha", "cutmix_prob", "label_smoothing") if o[name] is not None}
    return {"method": o["method"], "method_kwargs": kwargs}


def optimization_fields(o: dict) -> dict:
    names = (
        "epochs",
        "batch_size",
        "optimizer",
        "lr",
        "momentum",
        "nesterov",
        "weight_decay",
        "schedule",
        "warmup_epochs",
        "grad_clip",
        "patience",
    )
    out = {n: o[n] for n in names}
    out["amp"] = "auto" if o["amp"] is None else o["amp"]
    out["channels_last"] = "auto" if o["channels_last"] is None else o["channels_last"]
    out["compile"] = o["compile_model"]
    out["attack_precision"] = o["attack_precision"]
    out["sync_bn"] = o["sync_bn"]
    return out


def run_fields(o: dict) -> dict:
    return {"selection": o["selection"], "out": o["out"], "init": o["init"], "seed": o["seed"], "device": o["device"]}


OPTION_GROUPS: list[Callable] = [
    data_options,
    model_options,
    method_options,
    adversarial_options,
    optimization_options,
    run_options,
    device_options,
]
SPEC_FIELDS: list[Callable[[dict], dict]] = [
    data_fields,
    model_fields,
    method_fields,
    adversarial_fields,
    optimization_fields,
    run_fields,
]


def build_spec(options: dict) -> TrainSpec:
    fields: dict = {}
    for part in SPEC_FIELDS:
        fields.update(part(options))
    return TrainSpec(**fields)


@click.command("train", context_settings={"max_content_width": 100})
@compose(*OPTION_GROUPS)
def command(**options):
    """Train a classifier; writes runs/<name>/{best,last}.pth, history.csv and config.json, and a training
    record in --results.

    \b
      robust train                                   # seed CNN on CIFAR-10, 10 epochs
      robust train --epochs 1 --subset 2000          # a quick check
      robust train --model resnet20 --method cutmix --epochs 30
      robust train --adv pgd --eps 0.0313 --k 10     # PGD-AT, best.pth by PGD-10 robust val accuracy
      robust train --adv fgsm-rs --schedule onecycle # fast AT; stops on catastrophic overfitting
      robust train --adv trades --beta 6 --init runs/<name>/best.pth --epochs 3
    """
    board = {}
    if options["tensorboard"]:
        require_tensorboard()
        board = {"tensorboard": options["tensorboard"]}
    spec = build_spec(options)
    store = ResultsStore(options["results"])
    ensure_writable_dir(store.records_dir, "--results", shown=store.root)  # before any training, not after it
    fit(spec, resume=options["resume"], store=store, **board)
