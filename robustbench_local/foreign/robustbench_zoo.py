"""RobustBench's model zoo as a model source: the architecture from the robustbench
package, the weights from a file the user gives or from RobustBench's own download.

A given file is read with ``torch.load(weights_only=True)`` and its keys are handled
exactly as ``robustbench.utils.load_model`` handles the files it downloads (the
'last' entry of some checkpoints, 'state_dict', the 'module.' and 'model.' prefixes,
ImageNet's extras), then loaded strictly with RobustBench's own tolerance for the
models whose published files are known to lack buffers. Zoo models take [0,1] pixels
and normalize inside."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
import types
import warnings
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import load_state
from ..data import cache_root
from ..errors import CheckpointError, RobustError, first_line
from ..torchfile import load_weights_only
from .weights import unwrap

INSTALL = "--robustbench needs the robustbench package: pip install robustbench (or the project's [robustbench] extra)"
OUR_DATASETS = {"cifar10": "cifar10", "cifar100": "cifar100"}  # ours -> RobustBench's; imagefolder:PATH -> imagenet
MODELS_FOLDER = "robustbench-models"  # under our cache root, laid out as RobustBench's model_dir

# checkpoints whose weights sit under 'last' (robustbench.utils.load_model)
_LAST = ("Kireev2021Effectiveness",)
_LAST_EXACT = ("Andriushchenko2020Understanding",)
# ImageNet entries whose state_dict timm's newer Swin definition must adapt (robustbench.utils.load_model)
_SWIN_FILTER = (
    "Liu2023Comprehensive_Swin-B",
    "Liu2023Comprehensive_Swin-L",
    "Mo2022When_Swin-B",
    "RodriguezMunoz2024Characterizing_Swin-B",
    "RodriguezMunoz2024Characterizing_Swin-L",
)
# ImageNet entries whose file already holds the normalization layer; the others get a 'model.' prefix
_NO_MODEL_PREFIX = (
    "Singh2023Revisiting_ConvNeXt-T-ConvStem",
    "Singh2023Revisiting_ViT-B-ConvStem",
    "Singh2023Revisiting_ConvNeXt-S-ConvStem",
    "Singh2023Revisiting_ConvNeXt-B-ConvStem",
    "Singh2023Revisiting_ConvNeXt-L-ConvStem",
    "Peng2023Robust",
    "Chen2024Data_WRN_50_2",
    "Xu2024MIMIR_Swin-B",
    "Xu2024MIMIR_Swin-L",
)


def _resource_filename(name: str, path: str) -> str:
    """pkg_resources.resource_filename for a module of an installed package."""
    return str(Path(sys.modules[name].__file__).parent / path)


def import_robustbench() -> types.ModuleType:
    """The robustbench package, imported once. Its 1.1 releases import two modules their
    requirements do not bring: ``pkg_resources`` (gone from recent setuptools; only a
    helper for ImageNet file lists uses it) and ``autoattack`` (they require pyautoattack,
    auto-attack under another name, which only robustbench.eval uses, and with
    auto-attack's older call signature: that function does not run on it, and nothing here
    calls it). Where one is missing it is stood in for while robustbench imports, then
    taken out of sys.modules again."""
    if "robustbench.utils" in sys.modules:
        return sys.modules["robustbench"]
    if importlib.util.find_spec("robustbench") is None:
        raise RobustError(INSTALL)
    stand_ins: dict[str, types.ModuleType] = {}
    if importlib.util.find_spec("pkg_resources") is None:
        pk = types.ModuleType("pkg_resources")
        pk.resource_filename = _resource_filename
        stand_ins["pkg_resources"] = pk
    if importlib.util.find_spec("autoattack") is None and importlib.util.find_spec("pyautoattack") is not None:
        stand_ins["autoattack"] = importlib.import_module("pyautoattack")
        stand_ins["autoattack.state"] = importlib.import_module("pyautoattack.state")
    sys.modules.update(stand_ins)
    try:
        with warnings.catch_warnings():  # deprecation notes from its dependencies, not about this run
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            rb = importlib.import_module("robustbench")
            importlib.import_module("robustbench.utils")
    except ImportError as e:
        raise RobustError(
            f"the robustbench package does not import ({first_line(e)}); reinstall it: pip install robustbench"
        ) from None
    finally:
        for key in stand_ins:
            sys.modules.pop(key, None)
    return rb


def _zoo():
    import_robustbench()
    # deferred: optional dependency (robustbench)
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    return model_dicts, BenchmarkDataset, ThreatModel


def _where(name: str) -> list[tuple]:
    """(dataset enum, threat enum) of every leaderboard listing ``name``."""
    model_dicts, _, _ = _zoo()
    return [(ds, tm) for ds, by_tm in model_dicts.items() for tm, models in by_tm.items() if name in models]


def _unknown(name: str, where: str, names) -> RobustError:
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}?" if close else "see the model IDs at robustbench.github.io"
    return RobustError(f"'{name}' is not a RobustBench model{where}; {hint}")


def default_dataset(name: str) -> str | None:
    """Our dataset name for a zoo model listed under exactly one of CIFAR-10 and
    CIFAR-100 (some names are also on the ImageNet leaderboard, whose data can never be
    a default: it needs --dataset imagefolder:PATH). Where the user must say, the line
    that tells them is raised here, as it is for a name in no leaderboard."""
    model_dicts, _, _ = _zoo()
    places = _where(name)
    if not places:
        everything = {m for by_tm in model_dicts.values() for models in by_tm.values() for m in models}
        raise _unknown(name, "", everything)
    cifar = sorted({ds.value for ds, _ in places} & set(OUR_DATASETS))
    if len(cifar) == 1:
        return OUR_DATASETS[cifar[0]]
    if cifar:
        raise RobustError(
            f"{name} is on RobustBench's {' and '.join(cifar)} leaderboards; say which with --dataset {'|'.join(cifar)}"
        )
    raise RobustError(
        f"{name} is an ImageNet model: give --dataset imagefolder:PATH (ImageNet's validation "
        "images, one folder per class)"
    )


def _benchmark_dataset(dataset: str):
    _, BenchmarkDataset, _ = _zoo()
    key = dataset.split(":", 1)[0].lower()
    if key in OUR_DATASETS:
        return BenchmarkDataset(OUR_DATASETS[key])
    if key == "imagefolder":
        return BenchmarkDataset.imagenet
    raise RobustError(
        f"RobustBench's zoo has models for cifar10, cifar100 and ImageNet (--dataset imagefolder:PATH "
        f"with its validation images), not {dataset}"
    )


def _threat(threat_model: str):
    _, _, ThreatModel = _zoo()
    value = getattr(threat_model, "value", threat_model)
    try:
        return ThreatModel(value)
    except ValueError:
        valid = ", ".join(t.value for t in ThreatModel)
        raise RobustError(f"unknown RobustBench threat model '{value}'; valid: {valid}") from None


def models_dir() -> Path:
    """Where RobustBench's downloads are kept: our cache, laid out as its model_dir."""
    return cache_root() / MODELS_FOLDER


