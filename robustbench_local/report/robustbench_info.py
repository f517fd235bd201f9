"""RobustBench-style ``model_info`` files from the records a report was built from:
one JSON per model, dataset and threat model, laid out as RobustBench's repository
lays out its model_info/ folder (robustbench/<dataset>/<Linf|L2>/<model>.json), so
our numbers can be put beside the leaderboard's.

RobustBench's fields keep their meaning: accuracies in percent (rounded to 2
decimals as RobustBench writes them, but JSON numbers), eps as RobustBench writes it
('8/255' for L-inf, 0.5 for L2), autoattack_acc only from AutoAttack's standard
version. What the records do not say (link, authors, venue, the paper's reported
number, extra training data) is null, never guessed. Our own fields follow: n, 95%
intervals, the eps in pixels, the worst case over the attacks at that radius, the
model's source (a RobustBench zoo name where it is one) and the records used.

RobustBench measures eps in pixels of [0, 1] images: a record maps to a leaderboard
threat only when its ball is one in pixel space (eps given in pixels, or in
normalized space under one std for every channel, converted by the record's
eps_pixel). Pure apart from ModelInfoSet.write."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import RobustError
from ..fileio import write_files
from ..outputs import cannot_write
from ..results import unpack_flags, wilson_interval
from .columns import attack_order, column_name
from .load import ReportData, newest_largest
from .radii import eps_key, fmt_eps
from .table_parts import WORST

RB_DIR = "robustbench"
MADE_BY = "robust report (robustbench_local)"  # marks the files this module may replace or remove
THREATS = {"linf": "Linf", "l2": "L2"}  # RobustBench's leaderboards with a norm ball
# the radius (pixels) each leaderboard ranks by; a model's file shows that one when it was evaluated there
STANDARD_EPS = {
    ("cifar10", "Linf"): 8 / 255,
    ("cifar10", "L2"): 0.5,
    ("cifar100", "Linf"): 8 / 255,
    ("cifar100", "L2"): 0.5,
    ("imagenet", "Linf"): 4 / 255,
}
WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors", ".pth.tar", ".tar")


@dataclass
class ModelInfoSet:
    files: dict[str, dict] = field(default_factory=dict)  # path relative to the report folder -> model_info
    left_out: list[str] = field(default_factory=list)  # evaluations with no RobustBench counterpart, and why
    # per file, the fractions its 2-decimal percents were rounded from: (acc, lo, hi) for
    # "autoattack" and "robust" (None where the file has none), so a table that rounds to
    # 1 decimal rounds the measured number, not a rounded one; never written
    exact: dict[str, dict] = field(default_factory=dict)

    def contents(self) -> dict[str, bytes]:
        return {
            rel: (json.dumps(info, indent=2, allow_nan=False) + "\n").encode("utf-8")
            for rel, info in self.files.items()
        }

    def write(self, out: str | Path) -> list[Path]:
        """Writes every file under ``out`` as one (fileio.write_files), then removes the
        files an earlier report wrote there that this one no longer makes."""
        out = Path(out)
        try:
            paths = write_files({out / rel: data for rel, data in self.contents().items()})
        except OSError as e:
            raise RobustError(f"{cannot_write(out / RB_DIR, None, e)}; the folder was left as it was") from None
        for old in sorted((out / RB_DIR).glob("*/*/*.json")):
            rel = old.relative_to(out).as_posix()
            if rel not in self.files and _ours(old):
                old.unlink()
        return paths


def _ours(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("made_by") == MADE_BY
    except (OSError, ValueError, AttributeError):
        return False


# ----------------------------------------------------------------------------- small helpers


def _given(v) -> bool:
    return isinstance(v, str) and bool(v)


def _s(v) -> str | None:
    """A text cell, None when missing (pandas gives NaN for a missing string)."""
    return v if _given(v) else None


def _pct(v) -> float | None:
    """A fraction as RobustBench's percent with 2 decimals (a number); None when missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return round(100 * float(v), 2)


def _pct_pair(lo, hi) -> list | None:
    pair = [_pct(lo), _pct(hi)]
    return None if None in pair else pair


