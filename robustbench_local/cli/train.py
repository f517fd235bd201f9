"""`robust train`: options -> TrainSpec -> train.fit.

Options come in groups (data, model, method, adversarial, optimisation, run,
device), declared in train_options.py and adv_options.py; train_spec.py turns each
group's parsed options into TrainSpec fields. A new group adds a decorator to
OPTION_GROUPS and a function to train_spec.SPEC_FIELDS."""

from __future__ import annotations

from collections.abc import Callable

import click

from ..outputs import ensure_writable_dir
from ..results import ResultsStore
from ..tensorboard_log import require as require_tensorboard
from ..train import fit
from .adv_options import adversarial_options
from .common import compose, data_options
from .runtime_options import device_options
from .train_options import method_options, model_options, optimization_options, run_options
from .train_spec import build_spec

OPTION_GROUPS: list[Callable] = [
    data_options,
    model_options,
    method_options,
    adversarial_options,
    optimization_options,
    run_options,
    device_options,
]


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
