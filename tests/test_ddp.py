"""DDP on the CPU (Gloo, 2 processes started by torchrun) against one process, on
real CIFAR-10 images.

One torchrun launch runs this file as its worker script (see ``_worker``): it drives
``robust train`` in-process (the code torchrun -m robustbench_local runs) for a
standard run, a run stopped after one epoch and resumed, a PGD-AT run and a run with
batch norm, then ``evaluate`` on a checkpoint. The tests compare those outputs with
the same commands run here in one process.

Equivalence of weights needs a model whose gradient over the global batch does not
depend on how the batch is split: with batch norm each rank normalises with its own
half-batch statistics (standard DDP), so the comparisons use ``--no-bn`` (and no
dropout, no augmentation: those draw per-rank random numbers). PGD-AT is compared
without a random start for the same reason; with one, only the starting noise
differs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

COMMON = [
    "--subset",
    "256",
    "--val-fraction",
    "0.004",
    "--maps",
    "8,16",
    "--no-bn",
    "--dropout",
    "0",
    "--augment",
    "none",
    "--batch-size",
    "64",
    "--device",
    "cpu",
]
STANDARD = COMMON + ["--schedule", "none", "--epochs", "2"]  # resumable from epoch 1: lr independent of --epochs
PGD = COMMON + [
    "--epochs",
    "1",
    "--adv",
    "pgd",
    "--k",
    "2",
    "--no-random-start",
    "--val-robust-n",
    "64",
    "--val-robust-k",
    "2",
]
WITH_BN = [
    "--subset",
    "1024",
    "--val-fraction",
    "0.004",
    "--maps",
    "8,16",
    "--batch-size",
    "32",
    "--epochs",
    "2",
    "--augment",
    "none",
    "--device",
    "cpu",
]
EVAL_N = 200


def _train(out: Path, name: str, args: list[str], *extra: str) -> None:
    from robustbench_local.cli import main

    main(["train", *args, "--out", str(out / name), "--results", str(out / "results"), *extra], standalone_mode=False)


def _eval_specs():
    from robustbench_local.attacks import AttackSpec
    from robustbench_local.threat import ThreatModel

    # a radius at which the small model of the 'bn' run is broken on some points, not all
    t = ThreatModel(norm="linf", eps=0.0313, step=0.0313 / 2, space="normalized")
    return [
        AttackSpec(name="fgsm", threat=t, fgsm_random_start=True),
        AttackSpec(name="pgd", threat=t, k=3, restarts=2),
    ]


def _evaluate(ckpt: Path, adv_path: Path) -> list[dict]:
    from robustbench_local.evaluation import evaluate

    return evaluate(str(ckpt), _eval_specs(), n=EVAL_N, batch_size=32, device="cpu", save_adv=adv_path)


def _worker(out: Path) -> None:
    """Runs in every process of the torchrun launch."""
    from robustbench_local import distributed

    _train(out, "standard", STANDARD)
    _train(out, "resumed", STANDARD[:-1] + ["1"])
    _train(out, "resumed", STANDARD, "--resume")
    _train(out, "pgd", PGD)
    _train(out, "bn", WITH_BN)
    records = _evaluate(out / "bn" / "best.pth", out / "adv-ddp.pt")
    with open(out / f"eval-rank{distributed.rank()}.json", "w") as f:
        json.dump({"rank": distributed.rank(), "world_size": distributed.world_size(), "records": records}, f)
    # the same network as a plain state_dict: a foreign model is sharded the same way
    from robustbench_local.checkpoint import load_checkpoint
    from robustbench_local.evaluation import evaluate
    from robustbench_local.foreign import ModelRequest, load_foreign

    model, meta = load_checkpoint(out / "bn" / "best.pth")
    weights = out / f"bn-weights-rank{distributed.rank()}.pth"
    torch.save(model.state_dict(), weights)
    request = ModelRequest(arch="cnn", weights=str(weights), arch_options=meta["arch_kwargs"], dataset="cifar10")
    foreign = evaluate(load_foreign(request), _eval_specs(), n=EVAL_N, batch_size=32, device="cpu")
    with open(out / f"foreign-rank{distributed.rank()}.json", "w") as f:
        json.dump(foreign, f)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ddp(tmp_path_factory, cifar10):
    """The torchrun launch: 2 processes on the CPU; returns (folder, combined stdout).
    CIFAR-10 is decoded into the session's cache first, so the two ranks only read it."""
    out = tmp_path_factory.mktemp("ddp")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "tests"))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(Path(__file__).resolve()),
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


