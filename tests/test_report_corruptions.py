"""`robust report`'s common-corruption section: a table of models by corruption beside
their clean and adversarial accuracy (AutoAttack where there is one, else the worst
case, labelled), a heatmap of corruption by severity and a curve against severity in
colour-blind-safe colours, corruptions.csv in long form; nothing at all without
corruption records.

The evaluation records are the report tests' fixture store; the corruption records
beside them are written in corruptions/evaluate.py's format, their per-point flags
drawn at random and every summary computed from the flags as evaluate.py computes it.
One test runs the real evaluate() and evaluate_corruptions() on a trained model."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from robustbench_local.corruptions import GROUPS
from robustbench_local.errors import RobustError
from robustbench_local.report import build_report
from robustbench_local.report.corruption_figures import (
    FIG_PREFIX,
    HEATMAP_CMAP,
    OKABE_ITO,
    heatmap_figure,
    severity_figure,
)
from robustbench_local.report.corruption_pages import corruptions_markdown
from robustbench_local.report.corruption_published import PUBLISHED
from robustbench_local.report.corruptions import CSV_NAME, build_corruptions
from robustbench_local.report.html import render_html
from robustbench_local.report.load import load_report_data
from robustbench_local.report.markdown import render_markdown
from robustbench_local.report.table_parts import cell_text
from robustbench_local.report.tables import build_comparison
from robustbench_local.results import ResultsStore, pack_flags, wilson_interval

FIXTURES = Path(__file__).parent / "fixtures" / "records"
STANDARD = "cifar10-cnn-standard-s0/best.pth"  # no AutoAttack record: worst case over FGSM, PGD-20
ADVERSARIAL = "cifar10-cnn-standard-pgd-s0/best.pth"  # AutoAttack (standard) at the main radius
FAMILY = {c: fam for fam, names in GROUPS.items() for c in names}
GROUPS_ALL = [c for names in GROUPS.values() for c in names]
FROST_WHY = "A procedural, seeded ice texture replaces the benchmark's frost photographs."
Z95 = 1.959963984540054


def corruption_record(
    eval_rec: dict, names, severities, *, seed: int, created: str, keep: float = 0.9, source: str = "generated"
) -> dict:
    """A corruption record for the model and points of ``eval_rec``: per-point flags at
    random (a point right when clean can go wrong under a corruption, more often at a
    higher severity), everything else derived from the flags as evaluate.py does."""
    rng = np.random.default_rng(seed)
    n = eval_rec["metrics"]["n"]
    clean = rng.random(n) < eval_rec["metrics"]["clean_acc"]
    results, flags = [], []
    for c in names:
        for s in severities:
            ok = clean & (rng.random(n) < keep - 0.1 * s)
            k = int(ok.sum())
            results.append(
                {
                    "corruption": c,
                    "family": FAMILY[c],
                    "severity": s,
                    "n": n,
                    "correct": k,
                    "acc": k / n,
                    "ci95": list(wilson_interval(k, n)),
                    "flags": pack_flags(ok),
                }
            )
            flags.append(ok)
    scores = np.mean(flags, axis=0)
    mean, half = float(scores.mean()), Z95 * float(scores.std(ddof=1)) / math.sqrt(n)
    kc = int(clean.sum())

    def mean_of(key, value):
        accs = [r["acc"] for r in results if r[key] == value]
        return sum(accs) / len(accs)

    about = {"source": source, "names": list(names), "severities": list(severities), "seed": 0}
    if source == "generated":
        differs = {"frost": FROST_WHY} if "frost" in names else {}
        about.update({"generator_version": 1, "differs_from_cifar10c": differs})
    return {
        "kind": "corruption",
        "created": created,
        "checkpoint": dict(eval_rec["checkpoint"]),
        "data": dict(eval_rec["data"]),
        "environment": {"device": "cpu"},
        "corruptions": about,
        "metrics": {
            "n": n,
            "clean_correct": kc,
            "clean_acc": kc / n,
            "clean_ci95": list(wilson_interval(kc, n)),
            "results": results,
            "by_corruption": {c: mean_of("corruption", c) for c in names},
            "by_severity": {str(s): mean_of("severity", s) for s in severities},
            "by_family": {f: mean_of("family", f) for f in dict.fromkeys(FAMILY[c] for c in names)},
            "mean_acc": mean,
            "mean_ci95": [max(0.0, mean - half), min(1.0, mean + half)],
            "mean_interval": "over test points",
            "relative_drop": (kc / n - mean) / (kc / n),
            "seconds": {"generate": 1.0, "evaluate": 0.5},
        },
    }


def _evals(root: Path) -> dict[str, dict]:
    """checkpoint name -> one of its evaluation records."""
    out = {}
    for p in sorted((root / "records").glob("eval-*.json")):
        rec = json.loads(p.read_text())
        out.setdefault(rec["checkpoint"]["name"], rec)
    return out


NAMES = ("gaussian_noise", "frost", "jpeg_compression")
SEVERITIES = (1, 3, 5)  # not all five: the curve must join only these


def _store(root: Path, with_corruptions: bool) -> tuple[Path, dict[str, dict]]:
    """The fixture store, plus (``with_corruptions``) a corruption record per model."""
    shutil.copytree(FIXTURES, root / "records")
    recs = {}
    if with_corruptions:
        evals = _evals(root)
        for i, name in enumerate((STANDARD, ADVERSARIAL)):
            recs[name] = corruption_record(
                evals[name], NAMES, SEVERITIES, seed=i, keep=0.95 - 0.1 * i, created=f"2025-01-11T0{i}:00:00+00:00"
            )
            ResultsStore(root).add(recs[name])
    return root, recs


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(store, corruption records by model, report), built once for the tests that only read them."""
    root, recs = _store(tmp_path_factory.mktemp("corr") / "results", True)
    return root, recs, build_report(root)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """The report of the fixture store alone (no corruption record)."""
    root, _ = _store(tmp_path_factory.mktemp("plain") / "results", False)
    return build_report(root)


