"""Options several commands take, each declared once. A flag that means the same
in every command but reads differently there (what --batch-size counts, what
--results receives) takes its help, and where needed its default, as an argument;
its name, type and the way its default is shown stay the same everywhere.

Only click is imported here, so commands that never touch torch (report) start
quickly; the options whose choices come from torch-side modules live in
runtime_options.py."""

from __future__ import annotations

import click

SPLITS = ("test", "val")


def compose(*decorators):
    def apply(f):
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


def data_root_option(search_path: bool = True):
    """--data-root; search_path: the help also names the folders searched after it."""
    help_ = (
        "Folder searched first for data; then $ROBUST_DATA, ./data, ../shared/data."
        if search_path
        else "Folder searched first for the data."
    )
    return click.option("--data-root", type=click.Path(file_okay=False), default=None, help=help_)


def image_size_option(help_: str):
    return click.option("--image-size", type=int, default=None, help=help_)


def data_options(f):
    """The data a model is trained on (robust train)."""
    # deferred: start-up time (the data package, which commands that never train, such as report, do not load)
    from ..data.datasets import dataset_names

    names = dataset_names()  # the registry's: a new dataset is listed at once
    return compose(
        click.option(
            "--dataset",
            default="cifar10",
            show_default=True,
            help=f"{', '.join(names)} (PATH: a folder or a tar/tar.gz).",
        ),
        data_root_option(),
        image_size_option("Resize images to this side length in pixels (imagefolder datasets), e.g. 64."),
    )(f)


def weights_option(help_: str):
    return click.option("--weights", type=click.Path(dir_okay=False), default=None, help=help_)


def model_option_option(dest: str, help_: str):
    """--model-option KEY=VALUE, repeatable; parsed by model_source.parse_model_options."""
    return click.option("--model-option", dest, multiple=True, metavar="KEY=VALUE", help=help_)


def n_option(default: int | None, help_: str):
    return click.option("--n", type=int, default=default, show_default=default is not None, help=help_)


def split_option(help_: str):
    return click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True, help=help_)


def batch_size_option(help_: str, default: int = 256):
    return click.option("--batch-size", type=int, default=default, show_default=True, help=help_)


DEFAULT_OUT_HELP = "Results folder for the default --out."


def results_option(help_: str, dest: str = "results_dir"):
    return click.option(
        "--results", dest, type=click.Path(file_okay=False), default="results", show_default=True, help=help_
    )


def out_option(help_: str, folder: bool = True):
    """--out: a folder, or (folder False) a file."""
    kind = click.Path(file_okay=False) if folder else click.Path(dir_okay=False)
    return click.option("--out", type=kind, default=None, help=help_)


def tensorboard_option(help_: str):
    return click.option("--tensorboard", type=click.Path(file_okay=False), default=None, metavar="DIR", help=help_)


def channels_last_option(help_: str):
    """Unset means auto: the runtime picks the layout for the device."""
    return click.option("--channels-last/--no-channels-last", default=None, help=help_)
