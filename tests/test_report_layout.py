"""The report reads at a glance: the comparison tables fit a 1400-pixel page (short
descriptive columns, the long texts said once under the table, training minutes and
evaluation seconds in a second table), every table of report.html sorts by any column,
the accuracy-vs-eps figure has a small legend and a y-axis fitted to its numbers, and
the per-class figure stays readable at any count of models in a colour-blind-safe map.

The committed seed suite is the real case; a store written here by hand is the wide
one (two architectures, seven attack columns, a worst case over another set of attacks
in one row). Where Chromium is installed, both pages are laid out at 1400 pixels."""

from __future__ import annotations

import hashlib
import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex

from robustbench_local.report import build_report
from robustbench_local.report.figure_base import OKABE_ITO
from robustbench_local.report.load import load_report_data
from robustbench_local.report.per_class import CMAP, MAX_ROWS, PerClass, per_class_figure, per_class_tables
from robustbench_local.report.plots import eps_curve_figures
from robustbench_local.report.sort_script import SORT_SCRIPT
from robustbench_local.results import ResultsStore, wilson_interval

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "results" / "seed_suite_cifar10"
EPS = 0.0313
N = 1000
ATTACKS = ["FGSM", "PGD-20", "PGD-50", "APGD-CE", "APGD-T", "Square-5000", "AutoAttack"]
MAX_CELL = 32  # characters in any cell of a comparison table of the seed suite
MAX_COLUMNS = 13  # the wide store's headline: four descriptive columns, clean, seven attacks, worst case
PAGE = 1400


