"""`robust report`'s leaderboard section: our CIFAR-10 models at L-inf 8/255 (pixels)
beside published RobustBench entries, our numbers the records' own with n and
intervals, a model without AutoAttack shown with its worst case labelled as such,
and a note instead of rows when no record is at the leaderboard's threat model."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import trained_cnn

from robustbench_local.checkpoint import file_sha256, save_checkpoint
from robustbench_local.cli import main
from robustbench_local.report.compare import fmt_p
from robustbench_local.report.leaderboard import build_leaderboard, cost_text
from robustbench_local.report.leaderboard_pages import leaderboard_markdown
from robustbench_local.report.leaderboard_published import PUBLISHED
from robustbench_local.report.load import load_report_data
from robustbench_local.report.train_runs import train_run
from robustbench_local.results import ResultsStore, unpack_flags
from robustbench_local.stats import paired_test

REPO = Path(__file__).resolve().parent.parent
PIXEL_8 = ["--eps", "8/255", "--eps-space", "pixel", "--device", "cpu", "--no-checks"]


def _eval(ckpt: Path, results: Path, *args: str) -> None:
    r = CliRunner().invoke(main, ["eval", *args, *PIXEL_8, "--results", str(results), str(ckpt)])
    assert r.exit_code == 0, r.output


def _report(results: Path, out: Path | None = None) -> tuple[str, str]:
    r = CliRunner().invoke(main, ["report", "--results", str(results), *(["--out", str(out)] if out else [])])
    assert r.exit_code == 0, r.output
    out = out or results
    return (out / "REPORT.md").read_text(encoding="utf-8"), (out / "report.html").read_text(encoding="utf-8")


def _section(md: str) -> str:
    start = md.index("## Leaderboard: RobustBench CIFAR-10")
    end = md.find("\n## ", start + 1)
    return md[start:] if end < 0 else md[start:end]


def _cell(metrics: dict, key: str) -> str:
    lo, hi = metrics[f"{key}_ci95"]
    return f"{100 * metrics[f'{key}_acc']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] n={metrics['n']:,}"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two checkpoints of the small trained CNN: 'aa' with AutoAttack (16 points) and PGD-5
    (32 points) at 8/255 in pixels and a training record; 'pgdonly' with PGD-5 alone."""
    d = tmp_path_factory.mktemp("lb")
    model, meta = trained_cnn()
    aa, pgd_only = d / "aa" / "best.pth", d / "pgdonly" / "best.pth"
    save_checkpoint(aa, model, meta)
    save_checkpoint(pgd_only, model, {**meta, "created": "2020-01-01T00:00:00+00:00"})
    res = d / "results"
    _eval(aa, res, "--attack", "autoattack", "--n", "16")
    _eval(aa, res, "--attack", "pgd", "--k", "5", "--n", "32")
    _eval(pgd_only, res, "--attack", "pgd", "--k", "5", "--n", "32")
    ResultsStore(res).add(
        {  # what `robust train` records about where and how long it trained
            "kind": "train",
            "checkpoint": {
                "path": str(aa),
                "sha256": file_sha256(aa),
                "out_dir": str(aa.parent),
                "arch": "cnn",
                "method": "standard",
                "adv": "none",
            },
            "data": {"dataset": "cifar10"},
            "history": [{"epoch": e, "val_acc": 0.4, "seconds": 30.0 + 2 * e} for e in range(1, 7)],
            "epochs_run": 6,
            "minutes": 3.5,
            "environment": {"device": "cpu", "device_name": "x86_64", "threads": 2},
        }
    )
    recs = [json.loads(p.read_text()) for p in sorted((res / "records").glob("eval-*.json"))]
    md, html = _report(res)
    return res, recs, md, html