def build(name: str, *, dataset: str, threat_model: str, weights: str | None) -> tuple[nn.Module, dict]:
    """(zoo model in eval mode, taking [0,1] pixels; what the record's checkpoint.source
    keeps of it). ``dataset`` is ours (cifar10, cifar100, imagefolder:PATH)."""
    model_dicts, _, _ = _zoo()
    ds, tm = _benchmark_dataset(dataset), _threat(threat_model)
    models = model_dicts[ds].get(tm, {})
    if name not in models:
        others = [f"{d.value} {t.value}" for d, t in _where(name)]
        if others:
            flags = "; ".join(
                f"--dataset {o.split()[0] if o.split()[0] != 'imagenet' else 'imagefolder:PATH'} "
                f"--threat-model {o.split()[1]}"
                for o in others
            )
            raise RobustError(
                f"'{name}' is not in RobustBench's {ds.value} {tm.value} leaderboard; it is listed "
                f"under {', '.join(others)} ({flags})"
            )
        raise _unknown(name, f" of the {ds.value} {tm.value} leaderboard", models)
    info = {"zoo_name": name, "zoo_dataset": ds.value, "zoo_threat_model": tm.value, "weights": None}
    if weights is None:
        model, info["weights"] = _download(name, ds, tm, models[name])
    else:
        model = _from_file(name, ds, tm, models[name], Path(weights))
        info["weights"] = str(weights)
    return model.eval(), info


def _timm_name(name: str, ds, tm) -> str | None:
    """The timm model RobustBench's load_model takes instead of its own entry, if any."""
    import timm  # deferred: optional dependency (timm)

    candidate = f"{name.lower().replace('-', '_')}_{ds.value.lower()}_{tm.value.lower()}"
    return candidate if timm.is_model(candidate) else None


def _from_file(name: str, ds, tm, entry: dict, path: Path) -> nn.Module:
    if isinstance(entry.get("gdrive_id"), list):
        raise RobustError(
            f"{name} is an ensemble of {len(entry['gdrive_id'])} networks, one file each; --weights "
            "takes one file: leave --weights out to let RobustBench download them"
        )
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    checkpoint = load_weights_only(path, label=f"weights file {path}", what="weights file", error=CheckpointError)
    timm_name = _timm_name(name, ds, tm)
    if timm_name is not None:
        import timm  # deferred: optional dependency (timm)

        model = _construct(name, lambda: timm.create_model(timm_name, pretrained=False, num_classes=_num_classes(ds)))
        state, _ = unwrap(checkpoint, f"weights file {path}", ("state_dict", "model"))
        load_state(model, state, path)
        return model
    model = _construct(name, entry["model"])
    state = _robustbench_state(name, ds, checkpoint, model, path)
    _load(model, name, ds, state, path)
    return model


