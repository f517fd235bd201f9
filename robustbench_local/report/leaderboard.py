"""The leaderboard section of the report: our CIFAR-10 models beside published
RobustBench entries at the same threat model (L-inf 8/255, and L2 0.5 where we have
records there, both in pixels of [0, 1] images).

Published figures are a small table here, each cited (paper and RobustBench model
name); they are RobustBench's own numbers, on all 10,000 test images with AutoAttack
(standard). Ours come from the report's records through robustbench_info.model_infos,
which already maps records to RobustBench's threat models (pixel eps, standard
AutoAttack, worst case per example): AutoAttack where a standard AutoAttack record
is at that radius, else the worst case over the attacks run, labelled as such.

What differs is said beside the table: our data is the JPEG (quality 75) copy of
CIFAR-10, our training ran on this machine, and our n is what the records hold.

The published entries live in leaderboard_published.py; the section's markdown and
HTML in leaderboard_pages.py."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from .leaderboard_published import PUBLISHED, Published
from .load import ReportData, newest_largest
from .radii import fmt_eps_255
from .robustbench_info import STANDARD_EPS, is_standard_eps, model_infos
from .table_parts import method_text
from .train_runs import TrainRun, match_train

DATASET = "cifar10"
THREAT_TITLES = {"Linf": "L-inf, eps 8/255", "L2": "L2, eps 0.5"}


@dataclass
class Acc:
    """An accuracy in % with its 95% interval and n."""

    pct: float
    lo: float
    hi: float
    n: int

    def text(self) -> str:
        if math.isnan(self.lo) or math.isnan(self.hi):  # a record made before intervals were recorded
            return f"{self.pct:.1f} n={self.n:,}"
        return f"{self.pct:.1f} [{self.lo:.1f}, {self.hi:.1f}] n={self.n:,}"


@dataclass
class OurRow:
    name: str
    architecture: str
    training: str
    clean: Acc
    robust: Acc
    autoattack: bool  # robust is AutoAttack (standard); else the worst case over `attacks`
    attacks: list[str]
    cost: str
    notes: list[str] = field(default_factory=list)
    degenerate: bool = False


@dataclass
class Board:
    threat: str  # "Linf" or "L2"
    eps_pixel: float
    ours: list[OurRow]
    published: list[Published]

    @property
    def title(self) -> str:
        return THREAT_TITLES[self.threat]


@dataclass
class Leaderboard:
    boards: list[Board]  # one per threat model with a row of ours
    missing: list[str] = field(default_factory=list)  # threat models with no record of ours, as one line each

    @property
    def empty(self) -> bool:
        return not self.boards and not self.missing


# ----------------------------------------------------------------------------- building


def _train_device(results: Path | None, train: TrainRun) -> str | None:
    """'CPU (2 threads)' or 'GPU (NVIDIA H200)': where the training record says it ran."""
    if results is None:
        return None
    try:
        rec = json.loads((Path(results) / "records" / train.record).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    env = rec.get("environment") if isinstance(rec, dict) else None
    if not isinstance(env, dict) or not isinstance(env.get("device"), str):
        return None
    world = rec.get("world_size")
    times = f" x{world}" if isinstance(world, int) and world > 1 else ""
    if env["device"].startswith("cuda"):
        name = env.get("device_name")
        return f"GPU{times}" + (f" ({name})" if isinstance(name, str) and name else "")
    if env["device"] == "cpu":
        threads = env.get("threads")
        return "CPU" + (f" ({threads} threads)" if isinstance(threads, int) else "")
    return env["device"] + times


def cost_text(train: TrainRun | None, device: str | None) -> str:
    if train is None or train.minutes is None:
        return "not recorded"
    parts = [f"{train.minutes:.1f} min" + (f" on {device}" if device else "")]
    if train.epochs is not None:
        parts.append(f"{train.epochs} epoch" + ("s" if train.epochs != 1 else "") + _epoch_range(train.history))
    text = ", ".join(parts)
    return text + (f" (budget {train.budget_minutes:g} min)" if train.budget_minutes else "")


def _epoch_range(history: list[dict]) -> str:
    """' of 4.7-5.6 min': the shortest and longest epoch, so that a total stretched by a shared
    machine or a paused job shows as an uneven range (one epoch: nothing to compare)."""
    mins = [h["seconds"] / 60 for h in history if isinstance(h.get("seconds"), (int, float)) and h["seconds"] > 0]
    if len(mins) < 2:
        return ""
    return f" of {min(mins):.1f}-{max(mins):.1f} min"


def _training_text(row: pd.Series) -> str:
    text = method_text(row["method"], row["adv"], row.get("model_source"))
    pixel = row["train_eps_pixel"]
    if row["adv"] not in (None, "none", "-") and not (isinstance(pixel, float) and math.isnan(pixel)):
        text += f" @ {fmt_eps_255(pixel)}"
    return text


def _acc(exact: tuple, n) -> Acc:
    """From the measured fractions behind the model info's 2-decimal percents (rounding
    those again would show 0.3905 as 39.0 where the other tables show 39.1)."""
    return Acc(*(100 * float(v) for v in exact), int(n))


def _clean(evals: pd.DataFrame, ckpt_key: str) -> Acc:
    """Clean accuracy from the model's test-set evaluation with the most points (it does
    not depend on the attack or radius, and RobustBench reports it on the whole test set)."""
    r = newest_largest(evals[evals["ckpt_key"] == ckpt_key])
    return Acc(100 * r["clean_acc"], 100 * r["clean_lo"], 100 * r["clean_hi"], int(r["n"]))


def _our_row(info: dict, exact: dict, evals: pd.DataFrame, data: ReportData, results: Path | None) -> OurRow:
    ref = evals[evals["record"].isin(info["records"])].iloc[0]
    zoo = info["source"]["zoo_name"] if info["source"]["route"] == "robustbench" else None
    if zoo:
        cost = f"not trained here (RobustBench zoo: {zoo})"
    else:
        train = match_train(ref, data.trains)
        cost = cost_text(train, _train_device(results, train) if train else None)
    aa = info["autoattack_acc"] is not None
    robust = _acc(exact["autoattack"] if aa else exact["robust"], info["n"])
    notes = []
    if aa and info["autoattack_attack"] == "AutoAttack-native":
        notes.append(
            "AutoAttack-native: this tool's own cascade of AutoAttack's standard attacks and settings, "
            "not the autoattack package"
        )
    if not aa:
        how = " (per-example worst case)" if len(info["robust_attacks"]) > 1 else ""
        notes.append(
            f"no AutoAttack record at this radius: worst case over {', '.join(info['robust_attacks'])}"
            f"{how}, not AutoAttack"
        )
    elif info["robust_acc"] is not None and float(exact["robust"][0]) < float(exact["autoattack"][0]):
        worst = _acc(exact["robust"], info["n"])
        notes.append(
            f"the per-example worst case over {', '.join(info['robust_attacks'])} on the same points is "
            f"lower: {worst.text()}"
        )
    if info["degenerate"]:
        notes.append(f"degenerate model ({info['degenerate']}): its robust accuracy is meaningless")
    return OurRow(
        name=info["name"],
        architecture=info["architecture"] or "-",
        training=_training_text(ref),
        clean=_clean(evals, ref["ckpt_key"]),
        robust=robust,
        autoattack=aa,
        attacks=list(info["robust_attacks"]),
        cost=cost,
        notes=notes,
        degenerate=bool(info["degenerate"]),
    )


def _radii(evals: pd.DataFrame) -> str:
    """' (the CIFAR-10 records here are at L-inf 3.99/255)': the radii there are instead."""
    names = {"linf": "L-inf", "l2": "L2"}
    found = sorted(
        {
            (names[n], p)
            for n, p in zip(evals["norm"], evals["eps_pixel"])
            if n in names and isinstance(p, float) and not math.isnan(p)
        }
    )
    if not found:
        return ""
    by_norm: dict[str, list[str]] = {}
    for n, p in found:
        text = fmt_eps_255(p) if n == "L-inf" else f"{p:.3g}"
        if text not in by_norm.setdefault(n, []):
            by_norm[n].append(text)
    texts = [f"{n} {', '.join(ps)}" for n, ps in by_norm.items()]
    return f" (the CIFAR-10 records here are at {'; '.join(texts)} in pixels)"


def build_leaderboard(data: ReportData, results: str | Path | None = None) -> Leaderboard:
    """The leaderboard rows from the report's records (already filtered and
    deduplicated); ``results`` is the results folder, read for where each model was
    trained. Empty when no record is of CIFAR-10 on its test split."""
    df = data.evals
    if df.empty:
        return Leaderboard([])
    ok = (df["dataset"] == DATASET) & df["split"].map(lambda s: s == "test" or not isinstance(s, str))
    evals = df[ok]
    if evals.empty:
        return Leaderboard([])
    infos = model_infos(replace(data, evals=evals.reset_index(drop=True)))
    results = Path(results) if results is not None else None
    board = Leaderboard([])
    for threat in ("Linf", "L2"):
        eps = STANDARD_EPS[(DATASET, threat)]
        at = [
            (i, infos.exact[rel])
            for rel, i in infos.files.items()
            if i["dataset"] == DATASET
            and i["threat_model"] == threat
            and is_standard_eps(DATASET, threat, i["eps_pixel"])
        ]
        if not at:
            if threat == "Linf":  # the leaderboard everyone compares on; L2 only shows when we have it
                board.missing.append(
                    "No record here is at RobustBench's CIFAR-10 L-inf threat model (eps 8/255 in "
                    "pixels), so no model of ours is on its leaderboard" + _radii(evals) + "."
                )
            continue
        ours = [_our_row(i, exact, evals, data, results) for i, exact in at]
        ours.sort(key=lambda r: (r.degenerate, not r.autoattack, -r.robust.pct, -r.clean.pct, r.name))
        published = sorted((p for p in PUBLISHED if p.threat == threat), key=lambda p: (-p.autoattack, p.name))
        board.boards.append(Board(threat, eps, ours, published))
    return board
