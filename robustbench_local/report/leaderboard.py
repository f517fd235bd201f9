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
CIFAR-10, our training ran on this machine, and our n is what the records hold."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from html import escape
from pathlib import Path

import pandas as pd

from ..results import wilson_interval
from .load import ReportData, TrainRun, fmt_eps_255, match_train, newest_largest
from .robustbench_info import STANDARD_EPS, is_standard_eps, model_infos
from .tables import method_text

DATASET = "cifar10"
PUBLISHED_N = 10_000  # RobustBench evaluates every CIFAR-10 entry on the whole test set
THREAT_TITLES = {"Linf": "L-inf, eps 8/255", "L2": "L2, eps 0.5"}
MODEL_INFO = "github.com/RobustBench/robustbench, model_info/cifar10/{threat}/{name}.json"


@dataclass(frozen=True)
class Published:
    """One RobustBench entry as its model_info file lists it (accuracies in %)."""

    name: str  # RobustBench's model name
    threat: str  # "Linf" or "L2"
    architecture: str
    method: str
    clean: float
    autoattack: float
    cost: str  # training cost as the paper states it, or why it is not given here
    paper: str  # authors, title, venue
    link: str
    extra_data: str | None = None


# Figures from RobustBench's model_info files (MODEL_INFO). Architectures are the zoo's
# networks: RobustBench writes "ResNet-18" for Wong2020Fast and Rice2020Overfitting (L2),
# whose zoo models are PreAct-ResNet-18s; its L-inf Rice2020Overfitting is a WideResNet-34-20.
WONG = "E. Wong, L. Rice, J. Z. Kolter, \"Fast is better than free: Revisiting adversarial training\", ICLR 2020"
RICE = "L. Rice, E. Wong, J. Z. Kolter, \"Overfitting in adversarially robust deep learning\", ICML 2020"
CARMON = (
    "Y. Carmon, A. Raghunathan, L. Schmidt, P. Liang, J. C. Duchi, \"Unlabeled Data Improves Adversarial "
    "Robustness\", NeurIPS 2019"
)
ENGSTROM = "L. Engstrom, A. Ilyas, S. Santurkar, D. Tsipras, \"Robustness (Python library)\", GitHub, Sep 2019"
STANDARD = (
    "RobustBench's standardly trained model (F. Croce et al., \"RobustBench\", NeurIPS 2021 Datasets and Benchmarks)"
)
NOT_STATED = "not stated in the entry"
PUBLISHED: tuple[Published, ...] = (
    Published(
        "Carmon2019Unlabeled",
        "Linf",
        "WideResNet-28-10",
        "robust self-training (TRADES loss)",
        89.69,
        59.53,
        NOT_STATED,
        CARMON,
        "https://arxiv.org/abs/1905.13736",
        extra_data="500k unlabeled extra images (80M Tiny Images), pseudo-labelled",
    ),
    Published(
        "Rice2020Overfitting",
        "Linf",
        "WideResNet-34-20",
        "PGD-AT, early stopping",
        85.34,
        53.42,
        NOT_STATED,
        RICE,
        "https://arxiv.org/abs/2002.11569",
    ),
    Published(
        "Wong2020Fast",
        "Linf",
        "PreAct-ResNet-18",
        "FGSM-RS",
        83.34,
        43.21,
        "12 GPU-min, 15 epochs (paper)",
        WONG,
        "https://arxiv.org/abs/2001.03994",
    ),
    Published(
        "Standard",
        "Linf",
        "WideResNet-28-10",
        "standard",
        94.78,
        0.00,
        NOT_STATED,
        STANDARD,
        "https://github.com/RobustBench/robustbench",
    ),
    Published(
        "Engstrom2019Robustness",
        "L2",
        "ResNet-50",
        "PGD-AT",
        90.83,
        69.24,
        NOT_STATED,
        ENGSTROM,
        "https://github.com/MadryLab/robustness",
    ),
    Published(
        "Rice2020Overfitting",
        "L2",
        "PreAct-ResNet-18",
        "PGD-AT, early stopping",
        88.67,
        67.68,
        NOT_STATED,
        RICE,
        "https://arxiv.org/abs/2002.11569",
    ),
    Published(
        "Standard",
        "L2",
        "WideResNet-28-10",
        "standard",
        94.78,
        0.00,
        NOT_STATED,
        STANDARD,
        "https://github.com/RobustBench/robustbench",
    ),
)


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
        parts.append(f"{train.epochs} epoch" + ("s" if train.epochs != 1 else ""))
    return ", ".join(parts)


def _training_text(row: pd.Series) -> str:
    text = method_text(row["method"], row["adv"], row.get("model_source"))
    pixel = row["train_eps_pixel"]
    if row["adv"] not in (None, "none", "-") and not (isinstance(pixel, float) and math.isnan(pixel)):
        text += f" @ {fmt_eps_255(pixel)}"
    return text


