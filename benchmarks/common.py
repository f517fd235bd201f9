"""What every benchmark shares: thread setup, side-by-side timing with medians,
the machine description, checkpoints trained for benchmarking, the JPEG subset
tree for torchvision baselines, peak-memory probes, rich tables and the JSON
written to results/bench/<name>.json.

Timing rules: every case is warmed up before it is timed; cases that
are compared run in the same process, interleaved round-robin (the order rotates
each repeat) so a burst of load from other users hits all of them alike; figures
are medians over repeats, with min and max kept; comparisons are ratios of
medians."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results" / "bench"
TMP = RESULTS / "tmp"  # git-ignored: checkpoints and the extracted JPEG subsets live here
THREADS = 2  # every figure is taken with torch.set_num_threads(2)
JPEG_TAR = "cifar10-jpeg.tar.gz"
PEERS = {  # distribution names whose versions go into every JSON
    "torch": "torch",
    "torchvision": "torchvision",
    "numpy": "numpy",
    "pillow": "pillow",
    "robustbench_local": "robustbench_local",
    "torchattacks": "torchattacks",
    "pyautoattack": "pyautoattack",
    "adversarial-robustness-toolbox": "adversarial-robustness-toolbox",
}


def setup_threads(threads: int = THREADS) -> int:
    torch.set_num_threads(threads)
    return torch.get_num_threads()


# ----------------------------------------------------------------------------- machine
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for key, dist in PEERS.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out


def load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict:
    from robustbench_local.runtime import git_commit

    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "platform": platform.platform(),
        "device": "cpu",
        "git_commit": git_commit(),
    }


# ----------------------------------------------------------------------------- timing
def stats(values: list[float]) -> dict:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "repeats": len(values),
        "values": values,
    }


def time_cases(cases: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, dict]:
    """Seconds per call of each case: ``warmup`` untimed calls each, then ``repeats``
    interleaved rounds whose order rotates. Returns name -> stats()."""
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - t0)
    return {n: stats(times[n]) for n in names}


def ratio(a: dict, b: dict) -> float:
    """median(a) / median(b)."""
    return a["median"] / b["median"]


# ----------------------------------------------------------------------------- output
@dataclass
class Report:
    """One benchmark's JSON: settings, machine, versions, load, figures."""

    name: str
    quick: bool
    settings: dict = field(default_factory=dict)
    load_start: list[float] = field(default_factory=load_average)
    started: float = field(default_factory=time.time)
    data: dict = field(default_factory=dict)

    def write(self, out_dir: Path | None = None) -> Path:
        from robustbench_local.fileio import write_json

        path = Path(out_dir or RESULTS) / f"{self.name}{'-quick' if self.quick else ''}.json"
        payload = {
            "benchmark": self.name,
            "quick": self.quick,
            "machine": machine(),
            "versions": versions(),
            "threads": torch.get_num_threads(),
            "load_average_1_5_15min": {"start": self.load_start, "end": load_average()},
            "wall_seconds": time.time() - self.started,
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "settings": self.settings,
            **self.data,
        }
        write_json(path, payload)
        return path

    def save(self, out_dir: Path | None = None) -> dict:
        """Write the JSON, say where, and return the payload (each benchmark's last step)."""
        print(f"wrote {self.write(out_dir)}")
        return self.data


def console():
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def print_table(title: str, columns: list[str], rows: list[list[Any]], caption: str | None = None) -> None:
    from rich.table import Table

    t = Table(title=title, caption=caption, caption_justify="left")
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*[fmt(v) for v in row])
    console().print(t)


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def target_line(label: str, value: float | None, op: str, goal: float, unit: str = "x") -> dict:
    """A target check: value op goal, e.g. ratio <= 1.10."""
    met = None if value is None else (value <= goal if op == "<=" else value >= goal)
    return {"target": label, "value": value, "op": op, "goal": goal, "unit": unit, "met": met}


def print_targets(targets: list[dict]) -> None:
    rows = [
        [
            t["target"],
            t["value"],
            f"{t['op']} {t['goal']}{t['unit']}",
            "yes" if t["met"] else ("n/a" if t["met"] is None else "NO"),
        ]
        for t in targets
    ]
    print_table("targets", ["target", "measured", "goal", "met"], rows)


# ----------------------------------------------------------------------------- data and checkpoints
def cifar10():
    from robustbench_local.data import load_dataset

    return load_dataset("cifar10", download=False)


def standard_spec(quick: bool) -> dict:
    """TrainSpec fields of the standard checkpoint the attack and evaluation benchmarks
    share: the default seed CNN trained plainly by fit() on a CIFAR-10 subset, as the
    seed suite's standard cell is (25,000 images, 6 epochs: about 68% test accuracy;
    about 1.5 min on 2 quiet cores). A 5,000-image model (48%) was used before: a model
    that weak is not what users evaluate, and its many robust points bound the early
    exit's gain."""
    from robustbench_local.specs import DataSpec

    if quick:  # a tiny validation split keeps the smoke run short
        return {"data": DataSpec(subset=256, val_fraction=0.002), "epochs": 1}
    return {"data": DataSpec(subset=25000), "epochs": 6}


