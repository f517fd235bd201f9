"""Benchmark 7, memory layout and precision: NCHW against channels_last (NHWC), fp32
against bf16 autocast, for the zoo's CIFAR networks on this CPU.

Why it exists: fit() and evaluate() choose the layout by default ('auto') and the
README advises --amp on CPUs with native bf16; both choices rest on these figures.

Cases, per model, on random CIFAR-shaped inputs with fixed seeds, run interleaved:
- train step: forward, cross-entropy, backward, SGD step (model in train mode), in
  NCHW / NHWC, fp32 / bf16 autocast;
- attack step: forward + input-gradient backward with parameters frozen (eval mode),
  the unit of every PGD step, in NCHW / NHWC (fp32: attacks run in fp32 by default).

Each ratio is NCHW-fp32 time over the case's time (> 1: faster). The same-result
check beside it: max |difference| of logits and of the input gradient between the two
layouts in fp32, from identical weights and inputs."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F

from benchmarks import common

NAME = "layout"
FULL = {"models": [("cnn", {}, 128), ("fast", {"widths": "64,256,256"}, 256), ("resnet18", {}, 64)], "repeats": 7}
QUICK = {"models": [("cnn", {"maps": "8,16"}, 8)], "repeats": 1}
LAYOUTS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}


def build(arch: str, kwargs: dict, layout: str):
    from robustbench_local.models import build_model

    torch.manual_seed(0)
    model = build_model(arch, num_classes=10, input_shape=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, **kwargs)
    return model.to(memory_format=LAYOUTS[layout])


def inputs(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A CIFAR-shaped random batch and labels from their own generator."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, 32, 32, generator=g), torch.randint(0, 10, (batch,), generator=g)


def input_grad(model, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, cross-entropy gradient w.r.t. the input): one attack step's work."""
    xa = x.detach().clone().requires_grad_(True)
    logits = model(xa)
    return logits.detach(), torch.autograd.grad(F.cross_entropy(logits, y), xa)[0]


def model_cases(arch: str, kwargs: dict, batch: int) -> dict:
    """name -> callable for one model: train steps in 4 variants, attack steps in 2."""
    x, y = inputs(batch, 0)
    out = {}
    for layout, fmt in LAYOUTS.items():
        xl = x.contiguous(memory_format=fmt)
        for bf16 in (False, True):
            model = build(arch, kwargs, layout).train()
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

            def train_step(model=model, opt=opt, xl=xl, bf16=bf16):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = F.cross_entropy(model(xl), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            out[f"train {layout} {'bf16' if bf16 else 'fp32'}"] = train_step
        model = build(arch, kwargs, layout).eval().requires_grad_(False)
        out[f"attack {layout} fp32"] = lambda model=model, xl=xl: input_grad(model, xl, y)
    return out


def same_result(arch: str, kwargs: dict, batch: int) -> dict:
    """Logits and input gradients of NCHW and NHWC copies of the same weights, fp32."""
    x, y = inputs(batch, 1)
    (l0, g0), (l1, g1) = [
        input_grad(build(arch, kwargs, layout).eval().requires_grad_(False), x.contiguous(memory_format=fmt), y)
        for layout, fmt in LAYOUTS.items()
    ]
    return {
        "logits_max_abs_diff": float((l0 - l1).abs().max()),
        "logits_max_abs": float(l0.abs().max()),
        "input_grad_max_abs_diff": float((g0 - g1).abs().max()),
        "input_grad_max_abs": float(g0.abs().max()),
    }


def run(quick: bool = False, out_dir=None) -> dict:
    cfg = QUICK if quick else FULL
    common.setup_threads()
    report = common.Report(
        NAME,
        quick,
        settings={
            "models": [{"arch": a, "kwargs": k, "batch": b} for a, k, b in cfg["models"]],
            "repeats": cfg["repeats"],
            "threads": torch.get_num_threads(),
            "inputs": "torch.rand CIFAR-shaped batches, seed 0",
            "timing": "one call = one step on the batch; interleaved round-robin, 1 warm-up call each; medians",
            "optimizer": "SGD lr 1e-3 momentum 0.9 (train steps)",
        },
    )
    results, rows = {}, []
    for arch, kwargs, batch in cfg["models"]:
        times = common.time_cases(model_cases(arch, kwargs, batch), cfg["repeats"])
        check = same_result(arch, kwargs, batch)
        label = arch + (f" ({', '.join(f'{k}={v}' for k, v in kwargs.items())})" if kwargs else "")
        entry = {"batch": batch, "same_result_fp32": check, "cases": {}}
        for name, t in times.items():
            kind = name.split()[0]
            base = times[f"{kind} nchw fp32"]
            entry["cases"][name] = {
                **t,
                "images_per_s": batch / t["median"],
                "speedup_vs_nchw_fp32": common.ratio(base, t),
            }
            rows.append([label, batch, name, t["median"] * 1e3, batch / t["median"], common.ratio(base, t)])
        rows.append(
            [
                label,
                batch,
                "NCHW vs NHWC, fp32: max |logit diff| / max |input-grad diff|",
                None,
                None,
                f"{check['logits_max_abs_diff']:.1e} / {check['input_grad_max_abs_diff']:.1e}",
            ]
        )
        results[label] = entry
    common.print_table(
        f"layout and precision, {torch.get_num_threads()} threads",
        ["model", "batch", "case", "median ms/step", "img/s", "vs NCHW fp32"],
        rows,
    )
    report.data.update({"results": results})
    return report.save(out_dir)


def main(argv=None) -> None:
    common.script_main(__doc__, run, argv)


if __name__ == "__main__":
    main()
