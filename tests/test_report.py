"""`robust report` on a fixture store of hand-made but realistic records
(tests/fixtures/records): 2 checkpoints, clean + FGSM + PGD-20 + AutoAttack +
worst case at eps 0.0313, a PGD-20 eps sweep, one training record with history,
one failed sanity check and one older repeat that a newer record supersedes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from robustbench_local.cli import main
from robustbench_local.errors import RobustError
from robustbench_local.report import build_report
from robustbench_local.report.load import load_report_data
from robustbench_local.report.markdown import TRAIN_HEAD, training_rows
from robustbench_local.report.table_parts import cell_text

FIXTURES = Path(__file__).parent / "fixtures" / "records"
OLD_REPEAT = "eval-20250110T090000-54229673a4.json"  # PGD-20 on the standard CNN, superseded
STANDARD = "cifar10-cnn-standard-s0/best.pth"
ADVERSARIAL = "cifar10-cnn-standard-pgd-s0/best.pth"


@pytest.fixture
def store(tmp_path) -> Path:
    root = tmp_path / "results"
    shutil.copytree(FIXTURES, root / "records")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(store, report) built once for the tests that only read them."""
    root = tmp_path_factory.mktemp("built") / "results"
    shutil.copytree(FIXTURES, root / "records")
    return root, build_report(root)


def _records(root: Path, kind: str = "eval") -> dict[str, dict]:
    out = {}
    for p in sorted((root / "records").glob("*.json")):
        rec = json.loads(p.read_text())
        if rec["kind"] == kind:
            out[p.name] = rec
    return out


def _column(rec: dict) -> str:
    return rec["attack"]["label"]


def test_table_numbers_equal_the_records(built):
    store, report = built
    recs = _records(store)
    tables = {t.title: t for t in report.comparison.tables}
    assert len(tables) == 3  # eps 0.0157, 0.0313 (headline) and 0.0627
    headline = report.comparison.tables[0]
    assert headline.title.startswith("L-inf eps 0.0313 normalized = 0.01565 pixel")
    assert headline.columns == ["clean", "FGSM", "PGD-20", "AutoAttack", "worst-case"]
    seen = 0
    for name, rec in recs.items():
        if name == OLD_REPEAT:
            continue
        a, m = rec["attack"], rec["metrics"]
        table = next(t for t in report.comparison.tables if t.eps_normalized == a["eps_normalized"])
        row = next(r for r in table.rows if r.checkpoint == rec["checkpoint"]["name"])
        cell = row.cells[_column(rec)]
        assert (cell.acc, cell.lo, cell.hi, cell.n) == (m["robust_acc"], *m["robust_ci95"], m["n"])
        assert cell.record == name
        clean = row.cells["clean"]
        assert (clean.acc, clean.lo, clean.hi) == (m["clean_acc"], *m["clean_ci95"])
        # and the markdown shows the same numbers, rounded to 0.1 percent
        lo, hi = m["robust_ci95"]
        assert f"{100 * m['robust_acc']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] n={m['n']}" in report.markdown
        seen += 1
    assert seen == 11
    # the standard CNN has no AutoAttack number: the cell is left empty, not invented
    std_row = next(r for r in headline.rows if r.checkpoint == STANDARD)
    assert "AutoAttack" not in std_row.cells


def test_newest_repeat_wins_and_the_report_says_so(built):
    store, report = built
    old = _records(store)[OLD_REPEAT]["metrics"]
    headline = report.comparison.tables[0]
    cell = next(r for r in headline.rows if r.checkpoint == STANDARD).cells["PGD-20"]
    assert cell.acc == 0.15 and old["robust_acc"] == 0.16
    assert cell.record != OLD_REPEAT
    assert [old_new[0] for old_new in report.data.superseded] == [OLD_REPEAT]
    assert OLD_REPEAT in report.markdown and "superseded" in report.markdown
    assert OLD_REPEAT not in set(report.table["record"])


def test_warning_sits_next_to_its_number(built):
    store, report = built
    headline = report.comparison.tables[0]
    std = next(r for r in headline.rows if r.checkpoint == STANDARD)
    adv = next(r for r in headline.rows if r.checkpoint == ADVERSARIAL)
    (i,) = [i for i in std.cells["PGD-20"].notes if report.comparison.warning[i - 1]]
    assert "FGSM robust accuracy 12.00% is below PGD-20's 15.00%" in report.comparison.notes[i - 1]
    assert not any(report.comparison.warning[j - 1] for c in adv.cells.values() for j in c.notes)
    line = next(ln for ln in report.markdown.splitlines() if ln.startswith(f"| {STANDARD}"))
    assert f"{cell_text(std.cells['PGD-20'])} ⚠{i}" in line
    assert f"- ⚠{i}: PGD-20 on {STANDARD}: FGSM robust accuracy" in report.markdown