def rb_eps(threat: str, eps_pixel: float):
    """eps as RobustBench writes it: '8/255' for an L-inf radius of whole 255ths, else the number."""
    if threat == "Linf" and eps_pixel > 0 and abs(eps_pixel * 255 - round(eps_pixel * 255)) < 1e-3:
        return f"{round(eps_pixel * 255)}/255"
    return float(f"{eps_pixel:.6g}")  # float32 round-off of the pixel radius is not part of it


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_.") or "model"


def _model_id(row: pd.Series) -> str:
    """The file's stem: the zoo name of a RobustBench model (its model_info file's own
    name), else the checkpoint's name without a weights suffix."""
    if row["source_route"] == "robustbench" and _given(row["zoo_name"]):
        return _slug(row["zoo_name"])
    name = str(row["checkpoint"])
    for suffix in WEIGHT_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return _slug(name.replace("/", "_"))


def is_standard_aa(row: pd.Series) -> bool:
    """AutoAttack's standard version run on this model itself, as its own number (not
    cumulative in a cascade, not transferred or replayed from another model)."""
    if row["cumulative"] or _given(row["transfer_from"]) or _given(row["replayed_from"]):
        return False
    if row["attack_name"] == "autoattack":
        return row["attack_version"] == "standard"
    return row["attack_name"] == "aa-native" and row["attack"] == "AutoAttack-native"  # its standard settings


# ----------------------------------------------------------------------------- one radius


def _summary(rows: pd.DataFrame, threat: str) -> dict:
    """The numbers at one radius: clean and AutoAttack accuracy, and the worst case over
    every attack on the same points as the reference record (the standard AutoAttack
    one where there is one, else the largest, newest evaluation)."""
    attacks = rows[rows["attack_name"] != WORST]
    if attacks.empty:
        attacks = rows
    aa_rows = attacks[attacks.apply(is_standard_aa, axis=1)]
    aa = None
    if not aa_rows.empty:  # pyautoattack's own run first: it is the number the leaderboard reports
        aa = (
            aa_rows.assign(_aa=aa_rows["attack_name"] == "autoattack")
            .sort_values(["_aa", "n", "created", "record"], kind="stable")
            .iloc[-1]
        )
    ref = aa if aa is not None else newest_largest(attacks)
    sha, n = ref["indices_sha256"], int(ref["n"])
    same_points = attacks.apply(lambda r: _given(sha) and r["indices_sha256"] == sha and int(r["n"]) == n, axis=1)
    same = attacks[same_points] if same_points.any() else attacks.loc[[ref.name]]
    others = attacks.drop(index=same.index)

    labels = sorted({column_name(r) for _, r in same.iterrows()}, key=attack_order)
    used = list(same["record"])
    per_example = True
    if len(same) == 1:
        acc, lo, hi = ref["robust_acc"], ref["robust_lo"], ref["robust_hi"]
    elif all(_given(f) for f in same["robust_flags"]):
        robust = None
        for f in same["robust_flags"]:
            flags = unpack_flags(f, n)
            robust = flags if robust is None else robust & flags
        k = int(robust.sum())
        acc, (lo, hi) = k / n, wilson_interval(k, n)
    else:  # records without per-point flags: a worst-case record of one call covering them, else the lowest
        wanted = set(same["attack"])
        cover = rows[
            (rows["attack_name"] == WORST)
            & (rows["indices_sha256"] == sha)
            & (rows["n"] == n)
            & rows["attack_members"].map(lambda m: _given(m) and wanted <= set(m.split("+")))
        ]
        low = newest_largest(cover) if not cover.empty else same.sort_values("robust_acc", kind="stable").iloc[0]
        per_example = not cover.empty
        acc, lo, hi = low["robust_acc"], low["robust_lo"], low["robust_hi"]
        used.append(low["record"])

    degenerate = next((d for d in rows["degenerate"] if _given(d)), None)
    warnings = sorted(
        {w for col in ("warnings", "model_warnings") for ws in same[col] if _given(ws) for w in ws.split(" | ")}
    )
    return {
        "eps": rb_eps(threat, float(ref["eps_pixel"])),
        "eps_pixel": float(ref["eps_pixel"]),
        "eps_space": _s(ref["eps_space"]),
        "eps_normalized": float(ref["eps_normalized"]) if not isinstance(ref["eps_normalized"], str) else None,
        "n": n,
        "clean_acc": _pct(ref["clean_acc"]),
        "clean_ci95": _pct_pair(ref["clean_lo"], ref["clean_hi"]),
        "autoattack_acc": _pct(aa["robust_acc"]) if aa is not None else None,
        "autoattack_ci95": _pct_pair(aa["robust_lo"], aa["robust_hi"]) if aa is not None else None,
        "autoattack_attack": aa["attack"] if aa is not None else None,
        "attack_version": _s(aa["attack_version"]) if aa is not None else None,
        "robust_acc": _pct(acc),
        "robust_ci95": _pct_pair(lo, hi),
        "robust_attacks": labels,
        "robust_per_example": per_example,
        "not_combined": [
            {"attack": column_name(r), "n": int(r["n"]), "robust_acc": _pct(r["robust_acc"]), "record": r["record"]}
            for _, r in others.sort_values(["record"]).iterrows()
        ],
        "records": sorted(set(used)),
        "degenerate": degenerate,
        "warnings": warnings,
        "exact": {
            "autoattack": (aa["robust_acc"], aa["robust_lo"], aa["robust_hi"]) if aa is not None else None,
            "robust": (acc, lo, hi),
        },
    }


