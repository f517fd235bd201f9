"""`robust analyze`: confusion matrix, per-class accuracy, top-1/top-5 and
predictions of one checkpoint, clean or under an attack."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from ..errors import RobustError
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
from .runtime_options import device_options
from .suite import build_specs, suite_options
from .tables import console


def _clean_by_default(cmd: click.Command) -> click.Command:
    """eval's --attack defaults to pgd; analyze runs clean unless --attack is given."""
    for p in cmd.params:
        if p.name == "attack_names":
            p.default = ()
            p.show_default = False
            p.help = (
                "Analyze adversarial inputs of this attack (`robust attacks` lists them) instead of clean ones; "
                "repeat for several (each gets its own files). Default: clean."
            )
    return cmd


@_clean_by_default
@click.command("analyze")
@click.argument("checkpoint", required=False, type=click.Path(dir_okay=False))
@suite_options
@foreign_model_options
@n_option(None, "Analyze n test points (the first n of a permutation seeded by --seed) [default: the whole split].")
@split_option("Split to analyze.")
@out_option(
    "Folder for the files [default: RESULTS/analysis/<run>/]; names start with 'clean-' or the "
    "attack label and eps, e.g. PGD-10-eps0.0313-."
)
@results_option(DEFAULT_OUT_HELP)
@click.option(
    "--gradcam",
    "gradcam_layer",
    metavar="LAYER",
    default=None,
    help="Also draw GradCAM maps of this layer (a module name such as net.features.2.body.3, or 'auto' for "
    "the last feature map) for the first --gradcam-n points, clean and adversarial.",
)
@click.option("--gradcam-n", type=int, default=8, show_default=True, help="Points shown in the GradCAM figure.")
@batch_size_option("Points predicted or attacked at once.")
@data_root_option(search_path=False)
@device_options
def command(
    checkpoint,
    suite,
    n,
    split,
    out,
    results_dir,
    gradcam_layer,
    gradcam_n,
    batch_size,
    data_root,
    device,
    seed,
    **foreign,
):
    """Classification analytics of CHECKPOINT: normalized confusion matrix (PNG)
    and the most-confused class pairs, per-class accuracy (printed and CSV), top-1
    and top-5 accuracy, a grid of misclassified examples and a predictions CSV
    (index, true label, predicted label, confidence) for every point; with
    --gradcam, GradCAM maps of a layer on clean and adversarial inputs.

    \b
      robust analyze runs/NAME/best.pth
      robust analyze runs/NAME/best.pth --attack pgd --k 20 --n 2000
      robust analyze runs/NAME/best.pth --attack pgd --n 500 --gradcam auto
      robust analyze --arch tv-resnet18 --weights resnet18.pth --dataset cifar10 --normalization cifar10
    """
    # deferred: start-up time (pandas and the evaluation stack, which --help never needs)
    from ..analyze import analyze
    from ..visualize import run_name

    if n is not None and n < 1:
        raise RobustError(f"--n must be >= 1, got {n}")
    if batch_size < 1:
        raise RobustError(f"--batch-size must be >= 1, got {batch_size}")
    if gradcam_n < 1:
        raise RobustError(f"--gradcam-n must be >= 1, got {gradcam_n}")
    model, label = one_model(checkpoint, foreign, data_root)
    specs = [None]
    if suite["attack_names"]:
        specs = build_specs(suite)
    folder = Path(out) if out is not None else Path(results_dir) / "analysis" / run_name(label)
    con = console()
    for spec in specs:
        a = analyze(
            model,
            spec,
            n=n,
            seed=seed,
            split=split,
            device=device,
            batch_size=batch_size,
            data_root=data_root,
            gradcam_layer=gradcam_layer,
            gradcam_n=gradcam_n,
            progress=ProgressDisplay(con),
        )
        paths = a.write(folder)
        t = Table(title=f"per-class accuracy, {a.mode if a.threat is None else a.mode + ' (' + a.threat + ')'}")
        for col in ("class", "n", "accuracy", "95% CI", "precision"):
            t.add_column(col, justify="left" if col == "class" else "right")
        for _, r in a.per_class().iterrows():
            t.add_row(
                r["name"],
                str(r["n"]),
                f"{r['accuracy']:.2%}",
                f"{r['ci95_lo']:.1%}-{r['ci95_hi']:.1%}",
                "-" if r["precision"] != r["precision"] else f"{r['precision']:.2%}",
            )
        con.print(t)
        con.print(
            f"top-1 {a.top1:.2%}, top-{a.top_k} {a.top5:.2%} on n={a.n} ({a.selection})", markup=False, soft_wrap=True
        )
        pairs = a.confused_pairs(5)
        if len(pairs):
            con.print(
                "most confused: "
                + "; ".join(
                    f"{r['true_name']} -> {r['predicted_name']} {r['count']} ({r['share_of_true_class']:.1%})"
                    for _, r in pairs.iterrows()
                ),
                markup=False,
                soft_wrap=True,
            )
        con.print(f"wrote {len(paths)} files to {folder} ({a.tag}-*)", markup=False, soft_wrap=True)