def adversarial_spec(quick: bool) -> dict:
    """The adversarially trained counterpart: PGD-AT (eps 0.0313 normalized, k 5,
    eta 0.0125), same model, 10,000 of the same images, 4 epochs (kept short: it is
    trained on first use, about 2.5 min on 2 quiet cores)."""
    from robustbench_local.specs import DataSpec

    if quick:
        return {
            "data": DataSpec(subset=256, val_fraction=0.002),
            "epochs": 1,
            "adv": "pgd",
            "adv_kwargs": {"k": 1, "val_n": 16, "val_k": 1},
        }
    return {
        "data": DataSpec(subset=10000),
        "epochs": 4,
        "adv": "pgd",
        "adv_kwargs": {"eps": 0.0313, "k": 5, "eta": 0.0125, "val_n": 200},
    }


def spec_summary(spec: dict) -> dict:
    return {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in spec.items()}


def bench_checkpoint(tag: str, **spec_kwargs) -> Path:
    """best.pth of a fit() run kept in results/bench/tmp/ckpt/, trained once per spec
    (the folder name carries a hash of the spec, so a changed spec trains anew)."""
    from robustbench_local.specs import TrainSpec
    from robustbench_local.train import fit

    spec = TrainSpec(**spec_kwargs)
    key = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:10]
    out = TMP / "ckpt" / f"{tag}-{key}"
    best = out / "best.pth"
    if not best.is_file():
        if out.exists():  # an interrupted earlier run: start it again
            import shutil

            shutil.rmtree(out)
        print(f"training the {tag} benchmark checkpoint -> {out}", file=sys.stderr, flush=True)
        fit(spec.replace(out=str(out), device="cpu"), store=None, quiet=True, progress=False)
    return best


def scratch(prefix: str) -> Path:
    """A fresh folder under results/bench/tmp/ (the caller removes it)."""
    import tempfile

    TMP.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=TMP))


def jpeg_source() -> Path:
    from robustbench_local.data import data_search_roots

    for root in data_search_roots():
        if (root / JPEG_TAR).is_file():
            return root / JPEG_TAR
    from robustbench_local.errors import DataNotFound

    raise DataNotFound(f"{JPEG_TAR} not found in {', '.join(str(r) for r in data_search_roots())}")


def jpeg_tree(train_index: list[int] | None, n_test: int = 0) -> Path:
    """An ImageFolder tree (train/<class>/*.jpg[, test/<class>/*.jpg]) holding the JPEGs
    of the given positions of the original train split (the order of sorted class and
    file names, the same order load_dataset and torchvision's ImageFolder use), and the
    first n_test test images in that order. Extracted once into results/bench/tmp/."""
    src = jpeg_source()
    ids = sorted(train_index) if train_index is not None else None
    key = hashlib.sha256(json.dumps([ids, n_test]).encode()).hexdigest()[:10]
    out = TMP / f"jpeg-{len(ids) if ids is not None else 'all'}-{key}"
    done = out / ".complete"
    if done.is_file():
        return out
    with tarfile.open(src, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.lower().endswith((".jpg", ".jpeg", ".png"))]
        by_split: dict[str, list[tarfile.TarInfo]] = {"train": [], "test": []}
        for m in members:
            parts = Path(m.name).parts
            if len(parts) >= 3 and parts[-3] in by_split:
                by_split[parts[-3]].append(m)
        for split in by_split:
            by_split[split].sort(key=lambda m: Path(m.name).parts[-2:])
        chosen = [by_split["train"][i] for i in ids] if ids is not None else list(by_split["train"])
        chosen += by_split["test"][:n_test]
        for m in chosen:
            parts = Path(m.name).parts[-3:]
            dest = out.joinpath(*parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(tar.extractfile(m).read())
    done.write_text("ok\n")
    return out


def seed_transforms(train: bool = True):
    """The seeds' torchvision pipeline: RandomCrop(32, 4), RandomHorizontalFlip,
    ToTensor, Normalize(0.5, 0.5)."""
    from torchvision import transforms as T

    tail = [T.ToTensor(), T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
    if not train:
        return T.Compose(tail)
    return T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), *tail])


# ----------------------------------------------------------------------------- peak memory
def reset_peak_rss() -> bool:
    """Resets the kernel's resident-set high-water mark of this process (Linux >= 4.0,
    /proc/self/clear_refs '5'), so that ru_maxrss afterwards is the peak of what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def maxrss_mib(who: int = resource.RUSAGE_SELF) -> float:
    kib = resource.getrusage(who).ru_maxrss  # KiB on Linux
    return kib / 1024


def measure_memory(module: str, case: str, quick: bool, timeout: float = 1800) -> dict:
    """Peak resident memory of one case, measured in a fresh Python process
    (benchmarks/memory.py --case MODULE:CASE): the case's setup runs first, then the
    high-water mark is reset, then the case runs once."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "memory.py"), "--case", f"{module}:{case}"]
    if quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"case": f"{module}:{case}", "error": tail[0]}
    return json.loads(lines[-1])


def arg_parser(
    doc: str, quick_help: str = "tiny sizes, one repeat (a smoke run, not a measurement)"
) -> argparse.ArgumentParser:
    """The options every benchmark script takes: --quick and --out."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--out", type=Path, default=None, help="folder for the JSON (default results/bench)")
    return p


def script_main(doc: str, run: Callable[..., Any], argv=None, **parser_kwargs) -> None:
    """The whole command line of a benchmark that takes only --quick and --out."""
    a = arg_parser(doc, **parser_kwargs).parse_args(argv)
    run(a.quick, a.out)