def _footnote(s: dict) -> str | None:
    parts = []
    if s["autoattack_attack"] == "AutoAttack-native":
        parts.append(
            "autoattack_acc is from AutoAttack-native, this tool's own cascade of AutoAttack's standard "
            "attacks and settings, not from the autoattack package."
        )
    elif s["autoattack_acc"] is None:
        parts.append(
            "No standard AutoAttack evaluation at this eps; robust_acc is from "
            + ", ".join(s["robust_attacks"])
            + (" (per-example worst case)." if len(s["robust_attacks"]) > 1 else ".")
        )
    if s["eps_space"] == "normalized":
        parts.append(
            f"eps was given in normalized space ({fmt_eps(s['eps_normalized'])}) and is "
            f"{fmt_eps(s['eps_pixel'])} in pixels."
        )
    if s["degenerate"]:
        parts.append(f"Degenerate model ({s['degenerate']}): its robust accuracies are meaningless.")
    return " ".join(parts) or None


# ----------------------------------------------------------------------------- entry point


def _threat_of(row: pd.Series) -> tuple[str | None, str | None]:
    """(RobustBench threat model, None) or (None, why the record has none)."""
    threat = THREATS.get(str(row["norm"]).lower())
    if threat is None:
        return None, f"{row['norm']} has no RobustBench leaderboard"
    pixel = row["eps_pixel"]
    if isinstance(pixel, str):
        return None, (
            "its pixel radius differs per channel (a normalized-space ball under unequal stds is no pixel-space ball)"
        )
    if pixel is None or math.isnan(pixel):
        return None, "its radius in pixels is not recorded"
    return threat, None


def is_standard_eps(dataset: str, threat: str, eps_pixel) -> bool:
    """Whether a pixel radius is the one the leaderboard ranks by. Within float32 round-off:
    8/255 given in pixels is recorded as 0.03137255087, whose 6-digit eps_key is not 8/255's."""
    std = STANDARD_EPS.get((dataset, threat))
    return (
        std is not None
        and isinstance(eps_pixel, (int, float))
        and not isinstance(eps_pixel, bool)
        and math.isclose(float(eps_pixel), std, rel_tol=1e-5)
    )


def _pick_eps(by_eps: dict[str, pd.DataFrame], dataset: str, threat: str) -> str:
    """The radius the file shows: the leaderboard's own, else one with a standard
    AutoAttack number, else the one with the most evaluations (the smallest on a tie)."""
    std = {k: g for k, g in by_eps.items() if is_standard_eps(dataset, threat, g["eps_pixel"].iloc[0])}
    return min(
        std or by_eps,
        key=lambda k: (
            not by_eps[k].apply(is_standard_aa, axis=1).any(),
            -len(by_eps[k]),
            float(by_eps[k]["eps_pixel"].iloc[0]),
        ),
    )


