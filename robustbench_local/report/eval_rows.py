"""One evaluation record reduced to the flat row the report's tables, CSV and figures
read (eval_row): the checkpoint, where the model came from, the attack and its radius in
both spaces, the data, the accuracies with their intervals, and the record's warnings."""

from __future__ import annotations

import math
from pathlib import Path

from .radii import eps_value
from .record_fields import as_seed, as_text, created_of, dig, named_source

# Checks that concern the model as a whole (run once per checkpoint and copied
# into every record): the report shows them beside the checkpoint, not a cell.
MODEL_CHECKS = ("outputs_are_logits", "deterministic", "input_gradients", "no_collapse_at_large_eps")


def _train_eps(ckpt: dict) -> tuple[object, object]:
    """The adversarial-training radius of a checkpoint in (normalized, pixel) space,
    from whatever the checkpoint metadata recorded."""
    adv = ckpt.get("adv")
    if not adv or adv == "none":
        return math.nan, math.nan
    threat = ckpt.get("train_threat") or {}
    kw = ckpt.get("adv_kwargs") or {}
    if isinstance(threat, dict) and "eps_normalized" in threat and "eps_pixel" in threat:
        return eps_value(threat["eps_normalized"]), eps_value(threat["eps_pixel"])
    src = threat if isinstance(threat, dict) and "eps" in threat else kw
    if "eps" not in src:
        return math.nan, math.nan
    eps = float(src["eps"])
    space = src.get("space") or src.get("eps_space") or "normalized"
    std = ckpt.get("std")
    if not std:
        return (eps, math.nan) if space == "normalized" else (math.nan, eps)
    std = [float(s) for s in (std if isinstance(std, (list, tuple)) else [std])]
    if space == "normalized":
        return eps, eps_value([eps * s for s in std])
    return eps_value([eps / s for s in std]), eps


def source_label(route, zoo_name=None, file=None, factory=None) -> str | None:
    """How a model we did not train came in, for the tables' method column: 'RobustBench zoo:
    Wong2020Fast', 'weights: sd.pth', 'TorchScript: model.pt', 'model-fn: net.py:make'; None for ours."""
    if not as_text(route):
        return None
    if route == "robustbench":
        return f"RobustBench zoo: {zoo_name or '?'}"
    if route == "model-fn":
        return f"model-fn: {factory or (Path(file).name if as_text(file) else '?')}"
    what = {"weights": "weights", "torchscript": "TorchScript"}.get(route, route)
    return f"{what}: {Path(file).name}" if as_text(file) else what


def eval_row(rec: dict) -> dict:
    ck = rec.get("checkpoint") or {}
    data = rec.get("data") or {}
    att = rec.get("attack") or {}
    m = rec.get("metrics") or {}
    name = ck.get("name") or ck.get("path") or "?"
    sha = ck.get("sha256")
    path = ck.get("path")
    t_norm, t_pix = _train_eps(ck)
    clean_ci = m.get("clean_ci95") or [math.nan, math.nan]
    rob_ci = m.get("robust_ci95") or [math.nan, math.nan]
    model_warn, cell_warn = [], []
    for c in rec.get("checks") or []:
        if isinstance(c, dict) and c.get("ok") is False and c.get("name") != "not_degenerate":  # see "degenerate"
            (model_warn if c.get("name") in MODEL_CHECKS else cell_warn).append(str(c.get("detail") or c.get("name")))
    deg = rec.get("degenerate")
    members = att.get("members")
    src = ck.get("source") if isinstance(ck.get("source"), dict) else {}  # models we did not train
    exp = rec.get("experiment") if isinstance(rec.get("experiment"), dict) else {}
    return {
        "checkpoint": str(name),
        # an experiment's cells that differ only in their training seed share a group; records written before
        # they said so have their cell's name as the group (and the seed of their training record, see below)
        "experiment": as_text(exp.get("name")),
        "group": as_text(exp.get("group")) or as_text(exp.get("cell")),
        "train_seed": as_seed(exp.get("seed")),
        "ckpt_key": str(sha or path or name),
        "checkpoint_path": path,
        "checkpoint_sha256": sha,
        "dataset": ck.get("dataset") or data.get("dataset"),
        "arch": ck.get("arch"),
        "method": ck.get("method"),
        "adv": ck.get("adv") if ck.get("adv") not in (None, "") else "none",
        "model_source": source_label(
            src.get("route"), as_text(src.get("zoo_name")), src.get("file"), as_text(src.get("factory"))
        ),
        "source_route": as_text(src.get("route")),
        "source_file": as_text(src.get("file")),
        "zoo_name": as_text(src.get("zoo_name")),
        "zoo_dataset": as_text(src.get("zoo_dataset")),
        "zoo_threat_model": as_text(src.get("zoo_threat_model")),
        "normalization": as_text(ck.get("normalization")),
        "normalization_source": as_text(ck.get("normalization_source")),
        "train_eps_normalized": t_norm,
        "train_eps_pixel": t_pix,
        "attack": att.get("label") or att.get("name") or "?",
        "attack_name": att.get("name") or att.get("label") or "?",
        "attack_members": "+".join(members) if members else None,
        "cumulative": bool(att.get("cumulative", False)),
        "norm": att.get("norm"),
        "eps_space": att.get("space"),
        "eps_normalized": eps_value(att.get("eps_normalized")),
        "eps_pixel": eps_value(att.get("eps_pixel")),
        "step_normalized": eps_value(att.get("step_normalized")),
        "step_pixel": eps_value(att.get("step_pixel")),
        "attack_version": as_text(att.get("version")),
        "k": att.get("k"),
        "restarts": att.get("restarts"),
        "attack_kind": att.get("kind") if isinstance(att.get("kind"), str) else None,
        "step_rule": att.get("step_rule") if isinstance(att.get("step_rule"), str) else None,
        # where the adversarial images came from, when not crafted on this model
        "transfer_from": named_source(rec.get("transfer_from")),
        "replayed_from": named_source(rec.get("replayed_from")),
        "crafted_on": named_source(dig(rec, "replayed_from", "crafted_on")),
        "min_norms": m.get("min_norms"),  # minimal-norm attacks: per point, checked by eval_problem
        "split": data.get("split"),
        "n": int(m.get("n", data.get("n", 0)) or 0),
        "selection": data.get("selection"),
        "data_seed": data.get("seed"),
        "indices_sha256": data.get("indices_sha256"),
        "clean_acc": float(m.get("clean_acc", math.nan)),
        "clean_lo": float(clean_ci[0]),
        "clean_hi": float(clean_ci[1]),
        "robust_acc": float(m.get("robust_acc", math.nan)),
        "robust_lo": float(rob_ci[0]),
        "robust_hi": float(rob_ci[1]),
        "robust_flags": m.get("robust_flags") if isinstance(m.get("robust_flags"), str) else None,
        "eval_seconds": float(m["seconds"]) if m.get("seconds") is not None else math.nan,
        "clean_seconds": float(m["clean_seconds"]) if m.get("clean_seconds") is not None else math.nan,
        "model_warnings": " | ".join(dict.fromkeys(model_warn)) or None,
        # why the model's robust numbers are meaningless (it guesses or predicts one class), or None
        "degenerate": (
            str(deg.get("reason") or "degenerate model") if isinstance(deg, dict) else str(deg) if deg else None
        ),
        "warnings": " | ".join(dict.fromkeys(cell_warn)) or None,
        "created": created_of(rec),
        "record": Path(rec.get("_path", "?")).name,
    }


def eval_row_columns() -> list[str]:
    """The columns of every row, in order (those of an empty record)."""
    return list(eval_row({"_path": "x.json"}).keys())
