"""Shared options whose choices come from the runtime and the threat model (--device,
--seed, --norm, --eps, --eta, --eps-space), and NUMBER, the type that parses radii
and steps such as 8/255."""

from __future__ import annotations

import click

from ..runtime import DEVICES
from ..threat import NORMS, SPACES, parse_number
from .common import compose


class Number(click.ParamType):
    """A finite float that also accepts fractions such as 8/255. A bad value is a
    RobustError, so it ends as one line (exit code 2) like every other bad input."""

    name = "NUMBER"

    def convert(self, value, param, ctx):
        return parse_number(value, what=param.opts[0] if param else "value")


NUMBER = Number()


def device_options(f):
    return compose(
        click.option(
            "--device",
            type=click.Choice(DEVICES),
            default="auto",
            show_default=True,
            help="Where to compute: auto picks cuda, then mps, then cpu.",
        ),
        click.option(
            "--seed", type=int, default=0, show_default=True, help="Random seed; saved in every checkpoint and record."
        ),
    )(f)


ETA_HELP = (
    "Attack step size in --eps-space units. Default: derived from eps at each radius, PGD 2.5*eps/k "
    "(Madry et al. 2018; eps/4 at k 10), FGSM eps, R+FGSM 1.25*eps; AutoAttack adapts its own. "
    "--eta 0.002 is the seeds' step (0.001 pixel with mean=std=0.5). A given eta is used at every radius; "
    "PGD with k*eta < eps is flagged in the record."
)


def threat_options(multi_eps: bool = False, eta_default: float | None = None):
    """--norm/--eps/--eta/--eps-space. With multi_eps, --eps may repeat or be a
    comma list, giving a sweep. eta_default None: each attack derives its step."""

    def deco(f):
        eps_help = (
            "Attack radius in --eps-space units; 8/255 style fractions work. "
            "Default 0.0313 normalized = 0.0157 pixel (about 4/255) for mean=std=0.5."
        )
        if multi_eps:
            eps_opt = click.option(
                "--eps",
                "eps",
                multiple=True,
                default=("0.0313",),
                show_default=True,
                help=eps_help + " Repeat it or give a comma list for a sweep.",
            )
        else:
            eps_opt = click.option("--eps", type=NUMBER, default=0.0313, show_default=True, help=eps_help)
        return compose(
            click.option(
                "--norm",
                type=click.Choice(NORMS),
                default="linf",
                show_default=True,
                help="Threat-model norm; an attack that has no geometry for it refuses it in one line.",
            ),
            eps_opt,
            click.option(
                "--eta", type=NUMBER, default=eta_default, show_default=eta_default is not None, help=ETA_HELP
            ),
            click.option(
                "--eps-space",
                type=click.Choice(SPACES),
                default="normalized",
                show_default=True,
                help="normalized: eps measured after the model's (x-mean)/std, the seeds' convention; "
                "pixel: eps on [0,1] pixels, RobustBench's convention.",
            ),
        )(f)

    return deco


def parse_eps_list(values) -> list[float]:
    out: list[float] = []
    for v in values:
        for part in str(v).split(","):
            if part.strip():
                out.append(parse_number(part, "--eps"))
    return out