def _num_classes(ds) -> int:
    import_robustbench()
    from robustbench.utils import DATASET_CLASSES  # deferred: optional dependency (robustbench)

    return DATASET_CLASSES[ds]


def _construct(name: str, make) -> nn.Module:
    try:
        return make()
    except Exception as e:  # noqa: BLE001 - a few constructors fetch pretrained parts and fail offline
        raise RobustError(
            f"cannot build {name}'s architecture ({first_line(e)}); its RobustBench definition may "
            "fetch pretrained parts, which needs the network"
        ) from None


def _robustbench_state(name: str, ds, checkpoint, model: nn.Module, path: Path) -> dict:
    """The state_dict in ``checkpoint`` with the key handling of robustbench.utils.load_model."""
    # deferred: optional dependency (robustbench)
    from robustbench.model_zoo.enums import BenchmarkDataset
    from robustbench.utils import add_substr_to_state_dict, rm_substr_from_state_dict

    if any(p in name for p in _LAST) or name in _LAST_EXACT:
        if not isinstance(checkpoint, dict) or "last" not in checkpoint:
            raise CheckpointError(
                f"weights file {path} holds no 'last' entry, where {name}'s published checkpoint keeps its weights"
            )
        checkpoint = checkpoint["last"]
    try:
        state = rm_substr_from_state_dict(checkpoint["state_dict"], "module.")
        state = rm_substr_from_state_dict(state, "model.")
    except Exception:  # noqa: BLE001 - as load_model: no usable 'state_dict' entry means the file is the state_dict
        if not isinstance(checkpoint, dict):
            raise CheckpointError(
                f"weights file {path} holds no state_dict (a dict of name -> tensor, or one under "
                f"'state_dict'): it holds {type(checkpoint).__name__}"
            ) from None
        state = rm_substr_from_state_dict(checkpoint, "module.")
        state = rm_substr_from_state_dict(state, "model.")
    if ds == BenchmarkDataset.imagenet:
        if name in _SWIN_FILTER:
            try:
                from timm.models.swin_transformer import checkpoint_filter_fn  # deferred: optional dependency (timm)

                state = checkpoint_filter_fn(state, model.model)
            except Exception:  # noqa: BLE001 - as load_model: the file may already fit
                pass
        if name not in _NO_MODEL_PREFIX:
            state = add_substr_to_state_dict(state, "model.")
    odd = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if odd:
        raise CheckpointError(
            f"weights file {path} holds no state_dict: its entry {odd[0]!r} is a "
            f"{type(state[odd[0]]).__name__}, not a tensor"
        )
    return state


def _load(model: nn.Module, name: str, ds, state: dict, path: Path) -> None:
    """Strict, with RobustBench's tolerance (robustbench.utils._safe_load_state_dict:
    buffers its published files lack, for the models it lists); any other mismatch
    is our one line."""
    from robustbench import utils as rbu  # deferred: optional dependency (robustbench)

    safe = getattr(rbu, "_safe_load_state_dict", None)
    try:
        if safe is None:
            model.load_state_dict(state, strict=True)
        else:
            safe(model, name, state, ds)
    except RuntimeError as e:
        load_state(model, state, path)  # names the offending keys in one line
        raise CheckpointError(f"the weights in {path} do not fit {name}: {first_line(e)}") from None


def _download(name: str, ds, tm, entry: dict) -> tuple[nn.Module, str | None]:
    """RobustBench's own load_model, its files kept in our cache; (model, its file)."""
    import_robustbench()
    from robustbench.utils import load_model  # deferred: optional dependency (robustbench)

    root = models_dir()
    file = root / ds.value / tm.value / f"{name}.pt"
    single = not isinstance(entry.get("gdrive_id"), list) and _timm_name(name, ds, tm) is None
    had = file.is_file()
    try:
        model = load_model(name, model_dir=str(root), dataset=ds, threat_model=tm)
    except Exception as e:  # noqa: BLE001 - requests, gdown, huggingface_hub and torch all raise their own types
        if _network(e) or (single and not had and not file.is_file()):
            raise RobustError(
                f"cannot download {name} from RobustBench ({first_line(e)}); with no network, fetch "
                "the file elsewhere and pass --weights FILE"
            ) from None
        where = f" from {file}" if single and file.is_file() else ""
        raise RobustError(
            f"RobustBench could not load {name}{where} ({first_line(e)}); delete the file to download "
            "it again, or pass --weights FILE"
        ) from None
    return model, (str(file) if single and file.is_file() else None)


def _network(e: BaseException) -> bool:
    if isinstance(e, (OSError, TimeoutError)):  # requests' and urllib's errors are OSErrors
        return True
    return any(w in type(e).__name__ for w in ("Retrieval", "Connection", "HTTP", "Timeout", "Download"))
