"""`robust eval --robustbench NAME`: a RobustBench zoo architecture (built by the
robustbench package) with weights from a file in RobustBench's own key format, or from
RobustBench's download. No test reaches the network: the weights are random (seeded)
and the download is made to fail."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from click.testing import CliRunner

if importlib.util.find_spec("robustbench") is None:
    pytest.skip("robustbench is not installed (the [robustbench] extra)", allow_module_level=True)

from robustbench_local.attacks import AttackSpec  # noqa: E402
from robustbench_local.checkpoint import file_sha256  # noqa: E402
from robustbench_local.cli import main  # noqa: E402
from robustbench_local.evaluation import evaluate  # noqa: E402
from robustbench_local.foreign.robustbench_zoo import import_robustbench  # noqa: E402
from robustbench_local.models.normalize import NormalizedModel  # noqa: E402

import_robustbench()
ZOO = "Wong2020Fast"  # PreActResNet-18, listed under CIFAR-10 L-inf (and ImageNet, which is never a default)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """(weights file, the module it was saved from). Saved as RobustBench's files are:
    {'state_dict': {'module.' + key: tensor}}, and like Wong2020Fast's published file
    without the mu/sigma buffers, which RobustBench's loader tolerates for that model.
    Seed 2 gives a random net that gets some of the 16 points right, so the attack has
    work to do."""
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    torch.manual_seed(2)
    model = model_dicts[BenchmarkDataset.cifar_10][ThreatModel.Linf][ZOO]["model"]().eval()
    state = {"module." + k: v for k, v in model.state_dict().items() if k not in ("mu", "sigma")}
    path = tmp_path_factory.mktemp("zoo") / f"{ZOO}.pt"
    torch.save({"state_dict": state}, path)
    return path, model


def robust(*args):
    res = CliRunner().invoke(main, ["eval", "--attack", "pgd", "--k", "3", "--n", "16", *map(str, args)])
    return res.exit_code, res.output.strip()


def error_line(code: int, out: str) -> str:
    assert code == 2 and "Traceback" not in out and out.count("error: ") == 1, out
    return out.splitlines()[-1]


def test_zoo_model_from_its_weights_file_scores_as_the_module_itself(zoo, tmp_path, cifar10):
    path, model = zoo
    code, out = robust("--robustbench", ZOO, "--weights", path, "--results", tmp_path)  # dataset: its own, cifar10
    assert code == 0, out
    (rec_path,) = (tmp_path / "records").glob("eval-*.json")
    rec = json.loads(rec_path.read_text())
    ck = rec["checkpoint"]
    assert ck["source"]["zoo_name"] == ZOO and ck["source"]["route"] == "robustbench"
    assert (ck["source"]["zoo_dataset"], ck["source"]["zoo_threat_model"]) == ("cifar10", "Linf")
    assert ck["normalization"] == "none" and ck["mean"] == [0.0] * 3 and ck["std"] == [1.0] * 3
    assert ck["sha256"] == file_sha256(path) and rec["data"]["dataset"] == "cifar10"

    # the module as built, behind normalization none, through the library on the same points and attack
    target = (NormalizedModel(model, (0.0,) * 3, (1.0,) * 3), {"name": ZOO})
    (direct,) = evaluate(target, [AttackSpec.from_dict(rec["attack"])], cifar10, n=16, seed=0, device="cpu")
    assert direct["data"]["indices_sha256"] == rec["data"]["indices_sha256"]
    m, d = rec["metrics"], direct["metrics"]
    assert m["clean_correct"] >= 1  # some points attacked, so the flags compare something
    for key in ("clean_correct", "robust_correct", "robust_flags"):
        assert m[key] == d[key], key


def test_unknown_zoo_name_is_one_line_with_the_close_name(tmp_path):
    line = error_line(*robust("--robustbench", "Wong2020Fats", "--results", tmp_path))
    assert "not a RobustBench model" in line and ZOO in line


def test_weights_of_another_architecture_are_refused_in_one_line(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"state_dict": torch.nn.Conv2d(3, 8, 3).state_dict()}, other)
    line = error_line(*robust("--robustbench", ZOO, "--weights", other, "--results", tmp_path))
    assert "do not fit" in line and str(other) in line


def test_without_weights_and_network_the_error_names_weights(tmp_path, monkeypatch):
    import robustbench.utils

    from robustbench_local.foreign import robustbench_zoo

    def offline(gdrive_id, fname_save):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(robustbench_zoo, "models_dir", lambda: tmp_path / "models")  # no file downloaded before
    monkeypatch.setattr(robustbench.utils, "download_gdrive_new", offline)
    line = error_line(*robust("--robustbench", ZOO, "--results", tmp_path))
    assert f"cannot download {ZOO}" in line and "--weights FILE" in line and "unreachable" in line
