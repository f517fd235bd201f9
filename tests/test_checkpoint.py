"""Checkpoints: round trip from metadata alone, atomic writes, and refusal of unsafe,
truncated, foreign or mismatched files."""

from __future__ import annotations

import hashlib

import pytest
import torch

from robustbench_local import load_checkpoint
from robustbench_local.checkpoint import FORMAT, file_sha256, read_checkpoint, save_checkpoint
from robustbench_local.errors import CheckpointError
from robustbench_local.models import build_model


class CodePayload:
    """Unpickling this calls exec(), which writes ``marker``: a stand-in for malware."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


@pytest.fixture(scope="module")
def real_x(cifar10):
    return cifar10.test.subset(24, seed=1).x.float() / 255


@pytest.fixture(scope="module")
def saved(tmp_path_factory, cifar10, real_x):
    """A small cnn whose batch-norm statistics moved on real images, saved with full meta."""
    torch.manual_seed(0)
    info = cifar10.info
    mean, std = info.mean, info.std
    model = build_model(
        "cnn", num_classes=10, input_shape=info.input_shape, mean=mean, std=std, maps="8,8,16", dropout=0.2, skip=True
    )
    model.train()
    with torch.no_grad():
        model(real_x)  # move the running statistics away from their init
    model.eval()
    meta = {
        "arch": "cnn",
        "arch_kwargs": model.arch_kwargs,
        "num_classes": 10,
        "input_shape": list(info.input_shape),
        "mean": list(mean),
        "std": list(std),
        "normalization": "dataset",
        "dataset": {"name": info.name, "info": info.to_dict()},
        "classes": list(info.classes),
        "method": "standard",
        "method_kwargs": {},
        "adv": "none",
        "adv_kwargs": {},
        "threat": None,
        "epoch": 3,
        "seed": 0,
        "metrics": {"val_acc": 0.5},
    }
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(real_x).sum().backward()
    opt.step()
    save_checkpoint(path, model, meta, train_state={"epoch": 3, "optimizer": opt.state_dict(), "history": [{"a": 1.0}]})
    return path, model, meta


def test_round_trip_rebuilds_the_model_from_metadata_alone(saved, real_x):
    path, model, meta = saved
    loaded, loaded_meta = load_checkpoint(path)
    assert not loaded.training
    assert type(loaded.net) is type(model.net) and loaded is not model
    with torch.no_grad():
        assert torch.equal(loaded(real_x), model(real_x))
    assert torch.allclose(loaded.std, torch.tensor(meta["std"]))
    for key in ("arch", "num_classes", "input_shape", "mean", "std", "classes", "method", "epoch", "seed", "metrics"):
        assert loaded_meta[key] == meta[key]
    assert loaded_meta["versions"]["torch"] == torch.__version__
    assert "created" in loaded_meta and "git_commit" in loaded_meta
    # a plain weights_only load works on its own, and the training state came along
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["train_state"]["epoch"] == 3
    assert set(raw["train_state"]["optimizer"]) == {"state", "param_groups"}


def test_file_sha256_and_no_temp_files_left(saved):
    path, _, _ = saved
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [p.name for p in path.parent.iterdir()] == ["model.pth"]


def test_code_payload_is_refused_and_never_runs(saved, tmp_path):
    path, model, meta = saved
    # the payload is live: an unsafe load really would run it
    armed = tmp_path / "armed.pth"
    proof = tmp_path / "proof.txt"
    torch.save({"format": FORMAT, "state_dict": model.state_dict(), "meta": {**meta, "x": CodePayload(proof)}}, armed)
    torch.load(armed, weights_only=False)
    assert proof.read_text() == "ran"

    marker = tmp_path / "marker.txt"
    evil = tmp_path / "evil.pth"
    torch.save(
        {
            "format": FORMAT,
            "state_dict": model.state_dict(),
            "meta": {**meta, "x": CodePayload(marker)},
            "train_state": None,
        },
        evil,
    )
    for loader in (read_checkpoint, load_checkpoint):
        with pytest.raises(CheckpointError, match="refused") as err:
            loader(evil)
        assert "\n" not in str(err.value)
    assert not marker.exists()


def test_truncated_and_corrupt_files(saved, tmp_path):
    data = saved[0].read_bytes()
    for name, blob in [("half.pth", data[: len(data) // 2]), ("empty.pth", b""), ("noise.pth", bytes(range(256)) * 8)]:
        p = tmp_path / name
        p.write_bytes(blob)
        with pytest.raises(CheckpointError, match="corrupt or truncated") as err:
            load_checkpoint(p)
        assert "\n" not in str(err.value)


def test_missing_foreign_and_mismatched_files(saved, tmp_path):
    path, model, meta = saved
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "absent.pth")
    bare = tmp_path / "bare.pth"
    torch.save(model.state_dict(), bare)  # readable, but not ours: no architecture
    with pytest.raises(CheckpointError, match="not a robustbench_local checkpoint"):
        load_checkpoint(bare)
    wrong = tmp_path / "wrong.pth"
    ckpt = torch.load(path, weights_only=True)
    ckpt["meta"]["arch_kwargs"] = {**ckpt["meta"]["arch_kwargs"], "maps": "8,16,16"}
    torch.save(ckpt, wrong)
    with pytest.raises(CheckpointError, match="do not fit the model: shape of"):
        load_checkpoint(wrong)
    ckpt["meta"]["arch"] = "no-such-model"
    torch.save(ckpt, wrong)
    with pytest.raises(CheckpointError, match="cannot rebuild"):
        load_checkpoint(wrong)


def test_save_refuses_what_it_could_not_load_back(saved, tmp_path):
    _, model, meta = saved
    with pytest.raises(CheckpointError, match="lacks arch"):
        save_checkpoint(tmp_path / "a.pth", model, {k: v for k, v in meta.items() if k != "arch"})
    with pytest.raises(CheckpointError, match="cannot store"):
        save_checkpoint(tmp_path / "b.pth", model, {**meta, "obj": object()})
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    # str/int subclasses (torch.__version__ is one) are stored as plain values
    save_checkpoint(tmp_path / "c.pth", model, {**meta, "torch": torch.__version__})
    assert type(read_checkpoint(tmp_path / "c.pth")["meta"]["torch"]) is str