# ----------------------------------------------------------------------------- reading the HTML
class _Tables(HTMLParser):
    """Each <table>: its class and its rows as lists of cell texts."""

    def __init__(self):
        super().__init__()
        self.tables: list[tuple[str, list[list[str]]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append((dict(attrs).get("class") or "", []))
        elif tag == "tr" and self.tables:
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def html_tables(page: str, cls: str | None = None) -> list[list[list[str]]]:
    parser = _Tables()
    parser.feed(page)
    return [rows for c, rows in parser.tables if cls is None or c == cls]


def _section(md: str, title: str) -> str:
    return md.split(title, 1)[1].split("\n## ", 1)[0]


# ----------------------------------------------------------------------------- records written by hand
def _record(name: str, label: str, acc: float, *, arch: str, adv: str, members: list[str] | None = None) -> dict:
    k = round(acc * N)
    sha = hashlib.sha256(name.encode()).hexdigest()
    clean = 0.55 + (sum(name.encode()) % 20) / 100
    return {
        "kind": "eval",
        "created": "2026-01-01T00:00:00+00:00",
        "checkpoint": {
            "name": name,
            "path": f"runs/{name}/best.pth",
            "sha256": sha,
            "arch": arch,
            "dataset": "cifar10",
            "method": "mixup" if "mixup" in name else "standard",
            "adv": adv,
            "std": [0.5, 0.5, 0.5],
            "train_threat": {"eps_normalized": EPS, "eps_pixel": EPS / 2} if adv != "none" else None,
        },
        "attack": {
            "name": "worst-case" if members else label.split("-")[0].lower(),
            "label": label,
            "members": members,
            "norm": "linf",
            "space": "normalized",
            "eps_normalized": EPS,
            "eps_pixel": EPS / 2,
            "step_normalized": EPS / 4,
            "step_pixel": EPS / 8,
        },
        "metrics": {
            "n": N,
            "clean_acc": clean,
            "robust_acc": k / N,
            "seconds": 12.5,
            "clean_ci95": list(wilson_interval(round(clean * N), N)),
            "robust_ci95": list(wilson_interval(k, N)),
        },
        "data": {"dataset": "cifar10", "split": "test", "seed": 0, "n": N, "indices_sha256": "same points"},
    }


MODELS = [  # name, arch, adversarial training
    ("preact-resnet18-standard", "preact-resnet18", "none"),
    ("preact-resnet18-pgd-at", "preact-resnet18", "pgd"),
    ("preact-resnet18-mixup-pgd-at", "preact-resnet18", "pgd"),
    ("preact-resnet18-trades", "preact-resnet18", "trades"),
    ("cnn-standard", "cnn", "none"),
    ("cnn-mixup", "cnn", "none"),
    ("cnn-fgsm-rs", "cnn", "fgsm-rs"),
    ("cnn-free-at", "cnn", "free"),
]


@pytest.fixture(scope="module")
def wide(tmp_path_factory) -> Path:
    store = ResultsStore(tmp_path_factory.mktemp("wide") / "results")
    for i, (name, arch, adv) in enumerate(MODELS):
        base = 0.35 if adv != "none" else 0.05
        accs = [base + 0.01 * (i % 3) - 0.005 * j for j in range(len(ATTACKS))]
        ran = ATTACKS if name != "cnn-free-at" else ATTACKS[:3]  # one model without the slow attacks
        for label, acc in zip(ran, accs):
            store.add(_record(name, label, acc, arch=arch, adv=adv))
        store.add(_record(name, "worst-case", min(accs[: len(ran)]) - 0.01, arch=arch, adv=adv, members=ran))
    return store.root


@pytest.fixture(scope="module")
def suite():
    if not (SUITE / "records").is_dir():
        pytest.skip(f"no committed records in {SUITE}")
    return build_report(SUITE)


@pytest.fixture(scope="module")
def wide_report(wide):
    return build_report(wide)


# ----------------------------------------------------------------------------- tables
def test_the_headline_keeps_to_its_numbers(suite):
    (head, *rows) = html_tables(suite.html, "comparison")[0]
    has_aa = any("AutoAttack" in r.cells for r in suite.comparison.tables[0].rows)
    attacks = ["FGSM", "PGD-20", "PGD-50"] + (["AutoAttack"] if has_aa else [])
    assert head == ["checkpoint", "method", "train eps", "clean", *attacks, "worst-case"]
    methods = {"standard", "PGD-AT", "FGSM-RS", "TRADES", "MixUp", "CutMix", "OVA"}
    assert {r[1] for r in rows} == methods and len(rows) >= len(methods)
    for row in rows:
        assert all(len(c) <= MAX_CELL for c in row), row
    assert {r[1]: r[2] for r in rows}["PGD-AT"] == "0.0313" and {r[1]: r[2] for r in rows}["standard"] == "-"
    # the markdown row of the headline: the same columns, and no longer than this
    md = _section(suite.markdown, "## Comparison at")
    widest = max(len(line) for line in md.splitlines() if line.startswith("| "))
    assert widest <= 220


def test_what_every_row_shares_is_said_once_under_the_table(suite):
    md = suite.markdown
    headline = _section(md, "## Comparison at")
    assert "Every row: dataset cifar10, model cnn." in headline
    assert (
        "train eps: the radius of the model's adversarial training, 0.0313 normalized = 0.01565 pixel "
        "(3.99/255)." in headline
    )
    # the worst case's members: once for the one table with a worst-case column, in both pages
    attacks = [
        c for c in ("FGSM", "PGD-20", "PGD-50", "AutoAttack") if c in html_tables(suite.html, "comparison")[0][0]
    ]
    note = f"worst-case: the per-example worst case over {', '.join(attacks)}, in every row."
    assert md.count("worst case over FGSM") == 1 and note in headline  # it was a note on each of 7 rows
    assert suite.html.count("worst case over FGSM") == 1 and html.escape(note) in suite.html
    assert "†" not in headline  # nothing else needed a note


def test_minutes_and_seconds_sit_in_a_second_table(suite):
    headline = html_tables(suite.html, "comparison")[0]
    assert not {"train min", "eval s", "adversarial training (eps)"} & set(headline[0])
    (cost,) = re.findall(r'Comparison at .*?<details class="cost">(.*?)</details>', suite.html, re.S)[:1]
    (rows,) = html_tables(cost)
    assert rows[0] == ["checkpoint", "method", "train min", "eval s"]
    by_name = {r.checkpoint: r for r in suite.comparison.tables[0].rows}
    for name, method, minutes, seconds in rows[1:]:
        assert seconds == f"{by_name[name].eval_seconds:.1f}" and method == by_name[name].method
        assert minutes == f"{by_name[name].train_minutes:.1f}"
    md = _section(suite.markdown, "## Comparison at")
    assert "<details><summary>Training minutes and evaluation seconds</summary>" in md


def test_wide_tables_name_what_differs_and_note_the_odd_worst_case(wide_report):
    md, page = wide_report.markdown, wide_report.html
    (head, *rows) = html_tables(page, "comparison")[0]
    assert head[:5] == ["checkpoint", "model", "method", "train eps", "clean"] and "dataset" not in head
    assert head[5:] == ["FGSM", "PGD-20", "PGD-50", "AutoAttack", "APGD-CE", "APGD-T", "Square-5000", "worst-case"]
    assert all(len(c) <= 40 for r in rows for c in r[1:4]), rows  # no five-line training cells
    assert "Every row: dataset cifar10." in md
    # most rows share one set of attacks, said once; the odd row says its own beside its cell
    assert f"worst-case: the per-example worst case over {', '.join(ATTACKS)}, unless a note" in md
    (row,) = [r for r in rows if r[0] == "cnn-free-at"]
    i = int(re.search(r"†(\d+)", row[-1]).group(1))
    assert f"- †{i}: worst case on cnn-free-at: per-example worst case over FGSM, PGD-20, PGD-50" in md
    assert md.count("worst case over FGSM") == 2


def test_every_table_sorts_with_a_script_of_its_own(suite, wide_report):
    for page in (suite.html, wide_report.html):
        assert page.count(SORT_SCRIPT) == 1 and page.count("<script") == 1
        assert "<script src" not in page and "http" not in SORT_SCRIPT
        for rows in html_tables(page):
            assert len(rows[0]) <= MAX_COLUMNS, rows[0]


# ----------------------------------------------------------------------------- figures
def _methods(data) -> dict[str, list[str]]:
    """The suite's methods from its records: the cells of one group, by their name."""
    return {g: sorted(set(rows["checkpoint"])) for g, rows in data.evals.groupby("group")}


def test_eps_curves_have_a_panel_per_family_a_legend_entry_per_method_and_a_fitted_axis(suite):
    data = load_report_data(SUITE)
    (fig,) = [f for _, _, f in eps_curve_figures(data)]
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["no adversarial training", "adversarial training"]
    # a method trained with several seeds is one entry in one colour, not one per seed
    entries = [t.get_text() for ax in axes for t in ax.get_legend().get_texts()]
    methods = _methods(data)
    assert len(methods) == 7
    assert sorted(entries) == sorted(f"{g} ({len(c)} seeds)" if len(c) > 1 else c[0] for g, c in methods.items())
    colours = [to_hex(h.get_color()) for ax in axes for h in ax.get_legend().legend_handles]
    assert set(colours) <= {c.lower() for c in OKABE_ITO}  # colour-blind safe
    attacks = ["FGSM", "PGD-20", "PGD-50"] + (["AutoAttack"] if (data.evals["attack"] == "AutoAttack").any() else [])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["clean (eps 0)", *attacks, "worst-case"]
    low = 100 * data.evals["robust_acc"].min()
    high = 100 * data.evals[["clean_acc", "robust_acc"]].max().max()
    bottom, top = axes[0].get_ylim()
    assert bottom <= low and high <= top < 85 and axes[1].get_ylim() == (bottom, top)


def test_a_methods_seeds_are_their_mean_in_a_band_from_lowest_to_highest(suite):
    data = load_report_data(SUITE)
    (fig,) = [f for _, _, f in eps_curve_figures(data)]
    ax = fig.axes[1]  # adversarial training
    sweep = data.evals[(data.evals["group"] == "pgd-at") & (data.evals["attack"] == "PGD-20")]
    by_eps = sweep.groupby("eps_normalized")["robust_acc"]
    assert sweep["checkpoint"].nunique() == 3 and len(by_eps) >= 2
    (line,) = [x for x in ax.lines if len(x.get_xdata()) > 1 and np.allclose(x.get_ydata(), 100 * by_eps.mean())]
    assert list(line.get_xdata()) == pytest.approx(list(by_eps.mean().index))  # only the measured radii
    (band,) = [
        c
        for c in ax.collections
        if isinstance(c, PolyCollection) and to_hex(c.get_facecolor()[0]) == to_hex(line.get_color())
    ]
    ys = band.get_paths()[0].vertices[:, 1]
    assert min(ys) == pytest.approx(100 * by_eps.min().min()) and max(ys) == pytest.approx(100 * by_eps.max().max())
    # clean accuracy and a lone radius stay markers: no line reaches eps 0 or joins one radius
    for x in fig.axes[0].lines + ax.lines:
        if x.get_linestyle() != "None":
            assert len(x.get_xdata()) > 1 and 0.0 not in list(x.get_xdata())


def test_the_suite_per_class_figure_has_a_row_per_method(suite):
    data = load_report_data(SUITE)
    (pc,) = per_class_tables(data, suite.comparison)
    methods = _methods(data)
    assert sorted(pc.checkpoints) == sorted(
        f"{g} (mean, {len(c)} seeds)" if len(c) > 1 else c[0] for g, c in methods.items()
    )
    rows = [r for r in suite.comparison.tables[0].rows if r.group == "pgd-at"]
    clean = [data.per_class[r.cells["clean"].record] for r in rows]
    expect = [np.mean([pc_[k]["clean_acc"] for pc_ in clean]) for k in pc.classes]
    assert len(rows) == 3 and pc.values[
        pc.columns.index("clean"), pc.checkpoints.index("pgd-at (mean, 3 seeds)")
    ] == pytest.approx(expect)


def _per_class(n_ckpts: int, columns: list[str], n_classes: int = 10) -> PerClass:
    values = np.random.default_rng(0).random((len(columns), n_ckpts, n_classes))
    return PerClass(
        "cifar10",
        "L-inf eps 0.0313",
        [f"model-{i}" for i in range(n_ckpts)],
        columns,
        [f"class {j}" for j in range(n_classes)],
        values,
    )


@pytest.mark.parametrize("n_ckpts", [3, 7, 60])
def test_per_class_panels_stay_readable_in_a_colour_blind_safe_map(n_ckpts):
    columns = ["clean", "FGSM", "PGD-20", "AutoAttack", "worst-case"]
    fig = per_class_figure(_per_class(n_ckpts, columns))
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == len(columns) * -(-n_ckpts // MAX_ROWS)
    assert all(ax.images[0].get_cmap().name == CMAP == "cividis" for ax in panels)
    assert all(ax.images[0].get_array().shape[0] <= MAX_ROWS for ax in panels)
    width, height = fig.get_size_inches()
    assert width <= 12
    left = [ax for ax in panels if ax.get_subplotspec().colspan.start == 0]  # one per row of panels
    assert all(ax.get_yticklabels()[0].get_text().startswith("model-") for ax in left)
    assert height / sum(ax.images[0].get_array().shape[0] for ax in left) >= 0.25  # a quarter inch per model


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height in pixels, from the PNG's IHDR chunk."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_the_suite_figures_fit_the_page(suite):
    sizes = {f.name: _png_size(f.png) for f in suite.figures}
    corruption = {n for n in sizes if n.startswith("corruption-")}
    assert set(sizes) - corruption == {
        "eps-curves-cifar10-linf-px0.5.png",
        "per-class-cifar10.png",
        "training-curves.png",
    }
    assert all(sizes[n][0] <= 1320 for n in corruption)
    width, height = sizes["eps-curves-cifar10-linf-px0.5.png"]
    assert width <= 1320 and height <= 600  # no legend of one entry per line to make it tall
    width, height = sizes["per-class-cifar10.png"]
    models = len(suite.comparison.tables[0].rows)
    assert width <= 1320 and height <= 110 * max(models, 10)  # panels side by side, not a row per model and attack


# ----------------------------------------------------------------------------- in a browser
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chromium-headless-shell")
BROWSER = next((b for b in BROWSERS if shutil.which(b)), None)

# After layout: each table's right edge, the body's, the page's, and the order a click on
# the headline's 'clean' header gives (twice: up, then down), written into the page.
MEASURE = """<script>
(() => {
  const body = document.body.getBoundingClientRect();
  const style = getComputedStyle(document.body);
  const inner = body.right - parseFloat(style.paddingRight);
  const tables = [...document.querySelectorAll("table")].map((t) => [
    t.className, Math.ceil(t.getBoundingClientRect().right), t.rows[0].textContent.slice(0, 40)]);
  const head = document.querySelector("table.comparison").rows[0];
  const col = [...head.cells].findIndex((c) => c.textContent === "clean");
  const order = () => [...document.querySelector("table.comparison").rows].slice(1).map(
    (r) => parseFloat(r.cells[col].textContent));
  head.cells[col].click();
  const up = order();
  head.cells[col].click();
  document.body.setAttribute("data-layout", JSON.stringify({
    inner, page: document.documentElement.clientWidth, scroll: document.documentElement.scrollWidth, tables,
    up, down: order()}));
})();
</script>"""


def _layout(page: str, tmp_path: Path) -> dict:
    path = tmp_path / "report.html"
    path.write_text(page.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    cmd = [
        BROWSER,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={PAGE},1000",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--dump-dom",
        path.as_uri(),
    ]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'data-layout="([^"]*)"', dom)
    assert found, f"{BROWSER} gave no layout: {dom[:200]!r}"
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.skipif(
    BROWSER is None, reason=f"no Chromium on PATH ({', '.join(BROWSERS)}); Debian: apt-get install chromium"
)
@pytest.mark.parametrize("which", ["suite", "wide_report"])
def test_no_table_is_wider_than_a_1400_pixel_page(which, request, tmp_path):
    report = request.getfixturevalue(which)
    got = _layout(report.html, tmp_path)
    assert got["scroll"] <= got["page"] <= PAGE  # nothing scrolls sideways
    for cls, right, head in got["tables"]:
        assert right <= got["inner"] + 1, f"{cls or 'a'} table ({head}...) ends at {right} px, past the page"
    assert got["up"] == sorted(got["up"]) and got["down"] == sorted(got["up"], reverse=True)


def test_one_pixel_ball_is_one_table_whatever_each_models_normalization(tmp_path):
    """8/255 in pixels is 0.0627 normalized for a model with std 0.5 and a different radius
    per channel for one with CIFAR-10's std: the same threat, so one table, its title in
    pixels and each model's normalized radius said under it; a different pixel ball
    stays a table of its own."""
    store = ResultsStore(tmp_path / "results")
    std = [0.2471, 0.2435, 0.2616]
    for name, arch in (("fast-at", "fast"), ("resnet-at", "preact-resnet18")):
        for label, acc in (("PGD-20", 0.40), ("AutoAttack", 0.36)):
            rec = _record(name, label, acc, arch=arch, adv="pgd")
            a = rec["attack"]
            a.update(space="pixel", eps_pixel=EPS / 2, step_pixel=EPS / 8)
            if arch != "fast":
                rec["checkpoint"]["std"] = std
                a.update(eps_normalized=[EPS / 2 / s for s in std], step_normalized=[EPS / 8 / s for s in std])
            store.add(rec)
    other = _record("fast-at", "PGD-20", 0.2, arch="fast", adv="pgd")
    other["attack"].update(eps_normalized=2 * EPS, eps_pixel=EPS)
    store.add(other)
    rep = build_report(store.root)
    first, second = rep.comparison.tables
    assert first.title == "L-inf eps 0.01565 pixel (3.99/255), normalized per model"
    assert [r.checkpoint for r in first.rows] == ["fast-at", "resnet-at"]
    note = "eps normalized, by each model's own (x - mean) / std: 0.0313 for fast-at; [0.06333, 0.06427, 0.05982] for resnet-at."
    assert first.radius_note == note and note in rep.markdown and html.escape(note) in rep.html
    assert second.title == "L-inf eps 0.0626 normalized = 0.0313 pixel (7.98/255)" and second.radius_note is None
    assert [r.checkpoint for r in second.rows] == ["fast-at"]
