"""Where an experiment file writes, which log it may append to, an ImageFolder class
with no images, and the words of three errors (a text file given as a checkpoint or as
--weights, an image that cannot be decoded), all through the CLI.

Experiment files here use a tiny ImageFolder tree of solid-colour PNGs, so
`robust run FILE --dry-run` loads its data in a blink."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from robustbench_local.cli import main

REPO = Path(__file__).resolve().parent.parent


def write_tree(root: Path, classes=("cat", "dog", "frog"), n_train=4, n_test=2, split=True) -> Path:
    for ci, cls in enumerate(classes):
        for part, n in (("train", n_train), ("test", n_test)) if split else (("", n_train),):
            folder = root / part / cls if part else root / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (8, 8), (ci * 80, i * 30, 100)).save(folder / f"{i}.png")
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """Decoded trees go to a cache of the test's own."""
    monkeypatch.setenv("ROBUST_CACHE", str(tmp_path / "cache"))


def run(*args: str):
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output.strip()


def one_line_error(code: int, out: str) -> str:
    """The error line (after any progress lines, e.g. "decoding ... into the cache")."""
    assert code == 2, out
    assert "Traceback" not in out and out.count("error: ") == 1, out
    line = out.splitlines()[-1]
    assert line.startswith("error: "), out
    return line


def train_on(tmp_path: Path, dataset: str) -> str:
    return one_line_error(
        *run(
            "train",
            "--dataset",
            dataset,
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "run"),
            "--results",
            str(tmp_path / "results"),
        )
    )


# ============================================================================ experiment file paths
EXP = """\
name = "t"
{top}
[data]
dataset = "imagefolder:{tree}"
val_fraction = 0.25

[train]
epochs = 1
device = "cpu"

[eval]
n = 2

[[cells]]
name = "std"

[[attacks]]
name = "fgsm"
{report}"""


@pytest.fixture
def study(tmp_path, monkeypatch, cache):
    """Writes tmp_path/study/exp.toml with the given top-level keys; the working
    folder is tmp_path, so study/ is not the working folder."""
    tree = write_tree(tmp_path / "tree")
    (tmp_path / "study").mkdir()
    monkeypatch.chdir(tmp_path)

    def write(top: str = "", report: str = "") -> Path:
        path = tmp_path / "study" / "exp.toml"
        path.write_text(EXP.format(top=top, tree=tree, report=report))
        return path

    return write


def test_relative_paths_resolve_against_the_experiment_files_folder(study, tmp_path, monkeypatch):
    path = study('runs = "out/runs"\nresults = "out/results"\nlog = "out/t.log"\n', '[report]\nout = "out/report"\n')
    code, out = run("run", "study/exp.toml", "--dry-run")
    assert code == 0, out
    assert (
        "Checkpoints go to study/out/runs, records to study/out/results/records, the log to study/out/t.log, "
        "the report to study/out/report"
    ) in " ".join(out.split())
    # the working folder does not matter: from elsewhere the same places, shown in full
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, out = run("run", str(path), "--dry-run")
    assert code == 0, out
    assert f"Checkpoints go to {tmp_path / 'study/out/runs'}," in " ".join(out.split())
    # the defaults too: runs/<name>, results/, results/<name>.log beside the file
    study()
    monkeypatch.chdir(tmp_path)
    code, out = run("run", "study/exp.toml", "--dry-run")
    assert code == 0, out
    assert (
        "Checkpoints go to study/runs/t, records to study/results/records, the log to study/results/t.log, "
        "the report to study/results"
    ) in " ".join(out.split())
    assert not (tmp_path / "study/runs").exists() and not (tmp_path / "study/results").exists()


@pytest.mark.parametrize("key, table", [("runs", ""), ("results", ""), ("log", ""), ("out", "report")])
@pytest.mark.parametrize("value", ["../outside", "{abs}"])
def test_paths_outside_the_files_folder_need_outside_paths(study, tmp_path, key, table, value):
    value = value.format(abs=tmp_path / "abs")
    line = f'{key} = "{value}"\n'
    path = study(*(("", f"[report]\n{line}") if table else (line, "")))
    code, out = run("run", str(path), "--dry-run")
    out = one_line_error(code, out)
    no = path.read_text().splitlines().index(line.strip()) + 1
    assert out.startswith(f"error: {path}, line {no}, key {table + '.' if table else ''}{key}: ")
    assert "outside the folder of the experiment file" in out and "outside_paths = true" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study", "tree"]  # nothing made, no data read

    # with the opt-in the same file is accepted
    path.write_text("outside_paths = true  # writes beside the study folder\n" + path.read_text())
    code, out = run("run", str(path), "--dry-run")
    assert code == 0, out
    shown = "abs" if value.startswith("/") else "outside"  # shown relative to the working folder, tmp_path
    assert f" {shown}" in " ".join(out.split()).split("nothing was done.")[1]


def test_outside_paths_must_be_true_or_false(study):
    path = study('outside_paths = "yes"\n')
    out = one_line_error(*run("run", str(path), "--dry-run"))
    assert "line 2, key outside_paths: must be true or false" in out


