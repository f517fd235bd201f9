"""`robust models`: the architectures --model (train) and --arch (eval) take."""

from __future__ import annotations

import click

from ..models import model_kwargs_help


@click.command("models")
@click.argument("name", required=False)
def command(name):
    """List the architectures with their options and defaults, or describe NAME
    (a zoo model, tv-NAME or timm-NAME).

    \b
      robust models
      robust models resnet18
      robust models tv-resnet50
    """
    click.echo(model_kwargs_help(name))