def model_infos(data: ReportData) -> ModelInfoSet:
    """model_info for every model, dataset and leaderboard threat in ``data`` (the
    report's records, already filtered and deduplicated)."""
    out = ModelInfoSet()
    df = data.evals
    if df.empty:
        return out
    mapped = df.apply(_threat_of, axis=1)
    for (_, why), (_, row) in zip(mapped, df.iterrows()):
        if why:
            note = (
                f"{row['checkpoint']}: {row['attack']} at {row['norm']} eps {fmt_eps(row['eps_pixel'])} pixel "
                f"has no RobustBench model_info: {why}"
            )
            if note not in out.left_out:
                out.left_out.append(note)
    df = df.assign(
        _rb=[t for t, _ in mapped],
        _ek=df["eps_pixel"].map(eps_key),
        _ds=df["dataset"].map(lambda d: str(d) if _given(d) else "unknown"),
    )
    df = df[df["_rb"].notna()]

    infos: dict[tuple, dict] = {}
    exact: dict[tuple, dict] = {}
    for (ckpt_key, dataset, threat), g in sorted(
        df.groupby(["ckpt_key", "_ds", "_rb"], sort=False), key=lambda kv: tuple(map(str, kv[0]))
    ):
        by_eps = {k: eg for k, eg in g.groupby("_ek", sort=False)}
        main = _pick_eps(by_eps, dataset, threat)
        s = _summary(by_eps[main], threat)
        first = newest_largest(g)
        others = [
            _summary(eg, threat)
            for k, eg in sorted(by_eps.items(), key=lambda kv: float(kv[1]["eps_pixel"].iloc[0]))
            if k != main
        ]
        source = {  # "checkpoint": one of ours, from robust train
            "route": _s(first["source_route"]) or "checkpoint",
            "zoo_name": _s(first["zoo_name"]),
            "zoo_dataset": _s(first["zoo_dataset"]),
            "zoo_threat_model": _s(first["zoo_threat_model"]),
            "file": _s(first["source_file"]) or _s(first["checkpoint_path"]),
            "sha256": _s(first["checkpoint_sha256"]),
        }
        infos[(dataset, threat, str(ckpt_key))] = {
            # RobustBench's fields, in its order
            "link": None,
            "name": str(first["checkpoint"]),
            "authors": None,
            "additional_data": None,
            "number_forward_passes": None,
            "dataset": dataset,
            "venue": None,
            "architecture": _s(first["arch"]),
            "eps": s["eps"],
            "clean_acc": s["clean_acc"],
            "reported": None,
            "autoattack_acc": s["autoattack_acc"],
            "footnote": _footnote(s),
            "unreliable": bool(s["degenerate"] or s["warnings"]),
            # ours
            "threat_model": threat,
            "eps_pixel": s["eps_pixel"],
            "eps_space": s["eps_space"],
            "n": s["n"],
            "clean_ci95": s["clean_ci95"],
            "autoattack_ci95": s["autoattack_ci95"],
            "autoattack_attack": s["autoattack_attack"],
            "attack_version": s["attack_version"],
            "robust_acc": s["robust_acc"],
            "robust_ci95": s["robust_ci95"],
            "robust_attacks": s["robust_attacks"],
            "robust_per_example": s["robust_per_example"],
            "not_combined": s["not_combined"],
            "degenerate": s["degenerate"],
            "warnings": s["warnings"],
            "source": source,
            "normalization": _s(first["normalization"]),
            "normalization_source": _s(first["normalization_source"]),
            "records": s["records"],
            "other_eps": [
                {k: v for k, v in o.items() if k not in ("eps_space", "eps_normalized", "exact")} for o in others
            ],
            "made_by": MADE_BY,
            "_id": _model_id(first),
        }
        exact[(dataset, threat, str(ckpt_key))] = s["exact"]

    # two models of one name in one folder: each file gets a piece of its model's key
    stems: dict[tuple, list[tuple]] = {}
    for key, info in infos.items():
        stems.setdefault((key[0], key[1], info["_id"]), []).append(key)
    for (dataset, threat, stem), keys in sorted(stems.items()):
        for key in keys:
            info = infos[key]
            del info["_id"]
            if len(keys) > 1:
                stem_k = f"{stem}_{hashlib.sha256(key[2].encode()).hexdigest()[:8]}"
            else:
                stem_k = stem
            rel = f"{RB_DIR}/{_slug(dataset)}/{threat}/{stem_k}.json"
            out.files[rel], out.exact[rel] = info, exact[key]
    out.files = dict(sorted(out.files.items()))
    return out