def _acc(pct, ci, n) -> Acc:
    lo, hi = ci if ci is not None else (math.nan, math.nan)
    return Acc(float(pct), float(lo), float(hi), int(n))


def _clean(evals: pd.DataFrame, ckpt_key: str) -> Acc:
    """Clean accuracy from the model's test-set evaluation with the most points (it does
    not depend on the attack or radius, and RobustBench reports it on the whole test set)."""
    r = newest_largest(evals[evals["ckpt_key"] == ckpt_key])
    return Acc(100 * r["clean_acc"], 100 * r["clean_lo"], 100 * r["clean_hi"], int(r["n"]))


def _our_row(info: dict, evals: pd.DataFrame, data: ReportData, results: Path | None) -> OurRow:
    ref = evals[evals["record"].isin(info["records"])].iloc[0]
    zoo = info["source"]["zoo_name"] if info["source"]["route"] == "robustbench" else None
    if zoo:
        cost = f"not trained here (RobustBench zoo: {zoo})"
    else:
        train = match_train(ref, data.trains)
        cost = cost_text(train, _train_device(results, train) if train else None)
    aa = info["autoattack_acc"] is not None
    robust = (
        _acc(info["autoattack_acc"], info["autoattack_ci95"], info["n"])
        if aa
        else _acc(info["robust_acc"], info["robust_ci95"], info["n"])
    )
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
    elif info["robust_acc"] is not None and info["robust_acc"] < info["autoattack_acc"]:
        worst = _acc(info["robust_acc"], info["robust_ci95"], info["n"])
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
    infos = model_infos(replace(data, evals=evals.reset_index(drop=True))).files.values()
    results = Path(results) if results is not None else None
    board = Leaderboard([])
    for threat in ("Linf", "L2"):
        eps = STANDARD_EPS[(DATASET, threat)]
        at = [
            i
            for i in infos
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
        ours = [_our_row(i, evals, data, results) for i in at]
        ours.sort(key=lambda r: (r.degenerate, not r.autoattack, -r.robust.pct, -r.clean.pct, r.name))
        published = sorted((p for p in PUBLISHED if p.threat == threat), key=lambda p: (-p.autoattack, p.name))
        board.boards.append(Board(threat, eps, ours, published))
    return board


# ----------------------------------------------------------------------------- words beside the table


def _half_width(pct: float, n: int) -> float:
    lo, hi = wilson_interval(round(pct / 100 * n), n)
    return 100 * (hi - lo) / 2


def differences(board: Board) -> list[str]:
    """What differs between our rows and the published ones, one sentence each."""
    ns = sorted({r.robust.n for r in board.ours})
    n_text = " or ".join(f"{n:,}" for n in ns)
    worst = max(board.ours, key=lambda r: _half_width(r.robust.pct, r.robust.n))
    pub = max(board.published, key=lambda p: p.autoattack)
    lines = [
        "Data: our models are trained and tested on this project's JPEG copy of CIFAR-10 (quality 75, chroma "
        "subsampled), whose pixels differ from the original release that RobustBench uses; that lowers accuracy, "
        "so the same recipe lands somewhat below its published figure here.",
        "Compute: our training cost is the wall-clock minutes of the training record, on the device it names; "
        "the published models were trained on GPUs, Wong2020Fast in 12 GPU-minutes, the others at costs their "
        "entries do not state.",
        f"n: every published figure is on all {PUBLISHED_N:,} test images (a 95% interval of about "
        f"±{_half_width(pub.autoattack, PUBLISHED_N):.1f} points at {pub.autoattack:.1f}%, never published); "
        f"ours are on {n_text} point{'s' if ns != [1] else ''} as each cell says, with intervals up to "
        f"±{_half_width(worst.robust.pct, worst.robust.n):.1f} points.",
    ]
    if any(not r.autoattack for r in board.ours):
        lines.append(
            "A robust cell of ours marked 'not AutoAttack' is the worst case over the attacks named: like "
            "AutoAttack's, an upper bound on true robustness, usually a looser one; it does not rank "
            "against the published AutoAttack figures."
        )
    extra = [p for p in board.published if p.extra_data]
    if extra:
        lines.append(
            "Extra data: "
            + "; ".join(f"{p.name} also trains on {p.extra_data}" for p in extra)
            + "; ours use only CIFAR-10's training images."
        )
    return lines


def intro(board: Board) -> str:
    return (
        f"Our models beside published RobustBench entries at the same threat model: {board.title} in pixels of "
        "[0, 1] images. Accuracy in %. Ours with its 95% Wilson interval and n (clean: the model's test-set "
        "evaluation with the most points); published figures as RobustBench lists them (AutoAttack, "
        f"standard version, all {PUBLISHED_N:,} test images), cited below."
    )


def citations(board: Board) -> list[str]:
    return [
        f"{p.name}: {p.paper}, {p.link}; RobustBench model {p.name}, "
        + MODEL_INFO.format(threat=board.threat, name=p.name)
        for p in board.published
    ]


def _row_cells(board: Board) -> tuple[list[str], list[tuple[bool, list[str], list[int]]]]:
    """The header and (ours?, cells, note numbers) per row; note i is board-wide."""
    head = ["", "model", "architecture", "training", "clean %", "robust % (AutoAttack)", "training cost", "source"]
    rows, notes = [], _notes(board)
    for r in board.ours:
        robust = r.robust.text() + ("" if r.autoattack else " (worst case, not AutoAttack)")
        ids = [notes.index(f"{r.name}: {n}") + 1 for n in r.notes]
        rows.append(
            (
                True,
                [
                    "ours",
                    r.name + (" (degenerate)" if r.degenerate else ""),
                    r.architecture,
                    r.training,
                    r.clean.text(),
                    robust,
                    r.cost,
                    "measured here",
                ],
                ids,
            )
        )
    for i, p in enumerate(board.published, 1):
        rows.append(
            (
                False,
                [
                    "published",
                    p.name,
                    p.architecture,
                    p.method,
                    f"{p.clean:.2f} n={PUBLISHED_N:,}",
                    f"{p.autoattack:.2f} n={PUBLISHED_N:,}",
                    p.cost,
                    f"RobustBench [{i}]",
                ],
                [],
            )
        )
    return head, rows


def _notes(board: Board) -> list[str]:
    return [f"{r.name}: {n}" for r in board.ours for n in r.notes]


# ----------------------------------------------------------------------------- markdown and HTML


def _md(v: str) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def leaderboard_markdown(lb: Leaderboard) -> list[str]:
    """REPORT.md's lines for the section ([] when there is nothing to say)."""
    if lb.empty:
        return []
    out = ["## Leaderboard: RobustBench CIFAR-10", ""]
    out += [line for m in lb.missing for line in (m, "")]
    for b in lb.boards:
        out += [f"### {b.title}", "", intro(b), ""]
        head, rows = _row_cells(b)
        out.append("| " + " | ".join(head) + " |")
        out.append("| " + " | ".join(["---"] * 4 + ["---:"] * 2 + ["---"] * 2) + " |")
        for ours, cells, ids in rows:
            cells = list(cells)
            if ours:
                cells[0] = "**ours**"
                cells[1] += "".join(f" †{i}" for i in ids)
            out.append("| " + " | ".join(_md(c) for c in cells) + " |")
        out.append("")
        out += [f"- †{i}: {n}" for i, n in enumerate(_notes(b), 1)] + ([""] if _notes(b) else [])
        out += ["What differs:", ""] + [f"- {d}" for d in differences(b)] + [""]
        out += [f"{i}. {c}" for i, c in enumerate(citations(b), 1)] + [""]
    return out


LEADERBOARD_CSS = """
tr.ours td { background: #eef6ff; }
tr.ours td:first-child { font-weight: bold; }
"""


def leaderboard_html(lb: Leaderboard) -> list[str]:
    """report.html's elements for the section ([] when there is nothing to say)."""
    if lb.empty:
        return []
    out = ["<h2>Leaderboard: RobustBench CIFAR-10</h2>"] + [f"<p>{escape(m)}</p>" for m in lb.missing]
    for b in lb.boards:
        out += [f"<h3>{escape(b.title)}</h3>", f'<p class="small">{escape(intro(b))}</p>']
        head, rows = _row_cells(b)
        trs = ["<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
        for ours, cells, ids in rows:
            tds = []
            for j, c in enumerate(cells):
                mark = "".join(f' <span class="info">†{i}</span>' for i in ids) if j == 1 else ""
                cls = ' class="num"' if j in (4, 5) else ""
                tds.append(f"<td{cls}>{escape(c)}{mark}</td>")
            trs.append(f'<tr class="{"ours" if ours else "published"}">' + "".join(tds) + "</tr>")
        out.append('<table class="leaderboard">\n' + "\n".join(trs) + "\n</table>")
        if _notes(b):
            out.append(
                '<ul class="notes">'
                + "".join(f'<li class="info">†{i}: {escape(n)}</li>' for i, n in enumerate(_notes(b), 1))
                + "</ul>"
            )
        out.append("<p>What differs:</p><ul>" + "".join(f"<li>{escape(d)}</li>" for d in differences(b)) + "</ul>")
        out.append("<ol>" + "".join(f"<li>{escape(c)}</li>" for c in citations(b)) + "</ol>")
    return out
