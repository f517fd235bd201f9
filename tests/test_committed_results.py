"""The README's CLI lines, run from the repository root, never change a committed file.

The committed studies keep their records and reports in results/seed_suite_cifar10/,
results/leaderboard_cifar10/ and results/fast_at_cifar10/, and the benchmarks theirs in results/bench/; a user's `robust eval` and `robust report`
write results/records/, results/REPORT.md, report.* and figures/, which .gitignore
leaves out. The test runs the README's train / eval / report lines (on a tiny budget)
in a copy of the repository layout and compares every committed file byte for byte."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from robustbench_local.cli import main
from robustbench_local.data.search import data_search_roots

REPO = Path(__file__).resolve().parent.parent
COMMITTED = ("results/seed_suite_cifar10", "results/leaderboard_cifar10", "results/fast_at_cifar10", "results/bench")


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _data_root() -> Path:
    for root in data_search_roots():
        if (root / "cifar10-jpeg.tar.gz").exists() or (root / "cifar-10-batches-py").is_dir():
            return root.resolve()
    pytest.skip("no CIFAR-10 copy found")


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """A copy of results/ and experiments/ as the working folder; the README's three
    lines run in it. Returns the copy and the snapshot of results/ taken before."""
    root = tmp_path_factory.mktemp("clone")
    shutil.copytree(REPO / "results", root / "results", ignore=shutil.ignore_patterns("tmp"))
    shutil.copytree(REPO / "experiments", root / "experiments")
    before = _snapshot(root / "results")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    mp.setenv("ROBUST_DATA", str(_data_root()))
    try:
        for args in (
            ["train", "--subset", "300", "--epochs", "1", "--device", "cpu", "--out", "runs/tiny"],
            ["eval", "--attack", "fgsm", "--n", "20", "--device", "cpu", "runs/tiny/best.pth"],
            ["report"],
        ):
            res = CliRunner().invoke(main, args)
            assert res.exit_code == 0, (args, res.output)
    finally:
        mp.undo()
    return root, before


def test_the_readme_lines_leave_every_committed_file_as_it_was(readme_run):
    root, before = readme_run
    after = _snapshot(root / "results")
    changed = [p for p, content in before.items() if after.get(p) != content]
    assert changed == []
    assert (root / "results/seed_suite_cifar10/REPORT.md").is_file() and (root / "results/bench").is_dir()
    # the user's output still lands where the README says
    new = sorted(set(after) - set(before))
    assert any(p.startswith("records/") for p in new) and "REPORT.md" in new
    assert not any(p.startswith(tuple(f[len("results/") :] + "/" for f in COMMITTED)) for p in new)


def test_the_users_output_is_ignored_and_the_committed_study_is_not(readme_run):
    root, before = readme_run
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    new = sorted(set(_snapshot(root / "results")) - set(before))
    paths = [f"results/{p}" for p in new]
    ignored = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "--no-index", "--stdin"],
        input="\n".join(paths),
        capture_output=True,
        text=True,
    ).stdout.split()
    assert sorted(ignored) == sorted(paths)
    kept = [
        f"{folder}/{name}"
        for folder in COMMITTED
        for name in ("records/x.json", "REPORT.md", "report.csv", "figures/a.png", "summary.json")
    ]
    ignored = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "--no-index", "--stdin"],
        input="\n".join(kept),
        capture_output=True,
        text=True,
    ).stdout.split()
    assert ignored == []
