"""`robust run --executor gpus|slurm|debug`: a study's cells as submitit jobs.

Two worker processes on the CPU (submitit's LocalExecutor) give the records of the
sequential run; a worker killed in the middle of a training is resumed by the same
command; a failing cell is reported with its log while the others finish; --status
shows queued, running, failed and done; the Slurm submissions (sbatch scripts written
by submitit itself, handed to a stand-in sbatch) ask for what the [executor] table
says, for a one-GPU cell and for a DDP cell of 4 GPUs. Cells train the seed CNN
narrowed to maps 8,8,16 for one epoch on 360 images of a small ImageFolder tree."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from support import TINY_EXPERIMENT

from robustbench_local.checkpoint import read_checkpoint
from robustbench_local.cli import main
from robustbench_local.errors import RobustError
from robustbench_local.experiment import load_experiment, run_experiment

submitit = pytest.importorskip("submitit")

from robustbench_local.experiment.data_checks import check_with_data  # noqa: E402
from robustbench_local.experiment.execute import RunSummary  # noqa: E402
from robustbench_local.experiment.executors import Study, run_study  # noqa: E402
from robustbench_local.experiment.job_state import read_state  # noqa: E402
from robustbench_local.experiment.jobs import CellJob  # noqa: E402
from robustbench_local.experiment.plan import make_plan  # noqa: E402
from robustbench_local.experiment.pools import SlurmPool  # noqa: E402
from robustbench_local.experiment.status import read_status  # noqa: E402

FOUR_CELLS = """
[[cells]]
name = "a"

[[cells]]
name = "b"
lr = 0.02

[[cells]]
name = "c"
method = "mixup"

