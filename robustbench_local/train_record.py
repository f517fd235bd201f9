"""The training record: the final metrics of a run (best epoch on validation, test
accuracy of best.pth, each with its n and 95% interval) and the one JSON record fit()
adds to the ResultsStore, which says what was trained, on what data, how, and how
long it took."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .checkpoint import file_sha256
from .results import ResultsStore, wilson_interval
from .runtime import environment
from .train_setup import Run

# history columns every epoch has; any other column (robust accuracy, ...) is carried into the metrics
BASE_COLUMNS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "seconds",
    "images_per_s",
    "attack_seconds",
)


def final_metrics(run: Run, best: dict, row: dict, test: dict) -> dict:
    """The numbers of best.pth: ``row`` is its epoch's history row, ``test`` the test
    pass (evaluate_split's dict). Validation chose it; test is reported only."""
    n_val = len(run.data.val)
    k_val = round(row["val_acc"] * n_val)
    return {
        "selection": run.selection.metric,
        "selection_value": best["value"],
        "best_epoch": best["epoch"],
        "val_acc": row["val_acc"],
        "val_loss": row["val_loss"],
        "val_n": n_val,
        "val_correct": k_val,
        "val_ci95": list(wilson_interval(k_val, n_val)),
        "test_acc": test["acc"],
        "test_loss": test["loss"],
        "test_n": test["n"],
        "test_correct": test["correct"],
        "test_ci95": list(wilson_interval(test["correct"], test["n"])),
        **{c: row[c] for c in row if c not in BASE_COLUMNS and c not in ("val_acc", "val_loss")},
    }


def train_record(
    run: Run,
    *,
    best_model: nn.Module,
    best_meta: dict,
    history: list[dict],
    best: dict,
    stopped: str | None,
    metrics: dict,
    seconds: dict,
) -> dict:
    """The record of a finished run, for ResultsStore.add (kind 'train')."""
    spec, info, placement = run.spec, run.data.info, run.placement
    total = seconds["train"] + seconds["val"]
    return {
        "kind": "train",
        "checkpoint": {
            "path": str(run.best_path),
            "sha256": file_sha256(run.best_path),
            "last_path": str(run.last_path),
            "last_sha256": file_sha256(run.last_path),
            "out_dir": str(run.out_dir),
            "arch": best_meta["arch"],
            "arch_kwargs": best_meta["arch_kwargs"],
            "normalization": best_meta["normalization"],
            "mean": best_meta["mean"],
            "std": best_meta["std"],
            "method": spec.method,
            "method_kwargs": best_meta["method_kwargs"],
            "adv": spec.adv,
            "adv_kwargs": dict(spec.adv_kwargs),
            "threat": best_meta.get("threat"),
            "init": run.init_info,
            "params": sum(p.numel() for p in best_model.parameters()),
        },
        "spec": spec.to_dict(),
        "data": {
            "dataset": info.name,
            "info": info.to_dict(),
            "n_train": len(run.data.train),
            "n_val": len(run.data.val),
            "n_test": len(run.data.test),
            "subset": spec.data.subset,
            "split_seed": spec.data.split_seed,
            "val_fraction": spec.data.val_fraction,
            "augment": run.data.augment_policy,
            "chosen": ("first n of a permutation seeded by split_seed" if spec.data.subset else "whole train split")
            + " after carving val_fraction off train",
        },
        "history": history,
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "stopped": stopped,
        "metrics": metrics,
        "minutes": total / 60,
        "seconds": {
            "train": seconds["train"],
            "attack": seconds["attack"],
            "update": seconds["train"] - seconds["attack"],
            "validation": seconds["val"],
            "total": total,
        },
        "precision": placement.precision.label,
        "channels_last": placement.channels_last,
        "compile": placement.compile_backend,
        "attack_precision": spec.attack_precision,
        "world_size": placement.world_size,
        "environment": environment(placement.device, spec.seed),
    }


def is_recorded(store: ResultsStore, best_path: Path) -> bool:
    """Whether the store holds the training record of this best.pth (by its sha256)."""
    sha = file_sha256(best_path)
    return any(True for _ in store.find("train", **{"checkpoint.sha256": sha}))
