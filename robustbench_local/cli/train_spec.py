"""`robust train`'s parsed options -> TrainSpec: one function per option group,
each returning the TrainSpec fields it fills."""

from __future__ import annotations

from collections.abc import Callable

from ..specs import DataSpec, ModelSpec, TrainSpec
from .model_source import parse_model_options

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
    "noise": "noise",
}


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
        "budget_minutes",
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