def test_model_level_warning_goes_beside_the_checkpoint(store):
    for p in (store / "records").glob("eval-*.json"):
        rec = json.loads(p.read_text())
        if rec["checkpoint"]["name"] == ADVERSARIAL:
            for c in rec["checks"]:
                if c["name"] == "no_collapse_at_large_eps":
                    c.update(
                        ok=False,
                        detail="accuracy stays 41.00% under PGD-20 at L-inf eps 0.5 pixel (n=200): gradients look masked",
                    )
            p.write_text(json.dumps(rec))
    report = build_report(store)
    for t in report.comparison.tables:
        adv = next(r for r in t.rows if r.checkpoint == ADVERSARIAL)
        assert len(adv.notes) == 1 and "gradients look masked" in report.comparison.notes[adv.notes[0] - 1]
        assert all(adv.notes[0] not in c.notes for c in adv.cells.values())


def test_cost_per_row_from_the_training_record(built):
    store, report = built
    headline = report.comparison.tables[0]
    adv = next(r for r in headline.rows if r.checkpoint == ADVERSARIAL)
    std = next(r for r in headline.rows if r.checkpoint == STANDARD)
    assert adv.train_minutes == 4.95  # matched by sha256
    assert std.train_minutes is None  # no training record for it
    # clean pass once plus FGSM, PGD-20 and AutoAttack (the worst case costs nothing extra)
    assert adv.eval_seconds == pytest.approx(0.21 + 0.8 + 10.9 + 61.5)
    assert adv.adv == "pgd" and (adv.train_eps_normalized, adv.train_eps_pixel) == (0.0313, 0.01565)


def test_training_match_is_by_hash_then_full_path(store):
    train = next((store / "records").glob("train-*.json"))
    rec = json.loads(train.read_text())
    rec["checkpoint"]["sha256"] = "d" * 64  # another file at the same path (e.g. trained again)
    train.write_text(json.dumps(rec))
    adv = next(r for r in build_report(store).comparison.tables[0].rows if r.checkpoint == ADVERSARIAL)
    assert adv.train_minutes is None
    del rec["checkpoint"]["sha256"], rec["checkpoint"]["last_sha256"]  # an old record without hashes
    rec["checkpoint"]["path"] = str(Path("runs/cifar10-cnn-standard-pgd-s0/best.pth").resolve())
    train.write_text(json.dumps(rec))
    adv = next(r for r in build_report(store).comparison.tables[0].rows if r.checkpoint == ADVERSARIAL)
    assert adv.train_minutes == 4.95


def test_csv_round_trips_and_holds_the_records(built, tmp_path):
    store, report = built
    report.out = tmp_path
    report.write()
    back = pd.read_csv(tmp_path / "report.csv")
    pd.testing.assert_frame_equal(back, report.table, check_dtype=False)
    assert len(back) == 11 and back["record"].is_unique
    for col in ("robust_acc", "robust_lo", "clean_acc", "eps_normalized", "eps_pixel", "n", "train_minutes"):
        assert pd.api.types.is_numeric_dtype(back[col]), col
    recs = _records(store)
    for _, row in back.iterrows():
        m, a = recs[row["record"]]["metrics"], recs[row["record"]]["attack"]
        assert (row["robust_acc"], row["robust_lo"], row["robust_hi"]) == (m["robust_acc"], *m["robust_ci95"])
        assert (row["eps_normalized"], row["eps_pixel"], row["n"]) == (a["eps_normalized"], a["eps_pixel"], m["n"])


@pytest.mark.parametrize(
    "filters, attacks, checkpoints",
    [
        ({"attack": ["pgd"]}, {"PGD-20"}, {STANDARD, ADVERSARIAL}),
        ({"attack": ["FGSM", "worst-case"]}, {"FGSM", "worst-case"}, {STANDARD, ADVERSARIAL}),
        ({"attack": ["PGD-*"]}, {"PGD-20"}, {STANDARD, ADVERSARIAL}),
        ({"checkpoint": ["*pgd*"]}, {"FGSM", "PGD-20", "AutoAttack", "worst-case"}, {ADVERSARIAL}),
        ({"checkpoint": ["runs/cifar10-cnn-standard-s0/*"], "attack": ["autoattack"]}, set(), set()),
        ({"dataset": ["cifar*"]}, {"FGSM", "PGD-20", "AutoAttack", "worst-case"}, {STANDARD, ADVERSARIAL}),
    ],
)
def test_filters(store, filters, attacks, checkpoints):
    if not attacks:
        with pytest.raises(RobustError, match="no records .* match --attack autoattack"):
            build_report(store, **filters)
        return
    report = build_report(store, **filters)
    assert set(report.table["attack"]) == attacks
    assert set(report.table["checkpoint"]) == checkpoints
    for t in report.comparison.tables:
        assert set(t.columns) <= {"clean"} | attacks
        assert {r.checkpoint for r in t.rows} <= checkpoints


