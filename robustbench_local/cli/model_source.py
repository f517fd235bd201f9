"""Options that name a model we did not train (`robust eval`, `visualize`, `analyze`)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import RobustError
from ..foreign import RB_THREAT_MODELS, ModelRequest, load_foreign
from ..foreign.code import is_torchscript, load_torchscript
from ..foreign.normalization import CHOICES
from .common import compose, image_size_option, model_option_option, weights_option

FOREIGN_KEYS = (
    "arch",
    "weights",
    "arch_option",
    "robustbench",
    "threat_model",
    "model_fn",
    "trust_code",
    "foreign_dataset",
    "image_size",
    "num_classes",
    "normalization",
    "mean",
    "std",
)


def foreign_model_options(f):
    return compose(
        click.option(
            "--arch",
            default=None,
            metavar="NAME",
            help="Architecture of a plain --weights file: a zoo model (see `robust models`), "
            "tv-NAME (any torchvision classifier) or timm-NAME (any timm model, `pip install timm`).",
        ),
        weights_option(
            "A plain state_dict file (or one under 'state_dict', 'model', ...; DataParallel's "
            "'module.' is stripped), read without running code; with --arch, --robustbench or --model-fn."
        ),
        model_option_option("arch_option", "An architecture option of --arch, e.g. maps=16,32,64; repeat for several."),
        click.option(
            "--robustbench",
            default=None,
            metavar="NAME",
            help="A RobustBench zoo model (e.g. Carmon2019Unlabeled; `pip install robustbench`): its "
            "architecture, with weights from --weights or RobustBench's download.",
        ),
        click.option(
            "--threat-model",
            type=click.Choice(RB_THREAT_MODELS),
            default="Linf",
            show_default=True,
            help="The RobustBench leaderboard --robustbench NAME is listed under.",
        ),
        click.option(
            "--model-fn",
            default=None,
            metavar="FILE.py:FUNCTION",
            help="Build the model by calling FUNCTION (or package.module:FUNCTION), which returns an "
            "nn.Module taking [0,1] pixels; runs that code, so it needs --trust-code.",
        ),
        click.option(
            "--trust-code",
            is_flag=True,
            default=False,
            help="Accept models whose own code runs when loaded: TorchScript files and --model-fn.",
        ),
        click.option(
            "--dataset",
            "foreign_dataset",
            default=None,
            metavar="NAME",
            help="Data of a foreign model (cifar10, cifar100, fashion-mnist, imagefolder:PATH); its test "
            "split is evaluated. RobustBench models default to their own.",
        ),
        image_size_option("Resize a foreign model's images to this side."),
        click.option(
            "--num-classes",
            type=int,
            default=None,
            help="Classes the foreign model predicts; must match --dataset (checked, not assumed).",
        ),
        click.option(
            "--normalization",
            default=None,
            metavar="|".join(CHOICES),
            help="Input normalization the foreign model expects (it becomes the model's first layer, and "
            "normalized-space eps is measured after it). Default: the weights file's own, else "
            "imagenet for tv-, timm's config for timm-, none (the model normalizes itself) for "
            "RobustBench, TorchScript and --model-fn.",
        ),
        click.option("--mean", default=None, help="Per-channel mean, e.g. 0.4914,0.4822,0.4465 (with --std)."),
        click.option("--std", default=None, help="Per-channel std, e.g. 0.2470,0.2435,0.2616 (with --mean)."),
    )(f)


def pop_request(options: dict, torchscript: str | None = None, data_root: str | None = None) -> ModelRequest | None:
    """Takes the foreign-model options out of ``options`` (a click kwargs dict); the
    request they make, or None when they name no model."""
    o = {k: options.pop(k) for k in FOREIGN_KEYS}
    req = ModelRequest(
        arch=o["arch"],
        weights=o["weights"],
        arch_options=parse_model_options(o["arch_option"]),
        robustbench=o["robustbench"],
        threat_model=o["threat_model"],
        torchscript=torchscript,
        model_fn=o["model_fn"],
        trust_code=o["trust_code"],
        dataset=o["foreign_dataset"],
        data_root=data_root,
        image_size=o["image_size"],
        num_classes=o["num_classes"],
        normalization=o["normalization"],
        mean=o["mean"],
        std=o["std"],
    )
    if req.given():
        return req
    stray = [
        f"--{k.replace('_', '-')}"
        for k in ("foreign_dataset", "num_classes", "normalization", "mean", "image_size")
        if o[k] is not None
    ]
    if stray or o["arch_option"]:
        flag = (stray or ["--model-option"])[0].replace("--foreign-dataset", "--dataset")
        raise RobustError(
            f"{flag} describes a foreign model; name one with --arch/--weights, --robustbench, "
            "--model-fn or a TorchScript file (a checkpoint from robust train knows its own)"
        )
    return None


def split_positional(paths, trust_code: bool) -> tuple[list[str], str | None]:
    """Our checkpoints, and at most one TorchScript file among the positional paths.
    A TorchScript file without --trust-code is refused by the loader's own line."""
    ours, scripts = [], []
    for p in paths:
        (scripts if Path(p).is_file() and is_torchscript(p) else ours).append(p)
    if scripts and not trust_code:
        load_torchscript(scripts[0], trust_code=False)  # raises the line that names --trust-code
    if len(scripts) > 1:
        raise RobustError(f"one TorchScript file at a time ({', '.join(scripts)} given)")
    return ours, (scripts[0] if scripts else None)


def parse_model_options(pairs) -> dict:
    """--model-option KEY=VALUE pairs as a dict of strings (the zoo parses the values)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise RobustError(f"--model-option expects KEY=VALUE, got '{pair}'")
        out[key.strip()] = value.strip()
    return out


def one_model(checkpoint: str | None, options: dict, data_root: str | None):
    """For commands that look at one model: (what to hand to the library, the name its
    files are filed under). It is a checkpoint path, or a loaded foreign Target."""
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise RobustError(f"checkpoint {checkpoint} does not exist; train one with `robust train` or check the path")
    ours, script = split_positional([checkpoint] if checkpoint else [], options["trust_code"])
    request = pop_request(options, script, data_root)
    if request is None:
        if not ours:
            raise RobustError(
                "give a checkpoint from robust train, or your own model with --arch NAME --weights "
                "FILE, --robustbench NAME, --model-fn FILE.py:FN or a TorchScript file"
            )
        return ours[0], ours[0]
    if ours:
        raise RobustError(f"give one model: {ours[0]} and a model from the foreign-model options were both given")
    target = load_foreign(request)
    return target, target.path or target.name.replace("/", "-")
