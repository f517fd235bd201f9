"""Training seeds in studies: `seeds = [...]` makes one cell per seed, their records
carry the group and the seed, and the report averages a method over its seeds (mean,
standard deviation, interval; each seed one click away). Also the marks of numbers
indistinguishable from their column's best, and fractions such as 0.4/255 wherever eps
or a step is given. The report tests write their records directly: nothing is trained."""

from __future__ import annotations

import hashlib
import json
import math
import re
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats as st
from support import TINY_EXPERIMENT, image_tree

from robustbench_local.cli import main
from robustbench_local.errors import RobustError
from robustbench_local.experiment import load_experiment, run_experiment
from robustbench_local.report import build_report
from robustbench_local.report.compare import MARK_NOTE, indistinguishable_from_best
from robustbench_local.report.table_parts import MARK
from robustbench_local.results import ResultsStore, pack_flags, unpack_flags, wilson_interval

N = 200
EPS = 0.0313


# ----------------------------------------------------------------------------- cells
def _load(tmp_path: Path, body: str):
    path = tmp_path / "exp.toml"
    path.write_text('[data]\ndataset = "cifar10"\n\n[[attacks]]\nname = "fgsm"\n\n' + body)
    return load_experiment(path)


def _cells(exp) -> list[tuple]:
    return [(c.name, c.group, c.seed) for c in exp.cells]


def test_seeds_make_one_cell_per_seed(tmp_path):
    exp = _load(
        tmp_path,
        """
[train]
seeds = [0, 1, 2]

[[cells]]
name = "pgd-at"
adv = "pgd"

[[cells]]
name = "std"
seeds = [3, 0]

[[cells]]
name = "once"
seed = 5

[[cells]]
name = "tune"
seed = 1
[cells.grid]
lr = [0.05, 0.1]
""",
    )
    assert _cells(exp) == [
        ("pgd-at", "pgd-at", 0),
        ("pgd-at-s1", "pgd-at", 1),
        ("pgd-at-s2", "pgd-at", 2),
        ("std-s3", "std", 3),
        ("std", "std", 0),
        ("once", "once", 5),
        ("tune-lr=0.05", "tune-lr=0.05", 1),
        ("tune-lr=0.1", "tune-lr=0.1", 1),
    ]
    by_name = {c.name: c for c in exp.cells}
    assert by_name["pgd-at-s2"].spec.adv == "pgd" and by_name["pgd-at-s2"].origin["seed"] == ("train", "seeds")
    assert by_name["std-s3"].origin["seed"] == ("cells", 1, "seeds")
    assert by_name["pgd-at-s1"].record_fields() == {"cell": "pgd-at-s1", "group": "pgd-at", "seed": 1}


def test_a_grid_over_seed_groups_its_cells(tmp_path):
    exp = _load(
        tmp_path,
        """
[[cells]]
name = "a"
[cells.grid]
seed = [0, 1]
lr = [0.05, 0.1]
""",
    )
    assert _cells(exp) == [
        ("a-seed=0-lr=0.05", "a-lr=0.05", 0),
        ("a-seed=0-lr=0.1", "a-lr=0.1", 0),
        ("a-seed=1-lr=0.05", "a-lr=0.05", 1),
        ("a-seed=1-lr=0.1", "a-lr=0.1", 1),
    ]


@pytest.mark.parametrize(
    "body, where, msg",
    [
        ('[train]\nseed = 0\nseeds = [0, 1]\n[[cells]]\nname = "a"\n', "key train.seeds", "not both"),
        ('[[cells]]\nname = "a"\nseeds = [0, 1, 1]\n', "key seeds of [[cells]] #1 'a'", "lists a seed twice"),
        ('[[cells]]\nname = "a"\nseeds = 3\n', "key seeds of [[cells]] #1 'a'", "must be a list of training seeds"),
        ('[[cells]]\nname = "a"\nseeds = [-1]\n', "key seeds of [[cells]] #1 'a'", "must be >= 0"),
        ('[grid]\nseeds = [0, 1]\n[[cells]]\nname = "a"\n', "key grid.seeds", "a grid varies seed"),
        (
            '[grid]\nseed = [0, 1]\n[[cells]]\nname = "a"\nseeds = [0, 1]\n',
            "key seeds of [[cells]] #1 'a'",
            "the grid over seed (grid.seed) already makes one cell per seed",
        ),
        (
            '[[cells]]\nname = "a"\nseeds = [0, 1]\n[[cells]]\nname = "a-s1"\n',
            "key name of [[cells]] #2",
            "'a-s1' is used twice (also by [[cells]] #1 'a')",
        ),
    ],
)
def test_bad_seeds_are_one_line_naming_the_key(tmp_path, body, where, msg):
    with pytest.raises(RobustError) as e:
        _load(tmp_path, body)
    text = str(e.value)
    assert "\n" not in text and msg in text and where in text