def test_dataset_filter_with_no_match_is_an_error(store):
    with pytest.raises(RobustError, match="no records .* match --dataset fashion-mnist"):
        build_report(store, dataset=["fashion-mnist"])


def test_html_and_figures_are_written_and_self_contained(built, tmp_path):
    store, report = built
    out = tmp_path / "out"
    report.out = out
    report.write()
    names = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert names == ["eps-curves-cifar10-linf-px0.5.png", "per-class-cifar10.png", "training-curves.png"]
    for p in (out / "figures").glob("*.png"):
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        assert b"Software" not in data  # no matplotlib version stamp
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 3
    assert "src=\"http" not in html and "<link" not in html
    assert "FGSM robust accuracy 12.00% is below" in html
    md = (out / "REPORT.md").read_text()
    for n in names:
        assert f"(figures/{n})" in md
    assert "created up to 2025-01-10T13:01:00+00:00" in md


def test_same_records_give_the_same_bytes(store, tmp_path):
    runner = CliRunner()
    for out in ("a", "b"):
        res = runner.invoke(main, ["report", "--results", str(store), "--out", str(tmp_path / out)])
        assert res.exit_code == 0, res.output
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 7  # with report-manifest.json
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_corrupt_record_is_named_and_left_out_or_stops_on_request(store):
    bad = store / "records" / "eval-20250110T140000-badbadbad0.json"
    bad.write_text('{"kind": "eval", "metrics": ')
    runner = CliRunner()
    res = runner.invoke(main, ["report", "--results", str(store), "--no-skip-bad"])
    assert res.exit_code == 2
    assert bad.name in res.output and "--skip-bad" in res.output
    assert not (store / "REPORT.md").exists()  # nothing half-written

    res = runner.invoke(main, ["report", "--results", str(store)])  # the default leaves it out, by name
    assert res.exit_code == 0, res.output
    assert "warning" in res.output and bad.name in res.output
    assert bad.name in (store / "REPORT.md").read_text()
    assert len(pd.read_csv(store / "report.csv")) == 11


def test_record_with_wrong_shapes_is_corrupt_too(store):
    bad = store / "records" / "eval-20250110T150000-0123456789.json"
    bad.write_text(
        json.dumps(
            {
                "kind": "eval",
                "checkpoint": {"name": "x"},
                "attack": {"name": "pgd"},
                "metrics": {"robust_acc": "high", "n": 10},
            }
        )
    )
    with pytest.raises(RobustError, match=bad.name):
        build_report(store, skip_bad=False)
    warned = []
    report = build_report(store, warn=warned.append)
    assert len(report.table) == 11 and bad.name in warned[0]


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_missing_or_empty_results_folder(tmp_path, make):
    root = tmp_path / "results"
    if make == "empty":
        (root / "records").mkdir(parents=True)
    res = CliRunner().invoke(main, ["report", "--results", str(root)])
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and res.output.startswith("error: ")
    assert not list(tmp_path.rglob("REPORT.md"))


def test_examples_from_visualize_and_analyze_are_linked_and_embedded(store, tmp_path):
    from PIL import Image

    def png(path: Path, colour) -> bytes:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), colour).save(path)
        return path.read_bytes()

    grid = png(store / "figures" / "cifar10-cnn-standard-pgd-s0-pgd.png", "red")
    confusion = png(store / "analysis" / "cifar10-cnn-standard-s0" / "clean-confusion.png", "blue")
    png(store / "figures" / "some-other-run-pgd.png", "green")  # not a checkpoint of this report
    png(store / "figures" / "eps-curves-old.png", "white")  # a figure of an earlier report
    out = tmp_path / "out"
    report = build_report(store, out, attack=["pgd"])
    assert [e.png for e in report.examples] == [grid, confusion]
    assert [e.link for e in report.examples] == [
        "../results/figures/cifar10-cnn-standard-pgd-s0-pgd.png",
        "../results/analysis/cifar10-cnn-standard-s0/clean-confusion.png",
    ]
    report.write()
    md = (out / "REPORT.md").read_text()
    assert "](../results/figures/cifar10-cnn-standard-pgd-s0-pgd.png)" in md and "some-other-run" not in md
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 3 + 2
    only_std = build_report(store, out, checkpoint=["*standard-s0*"])
    assert [e.png for e in only_std.examples] == [confusion]


