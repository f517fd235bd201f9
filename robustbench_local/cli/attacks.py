"""`robust attacks`: the attack registry, as robust eval and experiment files see it."""

from __future__ import annotations

import click
from rich.table import Table

from ..attacks import registry
from .tables import console


@click.command("attacks")
@click.argument("names", nargs=-1)
def command(names):
    """List the attacks (or only NAMES) with their kind, norms and options: each
    option is a flag of robust eval (shared by the attacks that have it), an
    --attack-option NAME.KEY=VALUE, and a key of an [[attacks]] entry.

    \b
      robust attacks
      robust attacks apgd square
    """
    con = console()
    for name in names or registry.names():
        info = registry.info(name)  # an unknown name fails listing the valid ones
        t = Table(
            title=f"{name}: {info.kind}, norms {', '.join(info.norms)}",
            title_justify="left",
            caption=info.summary or None,
            caption_justify="left",
        )
        for col in ("option", "flag", "type", "default", "help"):
            t.add_column(col, overflow="fold")
        for o in info.options.values():
            typ = "|".join(o.choices) if o.choices else o.type.__name__
            flag = f"--{o.flag}" + (f"/--no-{o.flag}" if o.type is bool else "")
            t.add_row(o.name, flag, typ, str(o.default).lower() if o.type is bool else str(o.default), o.help)
        if info.takes("eot"):
            t.add_row("eot", "--eot", "int", "1", "Gradient samples averaged per step (EOT).")
        con.print(t)
