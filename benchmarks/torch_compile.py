"""Benchmark 8 (opt-in, --long), torch.compile on this CPU: what `robust train
--compile` buys and what it costs.

The seed CNN (batch 128, channels_last and fp32, fit()'s CPU defaults) is wrapped
the way fit() wraps it (build_training_model), once eager and once compiled with
inductor. Two kinds of step are timed:
- train step: forward, cross-entropy, backward and SGD step;
- attack step: forward and input-gradient backward with parameters frozen, the unit
  of every PGD step inside adversarial training.

For each kind, the benchmark records:
- the first call of each (for the compiled model this holds graph capture and the
  C++ build);
- the steady-state median over interleaved repeats;
- the speed-up, eager over compiled;
- the break-even point: how many steps the compile time takes to pay back.

--quick uses the 'aot_eager' backend (no C++ build): a smoke run, not a measurement."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch._dynamo
import torch.nn.functional as F

from benchmarks import common

NAME = "torch_compile"
FULL = {"backend": "inductor", "batch": 128, "repeats": 15, "maps": "16,32,64"}
QUICK = {"backend": "aot_eager", "batch": 8, "repeats": 1, "maps": "8,16"}


def build(cfg: dict, backend: str | None):
    from robustbench_local.attacks import frozen_params
    from robustbench_local.models import build_model
    from robustbench_local.precision import Precision, build_training_model

    torch.manual_seed(0)
    model = build_model(
        "cnn", num_classes=10, input_shape=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, maps=cfg["maps"]
    ).to(memory_format=torch.channels_last)
    net = build_training_model(model, torch.device("cpu"), Precision(None, "cpu"), compile_backend=backend)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(cfg["batch"], 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (cfg["batch"],), generator=g)

    def train_step():
        model.train()
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def attack_step():
        model.eval()
        with frozen_params(model):
            xa = x.detach().clone().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(net(xa), y), xa)

    return {"train": train_step, "attack": attack_step}


def first_call(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(quick: bool = False, out_dir=None) -> dict:
    cfg = QUICK if quick else FULL
    common.setup_threads()
    report = common.Report(
        NAME,
        quick,
        settings={
            **cfg,
            "threads": torch.get_num_threads(),
            "model": f"cnn maps {cfg['maps']}, channels_last, fp32",
            "timing": "first call of each (compile included, fresh TORCHINDUCTOR_CACHE_DIR), then interleaved repeats "
            "after one more warm-up; medians",
        },
    )
    torch._dynamo.reset()
    # a fresh inductor cache, so the first call pays the whole compile as a user's first run does
    cache = common.scratch("inductor-")
    old_cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)
    try:
        eager, compiled = build(cfg, None), build(cfg, cfg["backend"])
        firsts = {
            f"{kind} {who}": first_call(fns[kind])
            for kind in ("train", "attack")
            for who, fns in (("eager", eager), ("compiled", compiled))
        }
    finally:
        if old_cache is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = old_cache
    cases = {
        f"{kind} {who}": fns[kind]
        for kind in ("train", "attack")
        for who, fns in (("eager", eager), ("compiled", compiled))
    }
    times = common.time_cases(cases, cfg["repeats"])
    results, rows = {}, []
    for kind in ("train", "attack"):
        e, c = times[f"{kind} eager"], times[f"{kind} compiled"]
        overhead = firsts[f"{kind} compiled"] - firsts[f"{kind} eager"]
        gain = e["median"] - c["median"]
        break_even = overhead / gain if gain > 0 else None
        results[kind] = {
            "eager": {**e, "first_call_s": firsts[f"{kind} eager"]},
            "compiled": {**c, "first_call_s": firsts[f"{kind} compiled"]},
            "speedup": common.ratio(e, c),
            "compile_overhead_s": overhead,
            "break_even_steps": break_even,
        }
        rows.append(
            [
                kind,
                firsts[f"{kind} eager"],
                firsts[f"{kind} compiled"],
                e["median"] * 1e3,
                c["median"] * 1e3,
                common.ratio(e, c),
                None if break_even is None else round(break_even),
            ]
        )
    common.print_table(
        f"torch.compile ({cfg['backend']}) on the seed CNN, batch {cfg['batch']}, {torch.get_num_threads()} threads",
        [
            "step",
            "first call eager s",
            "first call compiled s",
            "eager ms/step",
            "compiled ms/step",
            "eager / compiled",
            "steps to pay back the compile",
        ],
        rows,
    )
    report.data.update({"results": results})
    shutil.rmtree(cache, ignore_errors=True)
    return report.save(out_dir)


def main(argv=None) -> None:
    common.script_main(__doc__, run, argv, quick_help="aot_eager backend, tiny sizes (a smoke run)")


if __name__ == "__main__":
    main()