@pytest.fixture(scope="module")
def tree(tmp_path_factory, cifar10) -> str:
    return image_tree(tmp_path_factory.mktemp("cifar-seeds"), cifar10, 10, 10)


def test_dry_run_plan_shows_the_seeded_cells(tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    head = TINY_EXPERIMENT.format(tree=tree).replace("[train]\n", "[train]\nseeds = [0, 1]\n")
    Path("exp.toml").write_text(head + '\n[[cells]]\nname = "std"\n\n[[cells]]\nname = "mix"\nmethod = "mixup"\n')
    summary = run_experiment("exp.toml", dry_run=True, say=lambda _m: None)
    assert [(p.name, p.cell.spec.seed, p.cell.spec.method, p.train) for p in summary.plan] == [
        ("std", 0, "standard", "train"),
        ("std-s1", 1, "standard", "train"),
        ("mix", 0, "mixup", "train"),
        ("mix-s1", 1, "mixup", "train"),
    ]
    res = CliRunner().invoke(main, ["run", "exp.toml", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "plan: 4 cells, 0 done, 4 with work to do" in res.output
    firsts = [m.group(1) for m in re.finditer(r"^[│|]\s*([\w.=-]+)\s*[│|]", res.output, re.M)]
    assert [c for c in firsts if c != "cell"] == ["std", "std-s1", "mix", "mix-s1"]
    assert not Path("out").exists()


# ----------------------------------------------------------------------------- records written by hand
def _flags(k: int, offset: int = 0) -> np.ndarray:
    """N points, k of them robust, starting at ``offset`` (wrapping)."""
    out = np.zeros(N, dtype=bool)
    out[(np.arange(k) + offset) % N] = True
    return out


POINTS = hashlib.sha256(b"the same 200 points").hexdigest()


def _eval(
    name: str,
    flags: np.ndarray,
    *,
    clean: float,
    experiment: dict | None,
    label: str = "PGD-10",
    created: str = "2026-01-01T00:00:00+00:00",
    points: str = POINTS,
    keep_flags: bool = True,
) -> dict:
    k, n = int(flags.sum()), len(flags)
    sha = hashlib.sha256(name.encode()).hexdigest()
    rec = {
        "kind": "eval",
        "created": created,
        "checkpoint": {
            "name": name,
            "path": f"runs/{name}/best.pth",
            "sha256": sha,
            "arch": "cnn",
            "method": "standard",
            "adv": "pgd" if name.startswith("pgd") else "none",
            "dataset": "cifar10",
        },
        "attack": {
            "name": label.split("-")[0].lower(),
            "label": label,
            "norm": "linf",
            "space": "normalized",
            "eps_normalized": EPS,
            "eps_pixel": EPS / 2,
            "step_normalized": EPS / 4,
            "step_pixel": EPS / 8,
        },
        "metrics": {
            "n": n,
            "clean_acc": clean,
            "robust_acc": k / n,
            "clean_ci95": list(wilson_interval(round(clean * n), n)),
            "robust_ci95": list(wilson_interval(k, n)),
        },
        "data": {"dataset": "cifar10", "split": "test", "seed": 0, "n": n, "indices_sha256": points},
    }
    if keep_flags:
        rec["metrics"]["robust_flags"] = pack_flags(flags)
    if experiment is not None:
        rec["experiment"] = {"name": "study", "file": "exp.toml", **experiment}
    return rec


def _train(name: str, seed: int) -> dict:
    sha = hashlib.sha256(name.encode()).hexdigest()
    return {
        "kind": "train",
        "created": "2026-01-01T00:00:00+00:00",
        "checkpoint": {"path": f"runs/{name}/best.pth", "sha256": sha, "out_dir": f"runs/{name}"},
        "spec": {"seed": seed, "out": f"runs/{name}", "method": "standard", "adv": "pgd"},
        "minutes": 1.0,
    }


PGD_AT = {"pgd-at": 60, "pgd-at-s1": 66, "pgd-at-s2": 69}  # robust points of 200: 30.0, 33.0, 34.5%
CLEAN = {"pgd-at": 0.5, "pgd-at-s1": 0.52, "pgd-at-s2": 0.57}


@pytest.fixture
def seeded(tmp_path) -> Path:
    """A study with PGD-AT at seeds 0, 1, 2 (seed 0's record from before records named the
    seed: its training record says it) and standard training at one seed; PGD-10 on the
    same 200 points, FGSM for two of the three PGD-AT seeds."""
    store = ResultsStore(tmp_path / "results")
    store.add(_eval("pgd-at", _flags(PGD_AT["pgd-at"]), clean=CLEAN["pgd-at"], experiment={"cell": "pgd-at"}))
    store.add(_train("pgd-at", 0))
    for seed, name in ((1, "pgd-at-s1"), (2, "pgd-at-s2")):
        tag = {"cell": name, "group": "pgd-at", "seed": seed}
        store.add(_eval(name, _flags(PGD_AT[name], offset=seed), clean=CLEAN[name], experiment=tag))
        store.add(_eval(name, _flags(100 + 10 * seed), clean=CLEAN[name], experiment=tag, label="FGSM"))
    store.add(_eval("standard", _flags(2), clean=0.8, experiment={"cell": "standard", "group": "standard", "seed": 0}))
    return tmp_path / "results"


def _text(mean: float, var: float, k: int) -> str:
    """mean ± sd [low, high] in percent, every seed on the same N points: the test-point
    share p(1 - p)/N joins s^2/k under Student's t with k - 1 degrees of freedom."""
    half = st.t.ppf(0.975, k - 1) * math.sqrt(var / k + mean * (1 - mean) / N)
    lo, hi = max(0.0, mean - half), min(1.0, mean + half)  # an accuracy's interval stays in [0, 1]
    return f"{100 * mean:.1f} ± {100 * math.sqrt(var):.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def test_seed_means_and_spreads_match_a_hand_computation(seeded):
    md = build_report(seeded).markdown
    assert "## Across training seeds" in md and "Student's t interval" in md
    head = next(x for x in md.split("## Across training seeds")[1].splitlines() if x.startswith("| method"))
    assert head == "| method (cells) | training | seeds | clean | FGSM | PGD-10 | worst-case |"
    (line,) = [x for x in md.splitlines() if x.startswith("| pgd-at | PGD-AT | 0, 1, 2 |")]
    cells = [c.strip() for c in line.strip("|").split("|")][3:]
    # clean 0.50, 0.52, 0.57: mean 0.53, deviations -0.03, -0.01, 0.04, variance 0.0026 / 2 = 0.0013
    assert cells[0] == _text(0.53, 0.0013, 3)
    # FGSM ran for two of the three seeds, 0.55 and 0.60: mean 0.575, variance 0.0025 / 2
    assert cells[1] == _text(0.575, 0.00125, 2) + " (2 of 3 seeds)"
    # PGD-10 0.300, 0.330, 0.345: mean 0.325, deviations -0.025, 0.005, 0.020, variance 0.00105 / 2
    assert cells[2] == _text(0.325, 0.000525, 3)
    (single,) = [x for x in md.splitlines() if x.startswith("| standard | standard | 0 |")]
    assert [c.strip() for c in single.strip("|").split("|")][3:] == ["80.0 (1 seed)", "", "1.0 (1 seed)", ""]


def test_each_seed_is_one_click_away_in_html_and_a_row_of_the_csv(seeded, tmp_path):
    report = build_report(seeded, tmp_path / "rep")
    html = report.html
    (cell,) = re.findall(r"<details><summary>32\.5 ± [^<]*</summary>(.*?)</details>", html)
    expect = []
    for seed, name in enumerate(PGD_AT):
        lo, hi = wilson_interval(PGD_AT[name], N)
        expect.append(f"seed {seed} ({name}): {100 * PGD_AT[name] / N:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] n={N}")
    assert re.findall(r"<div>(.*?)</div>", cell) == expect
    report.write()
    csv = pd.read_csv(tmp_path / "rep" / "report.csv")
    pgd = csv[(csv["group"] == "pgd-at") & (csv["attack"] == "PGD-10")].sort_values("train_seed")
    assert list(pgd["checkpoint"]) == ["pgd-at", "pgd-at-s1", "pgd-at-s2"] and list(pgd["train_seed"]) == [0, 1, 2]
    assert list(pgd["robust_acc"]) == [0.3, 0.33, 0.345]


def test_no_seed_section_without_a_second_seed(seeded):
    for p in (seeded / "records").glob("*.json"):
        if json.loads(p.read_text()).get("experiment", {}).get("seed") in (1, 2):
            p.unlink()
    report = build_report(seeded)
    assert "Across training seeds" not in report.markdown and "Across training seeds" not in report.html
    assert "<details>" not in report.html


# ----------------------------------------------------------------------------- marks
def _marked(md: str, column: str) -> set[str]:
    """The checkpoints whose number in ``column`` of the first comparison table carries the mark."""
    after = md.split("## Comparison at", 1)[1].splitlines()[2:]
    lines = after[: after.index("")]
    head = [h.strip() for h in lines[0].strip("|").split("|")]
    out = set()
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if MARK in cells[head.index(column)]:
            out.add(cells[0])
    return out


def test_marks_are_the_models_indistinguishable_from_the_best(seeded):
    report = build_report(seeded)
    flags = {}
    for p in (seeded / "records").glob("eval-*.json"):
        rec = json.loads(p.read_text())
        if rec["attack"]["label"] == "PGD-10":
            flags[rec["checkpoint"]["name"]] = unpack_flags(rec["metrics"]["robust_flags"], N)
    expect = indistinguishable_from_best(flags)
    assert expect == {"pgd-at-s1", "pgd-at-s2"}  # Holm-corrected, pgd-at is set apart (p = 0.045)
    assert _marked(report.markdown, "PGD-10") == expect
    assert _marked(report.markdown, "FGSM") == {"pgd-at-s2"}  # 10 points apart, none the other way
    assert _marked(report.markdown, "clean") == set()  # clean accuracy keeps no per-point flags
    # the worst case combined across records is backed by no one record: no marks
    assert _marked(report.markdown, "worst-case") == set()
    assert report.markdown.count(MARK_NOTE) == 1 and report.html.count(escape(MARK_NOTE)) == 1
    assert report.html.count(f'<span class="mark">{MARK}</span>') == 3 + 1  # the cells and the note


def test_records_without_flags_get_no_marks_and_no_note(tmp_path):
    store = ResultsStore(tmp_path / "results")
    for name, k in (("a", 90), ("b", 20)):
        store.add(_eval(name, _flags(k), clean=0.6, experiment=None, keep_flags=False))
    report = build_report(tmp_path / "results")
    assert MARK not in report.markdown and MARK not in report.html and MARK_NOTE not in report.markdown


# ----------------------------------------------------------------------------- units
def test_eta_as_a_fraction_on_robust_eval(tmp_path):
    import torch

    from robustbench_local.checkpoint import save_checkpoint
    from robustbench_local.models import build_model

    torch.manual_seed(0)
    model = build_model("cnn", num_classes=10, input_shape=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)
    meta = {
        "arch": "cnn",
        "arch_kwargs": {},
        "num_classes": 10,
        "input_shape": [3, 32, 32],
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "normalization": "seed",
        "dataset": {"name": "cifar10"},
        "method": "standard",
        "adv": "none",
    }
    ckpt = save_checkpoint(tmp_path / "best.pth", model, meta)
    res = CliRunner().invoke(
        main,
        [
            "eval",
            str(ckpt),
            "--attack",
            "pgd",
            "--k",
            "1",
            "--eps",
            "8/255",
            "--eta",
            "0.4/255",
            "--eps-space",
            "pixel",
            "--n",
            "8",
            "--no-checks",
            "--device",
            "cpu",
            "--results",
            str(tmp_path / "results"),
        ],
    )
    assert res.exit_code == 0, res.output
    (path,) = (tmp_path / "results" / "records").glob("*.json")
    att = json.loads(path.read_text())["attack"]
    assert att["step_pixel"] == pytest.approx(0.4 / 255) and att["eps_pixel"] == pytest.approx(8 / 255)


def test_fractions_in_an_experiment_file(tmp_path):
    from robustbench_local.methods import build_method

    exp = _load(
        tmp_path,
        """
[train]
adv = "pgd"
adv_kwargs = { eps = "8/255", eta = "2/255", eps_space = "pixel", val_eta = "0.4/255" }

[[cells]]
name = "a"

[[attacks]]
name = "pgd"
eps = "8/255"
eta = "2/255"
eps_space = "pixel"
sweep = ["4/255"]
""",
    )
    (pgd_main, pgd_sweep) = [u.spec.threat for u in exp.units if u.spec.name == "pgd"]
    assert (pgd_main.eps, pgd_main.step) == (pytest.approx(8 / 255), pytest.approx(2 / 255))
    assert (pgd_sweep.eps, pgd_sweep.step) == (pytest.approx(4 / 255), pytest.approx(1 / 255))  # eta/eps kept
    conf = build_method(exp.cells[0].spec).config()
    assert (conf["eps"], conf["eta"], conf["val_eta"]) == (
        pytest.approx(8 / 255),
        pytest.approx(2 / 255),
        pytest.approx(0.4 / 255),
    )


def test_a_degenerate_seed_is_named_under_the_seed_table(seeded):
    for p in (seeded / "records").glob("eval-*.json"):
        rec = json.loads(p.read_text())
        if rec["checkpoint"]["name"] == "pgd-at-s2":
            rec["degenerate"] = {"reason": "predicts one class"}
            p.write_text(json.dumps(rec))
    md = build_report(seeded).markdown.split("## Across training seeds")[1]
    assert "- pgd-at: pgd-at-s2 degenerate (robust accuracies meaningless), counted in the mean" in md