def test_figures_of_an_earlier_report_are_removed(store):
    build_report(store).write()
    assert (store / "figures" / "training-curves.png").is_file()
    (store / "figures" / "cifar10-cnn-x-pgd.png").write_bytes(b"a visualize grid")  # not the report's own
    build_report(store, attack=["pgd"], checkpoint=["*standard-s0*"]).write()
    names = sorted(p.name for p in (store / "figures").iterdir())
    # no training record matches the standard CNN: its old training curves go, the grid stays
    assert names == ["cifar10-cnn-x-pgd.png", "eps-curves-cifar10-linf-px0.5.png", "per-class-cifar10.png"]


def test_worst_case_across_separate_evaluations_equals_one_call(tmp_path):
    """FGSM and PGD run by two evaluate() calls on the same points: the report's
    worst case, taken from the records' per-point flags, equals the worst case of one
    call that ran both; without flags (older records) no cross-record cell is made."""
    from support import cifar10, trained_cnn

    from robustbench_local.attacks import AttackSpec
    from robustbench_local.evaluation import evaluate
    from robustbench_local.results import ResultsStore, unpack_flags
    from robustbench_local.threat import ThreatModel

    target = trained_cnn()
    threat = ThreatModel("linf", 0.0313, 0.0313 / 4)
    # PGD on the DLR loss is weaker than FGSM here overall but fools points FGSM misses
    fgsm, pgd = AttackSpec("fgsm", threat=threat), AttackSpec("pgd", threat=threat, k=5, loss="dlr")
    kw = dict(n=300, seed=0, device="cpu", run_checks=False, name="cnn")
    separate = ResultsStore(tmp_path / "separate")
    for spec in (fgsm, pgd):
        for rec in evaluate(target, [spec], cifar10(), **kw):
            separate.add(rec)
    together = {r["attack"]["label"]: r for r in evaluate(target, [fgsm, pgd], cifar10(), **kw)}
    one_call = together["worst-case"]["metrics"]
    for label in ("FGSM", "PGD-5-DLR"):
        flags = unpack_flags(together[label]["metrics"]["robust_flags"], 300)
        assert int(flags.sum()) == together[label]["metrics"]["robust_correct"]

    (row,) = build_report(tmp_path / "separate").comparison.tables[0].rows
    cell = row.cells["worst-case"]
    assert (cell.acc, cell.lo, cell.hi, cell.n) == (one_call["robust_acc"], *one_call["robust_ci95"], 300)
    assert cell.acc < min(row.cells["FGSM"].acc, row.cells["PGD-5-DLR"].acc)  # it combines, not copies
    report = build_report(tmp_path / "separate")
    assert "combined from 2 records on the same 300 points" in report.markdown

    for p in (tmp_path / "separate" / "records").glob("*.json"):  # records from before the flags existed
        rec = json.loads(p.read_text())
        del rec["metrics"]["robust_flags"]
        p.write_text(json.dumps(rec))
    (row,) = build_report(tmp_path / "separate").comparison.tables[0].rows
    assert "worst-case" not in row.cells


@pytest.mark.parametrize("n", [1, 7, 100, 1000, 10000])
def test_wilson_interval_holds_the_estimate_at_zero_and_all(n):
    """At 0 of n (and n of n) the bound equals the estimate, not a rounding hair past it,
    which the plots' error bars (estimate - bound) would turn into a negative length."""
    from scipy.stats import binomtest

    from robustbench_local.results import wilson_interval

    for k in (0, 1, n // 2, n - 1, n):
        lo, hi = wilson_interval(k, n)
        assert 0.0 <= lo <= k / n <= hi <= 1.0
        ref = binomtest(k, n).proportion_ci(method="wilson")  # scipy as the independent reference
        assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0


def test_training_table_says_where_the_minutes_went(store):
    """Each training run's minutes split as its record measured them (crafting the
    adversarial examples, the rest of the steps, validation): they add up to its minutes.
    A record without the split shows '-'."""
    committed = Path(__file__).resolve().parent.parent / "results/leaderboard_cifar10/superseded/fast-fgsm-rs-67min"
    name = "train-20261202T135924-04dba8e3e5.json"
    shutil.copy(committed / name, store / "records")
    secs = json.loads((committed / name).read_text(encoding="utf-8"))["seconds"]
    rows = {r[-1]: dict(zip(TRAIN_HEAD, r)) for r in training_rows(load_report_data(store).trains)}
    ours = rows[name]
    want = " / ".join(f"{secs[k] / 60:.1f}" for k in ("attack", "update", "validation"))
    assert ours["attack / step / val min"] == want == "27.3 / 37.1 / 2.7"
    parts = [float(v) for v in want.split(" / ")]
    assert sum(parts) == pytest.approx(float(ours["minutes"]), abs=0.15)
    assert float(ours["minutes"]) == pytest.approx(secs["total"] / 60, abs=0.05)
    (fixture,) = [r for k, r in rows.items() if k != name]
    assert fixture["attack / step / val min"] == "-"  # a record from before the split was recorded
