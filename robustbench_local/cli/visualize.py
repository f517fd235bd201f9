"""`robust visualize`: clean | adversarial | amplified-perturbation grids."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import RobustError
from ..outputs import ensure_writable_dir, ensure_writable_file, write_output
from ..progress import ProgressDisplay
from .common import (
    DEFAULT_OUT_HELP,
    batch_size_option,
    data_root_option,
    n_option,
    out_option,
    results_option,
    split_option,
)
from .model_source import foreign_model_options, one_model
from .runtime_options import NUMBER, device_options
from .suite import build_specs, suite_options
from .tables import console


@click.command("visualize")
@click.argument("checkpoint", required=False, type=click.Path(dir_okay=False))
@suite_options
@foreign_model_options
@n_option(20, "Number of test images: the first n of a permutation seeded by --seed (as robust eval picks them).")
@split_option("Split the images come from.")
@out_option(
    "PNG to write [default: RESULTS/figures/<run>-<attack>.png]; with several attacks or radii "
    "the attack label and eps are added to the name.",
    folder=False,
)
@results_option(DEFAULT_OUT_HELP)
@click.option(
    "--amplify",
    type=NUMBER,
    default=10.0,
    show_default=True,
    help="Factor the perturbation is multiplied by in the third panel (centred at grey 0.5).",
)
@batch_size_option("Images attacked at once.")
@data_root_option(search_path=False)
@device_options
def command(checkpoint, suite, n, split, out, results_dir, amplify, batch_size, data_root, device, seed, **foreign):
    """Draw n test images of CHECKPOINT clean, attacked and as the amplified
    perturbation, with true label and both predictions (green correct, red wrong).

    \b
      robust visualize runs/NAME/best.pth --attack pgd --n 20
      robust visualize runs/NAME/best.pth --attack fgsm --eps 8/255 --eps-space pixel --seed 3
      robust visualize --arch tv-resnet18 --weights resnet18.pth --dataset cifar10 --normalization cifar10
    """
    # deferred: start-up time (the evaluation stack, which --help never needs)
    from ..visualize import adversarial_examples, render_grid

    if n < 1:
        raise RobustError(f"--n must be >= 1 image, got {n}")
    if amplify <= 0:
        raise RobustError(f"--amplify must be > 0, got {amplify}")
    model, label = one_model(checkpoint, foreign, data_root)
    specs = build_specs(suite)
    several = len(specs) > 1
    # every file's folder takes files before any image is attacked
    paths = [_grid_path(out, results_dir, label, spec, several) for spec in specs]
    for path in paths:
        if out is None:
            ensure_writable_dir(path.parent, "--results")
        else:
            ensure_writable_file(path, "--out")
    con = console()
    for spec, path in zip(specs, paths):
        ex = adversarial_examples(
            model,
            spec,
            n=n,
            seed=seed,
            split=split,
            device=device,
            batch_size=batch_size,
            data_root=data_root,
            progress=ProgressDisplay(con),
        )
        write_output(path, render_grid(ex, amplify), "--out" if out is not None else "--results")
        fooled = int(((ex.clean_pred == ex.y) & (ex.adv_pred != ex.y)).sum())
        con.print(
            f"{spec.label} at {ex.threat}: {int((ex.clean_pred == ex.y).sum())}/{n} correct clean, "
            f"{int((ex.adv_pred == ex.y).sum())}/{n} adversarial ({fooled} flipped) -> {path}",
            markup=False,
            soft_wrap=True,
        )


def _grid_path(out, results_dir, checkpoint, spec, several: bool) -> Path:
    from ..visualize import default_grid_path  # deferred: start-up time (the evaluation stack)

    if out is None:
        return default_grid_path(results_dir, checkpoint, spec, several)
    p = Path(out)
    return p.with_name(f"{p.stem}-{spec.label}-eps{spec.threat.eps:g}{p.suffix or '.png'}") if several else p