[[cells]]
name = "d"
seed = 1
"""
# run-to-run differences that are no result: when and how fast, and the checkpoint's hash (its metadata holds
# its own timings; the weights are compared separately)
VOLATILE = {"created", "environment", "minutes", "images_per_s"}  # and *seconds, *sha256


def write_study(folder: Path, tree: str, cells: str, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "exp.toml"
    path.write_text(TINY_EXPERIMENT.format(tree=tree) + extra + cells)
    return path


def quiet(_msg: str) -> None:
    pass


def _steady(x):
    if isinstance(x, dict):
        return {
            k: _steady(v)
            for k, v in x.items()
            if k not in VOLATILE and not k.endswith("seconds") and not k.endswith("sha256")
        }
    if isinstance(x, list):
        return [_steady(v) for v in x]
    return x


def records(root: Path) -> dict:
    out = {}
    for f in (root / "out/results/records").glob("*.json"):
        r = json.loads(f.read_text())
        a = r.get("attack") or {}
        out[(r["kind"], Path(r["checkpoint"]["path"]).parent.name, a.get("label"), a.get("eps"))] = _steady(r)
    return out


def log_lines(path: Path) -> list[str]:
    return [line.split("  ", 1)[1] for line in path.read_text().splitlines()]


# ----------------------------------------------------------------------------- two worker processes
@pytest.fixture
def one_thread(monkeypatch):
    """One thread in this process and in every worker: sums split over other thread counts round
    differently, and the records are compared to the last bit."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # workers inherit it, and the pool then leaves threads alone
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_two_workers_give_the_records_of_the_sequential_run(tree, tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(write_study(tmp_path / "seq", tree, FOUR_CELLS).parent)
    run_experiment("exp.toml", say=quiet)
    monkeypatch.chdir(write_study(tmp_path / "par", tree, FOUR_CELLS).parent)
    summary = run_study("exp.toml", executor="gpus", workers=2, say=quiet)

    assert sorted(summary.trained) == ["a", "b", "c", "d"] and not summary.failed
    assert summary.evaluated == {"a": 4, "b": 4, "c": 4, "d": 4} and summary.report_status == "written"
    seq, par = records(tmp_path / "seq"), records(tmp_path / "par")
    assert len(par) == 4 + 16 and par == seq  # every number, spec, history and check, timings aside
    for cell in "abcd":
        w_seq = read_checkpoint(tmp_path / f"seq/out/runs/{cell}/best.pth")["state_dict"]
        w_par = read_checkpoint(tmp_path / f"par/out/runs/{cell}/best.pth")["state_dict"]
        assert all(torch.equal(w_seq[k], w_par[k]) for k in w_seq)
        assert read_state(Path("out/runs"), cell, "eval")["state"] == "done"
    lines = log_lines(Path("out/tiny.log"))
    assert "2 workers on the CPU" in lines[0]
    for cell in "abcd":  # each evaluation is its own job, submitted once its own training is done
        done = next(i for i, t in enumerate(lines) if t.startswith(f"{cell}: train job") and t.endswith("done"))
        sub = next(i for i, t in enumerate(lines) if t.startswith(f"{cell}: eval job") and "submitted" in t)
        assert done < sub
    assert sum(t.startswith("wrote the report") for t in lines) == 1 and lines[-2].startswith("wrote the report")
    # a second run finds nothing to do and submits nothing
    again = run_study("exp.toml", executor="gpus", workers=2, say=quiet)
    assert again.trained == [] and again.evaluated == {} and again.report_status == "up to date"
    res = CliRunner().invoke(main, ["run", "exp.toml", "--status"])
    assert res.exit_code == 0, res.output
    assert "tiny: 4 cells, 4 done" in res.output


def test_debug_executor_runs_the_jobs_in_this_process(tree, tmp_path, monkeypatch):
    monkeypatch.chdir(write_study(tmp_path, tree, '[[cells]]\nname = "a"\n').parent)
    res = CliRunner().invoke(main, ["run", "exp.toml", "--executor", "debug"])
    assert res.exit_code == 0, res.output
    assert "executor debug: submitit's debug executor (in this process)" in res.output
    assert "a: train job DEBUG_" in res.output and "a: eval job DEBUG_" in res.output
    assert "trained 1 cell, wrote 4 evaluation records; report written" in res.output
    for stage in ("train", "eval"):
        state = read_state(Path("out/runs"), "a", stage)
        assert state["state"] == "done" and state["pid"] == os.getpid()
    assert "a: wrote 4 records" in Path("out/runs/.jobs/a.log").read_text()


def _wait_for(cond, what: str, timeout: float = 120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _running(runs: Path, cell: str):
    st = read_state(runs, cell, "train") or {}
    return st if st.get("state") == "running" else None


def test_killed_worker_resumes_failed_cell_reported_and_status_follows(tree, tmp_path, monkeypatch):
    cells = (
        '[[cells]]\nname = "cut"\nepochs = 3\n\n[[cells]]\nname = "ok"\n\n[[cells]]\nname = "bad"\ninit = "bogus.pth"\n'
    )
    monkeypatch.chdir(write_study(tmp_path, tree, cells).parent)
    Path("bogus.pth").write_bytes(b"not a checkpoint")  # exists (the checks pass) but fails when training starts
    runs = Path("out/runs")
    outcome: dict = {}

    def orchestrate():
        try:
            run_study("exp.toml", executor="gpus", workers=2, say=quiet)
        except RobustError as e:
            outcome["error"] = str(e)

    thread = threading.Thread(target=orchestrate)
    thread.start()
    try:
        cut, ok = (_wait_for(lambda c=c: _running(runs, c), f"{c} to start") for c in ("cut", "ok"))
        for st in (cut, ok):
            os.kill(st["pid"], signal.SIGSTOP)  # both workers held: 'bad' waits for a free one
        _, rows = read_status("exp.toml")
        state = {r.cell: r for r in rows}
        assert (state["cut"].state, state["cut"].stage, state["cut"].job_id) == ("running", "train", cut["job_id"])
        assert state["ok"].state == "running" and state["bad"].state == "queued"
        os.kill(ok["pid"], signal.SIGCONT)
        # let 'cut' run in short slices until its first epoch is saved, then kill it there
        last = runs / "cut/last.pth"
        while not last.exists():
            os.kill(cut["pid"], signal.SIGCONT)
            time.sleep(0.05)
            os.kill(cut["pid"], signal.SIGSTOP)
        epoch = read_checkpoint(last)["train_state"]["epoch"]
        assert 1 <= epoch < 3
        os.kill(cut["pid"], signal.SIGKILL)
    finally:
        thread.join(timeout=300)
    assert not thread.is_alive()

    err = outcome["error"]
    assert err.startswith("2 of 3 cells failed (") and "cut" in err and "bad" in err
    assert "the same command retries them" in err
    bad, killed = read_state(runs, "bad", "train"), read_state(runs, "cut", "train")
    assert bad["state"] == "failed" and "bogus.pth" in bad["error"] and bad["log"] == "out/runs/.jobs/bad.log"
    assert "bogus.pth" in Path(bad["log"]).read_text()
    assert killed["state"] == "failed" and "ended without finishing" in killed["error"]
    assert Path(killed["log"]).is_file()  # the worker's own output
    lines = log_lines(Path("out/tiny.log"))
    assert any(t.startswith("bad: FAILED (train job") and "log out/runs/.jobs/bad.log" in t for t in lines)
    assert any(t.startswith("cut: FAILED (train job") for t in lines)
    assert sum(t.startswith("wrote the report") for t in lines) == 1  # once, after the last job; 'ok' is in it
    _, rows = read_status("exp.toml")
    assert {r.cell: r.state for r in rows} == {"cut": "failed", "ok": "done", "bad": "failed"}

    # the same command (here for the killed cell) resumes its training from the epoch it had saved
    summary = run_study("exp.toml", executor="gpus", workers=2, only=["cut"], say=quiet)
    assert summary.trained == ["cut"] and summary.evaluated == {"cut": 4}
    assert f"resuming cnn / standard, 3 epochs (after epoch {epoch})" in Path("out/runs/.jobs/cut.log").read_text()
    ts = read_checkpoint(last)["train_state"]
    assert ts["epoch"] == 3 and [r["epoch"] for r in ts["history"]] == [1, 2, 3]
    _, rows = read_status("exp.toml")
    assert {r.cell: r.state for r in rows} == {"cut": "done", "ok": "done", "bad": "failed"}
    res = CliRunner().invoke(main, ["run", "exp.toml", "--status"])
    assert res.exit_code == 0 and "2 done, 1 failed" in res.output


# ----------------------------------------------------------------------------- Slurm, without a cluster
SLURM = """
[executor]
partition = "gpu"
account = "lab"
time = "02:00:00"
cpus_per_task = 4
mem = "16G"
setup = ["source .venv/bin/activate"]
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """srun and sbatch stand-ins: sbatch keeps each script it is given and answers with a job id."""
    bin_dir, kept = tmp_path / "bin", tmp_path / "sbatch"
    bin_dir.mkdir()
    kept.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(
        f'#!/bin/sh\nn=$(ls {kept} | wc -l)\ncp "$1" {kept}/$n.sh\necho "Submitted batch job $((4242 + n))"\n'
    )
    for f in bin_dir.iterdir():
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return kept


def sbatch_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_slurm_submits_training_then_evaluation_after_it(tree, tmp_path, monkeypatch, fake_slurm):
    monkeypatch.chdir(write_study(tmp_path / "study", tree, '[[cells]]\nname = "one"\n', SLURM).parent)
    exp = load_experiment("exp.toml")
    assert exp.cluster.minutes == 120 and exp.cluster.gpus_per_job == 1
    plan = make_plan(exp, check_with_data(exp), exp.cells)
    pool = SlurmPool(Path("out/runs/.jobs/submitit").resolve(), exp.cluster, exp.name)
    said = []
    study = Study(
        exp,
        pool,
        lambda m, show=True: said.append(m),
        RunSummary(exp, plan),
        lambda cell, stage: CellJob("exp.toml", cell, stage, os.getcwd()),
    )
    study.plan_tasks(plan)
    for _ in range(2):  # the training first; then its evaluation, which may be queued before it ran
        for t in study._ready():
            study._submit(t)
    assert said == ["one: train job 4242 submitted", "one: eval job 4243 submitted (after job 4242)"]
    train, evals = sbatch_lines(fake_slurm / "0.sh"), sbatch_lines(fake_slurm / "1.sh")
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
        "#SBATCH --time=120",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --nodes=1",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=16G",
        "source .venv/bin/activate",
    ):
        assert line in train and line in evals
    assert "#SBATCH --job-name=tiny-one-train" in train and "#SBATCH --job-name=tiny-one-eval" in evals
    assert not any("dependency" in t for t in train)
    assert "#SBATCH --dependency=afterok:4242" in evals and "#SBATCH --kill-on-invalid-dep=yes" in evals
    assert any(t.startswith("srun --unbuffered") and "submitit.core._submit" in t for t in train)
    # what each job will run: the cell's stage, read back from the pickle submitit wrote
    job = submitit.SlurmJob(pool.folder, "4243")
    delayed = submitit.core.utils.DelayedSubmission.load(job.paths.submitted_pickle)
    assert (delayed.function.cell, delayed.function.stage, delayed.function.file) == ("one", "eval", "exp.toml")
    assert read_state(Path("out/runs"), "one", "eval")["state"] == "queued"
    _, rows = read_status("exp.toml")
    assert (rows[0].state, rows[0].stage, rows[0].job_id) == ("queued", "train", "4242")


def test_slurm_torchrun_cell_is_one_task_per_gpu(tree, tmp_path, monkeypatch, fake_slurm):
    monkeypatch.chdir(write_study(tmp_path / "study", tree, '[[cells]]\nname = "ddp"\n', SLURM).parent)
    exp = load_experiment("exp.toml")
    settings = exp.cluster.merged(gpus_per_job=4, time="1-00:00:00", partition="big")
    params = settings.slurm_parameters("tiny-ddp-train")
    assert params["ntasks_per_node"] == 4 and params["gpus_per_node"] == 4 and params["time"] == 24 * 60
    pool = SlurmPool(Path("out/runs/.jobs/submitit").resolve(), settings, exp.name)
    job = pool.submit(CellJob("exp.toml", "ddp", "train", os.getcwd()), None)
    assert job.job_id == "4242" and job.num_tasks == 4  # submitit expects one result per task
    script = sbatch_lines(fake_slurm / "0.sh")
    for line in (
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --partition=big",
        "#SBATCH --time=1440",
    ):
        assert line in script


@pytest.mark.parametrize(
    "table, message",
    [
        ('[executor]\ntime = "soon"\n', "key executor.time: time must be minutes"),
        ('[executor]\ngpus_per_job = -1\n', "key executor.gpus_per_job: must be >= 0, got -1"),
        ('[executor]\nmem = "lots"\n', "key executor.mem: mem must be a size such as"),
        ('[executor]\nqueue = "x"\n', "key executor.queue: unknown key 'queue'; valid keys: partition"),
    ],
)
def test_bad_executor_tables_are_one_line_errors(tree, tmp_path, table, message):
    path = write_study(tmp_path, tree, '[[cells]]\nname = "a"\n', table)
    with pytest.raises(RobustError) as e:
        load_experiment(path)
    line = TINY_EXPERIMENT.count("\n") + 2  # the table's key, after its header
    assert str(e.value).startswith(f"{path}, line {line}, {message}") and "\n" not in str(e.value)


def test_executor_flags_are_checked(tree, tmp_path, monkeypatch):
    monkeypatch.chdir(write_study(tmp_path, tree, '[[cells]]\nname = "a"\n').parent)
    for args, message in (
        (["--workers", "2"], "--workers is for --executor gpus; drop it with --executor local"),
        (["--executor", "gpus", "--partition", "x"], "--partition is for --executor slurm"),
        (["--executor", "slurm", "--workers", "2"], "--workers is for --executor gpus"),
        (["--executor", "gpus", "--workers", "0"], "--workers must be >= 1, got 0"),
        (["--executor", "slurm", "--time", "0"], "--time must be at least 1 minute"),
    ):
        res = CliRunner().invoke(main, ["run", "exp.toml", *args])
        assert res.exit_code == 2 and message in res.output, (args, res.output)
    assert not Path("out").exists()


def test_one_job_per_cell(tree, tmp_path, monkeypatch):
    from robustbench_local.experiment.job_state import CellLock

    monkeypatch.chdir(write_study(tmp_path, tree, '[[cells]]\nname = "a"\n').parent)
    with CellLock(Path("out/runs"), "a"):  # as a job working on the cell would hold it
        with pytest.raises(RobustError) as e:
            run_study("exp.toml", executor="gpus", workers=1, say=quiet)
    assert f"another job (pid {os.getpid()}) is working on cell a (out/runs/a)" in str(e.value)
    assert not Path("out/runs/a").exists()  # the refused job wrote nothing there
    state = read_state(Path("out/runs"), "a", "train")
    assert state["state"] == "failed" and "another job" in state["error"]


def test_without_submitit_it_is_one_line(tree, tmp_path, monkeypatch):
    monkeypatch.chdir(write_study(tmp_path, tree, '[[cells]]\nname = "a"\n').parent)
    monkeypatch.setitem(sys.modules, "submitit", None)  # what `import submitit` meets when it is not installed
    res = CliRunner().invoke(main, ["run", "exp.toml", "--executor", "gpus", "--workers", "2"])
    assert res.exit_code == 2
    assert res.output.strip() == (
        "error: --executor gpus needs the submitit package, which is not installed: "
        "pip install submitit (or the project's cluster extra)"
    )
    assert not Path("out").exists()
