"""`robust data`: which datasets are available, where they were found, their sizes and classes."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..data import data_search_roots, describe_datasets
from .common import data_root_option, image_size_option


def _classes_cell(classes: list[str], limit: int = 12) -> str:
    shown = ", ".join(classes[:limit])
    return shown + (f", ... (+{len(classes) - limit} more)" if len(classes) > limit else "")


@click.command("data")
@data_root_option()
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    help="Describe only this dataset (repeatable), e.g. imagefolder:PATH. Default: every built-in one.",
)
@image_size_option("Resize images to this side length in pixels (as for training), e.g. 64.")
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON instead of a table.")
def command(data_root, datasets, image_size, as_json):
    """List each dataset: where it was found (or where it was looked for), the sizes of its
    train / val (10% of the original train) / test splits, and its classes.

    Nothing is downloaded. The first look at an image-folder dataset decodes it once into
    the cache ($ROBUST_CACHE, default ~/.cache/robustbench_local); later looks are fast."""
    rows = describe_datasets(data_root, names=list(datasets) or None, image_size=image_size)
    if as_json:
        click.echo(
            json.dumps({"search_roots": [str(r) for r in data_search_roots(data_root)], "datasets": rows}, indent=2)
        )
        return
    console = Console()
    table = Table(title="Datasets", show_lines=True)
    table.add_column("dataset", style="bold", no_wrap=True)
    table.add_column("found at", overflow="fold")
    table.add_column("train / val / test", justify="right")
    table.add_column("shape", no_wrap=True)
    table.add_column("classes", overflow="fold")
    for r in rows:
        if r["found"]:
            table.add_row(
                escape(r["name"]),
                escape(r["source"]),
                f"{r['train']:,} / {r['val']:,} / {r['test']:,}",
                "x".join(str(d) for d in r["input_shape"]),
                f"{r['num_classes']}: {escape(_classes_cell(r['classes']))}",
            )
        else:
            table.add_row(escape(r["name"]), "[red]not found[/red] (see below)", "-", "-", "-")
    console.print(table)
    roots = ", ".join(str(p) for p in data_search_roots(data_root))
    console.print(f"searched, in order: {escape(roots)}", soft_wrap=True, highlight=False)
    for r in rows:
        if not r["found"]:
            console.print(f"[bold]{escape(r['name'])}[/bold]: {escape(r['detail'])}", soft_wrap=True, highlight=False)