@pytest.mark.parametrize(
    "name, runs, results, log",
    [
        ("quick.toml", "runs/quick", "runs/quick/results", "runs/quick/run.log"),
        (
            "seed_suite_cifar10.toml",
            "runs/seed_suite",
            "results/seed_suite_cifar10",
            "results/seed_suite_cifar10/seed_suite.log",
        ),
    ],
)
def test_shipped_experiments_write_where_the_readme_says(monkeypatch, name, runs, results, log):
    """From the repository root (as `make demo` runs it), quick.toml still writes to
    runs/quick/; the seed study reads and writes its own committed folder."""
    from robustbench_local.experiment import load_experiment

    monkeypatch.chdir(REPO)
    exp = load_experiment(f"experiments/{name}")
    assert (exp.runs, exp.results, exp.log, exp.report["out"]) == (Path(runs), Path(results), Path(log), Path(results))


# ============================================================================ the log
def test_a_log_naming_a_folder_is_one_line_and_nothing_is_made(study, tmp_path):
    (tmp_path / "study" / "logs").mkdir()
    path = study('runs = "out/runs"\nlog = "logs"\n')
    out = one_line_error(*run("run", str(path)))
    assert out.startswith(f"error: {path}, line 3, key log: ")
    assert f"{Path('study/logs')} is a folder" in out
    assert not (tmp_path / "study" / "out").exists()


def test_a_log_that_robust_run_did_not_write_is_refused(study, tmp_path):
    notes = tmp_path / "study" / "notes.txt"
    notes.write_text("my own notes, not a run log\n")
    path = study('log = "notes.txt"\n')
    out = one_line_error(*run("run", str(path), "--dry-run"))
    assert out.startswith(f"error: {path}, line 2, key log: ") and "notes.txt" in out
    assert "was not written by `robust run`" in out
    assert notes.read_text() == "my own notes, not a run log\n"


def test_a_log_that_robust_run_wrote_is_continued(study, tmp_path):
    # the first line of the committed seed study's log, as `robust run` writes it
    committed = REPO / "results/seed_suite_cifar10/seed_suite.log"
    first = committed.read_text().splitlines()[0]
    (tmp_path / "study" / "old.log").write_text(first + "\n")
    path = study('log = "old.log"\n')
    code, out = run("run", str(path), "--dry-run")
    assert code == 0, out
    (tmp_path / "study" / "old.log").write_text("")  # an empty file is nobody's work
    code, out = run("run", str(path), "--dry-run")
    assert code == 0, out


# ============================================================================ data
@pytest.mark.parametrize("layout", ["train/test", "single folder", "tar"])
def test_an_image_folder_class_with_no_images_is_an_error(tmp_path, cache, layout):
    root = write_tree(tmp_path / "animals", split=layout != "single folder")
    empty = Path("train/frog") if layout != "single folder" else Path("frog")
    for f in (root / empty).iterdir():
        f.unlink()
    (root / empty / "README.txt").write_text("no images here")
    source = root
    if layout == "tar":
        source = tmp_path / "animals.tar.gz"
        with tarfile.open(source, "w:gz") as tf:
            tf.add(root, arcname="animals")
    out = train_on(tmp_path, f"imagefolder:{source}")
    where = str(root / empty) if layout != "tar" else f"animals/{empty.as_posix()} in {source}"
    assert f"class folder {where} holds no images" in out


def test_an_image_that_cannot_be_decoded_is_named_in_our_words(tmp_path, cache):
    root = write_tree(tmp_path / "animals")
    (root / "train" / "dog" / "bad.png").write_bytes(b"this is not a png at all")
    out = train_on(tmp_path, f"imagefolder:{root}")
    assert f"cannot decode {root / 'train/dog/bad.png'}:" in out
    assert "BytesIO" not in out and " at 0x" not in out


# ============================================================================ checkpoints and weights
TEXTS = {
    "notes.txt": "model weights go here\nsecond line\n",  # torch: advice to use weights_only=False
    "readme.md": "checkpoint notes\n",  # torch: a pickle GLOBAL opcode
    "short.txt": "hello",
}  # torch: KeyError '101'


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_a_text_file_given_as_a_checkpoint(tmp_path, name):
    f = tmp_path / name
    f.write_text(TEXTS[name])
    out = one_line_error(*run("eval", "--attack", "fgsm", "--n", "20", "--device", "cpu", str(f)))
    assert f"{f} is not a checkpoint: it holds text" in out
    assert "weights_only" not in out and "Re-running" not in out


def test_an_empty_or_binary_non_checkpoint(tmp_path):
    for name, blob in (("empty.pth", b""), ("noise.pth", bytes(range(256)) * 4)):
        f = tmp_path / name
        f.write_bytes(blob)
        out = one_line_error(*run("eval", "--attack", "fgsm", "--n", "20", "--device", "cpu", str(f)))
        assert f"{f} is corrupt or truncated" in out and "weights_only" not in out


def _train_tv(tmp_path, weights: Path) -> str:
    return one_line_error(
        *run(
            "train",
            "--model",
            "tv-resnet18",
            "--weights",
            str(weights),
            "--subset",
            "100",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "run"),
            "--results",
            str(tmp_path / "results"),
        )
    )


def test_weights_that_are_text_or_code_are_one_line_in_our_words(tmp_path):
    text = tmp_path / "weights.txt"
    text.write_text(TEXTS["notes.txt"])
    out = _train_tv(tmp_path, text)
    assert f"weights file {text} is not a state_dict file: it holds text" in out
    assert "weights_only=False" not in out and "Re-running" not in out and "\x1b" not in out

    code = tmp_path / "code.pth"
    torch.save({"payload": os.environ.__class__}, code)  # unpickling it would need a class
    out = _train_tv(tmp_path, code)
    assert f"refused weights file {code}: it holds Python objects" in out
    assert "weights_only=False" not in out and "Re-running" not in out and "\x1b" not in out
    assert not (tmp_path / "run").exists()