def test_published_rows_are_cited_with_their_figures(store):
    _, _, md, html = store
    sec = _section(md)
    linf = [p for p in PUBLISHED if p.threat == "Linf"]
    assert {p.name for p in linf} == {"Wong2020Fast", "Rice2020Overfitting", "Carmon2019Unlabeled", "Standard"}
    figures = {
        "Wong2020Fast": ("83.34", "43.21"),
        "Rice2020Overfitting": ("85.34", "53.42"),
        "Carmon2019Unlabeled": ("89.69", "59.53"),
        "Standard": ("94.78", "0.00"),
    }
    for name, (clean, aa) in figures.items():
        row = next(line for line in sec.splitlines() if line.startswith(f"| published | {name} |"))
        assert f"| {clean} n=10,000 | {aa} n=10,000 |" in row
        i = int(re.search(r"RobustBench \[(\d)\]", row).group(1))
        cite = next(line for line in sec.splitlines() if line.startswith(f"{i}. {name}: "))
        assert f"RobustBench model {name}" in cite and f"model_info/cifar10/Linf/{name}.json" in cite
        assert f"{name}</td>" in html and f"<td class=\"num\">{aa} n=10,000</td>" in html
    assert "Fast is better than free" in sec and "ICLR 2020" in sec and "12 GPU-min" in sec
    assert "500k unlabeled extra images" in sec
    # what differs is said plainly: data, compute, n
    assert "JPEG copy of CIFAR-10 (quality 75" in sec and "Compute:" in sec and "all 10,000 test images" in sec
    assert "### L2, eps 0.5" not in sec  # no record of ours at L2 0.5: no L2 board


