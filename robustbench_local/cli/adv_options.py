"""`robust train --adv`: the adversarial-training options. Only the ones given reach
the method (train_spec.ADV_OPTIONS), which resolves its own defaults."""

from __future__ import annotations

import click

from ..methods import ADV_METHODS
from ..threat import NORMS, SPACES
from .common import compose
from .runtime_options import NUMBER


def _adv_names() -> list[str]:
    return ADV_METHODS.names()


def adversarial_options(f):
    return compose(
        click.option(
            "--adv",
            default="none",
            show_default=True,
            help=f"Adversarial training: {', '.join(_adv_names())}. pgd = PGD-AT (Madry et al. 2018), "
            "trades = TRADES (Zhang et al. 2019), fgsm-rs = FGSM from a random start (Wong et al. "
            "2020; pair it with --schedule onecycle), n-fgsm = FGSM from noise of --noise x eps, not projected "
            "(de Jorge et al. 2022), free = free AT (Shafahi et al. 2019; each batch "
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
            "n-fgsm eps (de Jorge et al. 2022), free eps (Shafahi et al. 2019). --eta 0.002 is the seeds' step (0.001 pixel with "
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
            "--noise",
            type=NUMBER,
            default=None,
            help="n-fgsm: the start is uniform noise of this many eps around x, and the step is not projected "
            "back, so training inputs lie up to (noise + 1) x eps away. Default 2 (the paper's k).",
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
