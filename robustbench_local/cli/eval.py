"""`robust eval`: attack one or more checkpoints and record the results."""

from __future__ import annotations

from pathlib import Path

import click

from ..corruptions import evaluate_corruptions, parse_names, parse_severities, require_extra
from ..distributed import is_main
from ..ensemble import load_ensemble
from ..errors import RobustError
from ..fileio import make_dirs, remove_empty
from ..foreign import load_foreign
from ..outputs import UnsavedWork, ensure_writable_dir, ensure_writable_file, save_record
from ..progress import ProgressDisplay
from ..results import ResultsStore
from ..tensorboard_log import require, write_evaluations
from ..text import plural
from .common import (
    batch_size_option,
    channels_last_option,
    data_root_option,
    n_option,
    results_option,
    split_option,
    tensorboard_option,
)
from .model_source import foreign_model_options, pop_request, split_positional
from .runtime_options import device_options
from .suite import build_specs, suite_options
from .tables import console, print_corruption_table, print_eval_table


@click.command("eval")
@click.argument("checkpoints", nargs=-1, required=False, type=click.Path(dir_okay=False))
@suite_options
@foreign_model_options
@n_option(1000, "Number of evaluation points: a fixed subset (seeded by --seed) of --split, recorded by its indices.")
@split_option("Split the points come from (val: the checkpoint's own validation split).")
@batch_size_option("Points attacked at once.")
@click.option(
    "--cascade/--no-cascade",
    default=False,
    show_default=True,
    help="AutoAttack-style: each later attack runs only on points no earlier one broke; later numbers are cumulative.",
)
@click.option(
    "--ensemble/--no-ensemble",
    default=False,
    show_default=True,
    help="Evaluate the checkpoints as one model averaging their logits (the attack targets the ensemble).",
)
@click.option(
    "--transfer-from",
    "transfer_from",
    type=click.Path(dir_okay=False),
    default=None,
    help="Transfer attack: craft every attack on this surrogate checkpoint and score it on CHECKPOINTS; "
    "records name both models.",
)
@click.option(
    "--replay",
    "replay_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Score the adversarial examples of a --save-adv file on CHECKPOINTS instead of attacking: every "
    "attack and radius in the file, on its points (the attack options are the file's).",
)
@click.option(
    "--checks/--no-checks",
    default=True,
    show_default=True,
    help="Run the sanity checks (gradient masking and friends).",
)
@click.option(
    "--check-convergence/--no-check-convergence",
    default=False,
    show_default=True,
    help="Also rerun each iterative white-box attack (PGD, APGD, ...) with 2k steps and flag a drop of "
    "more than 1 point (costs time).",
)
@click.option(
    "--save-adv",
    type=click.Path(dir_okay=False),
    default=None,
    help="Save clean and adversarial examples, labels, predictions and split indices to this .pt file "
    "(one file per checkpoint: NAME.pt gets the checkpoint's run name appended when there are several).",
)
@results_option("Results folder; records go to DIR/records/.")
@click.option("--record/--no-record", default=True, show_default=True, help="Append records to the results store.")
@tensorboard_option(
    "Also write clean and robust accuracy as TensorBoard scalars to DIR (DIR/<run> for each of several "
    "checkpoints), at the step of the checkpoint's epoch. Needs the tensorboard package."
)
@data_root_option(search_path=False)
@channels_last_option("NHWC memory layout for the attacks. Default: on for CUDA and CPU (faster there), off on MPS.")
@click.option(
    "--corruptions",
    "corruptions",
    default=None,
    metavar="all|FAMILY|NAME,...",
    help="Also measure accuracy under common corruptions (CIFAR-10-C's 15: all, a family noise|blur|"
    "weather|digital, or names such as gaussian_noise,fog), on the same points; without --attack "
    "only the corruptions run.",
)
@click.option(
    "--severity",
    "severity",
    default="all",
    show_default=True,
    metavar="all|1-5|LIST",
    help="Corruption severities: all, one level 1-5, a range (2-4) or a list (1,3,5).",
)
@click.option(
    "--corruption-source",
    type=click.Choice(["auto", "generated", "real"]),
    default="auto",
    show_default=True,
    help="auto: the real CIFAR-10-C / CIFAR-100-C .npy files where the data search path has them "
    "(<root>/CIFAR-10-C/), else generated locally (seeded by --seed, cached in the data cache).",
)
@device_options
@click.pass_context
def command(
    ctx,
    checkpoints,
    suite,
    n,
    split,
    batch_size,
    cascade,
    ensemble,
    transfer_from,
    replay_file,
    checks,
    check_convergence,
    save_adv,
    results_dir,
    record,
    tensorboard,
    data_root,
    channels_last,
    corruptions,
    severity,
    corruption_source,
    device,
    seed,
    **foreign,
):
    """Attack CHECKPOINTS (or a model of your own) and record clean and robust accuracy.

    \b
      robust eval --attack pgd --k 20 runs/NAME/best.pth
      robust eval --attack fgsm --attack pgd --attack autoattack ckpt1.pth ckpt2.pth
      robust eval --attack pgd --eps 8/255 --eps-space pixel --eps 0.01,0.02,0.0313 ckpt.pth
      robust eval --attack apgd --attack square --norm l2 --eps 0.5 --eps-space pixel ckpt.pth
      robust eval --attack pgd --transfer-from surrogate.pth target.pth
      robust eval --replay adv.pt other.pth
      robust eval --attack pgd --arch tv-resnet18 --weights resnet18.pth --dataset cifar10 --normalization cifar10
      robust eval --attack autoattack --eps 8/255 --eps-space pixel --robustbench Carmon2019Unlabeled --weights c.pt
      robust eval --attack pgd --trust-code model.ts --dataset cifar10
      robust eval --attack pgd --trust-code --model-fn mymodel.py:build --dataset cifar10
      robust eval --corruptions all runs/NAME/best.pth
      robust eval --attack pgd --corruptions noise,fog --severity 3-5 runs/NAME/best.pth
    """
    from ..evaluation import evaluate  # deferred: start-up time (the evaluation stack, which --help never needs)

    if n is not None and n < 1:
        raise RobustError(f"--n must be >= 1, got {n}")
    if batch_size < 1:
        raise RobustError(f"--batch-size must be >= 1, got {batch_size}")
    if tensorboard:
        require()
    if replay_file and transfer_from:
        raise RobustError("--replay scores saved examples and --transfer-from crafts new ones; give one of them")
    if replay_file and save_adv:
        raise RobustError("--replay crafts nothing to save; drop --save-adv")
    if replay_file and not Path(replay_file).is_file():
        raise RobustError(f"--replay file {replay_file} does not exist; write one with `robust eval --save-adv FILE`")
    for c in checkpoints + ((transfer_from,) if transfer_from else ()):
        if not Path(c).is_file():
            raise RobustError(f"checkpoint {c} does not exist; train one with `robust train` or check the path")
    names = severities = None
    attacks_asked = ctx.get_parameter_source("attack_names") != click.core.ParameterSource.DEFAULT
    if corruptions is not None:
        names, severities = parse_names(corruptions), parse_severities(severity)
        require_extra()
        if replay_file or transfer_from:
            raise RobustError(
                "--corruptions measures the model on corrupted images; run it without --replay and --transfer-from"
            )
        if save_adv and not attacks_asked:
            raise RobustError(
                "--save-adv keeps adversarial examples; with --corruptions alone no attack runs "
                "(add --attack NAME, or drop --save-adv)"
            )
    run_attacks = corruptions is None or attacks_asked
    checkpoints, torchscript = split_positional(checkpoints, foreign["trust_code"])
    request = pop_request(foreign, torchscript, data_root)
    if not checkpoints and request is None:
        raise RobustError(
            "nothing to evaluate: give a checkpoint from robust train, or your own model with "
            "--arch NAME --weights FILE, --robustbench NAME, --model-fn FILE.py:FN or a TorchScript "
            "file (the last two with --trust-code)"
        )
    if ensemble and request is not None:
        raise RobustError("--ensemble averages checkpoints from robust train; evaluate a foreign model on its own")
    specs = build_specs(suite)
    targets = list(checkpoints)
    if ensemble:
        targets = [load_ensemble(checkpoints)]
    if request is not None:
        targets.append(load_foreign(request))
    store = ResultsStore(results_dir)
    adv_paths = [_adv_path(save_adv, target, len(targets)) for target in targets]
    # every output takes files before any attack runs
    if record:
        ensure_writable_dir(store.records_dir, "--results", shown=store.root)
    for adv_path in adv_paths:
        if adv_path is not None:
            ensure_writable_file(adv_path, "--save-adv")
    log = console().print
    failures: list[str] = []  # outputs that could not be written; the rest is kept, then they are named
    for target, adv_path in zip(targets, adv_paths):
        made = make_dirs(adv_path.parent) if adv_path is not None else []
        adv_failed = None
        try:
            records = []
            if replay_file:
                from ..replay import replay  # deferred: start-up time (the evaluation stack)

                records = replay(replay_file, target, batch_size=batch_size, device=device, log=log)
            elif run_attacks:
                records = evaluate(
                    target,
                    specs,
                    n=n,
                    split=split,
                    seed=seed,
                    batch_size=batch_size,
                    cascade=cascade,
                    device=device,
                    run_checks=checks,
                    check_convergence=check_convergence,
                    data_root=data_root,
                    save_adv=adv_path,
                    log=log,
                    channels_last="auto" if channels_last is None else channels_last,
                    progress=ProgressDisplay(console()),
                    transfer_from=transfer_from,
                )
            if names is not None:
                records.append(
                    evaluate_corruptions(
                        target,
                        names,
                        severities,
                        n=n,
                        split=split,
                        seed=seed,
                        batch_size=batch_size,
                        device=device,
                        data_root=data_root,
                        source=corruption_source,
                        log=log,
                        progress=ProgressDisplay(console()),
                    )
                )
        except UnsavedWork as e:  # the attacks ran; only the --save-adv file could not be written
            records, adv_failed = e.records, str(e)
        finally:
            if adv_path is None or not adv_path.exists():
                remove_empty(made)
        if not is_main():  # under torchrun only rank 0 prints and writes
            continue
        if any(r["kind"] == "eval" for r in records):
            print_eval_table([r for r in records if r["kind"] == "eval"])
        for r in records:
            if r["kind"] == "corruption":
                print_corruption_table(r)
        if record:
            paths = []
            for r in records:
                try:
                    paths.append(save_record(store, r, "--results"))
                except RobustError as e:
                    failures.append(str(e))
            if paths:
                log(f"wrote {plural(len(paths), 'record')} to {store.records_dir}")
        if tensorboard:
            write_evaluations(_board_dir(tensorboard, records, len(targets)), records)
        if adv_failed:
            failures.append(adv_failed)
        elif adv_path:
            log(f"saved adversarial examples to {adv_path}")
    if failures:
        raise RobustError(failures[0] + (f" (and {len(failures) - 1} more like it)" if len(failures) > 1 else ""))


def _board_dir(tensorboard: str, records: list[dict], n_targets: int) -> Path:
    """--tensorboard's folder for one model: DIR, or DIR/<run name> when several are evaluated."""
    if n_targets == 1 or not records:
        return Path(tensorboard)
    return Path(tensorboard) / str((records[0].get("checkpoint") or {}).get("name") or "model")


def _adv_path(save_adv: str | None, target, n_targets: int) -> Path | None:
    """--save-adv's file for one checkpoint: NAME.pt, or NAME-<run>-<stem>.pt when there are several."""
    if not save_adv:
        return None
    path = Path(save_adv)
    if n_targets > 1:
        label = Path(target) if isinstance(target, (str, Path)) else Path(target.path or target.name.replace("/", "-"))
        path = path.with_name(f"{path.stem}-{label.parent.name}-{label.stem}{path.suffix or '.pt'}")
    return path
