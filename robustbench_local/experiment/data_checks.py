"""The checks of an experiment that need its dataset: run before the plan, so that a
bad model option, selection metric, device or n stops the run before anything is made."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from ..data import load_dataset
from ..errors import RobustError
from ..methods import build_method
from ..models import build_model, resolve_normalization
from ..precision import resolve_precision
from ..runtime import resolve_device
from ..values import ValueProblem
from .cells import Cell
from .schema import Experiment


def _text(e: RobustError) -> str:
    """The message of an error raised for a key whose place in the file the caller names."""
    return e.msg if isinstance(e, ValueProblem) else str(e)


def check_with_data(exp: Experiment, cells: Sequence[Cell] | None = None):
    """Everything that needs the dataset: it exists, every model builds with its
    options, the selection metric exists, the devices and n fit. Returns the bundle
    (kept for evaluation). Writes nothing (the decode cache aside)."""
    d = exp.data
    try:
        bundle = load_dataset(
            d.dataset,
            data_root=d.data_root,
            image_size=d.image_size,
            val_fraction=d.val_fraction,
            split_seed=d.split_seed,
        )
    except RobustError as e:
        raise exp.problem(("data", "dataset"), _text(e)) from None
    info = bundle.info
    if d.subset is not None and d.subset > len(bundle.train):
        raise exp.problem(
            ("data", "subset"),
            f"subset {d.subset} is larger than the {len(bundle.train)} training "
            f"examples left after the validation split",
        )
    built: set[str] = set()
    for cell in cells if cells is not None else exp.cells:
        spec = cell.spec
        at = cell.origin
        try:
            device = resolve_device(spec.device)
        except RobustError as e:
            raise exp.problem(at.get("device", cell.path), _text(e)) from None
        try:
            resolve_precision(spec.amp, device)
        except RobustError as e:
            raise exp.problem(at.get("amp", cell.path), _text(e)) from None
        key = json.dumps([spec.model.to_dict()], sort_keys=True, default=str)
        if key not in built:
            try:
                mean, std = resolve_normalization(spec.model.normalize, info)
                with torch.device("cpu"):
                    build_model(
                        spec.model.arch,
                        num_classes=info.num_classes,
                        input_shape=info.input_shape,
                        mean=mean,
                        std=std,
                        **spec.model.kwargs,
                    )
            except RobustError as e:
                raise exp.problem(at.get("model", cell.path), str(e)) from None
            built.add(key)
        if spec.selection != "auto":
            method = build_method(spec)
            columns = {"val_acc", "val_loss"} | {c for m in method.validation_metrics() for c in m.columns}
            if spec.selection not in columns:
                raise exp.problem(
                    at.get("selection", cell.path),
                    f"unknown selection metric '{spec.selection}'; valid: {', '.join(sorted(columns))}",
                )
        if spec.init is not None and not Path(spec.init).is_file():
            raise exp.problem(at.get("init", cell.path), f"init checkpoint {spec.init} does not exist")
        out = exp.cell_dir(cell)
        if out.exists() and not out.is_dir():
            raise exp.problem(cell.path, f"the run folder {out} is a file")
    try:
        resolve_device(exp.eval_device)
    except RobustError as e:
        raise exp.problem(("eval", "device"), _text(e)) from None
    for u in exp.units:
        size = len(bundle.split(u.split))
        if u.n is not None and u.n > size:
            raise exp.problem(u.n_origin, f"n {u.n} is larger than the {size} examples of the {u.split} split")
    return bundle