def test_our_rows_are_the_records_numbers(store):
    _, recs, md, html = store
    sec = _section(md)
    aa_rec = next(r for r in recs if r["attack"]["name"] == "autoattack")
    pgd_rec = next(
        r for r in recs if r["attack"]["name"] == "pgd" and r["checkpoint"]["sha256"] == aa_rec["checkpoint"]["sha256"]
    )
    name = aa_rec["checkpoint"]["name"]
    row = next(line for line in sec.splitlines() if line.startswith(f"| **ours** | {name} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "cnn" and cells[3] == "standard"
    # AutoAttack on its 16 points; clean from the evaluation with the most points (PGD-5's 32)
    assert cells[5] == _cell(aa_rec["metrics"], "robust") and aa_rec["metrics"]["n"] == 16
    assert cells[4] == _cell(pgd_rec["metrics"], "clean") and pgd_rec["metrics"]["n"] == 32
    # the total, and its shortest and longest epoch (32 and 42 s) so that a stretched total shows
    assert cells[6] == "3.5 min on CPU (2 threads), 6 epochs of 0.5-0.7 min" and cells[7] == "measured here"
    assert f"<td class=\"num\">{_cell(aa_rec['metrics'], 'robust')}</td>" in html
    assert '<tr class="ours">' in html and '<tr class="published">' in html


def test_the_cost_of_a_run_trained_against_the_clock_names_its_budget():
    history = [{"epoch": e, "seconds": s} for e, s in enumerate((320.0, 300.0, 330.0), 1)]
    rec = {"kind": "train", "history": history, "epochs_run": 3, "minutes": 15.8, "spec": {"budget_minutes": 16}}
    assert (
        cost_text(train_run(rec), "CPU (2 threads)")
        == "15.8 min on CPU (2 threads), 3 epochs of 5.0-5.5 min (budget 16 min)"
    )
    del rec["spec"]["budget_minutes"]
    assert cost_text(train_run(rec), None) == "15.8 min, 3 epochs of 5.0-5.5 min"


def test_a_model_without_autoattack_shows_its_worst_case_as_not_autoattack(store):
    _, recs, md, html = store
    sec = _section(md)
    shas = {r["checkpoint"]["sha256"] for r in recs if r["attack"]["name"] == "autoattack"}
    pgd = next(r for r in recs if r["checkpoint"]["sha256"] not in shas)
    row = next(line for line in sec.splitlines() if line.startswith(f"| **ours** | {pgd['checkpoint']['name']} †"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5] == _cell(pgd["metrics"], "robust") + " (worst case, not AutoAttack)"
    assert cells[6] == "not recorded"  # no training record wrote this checkpoint
    i = int(re.search(r"†(\d)", row).group(1))
    assert (
        f"- †{i}: {pgd['checkpoint']['name']}: no AutoAttack record at this radius: worst case over PGD-5, "
        "not AutoAttack" in sec
    )
    assert "not AutoAttack" in html
    # ours are listed before the published entries, the AutoAttack one ranked first among ours
    lines = [line for line in sec.splitlines() if line.startswith("| **ours**") or line.startswith("| published")]
    assert [line.split("|")[1].strip() for line in lines][:2] == ["**ours**"] * 2


def test_no_record_at_the_leaderboard_threat_gives_a_note(tmp_path):
    """The committed seed study is at 4/255: the section is one line, no rows of ours."""
    md, html = _report(REPO / "results" / "seed_suite_cifar10", tmp_path / "out")
    sec = _section(md)
    assert "No record here is at RobustBench's CIFAR-10 L-inf threat model" in sec
    assert "| **ours** |" not in sec and "| published |" not in sec
    assert "No record here is at RobustBench" in html and '<tr class="ours">' not in html


def test_l2_board_shows_only_with_a_record_at_l2_half(store, tmp_path):
    """A record at L2 0.5 in pixels (the PGD-5 one, re-labelled by hand) brings the L2 board
    with RobustBench's L2 entries; the L-inf board stays as it was."""
    res, recs, _, _ = store
    shutil.copytree(res / "records", tmp_path / "records")
    pgd = copy.deepcopy(next(r for r in recs if r["attack"]["name"] == "pgd"))
    pgd["attack"].update(norm="l2", space="pixel", eps=0.5, eps_pixel=0.5, eps_normalized=1.0)
    (tmp_path / "records" / "eval-hand-l2.json").write_text(json.dumps(pgd))
    lb = build_leaderboard(load_report_data(tmp_path), tmp_path)
    assert [b.threat for b in lb.boards] == ["Linf", "L2"] and not lb.missing
    l2 = lb.boards[1]
    assert [r.name for r in l2.ours] == [pgd["checkpoint"]["name"]] and not l2.ours[0].autoattack
    assert l2.ours[0].robust.text() == _cell(pgd["metrics"], "robust")
    assert {(p.name, p.clean, p.autoattack) for p in l2.published} == {
        ("Rice2020Overfitting", 88.67, 67.68),
        ("Engstrom2019Robustness", 90.83, 69.24),
        ("Standard", 94.78, 0.0),
    }
    md = "\n".join(leaderboard_markdown(lb))
    assert "### L2, eps 0.5" in md and "model_info/cifar10/L2/Rice2020Overfitting.json" in md


def test_our_accuracies_round_as_the_other_tables_do(tmp_path):
    """The model info keeps RobustBench's 2 decimals (39.05 for an earlier speed run's
    3,905 of 10,000 under PGD-50x2); the leaderboard row must show what the record itself
    rounds to (39.1), interval included, not a rounding of the rounded percent."""
    committed = REPO / "results/leaderboard_cifar10/superseded/fast-fgsm-rs-67min"
    rec = json.loads((committed / "eval-20261202T141458-44c5bd406d.json").read_text(encoding="utf-8"))
    assert rec["metrics"]["robust_correct"] == 3905 and rec["metrics"]["n"] == 10_000
    (tmp_path / "records").mkdir()
    shutil.copy(committed / "eval-20261202T141458-44c5bd406d.json", tmp_path / "records")
    lb = build_leaderboard(load_report_data(tmp_path), tmp_path)
    (row,) = lb.boards[0].ours
    assert not row.autoattack
    assert row.robust.text() == _cell(rec["metrics"], "robust") == "39.1 [38.1, 40.0] n=10,000"
    assert row.clean.text() == _cell(rec["metrics"], "clean")


def _cell_evals(records: list[dict], cell: str) -> dict[str, dict]:
    """A study cell's evaluation records, by attack name."""
    return {
        r["attack"]["name"]: r
        for r in records
        if r["kind"] == "eval" and (r.get("experiment") or {}).get("cell") == cell
    }


def _train_of(records: list[dict], evaluation: dict) -> dict:
    """The one training record of the checkpoint an evaluation attacked."""
    (train,) = [
        r for r in records if r["kind"] == "train" and r["checkpoint"]["sha256"] == evaluation["checkpoint"]["sha256"]
    ]
    return train


def _readme_bullet(start: str) -> str:
    """The README's bullet that begins with ``start``, its lines joined."""
    text = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    para = text[text.index(start) :]
    return para[: para.index(" - ")]


def pct(v: float) -> str:
    """An accuracy as the records print it: 0.3612 -> '36.1'."""
    return f"{100 * v:.1f}"


def test_the_readme_quotes_the_committed_leaderboard_records():
    """The README's paragraph on the leaderboard study gives each trained `fast` cell's
    minutes, clean, PGD-50x2 and AutoAttack accuracy with intervals and their paired AutoAttack difference, then
    each PreAct-ResNet-18's minutes, clean and AutoAttack accuracy: each figure must be the
    committed record's, rounded as the records print it."""
    para = _readme_bullet("`experiments/leaderboard_cifar10.toml` trains")
    records = ResultsStore(REPO / "results" / "leaderboard_cifar10").load()

    cells = ("fast-fgsm-rs", "fast-pgd10-at")
    for cell in cells:
        evals = _cell_evals(records, cell)
        m = evals["pgd"]["metrics"]
        train = _train_of(records, evals["pgd"])
        want = [
            f"{train['seconds']['total'] / 60:.1f} minutes",
            f"{pct(m['clean_acc'])}% clean",
            f"{pct(m['robust_acc'])}% under PGD-50",
            "{}-{}%".format(*map(pct, m["clean_ci95"])),
            "{}-{}%".format(*map(pct, m["robust_ci95"])),
        ]
        if "autoattack" in evals:
            a = evals["autoattack"]["metrics"]
            want += [f"{pct(a['robust_acc'])}% under AutoAttack", "{}-{}%".format(*map(pct, a["robust_ci95"]))]
        if cell == "fast-fgsm-rs":  # trained against the clock: the epochs that fit
            assert train["stopped"].startswith("time budget: ") and train["seconds"]["total"] <= 3600
            want.append(f"trained {train['epochs_run']} epochs in {train['seconds']['total'] / 60:.1f} minutes")
            if "autoattack" not in evals:  # the README must not quote a figure the records do not hold
                want.append("AutoAttack on this model is still to run")
        assert [w for w in want if w not in para] == [], cell
    # the two `fast` cells under AutoAttack on the same points, paired as `robust report --compare` pairs them
    aa = [_cell_evals(records, cell).get("autoattack") for cell in cells]
    assert aa[1] is not None
    if aa[0] is not None:
        aa = [r["metrics"] for r in aa]
        assert aa[0]["n"] == aa[1]["n"] == 1000
        t = paired_test(*(unpack_flags(m["robust_flags"], m["n"]) for m in aa))
        assert f"{100 * t.diff:+.1f} points under AutoAttack on the same 1,000 points" in para
        assert f"(paired 95% CI {100 * t.diff_lo:.1f}-{100 * t.diff_hi:.1f}, McNemar p = {fmt_p(t.p_value)};" in para
    # the speed run under both AutoAttack cascades, which must agree point by point as the README says,
    # and where its training minutes went, as its training record split them
    speed = _cell_evals(records, "fast-fgsm-rs")
    ref, native = (speed[name]["metrics"] for name in ("autoattack", "aa-native"))
    ref_flags, native_flags = (unpack_flags(m["robust_flags"], m["n"]) for m in (ref, native))
    assert ref["n"] == native["n"] and bool((ref_flags == native_flags).all())
    assert f"finds the same {int(native_flags.sum())} robust points of the {native['n']:,}" in para
    assert f"in {native['seconds'] / 60:.1f} minutes against {ref['seconds'] / 60:.1f}" in para
    sec = _train_of(records, speed["pgd"])["seconds"]
    assert (
        f"Of the speed run's {sec['total'] / 60:.1f} training minutes, {sec['attack'] / 60:.1f} went to crafting the "
        f"FGSM-RS examples, {sec['update'] / 60:.1f} to the rest of the training steps and "
        f"{sec['validation'] / 60:.1f} to validation." in para
    )
    # the ResNet cells: minutes, clean accuracy on all 10,000 points (the FGSM record's) and
    # AutoAttack; the robust one also its PGD-50x2 and its two shortest epochs (its total holds pauses)
    for cell in ("preact18-standard", "preact18-fgsm-rs"):
        evals = _cell_evals(records, cell)
        train = _train_of(records, evals["fgsm"])
        clean, aa = evals["fgsm"]["metrics"], evals["autoattack"]["metrics"]
        assert clean["n"] == 10_000 and aa["n"] == 200
        want = [
            f"{train['seconds']['total'] / 60:.1f} minutes",
            f"{pct(clean['clean_acc'])}% clean (n=10,000, 95% CI " + "{}-{}%)".format(*map(pct, clean["clean_ci95"])),
            f"{pct(aa['robust_acc'])}% under AutoAttack (n=200, 95% CI "
            + "{}-{}%)".format(*map(pct, aa["robust_ci95"])),
        ]
        if cell == "preact18-fgsm-rs":
            m = evals["pgd"]["metrics"]
            want.append(
                f"{pct(m['robust_acc'])}% under PGD-50 with 2 restarts (n={m['n']:,}, 95% CI "
                + "{}-{}%)".format(*map(pct, m["robust_ci95"]))
            )
            short = sorted(h["seconds"] for h in train["history"])[:2]
            want.append("{:.1f} and {:.1f} minutes".format(*(s / 60 for s in short)))
        assert [w for w in want if w not in para] == [], cell


def test_the_readme_quotes_the_committed_single_step_comparison():
    """The README's sentence on experiments/fast_at_cifar10.toml: each cell's minutes, test
    accuracy on 10,000 points and PGD-50x2 on 2,000, with intervals, and the paired difference
    `robust report --compare n-fgsm fgsm-rs` gives; each figure the committed record's."""
    para = _readme_bullet("`experiments/fast_at_cifar10.toml` asks")
    records = ResultsStore(REPO / "results" / "fast_at_cifar10").load()

    flags = {}
    for cell in ("fgsm-rs", "n-fgsm"):
        pgd = _cell_evals(records, cell)["pgd"]
        train, m = _train_of(records, pgd), pgd["metrics"]
        t = train["metrics"]
        want = [
            f"{train['seconds']['total'] / 60:.1f} minutes",
            f"{pct(t['test_acc'])}% test accuracy (n=10,000, 95% CI " + "{}-{}%)".format(*map(pct, t["test_ci95"])),
            f"{pct(m['robust_acc'])}% under PGD-50x2 (n=2,000, 95% CI " + "{}-{}%)".format(*map(pct, m["robust_ci95"])),
        ]
        assert [w for w in want if w not in para] == [], cell
        flags[cell] = unpack_flags(m["robust_flags"], m["n"])
    t = paired_test(flags["n-fgsm"], flags["fgsm-rs"])
    assert (
        f"{100 * t.diff:+.1f} points (paired 95% CI {100 * t.diff_lo:.1f}-{100 * t.diff_hi:.1f}, "
        f"McNemar p = {fmt_p(t.p_value)})" in para
    )
