"""Replaying saved adversarial examples (``robust eval --save-adv``) against another
model: the transfer number of every attack in the file, without crafting anything.

A point counts as robust when the model classifies both its clean image and its
replayed adversarial image correctly. Records have the same form as evaluate()'s,
with the attack's own fields from the file, its label marked "(replayed)", and
``replayed_from`` naming the file and the model the examples were crafted on."""

from __future__ import annotations

import time
from pathlib import Path

from . import checks as C
from . import distributed
from .checkpoint import file_sha256
from .errors import RobustError
from .eval_clean import predict
from .eval_inputs import Points, dataset_name, resolve_target
from .eval_records import attack_metrics
from .evaluation import Log
from .results import wilson_interval
from .runtime import environment, module_mode
from .text import acc_text
from .torchfile import load_weights_only


def load_adv_file(path: str | Path) -> dict:
    payload = load_weights_only(path, label=f"--replay file {path}", what="file written by robust eval --save-adv")
    if not isinstance(payload, dict) or not {"x_clean", "y", "index"} <= set(payload):
        raise RobustError(
            f"--replay file {path} holds no saved adversarial examples; write one with `robust eval --save-adv FILE`"
        )
    if not any(k.endswith("/x_adv") for k in payload):
        raise RobustError(f"--replay file {path} holds clean points but no attack's adversarial images")
    return payload


def replay(
    adv_file: str | Path,
    model_or_checkpoint,
    *,
    batch_size: int = 256,
    device="auto",
    log: Log | None = None,
    name: str | None = None,
) -> list[dict]:
    """One record per attack (and radius) saved in ``adv_file``, scored on the model."""
    payload = load_adv_file(adv_file)
    dev = distributed.init(device) if isinstance(device, str) else device
    say = log or (lambda s: None)
    target = resolve_target(model_or_checkpoint, dev, name)
    model = target.model.eval()
    wanted = dataset_name(target.meta)
    if wanted and payload.get("dataset") and wanted != payload["dataset"]:
        raise RobustError(
            f"--replay file {adv_file} holds {payload['dataset']} images but {target.name} was trained on {wanted}"
        )
    x = payload["x_clean"].to(dev).float()
    y = payload["y"].to(dev)
    points = Points(
        x,
        y,
        payload["index"],
        tuple(payload.get("classes") or ()),
        payload.get("dataset", "tensors"),
        payload.get("split", "test"),
        f"the points of {Path(adv_file).name}: {payload.get('selection', 'selection not recorded')}",
        int(payload.get("seed", 0)),
    )
    with module_mode(model, train=False):
        clean_logits = predict(model, x, batch_size)
    clean_ok = clean_logits.argmax(1) == y
    degenerate = C.not_degenerate(clean_logits.argmax(1), y, clean_logits.shape[1], points.classes)
    n = len(y)
    say(
        f"{target.name}: clean accuracy {acc_text(int(clean_ok.sum()) / n, n, wilson_interval(int(clean_ok.sum()), n))}"
    )
    base = {
        "kind": "eval",
        "checkpoint": target.describe(),
        "data": points.describe(),
        "environment": {**environment(dev, int(payload.get("seed", 0))), "world_size": 1},
        "cascade": False,
        "degenerate": None if degenerate.ok else {"reason": degenerate.detail},
        "replayed_from": {
            "path": str(adv_file),
            "sha256": file_sha256(adv_file),
            "crafted_on": payload.get("checkpoint"),
        },
    }
    records = []
    for key in sorted(k[: -len("/x_adv")] for k in payload if k.endswith("/x_adv")):
        t0 = time.perf_counter()
        x_adv = payload[f"{key}/x_adv"].to(dev).float()
        robust_ok = clean_ok & (predict(model, x_adv, batch_size).argmax(1) == y)
        seconds = time.perf_counter() - t0
        attack = dict(payload.get(f"{key}/attack") or {"name": "replay", "label": key.split("@")[0]})
        attack["label"] = f"{attack.get('label', key)} (replayed)"
        attack.setdefault("cumulative", False)
        rec = {
            **base,
            "attack": attack,
            "checks": [degenerate.to_dict()],
            "metrics": attack_metrics(points, clean_ok, robust_ok, seconds, int(clean_ok.sum())),
        }
        records.append(rec)
        eps = attack.get("eps_pixel", attack.get("eps"))
        say(
            f"  {attack['label']} (crafted on {payload.get('checkpoint')}) at eps {eps}: robust "
            f"{acc_text(rec['metrics']['robust_acc'], n, rec['metrics']['robust_ci95'])}"
        )
    return records
