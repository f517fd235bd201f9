"""An evaluation cut off part-way resumes at the attack's last finished batch and gives
exactly the numbers of an uninterrupted run; AutoAttack, which batches internally, is
called batch by batch when resuming is on."""

import importlib

import pytest
import torch
from support import cifar10

from robustbench_local.attacks import AttackSpec
from robustbench_local.evaluation import evaluate
from robustbench_local.partial import PartialRun
from robustbench_local.threat import ThreatModel

N, BATCH = 40, 10
THREAT = ThreatModel("linf", 0.0313, 0.0313 / 4)


def run(ckpt, attack, resume_dir=None):
    (rec,) = evaluate(
        str(ckpt), [attack], cifar10(), n=N, batch_size=BATCH, run_checks=False, device="cpu", resume_dir=resume_dir
    )
    return rec


def cut_after(monkeypatch, batches: int) -> list:
    """Makes the attack stop (as Ctrl-C would) once ``batches`` batches have been kept."""
    saved, real = [], PartialRun.save

    def save(self, batch, fooled, norms):
        real(self, batch, fooled, norms)
        saved.append(batch)
        if len(saved) == batches:
            raise KeyboardInterrupt

    monkeypatch.setattr(PartialRun, "save", save)
    return saved


def test_cut_off_pgd_resumes_at_its_batch_and_matches_an_uninterrupted_run(ckpt, tmp_path, monkeypatch):
    attack = AttackSpec("pgd", THREAT, k=5)
    whole = run(ckpt, attack)
    attacked = whole["metrics"]["attacked"]
    batches = -(-attacked // BATCH)
    assert batches >= 2
    with monkeypatch.context() as m:
        cut_after(m, 1)
        with pytest.raises(KeyboardInterrupt):
            run(ckpt, attack, tmp_path)
    (part,) = tmp_path.glob("partial-*.pt")
    state = torch.load(part, weights_only=True)
    assert state["seconds"] > 0
    state["seconds"] = 1000.0  # as if the cut-off batch had taken that long
    torch.save(state, part)
    with monkeypatch.context() as m:
        saved = cut_after(m, batches + 1)  # never fires: counts the batches the resumed run attacks
        resumed = run(ckpt, attack, tmp_path)
    assert saved == list(range(1, batches))  # batch 0 was kept by the cut-off run
    assert resumed["metrics"]["robust_flags"] == whole["metrics"]["robust_flags"]
    assert resumed["metrics"]["robust_correct"] == whole["metrics"]["robust_correct"]
    # the record counts the cut-off run's batch too: a resumed attack is not made to look cheaper
    assert resumed["metrics"]["seconds"] >= 1000.0
    assert not list(tmp_path.glob("partial-*.pt"))  # removed once the attack has run through


def test_partial_results_of_another_attack_are_not_reused(ckpt, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        cut_after(m, 1)
        with pytest.raises(KeyboardInterrupt):
            run(ckpt, AttackSpec("pgd", THREAT, k=5), tmp_path)
    other = AttackSpec("pgd", THREAT, k=3)
    with monkeypatch.context() as m:
        saved = cut_after(m, 100)
        rec = run(ckpt, other, tmp_path)
    assert saved[0] == 0  # started from the first batch
    assert rec["metrics"]["robust_flags"] == run(ckpt, other)["metrics"]["robust_flags"]


def test_autoattack_is_called_per_batch_when_resuming(ckpt, tmp_path, monkeypatch):
    pytest.importorskip("pyautoattack")
    aa_module = importlib.import_module("robustbench_local.attacks.autoattack")
    real, sizes = aa_module._import(), []

    def make(*args, **kwargs):  # a short AutoAttack: this test is about the batching
        adv = real(*args, **kwargs)
        for apgd in (adv.apgd, adv.apgd_targeted):
            apgd.n_iter = apgd.n_iter_orig = 5
            apgd.n_iter_2, apgd.n_iter_min, apgd.size_decr = 2, 1, 1
        adv.fab.n_iter = 5
        adv.square.n_queries = 20
        run_standard = adv.run_standard_evaluation

        def counted(x, y, **kw):
            sizes.append(len(y))
            return run_standard(x, y, **kw)

        adv.run_standard_evaluation = counted
        return adv

    monkeypatch.setattr(aa_module, "_import", lambda: make)
    attack = AttackSpec("autoattack", THREAT)
    rec = run(ckpt, attack, tmp_path)
    attacked = rec["metrics"]["attacked"]
    assert sizes and max(sizes) <= BATCH and sum(sizes) == attacked
    sizes.clear()
    run(ckpt, attack)  # without resuming, AutoAttack takes all its points at once
    assert sizes == [attacked]