@pytest.fixture(scope="module")
def single(ddp, tmp_path_factory):
    """The same commands in this one process, on one thread like each torchrun worker
    (so the evaluation's kernels are the same ones)."""
    from click.testing import CliRunner

    from robustbench_local.cli import main

    out = tmp_path_factory.mktemp("single")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, args in (("standard", STANDARD), ("pgd", PGD)):
            res = CliRunner().invoke(
                main, ["train", *args, "--out", str(out / name), "--results", str(out / "results")]
            )
            assert res.exit_code == 0, res.output
        records = _evaluate(ddp[0] / "bn" / "best.pth", out / "adv-single.pt")
    finally:
        torch.set_num_threads(threads)
    return out, records


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def _initial_weights():
    """The weights every run above starts from (prepare_run seeds with --seed 0, then builds)."""
    from robustbench_local.models import build_model
    from robustbench_local.runtime import seed_everything

    seed_everything(0)
    model = build_model(
        "cnn",
        num_classes=10,
        input_shape=(3, 32, 32),
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        maps="8,16",
        bn=False,
        dropout=0.0,
    )
    return {k: v.detach() for k, v in model.state_dict().items()}


def _history(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("run", ["standard", "pgd"])
def test_two_processes_train_the_same_weights_as_one(ddp, single, run):
    two, one = _weights(ddp[0] / run / "last.pth"), _weights(single[0] / run / "last.pth")
    moved = _max_diff(one, _initial_weights())
    diff = _max_diff(two, one)
    # the only difference is float summation order (two half-batch means averaged by the
    # all-reduce vs one mean): a few ulps of the updates, observed ~5e-8
    print(f"\nDDP {run}: 2 processes vs 1, max weight difference {diff:.3g} (weights moved {moved:.3g})")
    assert moved > 1e-3
    assert diff < 1e-5, f"max weight difference {diff:.3g} (weights moved {moved:.3g})"
    h2, h1 = _history(ddp[0] / run / "history.csv"), _history(single[0] / run / "history.csv")
    assert len(h2) == len(h1)
    for r2, r1 in zip(h2, h1):
        assert r2["val_acc"] == r1["val_acc"]
        for col in ("train_loss", "val_loss", "train_acc"):
            assert float(r2[col]) == pytest.approx(float(r1[col]), abs=1e-5)
        if run == "pgd":
            assert r2["val_robust_acc"] == r1["val_robust_acc"] and r2["val_robust_n"] == "64"


def test_resume_under_ddp_ends_bit_identical(ddp):
    a, b = _weights(ddp[0] / "standard" / "last.pth"), _weights(ddp[0] / "resumed" / "last.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)
    drop = {"seconds", "images_per_s", "attack_seconds"}
    h_a, h_b = _history(ddp[0] / "standard" / "history.csv"), _history(ddp[0] / "resumed" / "history.csv")
    assert [{k: v for k, v in r.items() if k not in drop} for r in h_a] == [
        {k: v for k, v in r.items() if k not in drop} for r in h_b
    ]


def test_only_rank_zero_prints_and_writes(ddp):
    out, stdout = ddp
    # one line per epoch and one summary per run, not one per process
    assert stdout.count("epoch 1/1 ") == 2  # resumed (first part), pgd
    assert stdout.count("epoch 1/2 ") == 2  # standard, bn
    assert stdout.count("epoch 2/2 ") == 3  # standard, resumed, bn
    assert stdout.count("best.pth:") == 5  # standard, resumed x2, pgd, bn
    records = sorted((out / "results" / "records").glob("*.json"))
    assert len(records) == 5
    rec = json.loads(records[0].read_text())
    assert rec["world_size"] == 2
    config = json.loads((out / "standard" / "config.json").read_text())
    assert config["resolved"]["world_size"] == 2 and config["resolved"]["batch_per_rank"] == 32
    assert config["spec"]["batch_size"] == 64  # --batch-size stays the global batch
    assert not any(p.name.endswith(".tmp") for p in out.rglob("*"))


def test_batch_norm_run_learns_under_ddp(ddp):
    rows = _history(ddp[0] / "bn" / "history.csv")
    # 2 x 32 steps of 2 x 16 images (batch norm per rank): learning, well above chance
    # (0.10; 0.18 is 3.8 standard errors above it with n = 200; one process reaches 0.27)
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert max(float(r["val_acc"]) for r in rows) > 0.18


# ----------------------------------------------------------------------------- evaluation
def _strip(record: dict) -> dict:
    r = json.loads(json.dumps(record))
    r.pop("environment")
    for key in ("seconds", "images_per_s", "clean_seconds"):
        r["metrics"].pop(key, None)
    return r


def _numbers(r: dict) -> dict:
    """What a record measured, apart from the model's description and timings."""
    r = _strip(r)
    return {k: r[k] for k in ("attack", "metrics", "data", "checks")}


def test_ddp_evaluation_equals_one_process(ddp, single):
    out, _ = ddp
    ranks = [json.loads((out / f"eval-rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    one = single[1]
    for rank in ranks:  # every rank returns the whole records
        assert [_strip(r) for r in rank["records"]] == [_strip(r) for r in one]
    assert ranks[0]["records"][0]["environment"]["world_size"] == 2
    by = {r["attack"]["label"]: r["metrics"] for r in one}
    assert set(by) == {"R+FGSM", "PGD-3x2", "worst-case"}
    m = by["PGD-3x2"]
    print(
        "\nDDP eval: records equal to one process; "
        + ", ".join(f"{label} {v['robust_correct']}/{v['n']}" for label, v in by.items())
        + f", clean {m['clean_correct']}/{m['n']}"
    )
    assert m["n"] == EVAL_N and m["clean_correct"] > 20 and 0 < m["robust_correct"] < m["clean_correct"]
    for rank in (0, 1):  # a foreign model's records under torchrun: the numbers of one process
        foreign = json.loads((out / f"foreign-rank{rank}.json").read_text())
        assert [_numbers(r) for r in foreign] == [_numbers(r) for r in one]
    two, ref = (
        torch.load(out / "adv-ddp.pt", weights_only=True),
        torch.load(single[0] / "adv-single.pt", weights_only=True),
    )
    assert two.keys() == ref.keys()
    for key, value in ref.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(two[key], value), key


# ----------------------------------------------------------------------------- pieces, in one process
def test_global_batch_is_split_evenly():
    from robustbench_local.distributed import global_to_local_batch
    from robustbench_local.errors import RobustError

    assert global_to_local_batch(128, 4) == 32
    with pytest.raises(RobustError, match="global batch"):
        global_to_local_batch(100, 8)


def test_sync_bn_on_the_cpu_is_refused_before_any_data_is_read(tmp_path):
    from robustbench_local.errors import RobustError
    from robustbench_local.specs import DataSpec, TrainSpec
    from robustbench_local.train_setup import prepare_run

    spec = TrainSpec(
        data=DataSpec(dataset=str(tmp_path / "nowhere")), sync_bn=True, device="cpu", out=str(tmp_path / "run")
    )
    with pytest.raises(RobustError, match="needs CUDA GPUs") as err:
        prepare_run(spec)
    assert err.value.key == ("train", "sync_bn")
    assert not (tmp_path / "run").exists()


def test_ranks_share_the_permutation_and_draw_their_own_randomness(cifar10_small):
    """Two ranks' loaders (no process group needed): the single-process permutation
    split rank::2, then per-rank random draws, reproducible."""
    from robustbench_local.data import TensorLoader
    from robustbench_local.distributed import RankStreams
    from robustbench_local.runtime import epoch_seed

    def epoch(rank: int) -> tuple[list[int], list[float]]:
        draws: list[float] = []

        def augment(x):
            draws.append(torch.rand(1).item())
            return x

        streams = RankStreams(augment, seed=3, rank=rank)
        loader = TensorLoader(cifar10_small, 16, device="cpu", shuffle=True, augment=streams, rank=rank, world_size=2)
        torch.manual_seed(epoch_seed(3, 0))
        streams.start_epoch(0)
        return torch.cat([y for _, y in loader]).tolist(), draws

    (p0, d0), (p1, d1) = epoch(0), epoch(1)
    torch.manual_seed(epoch_seed(3, 0))
    perm = torch.randperm(len(cifar10_small))
    assert p0 == perm[0::2].tolist() and p1 == perm[1::2].tolist()  # disjoint halves of one permutation
    assert len(d0) == 3 and d0 != d1
    assert epoch(0) == (p0, d0)


@pytest.fixture(scope="module")
def cifar10_small(cifar10):
    # labels replaced by positions, so a loader's output names the examples it took
    sub = cifar10.train.subset(96, seed=0)
    sub.y = torch.arange(len(sub))
    return sub


# ----------------------------------------------------------------------------- every registered attack
# Its own torchrun launch (one for all attacks) on the trained seed CNN: every attack at
# its quick options under evaluate(), in batches small enough that both ranks get some.
ATTACKS_N, ATTACKS_BATCH = 32, 4


def _attack_suite():
    """Every registered attack at its quick options, at L-inf 8/255 in pixels (an attack
    without L-inf: its first norm at the pixel radius of test_attack_registry)."""
    from robustbench_local.attacks import AttackSpec, info, names
    from robustbench_local.threat import ThreatModel

    radius = {"linf": 8 / 255, "l2": 0.5, "l1": 12.0}
    specs = []
    for a in names():
        norm = "linf" if "linf" in info(a).norms else info(a).norms[0]
        specs.append(AttackSpec(a, ThreatModel(norm, radius[norm], space="pixel"), info(a).quick))
    return specs


def _evaluate_attacks(ckpt: Path) -> list[dict]:
    from robustbench_local.evaluation import evaluate

    return evaluate(str(ckpt), _attack_suite(), n=ATTACKS_N, batch_size=ATTACKS_BATCH, device="cpu", run_checks=False)


def _attacks_worker(out: Path, ckpt: Path) -> None:
    from robustbench_local import distributed

    records = _evaluate_attacks(ckpt)
    with open(out / f"attacks-rank{distributed.rank()}.json", "w") as f:
        json.dump({"world_size": distributed.world_size(), "records": records}, f)


def test_every_attack_under_ddp_equals_one_process(tmp_path):
    from support import trained_cnn

    from robustbench_local.checkpoint import save_checkpoint

    ckpt = tmp_path / "cnn.pth"
    save_checkpoint(ckpt, *trained_cnn())
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "tests"))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(Path(__file__).resolve()),
        "attacks",
        str(tmp_path),
        str(ckpt),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker, so the kernels are the same ones
    try:
        one = [_strip(r) for r in _evaluate_attacks(ckpt)]
    finally:
        torch.set_num_threads(threads)
    by_label = {r["attack"]["label"]: r for r in one}
    first = one[0]["metrics"]
    assert first["attacked"] > 2 * ATTACKS_BATCH  # batches for both ranks
    for rank in (0, 1):
        got = json.loads((tmp_path / f"attacks-rank{rank}.json").read_text())
        assert got["world_size"] == 2
        two = {r["attack"]["label"]: _strip(r) for r in got["records"]}
        assert two.keys() == by_label.keys()
        differ = [label for label in by_label if two[label] != by_label[label]]
        assert not differ, f"rank {rank}: records differ from one process for " + ", ".join(
            f"{label} (robust {two[label]['metrics']['robust_correct']} vs {by_label[label]['metrics']['robust_correct']})"
            for label in differ
        )
    print(
        "\nDDP, every attack: records equal to one process; "
        + ", ".join(f"{label} {r['metrics']['robust_correct']}/{r['metrics']['n']}" for label, r in by_label.items())
        + f", clean {first['clean_correct']}/{first['n']}"
    )


def _failing_worker() -> None:
    """Rank 1 fails; rank 0 waits for it in a collective that never comes."""
    from robustbench_local import distributed

    distributed.init("cpu")
    if distributed.rank() == 1:
        raise RuntimeError("rank 1 fails on purpose")
    distributed.all_reduce_sum(torch.ones(1))


def test_a_failed_rank_leaves_at_once_and_the_run_fails():
    """At a normal exit the ranks wait for each other before leaving the process group
    (up to distributed.LEAVE_WAIT); a rank that failed must not wait for the ranks stuck
    on it, or the run would hang that long before torchrun reports the failure."""
    from robustbench_local import distributed

    assert distributed.LEAVE_WAIT.total_seconds() >= 300
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "tests"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, str(Path(__file__).resolve()), "fail"], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode != 0
    assert "rank 1 fails on purpose" in proc.stderr


def test_an_error_the_cli_reports_marks_the_rank_failed(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from robustbench_local import distributed
    from robustbench_local.cli import main

    monkeypatch.setattr(distributed, "_failed", False)
    res = CliRunner().invoke(main, ["eval", str(tmp_path / "missing.pth")])
    assert res.exit_code == 2 and distributed._failed


if __name__ == "__main__":
    if sys.argv[1] == "attacks":
        _attacks_worker(Path(sys.argv[2]), Path(sys.argv[3]))
    elif sys.argv[1] == "fail":
        _failing_worker()
    else:
        _worker(Path(sys.argv[1]))
