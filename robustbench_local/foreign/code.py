"""Models whose own code runs when they are loaded: TorchScript archives and Python
factories. Both are opt-in (``trust_code``); without it a file is refused in one line
that names the flag which accepts it."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, RobustError, first_line

TRUST_FLAG = "--trust-code"


def is_torchscript(path: str | os.PathLike) -> bool:
    """A TorchScript archive is a zip with code/ and constants.pkl (torch.save's zips have neither)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def load_torchscript(path: str | os.PathLike, *, trust_code: bool, device="cpu") -> nn.Module:
    p = Path(path)
    if not trust_code:
        raise RobustError(
            f"{p} is a TorchScript archive, whose code runs when it is loaded; if you trust it, "
            f"add {TRUST_FLAG} (with --dataset NAME for its data)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice, not the user's fault
            return torch.jit.load(str(p), map_location=device)
    except Exception as e:  # noqa: BLE001 - a damaged archive or a newer TorchScript version
        raise CheckpointError(f"cannot load TorchScript archive {p}: {first_line(e)}") from None


def parse_factory(spec: str) -> tuple[str, str]:
    """'path/to/file.py:function' or 'package.module:function' -> (where, function)."""
    where, sep, fn = spec.rpartition(":")
    if not sep or not where or not fn.isidentifier():
        raise RobustError(f"--model-fn expects FILE.py:FUNCTION or package.module:FUNCTION, got '{spec}'")
    return where, fn


def load_factory(spec: str, *, trust_code: bool, num_classes: int | None = None) -> tuple[nn.Module, str | None]:
    """Calls the factory; returns (its nn.Module, the source file if it is a file).
    A factory that takes ``num_classes`` is given it."""
    where, fn_name = parse_factory(spec)
    if not trust_code:
        raise RobustError(
            f"--model-fn {spec} runs {where}'s code to build the model; if you trust it, add {TRUST_FLAG}"
        )
    path = None
    if where.endswith(".py") or os.sep in where or "/" in where:
        path = Path(where)
        if not path.is_file():
            raise RobustError(f"--model-fn file {path} does not exist")
        mod_name = f"_robust_model_fn_{abs(hash(str(path.resolve())))}"
        loader_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[mod_name] = module  # dataclasses and pickling look the module up by name
        try:
            loader_spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001 - the user's file: show its first line of error
            sys.modules.pop(mod_name, None)
            raise RobustError(f"--model-fn: running {path} failed: {type(e).__name__}: {first_line(e)}") from None
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise RobustError(f"--model-fn: cannot import {where} ({first_line(e)})") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise RobustError(f"--model-fn: {where} has no function {fn_name}")
    kwargs = {}
    try:
        if num_classes is not None and "num_classes" in inspect.signature(fn).parameters:
            kwargs["num_classes"] = num_classes
    except (TypeError, ValueError):  # builtins without a signature
        pass
    try:
        model = fn(**kwargs)
    except Exception as e:  # noqa: BLE001
        raise RobustError(f"--model-fn: {spec} raised {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise RobustError(f"--model-fn: {spec} returned a {type(model).__name__}, not a torch.nn.Module")
    return model, None if path is None else str(path)