@pytest.fixture
def store(tmp_path) -> tuple[Path, dict[str, dict]]:
    return _store(tmp_path / "results", True)


def _section_only(root: Path, **filters):
    """The section alone (no other figure drawn): data, comparison, section."""
    data = load_report_data(root, **filters)
    comp = build_comparison(data)
    return data, comp, build_corruptions(data, comp, root)


def _section(md: str) -> str:
    start = md.index("## Common corruptions")
    end = md.find("\n## ", start + 1)
    return md[start:] if end < 0 else md[start : end + 1]


def _row(section: str, name: str) -> list[str]:
    line = next(x for x in section.splitlines() if x.startswith(f"| {name} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def _pct(v: float) -> str:
    return f"{100 * v:.1f}"


def test_table_rows_hold_the_records_numbers_beside_adversarial_accuracy(built):
    store, recs, report = built
    sec = _section(report.markdown)
    head = next(x for x in sec.splitlines() if x.startswith("| model |"))
    assert [c.strip() for c in head.strip("|").split("|")] == [
        "model",
        "method",
        "clean %",
        "gaussian noise",
        "frost †1",
        "jpeg compression",
        "mean corruption %",
        "relative drop",
        "adversarial %",
    ]
    evals = [json.loads(p.read_text()) for p in sorted((store / "records").glob("eval-*.json"))]
    main = report.comparison.tables[0]
    assert report.corruptions.radius == main.title
    for name, rec in recs.items():
        m = rec["metrics"]
        cells = _row(sec, name)
        assert cells[2] == f"{_pct(m['clean_acc'])} [{_pct(m['clean_ci95'][0])}, {_pct(m['clean_ci95'][1])}]"
        assert cells[3:6] == [_pct(m["by_corruption"][c]) for c in NAMES]
        assert cells[6] == f"{_pct(m['mean_acc'])} [{_pct(m['mean_ci95'][0])}, {_pct(m['mean_ci95'][1])}] n=500"
        assert cells[7] == f"{100 * m['relative_drop']:.1f}%"
        # the adversarial cell is the comparison table's own cell at the main radius (eps 0.0313)
        table_row = next(r for r in main.rows if r.checkpoint == name)
        assert cells[1] == table_row.method  # named and described as the report's tables do
        if name == ADVERSARIAL:
            aa = next(
                e
                for e in evals
                if e["checkpoint"]["name"] == name
                and e["attack"]["name"] == "autoattack"
                and e["attack"]["eps_normalized"] == 0.0313
            )
            ma = aa["metrics"]
            assert cells[8] == (
                f"{_pct(ma['robust_acc'])} [{_pct(ma['robust_ci95'][0])}, "
                f"{_pct(ma['robust_ci95'][1])}] n=500 (AutoAttack)"
            )
        else:  # no AutoAttack record: the per-example worst case, labelled so
            assert "AutoAttack" not in table_row.cells
            assert cells[8] == cell_text(table_row.cells["worst-case"]) + " (worst case over FGSM, PGD-20)"
    # what differs from CIFAR-10-C, where the images come from, and the paper's finding in words only
    assert f"- †1 frost differs from CIFAR-10-C: {FROST_WHY}" in sec
    assert "Corrupted images: generated here (seeded, from the clean test images) for every model." in sec
    assert "Hendrycks & Dietterich" in sec and "JPEG (quality 75) copy of CIFAR-10" in sec
    assert "procedural ice texture" in sec
    html = _section_html(report.html)
    assert "<h2>Common corruptions</h2>" in html and '<table class="corruptions">' in html
    assert f'<td class="num">{_row(sec, ADVERSARIAL)[8]}</td>' in html
    assert html.count("data:image/png;base64,") == 2  # heatmap and severity curve, embedded


def test_published_cifar10c_figures_sit_beside_ours_with_each_models_drop(built):
    _, recs, report = built
    sec = _section(report.markdown)
    for p in PUBLISHED:  # the per-corruption means reproduce the mean the source lists
        assert sum(p.by_corruption.values()) / 15 == pytest.approx(p.mean, abs=0.01)
        assert sum(p.by_severity.values()) / 5 == pytest.approx(p.mean, abs=0.01)
        assert sorted(p.by_corruption) == sorted(GROUPS_ALL)
    assert (
        "| Standard | WideResNet-28-10 | standard | 94.78 | 73.46 | 22.5% | "
        "gaussian noise 47.0, glass blur 51.0, impulse noise 55.3 |"
    ) in sec
    assert "| Gowal2020Uncovering_70_16 (L-inf) | WideResNet-70-16 | adversarial, L-inf 8/255 | 85.29 | 76.37 |" in sec
    for name, rec in recs.items():
        m = rec["metrics"]
        worst = sorted(m["by_corruption"].items(), key=lambda kv: kv[1])[0][0].replace("_", " ")
        line = next(x for x in sec.splitlines() if x.startswith(f"- {name} ("))
        assert f"loses {100 * m['relative_drop']:.1f}% of its clean {_pct(m['clean_acc'])}% (n=500)" in line
        assert f"worst under {worst} " in line
    assert "Why ours differ:" in sec
    html = _section_html(report.html)
    assert '<td class="num">94.78</td>' in html and "Why ours differ:" in html


def test_a_degenerate_models_corruption_row_is_marked(store):
    root, _ = store
    rec = corruption_record(_evals(root)[STANDARD], NAMES, SEVERITIES, seed=3, created="2025-03-01T00:00:00+00:00")
    rec["degenerate"] = {"reason": "predicts one class for 97% of the points"}
    ResultsStore(root).add(rec)
    sec = "\n".join(corruptions_markdown(_section_only(root)[2]))
    assert _row(sec, STANDARD + " (degenerate)")
    assert (
        f"- {STANDARD}: degenerate model (predicts one class for 97% of the points): its corruption accuracies "
        "and drop are meaningless"
    ) in sec
    assert not any(x.startswith(f"- {STANDARD} (") for x in sec.splitlines())  # no drop sentence for it


def test_a_wide_tables_family_means_are_the_records_own(store):
    """Past six corruptions the table shows a column per family: the record's by_family,
    recomputed from its corruptions' means only for a record written without it."""
    root, _ = store
    evals = _evals(root)
    own = corruption_record(evals[STANDARD], GROUPS_ALL, SEVERITIES, seed=4, created="2025-03-01T00:00:00+00:00")
    own["metrics"]["by_family"]["noise"] = 0.4321  # not its corruptions' mean: which one is shown tells
    old = corruption_record(evals[ADVERSARIAL], GROUPS_ALL, SEVERITIES, seed=5, created="2025-03-01T00:00:00+00:00")
    del old["metrics"]["by_family"]
    for rec in (own, old):
        ResultsStore(root).add(rec)
    sec = "\n".join(corruptions_markdown(_section_only(root)[2]))
    head = next(x for x in sec.splitlines() if x.startswith("| model |"))
    head = [c.strip() for c in head.strip("|").split("|")]
    families = list(GROUPS)
    assert head[3:7] == [f"{f} (mean)" for f in families]
    assert _row(sec, STANDARD)[3] == "43.2"
    assert _row(sec, STANDARD)[4:7] == [_pct(own["metrics"]["by_family"][f]) for f in families[1:]]
    by_corruption = old["metrics"]["by_corruption"]
    assert _row(sec, ADVERSARIAL)[3:7] == [_pct(np.mean([by_corruption[c] for c in GROUPS[f]])) for f in families]


def _section_html(html: str) -> str:
    start = html.index("<h2>Common corruptions</h2>")
    end = html.find("<h2>", start + 1)
    return html[start:end]


def test_files_figures_and_csv_are_written(built):
    store, recs, report = built
    report.write()
    for f in ("figures/corruption-heatmap-cifar10.png", "figures/corruption-severity-cifar10.png", CSV_NAME):
        assert (store / f).stat().st_size > 1000
    assert "![cifar10: accuracy by corruption and severity](figures/corruption-heatmap-cifar10.png)" in report.markdown
    manifest = json.loads((store / "report-manifest.json").read_text())
    assert CSV_NAME in manifest["files"] and "figures/corruption-heatmap-cifar10.png" in manifest["files"]
    df = pd.read_csv(store / CSV_NAME)
    assert list(df.columns[:13]) == [
        "dataset",
        "split",
        "model",
        "checkpoint_sha256",
        "method",
        "source",
        "corruption",
        "family",
        "severity",
        "n",
        "acc",
        "ci_low",
        "ci_high",
    ]
    assert len(df) == 2 * (1 + len(NAMES) * len(SEVERITIES))  # clean + every corruption and severity, per model
    for name, rec in recs.items():
        mine = df[df["model"] == name]
        for r in rec["metrics"]["results"]:
            line = mine[(mine["corruption"] == r["corruption"]) & (mine["severity"] == r["severity"])].iloc[0]
            assert (line["n"], line["acc"], line["ci_low"], line["ci_high"]) == (r["n"], r["acc"], *r["ci95"])
            assert bool(line["differs_from_cifar10c"]) == (r["corruption"] == "frost")
        clean = mine[mine["corruption"] == "clean"].iloc[0]
        assert clean["severity"] == 0 and clean["acc"] == rec["metrics"]["clean_acc"]
    # the same records give the same bytes
    _, _, again = _section_only(store)
    assert again.csv_bytes() == report.corruptions.csv_bytes()
    assert [f.png for f in again.figures] == [f.png for f in report.corruptions.figures]


def test_figures_use_colour_blind_safe_colours_and_join_only_measured_severities(built):
    _, recs, report = built
    (table,) = report.corruptions.tables
    assert table.severities == list(SEVERITIES) and [r.name for r in table.rows] == [ADVERSARIAL, STANDARD]
    fig = severity_figure(table.rows, "t")
    ax = fig.axes[0]
    colours = []
    for row, container in zip(table.rows, ax.containers, strict=True):
        line = container.lines[0]
        assert list(line.get_xdata()) == [0, 1, 3, 5]  # clean, then only the severities measured
        m = recs[row.name]["metrics"]
        want = [m["clean_acc"]] + [m["by_severity"][str(s)] for s in SEVERITIES]
        assert np.allclose(line.get_ydata(), [100 * v for v in want])
        assert line.get_marker() not in (None, "", "None")
        colours.append(matplotlib.colors.to_hex(line.get_color()).upper())
    assert colours == [c.upper() for c in OKABE_ITO[:2]]
    lo, hi = ax.get_ylim()
    shown = [100 * v for r in table.rows for v in [r.clean.lo, r.clean.hi, *r.by_severity.values()]]
    assert lo <= min(shown) and hi >= max(shown) and (lo, hi) != (0, 100)  # fitted to the data
    assert [t.get_text() for t in ax.get_xticklabels()] == ["clean", "1", "2", "3", "4", "5"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "cifar10-cnn-standard-pgd-s0",
        "cifar10-cnn-standard-s0",
    ]  # short: the run, not best.pth

    heat = heatmap_figure(table.rows, table.names, table.severities, table.differs, "t")
    images = [im for a in heat.axes for im in a.get_images()]
    assert len(images) == 2 and {im.get_cmap().name for im in images} == {HEATMAP_CMAP} == {"cividis"}
    grid = images[1].get_array()  # rows: corruptions, columns: severities, in %
    row = table.rows[1]
    assert grid.shape == (len(NAMES), len(SEVERITIES))
    assert np.allclose(grid, [[100 * row.grid[(c, s)] for s in SEVERITIES] for c in NAMES])
    assert {f"{100 * row.grid[('frost', 5)]:.0f}"} <= {t.get_text() for t in heat.axes[1].texts}
    labels = [t.get_text() for t in heat.axes[0].get_yticklabels()]
    assert labels == ["gaussian noise", "frost †1", "jpeg compression"]


def test_a_report_without_corruption_records_is_unchanged(plain):
    report = plain
    assert report.corruptions.empty and "Common corruptions" not in report.markdown
    d, c = report.data, report.comparison
    figures = report.figures
    # what the report rendered before the section existed: the same calls without it
    assert report.markdown == render_markdown(d, c, figures, report.examples, "figures", report.leaderboard)
    assert report.html == render_html(d, c, figures, report.examples, report.leaderboard)
    assert not any(f.name.startswith(FIG_PREFIX) for f in figures)
    assert CSV_NAME not in report.files() and not any("corruption" in k for k in report.files())


def test_adding_corruption_records_changes_nothing_else(built, plain):
    _, _, report = built
    before, after = plain.files(), report.files()
    for rel, data in before.items():
        if rel not in ("REPORT.md", "report.html", "report-manifest.json"):
            assert after[rel] == data, rel
    sec = _section(report.markdown)
    assert report.markdown.replace(sec, "") == plain.markdown  # the section is added, nothing else moves
    assert report.html.replace(_section_html(report.html), "") == plain.html


def test_newest_repeat_wins_and_a_broken_record_is_named(store):
    root, recs = store
    evals = _evals(root)
    newer = corruption_record(evals[STANDARD], NAMES, SEVERITIES, seed=9, created="2025-02-01T00:00:00+00:00")
    path = ResultsStore(root).add(newer)
    bad = dict(recs[ADVERSARIAL], created="2025-02-02T00:00:00+00:00")
    bad["metrics"] = {**bad["metrics"], "mean_acc": 1.5}
    bad_path = ResultsStore(root).add(bad)
    data, comp, section = _section_only(root)
    row = next(r for r in section.tables[0].rows if r.name == STANDARD)
    assert row.record == path.name and row.mean.acc == newer["metrics"]["mean_acc"]
    assert [new for _, new in section.superseded] == [path.name]
    assert "is superseded by the newer " + path.name in "\n".join(corruptions_markdown(section))
    assert data.skipped == [f"cannot use record {bad_path}: metrics.mean_acc is not a fraction in [0, 1]; left out"]
    assert data.skipped[0] in render_markdown(data, comp, [], [], "figures", None, section)  # 'Records left out'
    data = load_report_data(root)
    with pytest.raises(RobustError, match="mean_acc"):
        build_corruptions(data, build_comparison(data), root, skip_bad=False)


def test_filters_and_models_without_an_adversarial_evaluation(store):
    root, recs = store
    other = json.loads(json.dumps(recs[STANDARD]))
    other["checkpoint"].update(name="elsewhere/best.pth", path="elsewhere/best.pth", sha256="c" * 64)
    other["created"] = "2025-01-12T00:00:00+00:00"
    ResultsStore(root).add(other)
    sec = "\n".join(corruptions_markdown(_section_only(root)[2]))
    assert _row(sec, "elsewhere/best.pth")[8] == "-"
    assert "- elsewhere/best.pth: no adversarial evaluation of this model in this report" in sec
    only = _section_only(root, checkpoint=["*pgd*"])[2]
    assert [r.name for t in only.tables for r in t.rows] == [ADVERSARIAL]
    assert len(_section_only(root, dataset=["cifar1?"])[2].tables[0].rows) == 3


def test_real_evaluations_and_corruption_records_make_the_section(tmp_path):
    """The real evaluate() and evaluate_corruptions() on 16 points of a trained CNN."""
    pytest.importorskip("skimage")  # the corruptions extra
    from support import cifar10, trained_cnn

    from robustbench_local.attacks import AttackSpec
    from robustbench_local.corruptions.evaluate import evaluate_corruptions
    from robustbench_local.evaluation import evaluate
    from robustbench_local.threat import ThreatModel

    target = trained_cnn(epochs=2, n_train=2000)
    results = ResultsStore(tmp_path / "results")
    threat = ThreatModel("linf", 0.0313, 0.0313 / 4)
    for rec in evaluate(
        target, [AttackSpec("fgsm", threat=threat)], cifar10(), n=16, seed=0, device="cpu", run_checks=False, name="cnn"
    ):
        results.add(rec)
    rec = evaluate_corruptions(
        target,
        ("gaussian_noise", "contrast"),
        (1, 2),
        cifar10(),
        n=16,
        seed=0,
        device="cpu",
        cache_dir=tmp_path / "cache",
        source="generated",
        name="cnn",
    )
    results.add(rec)
    _, comp, section = _section_only(tmp_path / "results")
    (row,) = section.tables[0].rows
    m = rec["metrics"]
    assert row.name == "cnn" and row.n == 16 and row.clean.acc == m["clean_acc"]
    assert row.by_corruption == m["by_corruption"] and row.mean.acc == m["mean_acc"]
    assert row.grid == {(r["corruption"], r["severity"]): r["acc"] for r in m["results"]}
    fgsm = comp.tables[0].rows[0].cells["FGSM"]
    assert row.adversarial.cell is fgsm and row.adversarial.label == "FGSM"
    cells = _row("\n".join(corruptions_markdown(section)), "cnn")
    assert cells[-1] == cell_text(fgsm) + " (FGSM)"
    assert row.clean.acc == comp.tables[0].rows[0].cells["clean"].acc  # the same 16 points
    assert [f.name for f in section.figures] == ["corruption-heatmap-cifar10.png", "corruption-severity-cifar10.png"]
