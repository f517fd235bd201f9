"""Every code block of README.md runs, so the README cannot drift from the code.

The Python blocks run as written, against a tiny checkpoint placed where it looks
(runs/x/best.pth). Each CLI line runs through the click command the `robust` entry point
calls, in this process (a subprocess per line would spend most of its time importing
torch; tests/test_evaluate.py and test_train.py run the entry point itself), in a
scratch copy of the repository's layout, on a tiny budget: the options the README
gives are kept and budget options (fewer images, epochs, points) are appended. Lines
that would run a whole study (`robust run` of a committed experiment) are checked with
--dry-run; `make demo` runs the demo experiment with a smaller subset; `make test` is
this very suite, so the test only checks the Makefile target it names.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# appended to each command so that it runs in seconds on 2 CPU cores
BUDGET = {
    "train": ["--subset", "300", "--epochs", "1", "--val-fraction", "0.01"],
    "train-adv": ["--val-robust-n", "50"],
    "eval": ["--n", "10"],  # AutoAttack spends a full Square run on any point it cannot break
    "visualize": ["--n", "4"],
    "analyze": ["--n", "50"],
    "run": ["--dry-run"],
}


def code_blocks(text: str) -> list[tuple[str, str]]:
    return [(lang, body) for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)]


def cli_lines(body: str) -> list[str]:
    lines = []
    for raw in body.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def test_readme_has_the_blocks_this_test_knows():
    blocks = code_blocks(README.read_text())
    langs = [lang for lang, _ in blocks]
    assert "python" in langs
    commands = {shlex.split(line)[0] for lang, body in blocks if lang != "python" for line in cli_lines(body)}
    # a new kind of line needs a rule below; fail loudly instead of skipping it
    assert commands <= {"make", "robust", "torchrun"}, commands


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A scratch copy of the layout the README's lines expect (experiments/, results/, Makefile)."""
    work = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "experiments", work / "experiments")
    shutil.copytree(ROOT / "results", work / "results", ignore=shutil.ignore_patterns("tmp"))
    shutil.copy(ROOT / "Makefile", work / "Makefile")
    _foreign_models(work)
    return work


def _foreign_models(work: Path) -> None:
    """The files the README's "Evaluate your own model" lines name, made as a user would have them
    (random weights: the lines are about the routes, not the numbers)."""
    import warnings

    import torch
    import torchvision
    from torch import nn

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    net.conv1, net.maxpool = nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.Identity()
    torch.save(net.state_dict(), work / "resnet18_cifar10.pth")
    import timm  # the README's lines need the test extras: a missing one is a failure, not a skip

    from robustbench_local.foreign.robustbench_zoo import import_robustbench

    torch.save(timm.create_model("resnet18", num_classes=10).state_dict(), work / "timm_resnet18.pth")
    import_robustbench()
    from robustbench.model_zoo import model_dicts

    zoo = model_dicts[next(k for k in model_dicts if k.value == "cifar10")]
    wong = zoo[next(k for k in zoo if k.value == "Linf")]["Wong2020Fast"]["model"]()
    torch.save({"state_dict": {"module." + k: v for k, v in wong.state_dict().items()}}, work / "Wong2020Fast.pt")
    mine = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 10)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated but still what many export
        torch.jit.save(torch.jit.trace(mine, torch.rand(1, 3, 32, 32)), work / "model.ts")
    (work / "mymodel.py").write_text(
        "import torch.nn as nn\n\n\n"
        "def build(num_classes):\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, num_classes))\n"
    )


def _env(work: Path) -> dict:
    env = dict(os.environ)
    env.setdefault("ROBUST_DATA", str(ROOT.parent / "shared" / "data"))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "2")
    return env


