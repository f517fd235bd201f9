"""Open evaluation: plain weights of our zoo and torchvision, TorchScript and Python
factories evaluated through `robust eval`, each giving the records our own checkpoint
format gives for the same network."""

import json
import warnings

import pytest
import torch
import torchvision
from click.testing import CliRunner
from support import trained_cnn
from torch import nn

from robustbench_local.checkpoint import file_sha256, save_checkpoint
from robustbench_local.cli import main
from robustbench_local.models import NormalizedModel

ATTACK = ["--attack", "pgd", "--k", "3", "--n", "24", "--seed", "1", "--batch-size", "24"]
CIFAR = ["--dataset", "cifar10"]


def run(*args):
    return CliRunner().invoke(main, ["eval", *ATTACK, *map(str, args)])


def record_of(results):
    (path,) = (results / "records").glob("*.json")
    return json.loads(path.read_text())


def same_numbers(a: dict, b: dict, pixel_only: bool = False) -> None:
    """Records of one network through two routes: everything but timings and the model's description
    (with ``pixel_only``, the normalization differs, so only pixel-space radii are compared)."""
    ma, mb = dict(a["metrics"]), dict(b["metrics"])
    for m in (ma, mb):
        for k in ("seconds", "images_per_s", "clean_seconds"):
            m.pop(k, None)
    assert ma == mb
    aa, ab = ({k: v for k, v in r["attack"].items() if not (pixel_only and k.endswith("_normalized"))} for r in (a, b))
    assert aa == ab and a["data"] == b["data"] and a["checks"] == b["checks"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The trained CNN as our checkpoint, as bare state_dicts, as TorchScript and as a factory."""
    d = tmp_path_factory.mktemp("foreign")
    model, meta = trained_cnn()
    save_checkpoint(d / "ours.pth", model, meta)
    torch.save(model.state_dict(), d / "full.pth")  # NormalizedModel's: normalization included
    torch.save(
        {"state_dict": {"module." + k: v for k, v in model.net.state_dict().items()}, "epoch": 3}, d / "dp.pth"
    )  # the raw net's, saved under DataParallel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still what many export
        torch.jit.save(torch.jit.trace(model.eval(), torch.rand(2, 3, 32, 32)), d / "model.ts")
    (d / "factory.py").write_text(
        "from robustbench_local.models import build_model\n\n"
        "def build(num_classes):\n"
        "    return build_model('cnn', num_classes=num_classes, input_shape=(3, 32, 32), mean=(0.5,) * 3,"
        " std=(0.5,) * 3)\n\n"
        "def flat():\n"
        "    import torch.nn as nn\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))\n\n"
        "def seven():\n"
        "    import torch.nn as nn\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 7))\n"
    )
    return d


@pytest.fixture(scope="module")
def ours(files, tmp_path_factory):
    res = tmp_path_factory.mktemp("ours")
    r = run(files / "ours.pth", "--results", res)
    assert r.exit_code == 0, r.output
    return record_of(res)


def test_our_state_dict_with_its_normalization_matches_the_checkpoint(files, ours, tmp_path):
    r = run("--arch", "cnn", "--weights", files / "full.pth", *CIFAR, "--results", tmp_path)
    assert r.exit_code == 0, r.output
    rec = record_of(tmp_path)
    same_numbers(rec, ours)
    ck = rec["checkpoint"]
    assert ck["arch"] == "cnn" and ck["mean"] == [0.5] * 3 and ck["normalization"] == "file"
    assert "weights file" in ck["normalization_source"] and ck["source"]["route"] == "weights"
    assert ck["sha256"] == file_sha256(files / "full.pth") and ck["dataset"] == "cifar10"


def test_a_dataparallel_state_dict_needs_and_takes_the_normalization(files, ours, tmp_path):
    r = run("--arch", "cnn", "--weights", files / "dp.pth", *CIFAR, "--results", tmp_path)
    assert r.exit_code == 2 and "carry no input normalization" in r.output and "--normalization" in r.output
    assert not (tmp_path / "records").exists()
    r = run("--arch", "cnn", "--weights", files / "dp.pth", *CIFAR, "--normalization", "0.5,0.5", "--results", tmp_path)
    assert r.exit_code == 0, r.output
    rec = record_of(tmp_path)
    same_numbers(rec, ours)
    assert rec["checkpoint"]["source"]["state_key"] == "state_dict"
    assert rec["checkpoint"]["normalization_source"] == "--normalization 0.5,0.5"


def _cifar_resnet18(stem_3x3: bool) -> nn.Module:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    if stem_3x3:  # the small-input stem CIFAR code uses
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    return net.eval()


@pytest.mark.parametrize("stem_3x3", [True, False])
def test_a_torchvision_resnet18_state_dict(tmp_path, stem_3x3):
    from robustbench_local.attacks import AttackSpec
    from robustbench_local.evaluation import evaluate
    from robustbench_local.threat import ThreatModel

    net = _cifar_resnet18(stem_3x3)
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    r = run(
        "--arch",
        "tv-resnet18",
        "--weights",
        tmp_path / "r18.pth",
        *CIFAR,
        "--normalization",
        "cifar10",
        "--results",
        tmp_path / "res",
    )
    assert r.exit_code == 0, r.output
    rec = record_of(tmp_path / "res")
    assert rec["checkpoint"]["arch_kwargs"]["stem"] == ("cifar" if stem_3x3 else "imagenet")
    assert rec["checkpoint"]["mean"] == pytest.approx([0.4914, 0.4822, 0.4465])
    # the same network handed to evaluate() by hand, behind the same normalization
    wrapped = NormalizedModel(net, rec["checkpoint"]["mean"], rec["checkpoint"]["std"])
    direct = evaluate(
        (wrapped, {"dataset": "cifar10"}),
        [AttackSpec("pgd", ThreatModel("linf", 0.0313), k=3)],
        n=24,
        seed=1,
        batch_size=24,
        run_checks=True,
        device="cpu",
    )
    same_numbers(rec, direct[0])


def test_torchvision_defaults_to_imagenet_statistics_and_says_so(tmp_path):
    torch.save(_cifar_resnet18(True).state_dict(), tmp_path / "r18.pth")
    r = run(
        "--arch", "tv-resnet18", "--weights", tmp_path / "r18.pth", *CIFAR, "--results", tmp_path / "res", "--n", "8"
    )
    assert r.exit_code == 0, r.output
    ck = record_of(tmp_path / "res")["checkpoint"]
    assert ck["normalization"] == "imagenet" and "torchvision" in ck["normalization_source"]


def test_torchscript_needs_the_opt_in_and_then_matches(files, ours, tmp_path):
    r = run(files / "model.ts", *CIFAR, "--results", tmp_path)
    assert r.exit_code == 2 and "TorchScript" in r.output and "--trust-code" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "records").exists()
    r = run(
        files / "model.ts", "--trust-code", *CIFAR, "--results", tmp_path, "--eps-space", "pixel", "--eps", "0.01565"
    )
    assert r.exit_code == 0, r.output
    rec = record_of(tmp_path)
    assert rec["checkpoint"]["normalization"] == "none" and rec["checkpoint"]["source"]["route"] == "torchscript"
    # normalization lives inside the traced model, so only pixel eps is comparable with ours
    res2 = tmp_path / "ours-pixel"
    assert run(files / "ours.pth", "--results", res2, "--eps-space", "pixel", "--eps", "0.01565").exit_code == 0
    same_numbers(rec, record_of(res2), pixel_only=True)


def test_a_model_factory_needs_the_opt_in_and_then_matches(files, ours, tmp_path):
    spec = f"{files / 'factory.py'}:build"
    r = run("--model-fn", spec, "--weights", files / "full.pth", *CIFAR, "--results", tmp_path)
    assert r.exit_code == 2 and "--trust-code" in r.output and len(r.output.strip().splitlines()) == 1
    r = run(
        "--model-fn",
        spec,
        "--trust-code",
        "--weights",
        files / "full.pth",
        *CIFAR,
        "--normalization",
        "none",
        "--results",
        tmp_path,
    )
    assert r.exit_code == 0, r.output
    rec = record_of(tmp_path)
    assert rec["checkpoint"]["source"]["factory"] == spec and rec["checkpoint"]["sha256"] == file_sha256(
        files / "full.pth"
    )
    # the factory's model normalizes itself (mean=std=0.5 inside), so compare in pixel eps
    res2 = tmp_path / "p"
    r = run(
        "--model-fn",
        spec,
        "--trust-code",
        "--weights",
        files / "full.pth",
        *CIFAR,
        "--results",
        res2,
        "--eps-space",
        "pixel",
        "--eps",
        "0.01565",
    )
    res3 = tmp_path / "o"
    assert run(files / "ours.pth", "--results", res3, "--eps-space", "pixel", "--eps", "0.01565").exit_code == 0
    same_numbers(record_of(res2), record_of(res3), pixel_only=True)


@pytest.mark.parametrize(
    "args, says",
    [
        (
            ["--arch", "cnn", "--model-option", "maps=8,16,32", "--weights", "{d}/full.pth", *CIFAR],
            "shape of features.0.body.0.weight is (16, 3, 3, 3) in the file but (8, 3, 3, 3) in the model",
        ),
        (
            ["--arch", "tv-resnet34", "--weights", "{d}/r18.pth", *CIFAR, "--normalization", "cifar10"],
            "missing layer1.2.",
        ),
        (
            ["--arch", "cnn", "--weights", "{d}/full.pth", *CIFAR, "--num-classes", "100"],
            "--num-classes 100 does not match cifar10, which has 10 classes",
        ),
        (
            ["--model-fn", "{d}/factory.py:flat", "--trust-code", "--dataset", "fashion-mnist"],
            "cannot take fashion-mnist's 1x28x28 images",
        ),
        (["--model-fn", "{d}/factory.py:seven", "--trust-code", *CIFAR], "returns 7 logits but cifar10 has 10 classes"),
        (["{d}/full.pth"], "--arch NAME --weights"),
        (["--weights", "{d}/full.pth", *CIFAR], "--arch NAME is missing"),
        (["--dataset", "cifar10"], "describes a foreign model"),
        (["--model-fn", "{d}/factory.py:nothing", "--trust-code", *CIFAR], "has no function nothing"),
        (
            ["--arch", "cnn", "--weights", "{d}/full.pth", "--dataset", "fashion-mnist"],
            "takes 3-channel images (its normalization has 3 channels) but fashion-mnist's have 1",
        ),
    ],
)
def test_foreign_models_that_do_not_fit_are_refused_in_one_line(files, tmp_path, args, says):
    torch.save(_cifar_resnet18(True).state_dict(), files / "r18.pth")
    r = run(*[a.format(d=files) for a in args], "--results", tmp_path)
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert len(line.splitlines()) == 1 and says in line, line
    assert not (tmp_path / "records").exists()


def test_visualize_and_analyze_take_a_foreign_model(files, tmp_path):
    common = ["--arch", "cnn", "--weights", str(files / "full.pth"), *CIFAR, "--results", str(tmp_path)]
    r = CliRunner().invoke(main, ["visualize", "--attack", "fgsm", "--n", "4", *common])
    assert r.exit_code == 0, r.output
    assert list((tmp_path / "figures").glob("*.png"))
    r = CliRunner().invoke(main, ["analyze", "--n", "40", *common])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "analysis" / (files.name)).is_dir() or list((tmp_path / "analysis").iterdir())


def test_cascade_save_adv_and_replay_work_on_a_foreign_model(files, tmp_path):
    foreign = ["--arch", "cnn", "--weights", str(files / "full.pth"), *CIFAR]
    r = CliRunner().invoke(
        main,
        [
            "eval",
            "--attack",
            "fgsm",
            "--attack",
            "pgd",
            "--k",
            "3",
            "--n",
            "24",
            "--cascade",
            "--save-adv",
            str(tmp_path / "adv.pt"),
            "--results",
            str(tmp_path / "a"),
            *foreign,
        ],
    )
    assert r.exit_code == 0, r.output
    saved = torch.load(tmp_path / "adv.pt", weights_only=True)
    assert saved["checkpoint"] == str(files / "full.pth") and saved["dataset"] == "cifar10"
    crafted = {
        json.loads(p.read_text())["attack"]["label"]: json.loads(p.read_text())
        for p in (tmp_path / "a" / "records").glob("*.json")
    }
    # the saved examples scored again on the same (foreign) model give the crafted numbers
    r = CliRunner().invoke(
        main, ["eval", "--replay", str(tmp_path / "adv.pt"), "--results", str(tmp_path / "b"), *foreign]
    )
    assert r.exit_code == 0, r.output
    compared = 0
    for p in (tmp_path / "b" / "records").glob("*.json"):
        rec = json.loads(p.read_text())
        label = rec["attack"]["label"].replace(" (replayed)", "")
        if label in crafted and not crafted[label]["attack"].get("cumulative"):
            assert rec["metrics"]["robust_correct"] == crafted[label]["metrics"]["robust_correct"]
            compared += 1
    assert compared >= 1  # the first attack of a cascade is its standalone number