def _run(args: list[str], work: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    p = subprocess.run(args, cwd=work, env=_env(work), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(args)} exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def _budget(argv: list[str]) -> list[str]:
    cmd = argv[0]
    extra = list(BUDGET.get(cmd, []))
    if cmd == "train" and "--adv" in argv:
        extra += BUDGET["train-adv"]
    if cmd == "run" and argv[1:2] == ["experiments/quick.toml"]:
        extra = []  # the demo experiment runs for real (its budget is shrunk in the copy)
    return argv + extra


def _shrink_demo(work: Path) -> None:
    """The demo experiment on a smaller budget: same cells and attacks, fewer images."""
    path = work / "experiments" / "quick.toml"
    text = path.read_text()
    for key, small in (("subset", "400"), ("epochs", "1"), ("n", "60"), ("val_n", "50")):
        text, count = re.subn(rf"(?m)^(\s*{key}\s*=\s*)\d+", rf"\g<1>{small}", text)
        if key != "val_n":
            assert count, f"experiments/quick.toml has no '{key} = N' line to shrink"
        text = re.sub(rf"\b{key} = \d+", f"{key} = {small}", text)
    path.write_text(text)


def _robust(args: list[str], work: Path, monkeypatch) -> None:
    """`robust ARGS` in ``work``, as the entry point runs it."""
    from click.testing import CliRunner

    from robustbench_local.cli import main

    monkeypatch.chdir(work)
    env = _env(work)
    res = CliRunner().invoke(main, args, env={k: env[k] for k in ("ROBUST_DATA", "OMP_NUM_THREADS")})
    assert res.exit_code == 0, f"robust {' '.join(args)} exited {res.exit_code}:\n{res.output[-3000:]}"


def test_every_cli_line_of_the_readme_runs(workdir, monkeypatch):
    blocks = [body for lang, body in code_blocks(README.read_text()) if lang != "python"]
    lines = [line for body in blocks for line in cli_lines(body)]
    assert lines
    makefile = (ROOT / "Makefile").read_text()
    trained: list[str] = []  # run folders made by the README's train lines, newest last
    for line in lines:
        argv = shlex.split(line)
        if argv[0] == "make":
            target = argv[1]
            recipe = re.search(rf"(?m)^{target}:.*\n((?:\t.*\n)+)", makefile)
            assert recipe, f"the Makefile has no target '{target}'"
            if target == "test":
                assert "pytest" in recipe.group(1)  # this suite: running it here would recurse
                continue
            assert target == "demo", f"no rule for `make {target}`"
            run_line = [ln for ln in recipe.group(1).split("\n") if "$(ROBUST)" in ln]
            assert len(run_line) == 1, recipe.group(1)
            argv = ["robust"] + shlex.split(run_line[0].strip())[1:]
            _shrink_demo(workdir)
            line = " ".join(argv)
        if argv[0] == "torchrun":
            continue  # multi-process launches are tested in tests/test_ddp.py
        assert argv[0] == "robust", line
        args = argv[1:]
        # placeholders for checkpoints the README leaves to the reader
        names = [t for t in trained]
        resolved = []
        for a in args:
            if "<name>" in a:
                assert names, f"'{line}' needs a run trained by an earlier README line"
                a = a.replace("runs/<name>", names[-1])
            elif re.fullmatch(r"(a|b|ckpt)\.pth", a):
                assert names, f"'{line}' needs a checkpoint trained by an earlier README line"
                a = f"{names[{'a': 0, 'b': -1}.get(a[0], -1)]}/best.pth"
            resolved.append(a)
        before = set((workdir / "runs").glob("*")) if (workdir / "runs").exists() else set()
        _robust(_budget(resolved), workdir, monkeypatch)
        if args[0] == "train":
            new = sorted(set((workdir / "runs").glob("*")) - before)
            assert len(new) == 1 and (new[0] / "best.pth").is_file(), (line, new)
            trained.append(str(new[0].relative_to(workdir)))
    # the README's train lines say they write runs/<name>/...; the demo writes runs/quick/
    assert trained
    assert (workdir / "runs" / "quick" / "results" / "REPORT.md").is_file()


def test_the_python_blocks_run_as_written(workdir, tmp_path):
    from support import trained_cnn

    from robustbench_local.checkpoint import save_checkpoint

    model, meta = trained_cnn()
    (tmp_path / "runs" / "x").mkdir(parents=True)
    save_checkpoint(tmp_path / "runs" / "x" / "best.pth", model, meta)
    code = [body for lang, body in code_blocks(README.read_text()) if lang == "python"]
    assert code
    for i, body in enumerate(code):
        script = tmp_path / f"readme_block{i}.py"
        script.write_text(body)
        p = _run([sys.executable, str(script)], tmp_path)
        assert "Traceback" not in p.stderr
