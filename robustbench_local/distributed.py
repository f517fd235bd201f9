"""Data-parallel runs under torchrun: one process per device, PyTorch's own engine.

torchrun starts N copies of the same command and tells each who it is through
environment variables (RANK, WORLD_SIZE, LOCAL_RANK, plus the rendezvous address).
``fit`` and ``evaluate`` call ``init(device)`` themselves, so the ordinary commands
need no flag to run distributed::

    torchrun --nproc_per_node 4 -m robustbench_local train ...

Without those variables (or with WORLD_SIZE=1) every helper here is a no-op and
rank() == 0, world_size() == 1, so single-process code paths are untouched.

The backend is NCCL when the processes train on CUDA GPUs (process i takes GPU
LOCAL_RANK) and Gloo on CPU. MPS has no collective backend and is refused.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .errors import RobustError
from .runtime import epoch_seed, resolve_device
from .values import Key, ValueProblem

# long enough for rank 0 to run work the others wait for (robust validation, AutoAttack)
TIMEOUT = timedelta(hours=2)
LEAVE_WAIT = timedelta(minutes=10)  # at a normal exit, for the other ranks (cleanup)
SYNC_BN_NEEDS_CUDA = "needs CUDA GPUs (PyTorch's SyncBatchNorm has no CPU kernels); turn it off"
_owned = False  # whether this module created the process group (and so destroys it)
_failed = False  # set by mark_failed: leave at exit without waiting for the others


def launched() -> bool:
    """True when started by torchrun (or any launcher setting its variables) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if active() else 0


def is_main() -> bool:
    """Rank 0: the one process that prints, writes checkpoints, history and records."""
    return rank() == 0


def init(device: str | torch.device = "auto", key: Key = ("eval", "device")) -> torch.device:
    """Resolve the device and, under torchrun, join the process group (once per process).

    CUDA: each process takes GPU LOCAL_RANK and the backend is NCCL. CPU: Gloo.
    Returns the device this process computes on. A device that cannot be used is a
    ValueProblem at ``key`` (training passes ("train", "device"))."""
    global _owned
    if isinstance(device, torch.device):
        device = str(device)
    if not launched():
        return resolve_device(device, key)
    missing = [v for v in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise RobustError(
            f"WORLD_SIZE is {os.environ['WORLD_SIZE']} but {', '.join(missing)} is not set; "
            "start distributed runs with torchrun"
        )
    if device.startswith("cuda:") and device != f"cuda:{os.environ['LOCAL_RANK']}":
        raise ValueProblem(
            key, f"{device} under torchrun: every process takes the GPU of its LOCAL_RANK; use cuda (or auto)"
        )
    if device.startswith("cuda:"):
        device = "cuda"
    dev = resolve_device(device, key)
    if dev.type == "mps":
        raise ValueProblem(
            key, "distributed runs need CUDA (NCCL) or the CPU (Gloo); MPS has no collective backend: use cpu"
        )
    lr = int(os.environ["LOCAL_RANK"])
    if dev.type == "cuda":
        if lr >= torch.cuda.device_count():
            raise RobustError(
                f"LOCAL_RANK {lr} but only {torch.cuda.device_count()} GPU(s) are visible on this "
                "node; --nproc_per_node must be at most the GPUs per node"
            )
        torch.cuda.set_device(lr)
        dev = torch.device("cuda", lr)
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(backend=backend, timeout=TIMEOUT, **kwargs)
        _owned = True
        atexit.register(cleanup)
        sys.excepthook = _failing_excepthook(sys.excepthook)
    elif dev.type == "cuda" and dist.get_backend() != "nccl":
        raise RobustError(f"the process group uses {dist.get_backend()}, but CUDA tensors need nccl")
    return dev


def mark_failed() -> None:
    """This process is ending on an error: at exit it leaves without waiting for the others
    (they may be stuck on it). Called by the CLI for the errors it reports, and by the
    exception hook ``init`` installs for uncaught ones."""
    global _failed
    _failed = True


def _failing_excepthook(hook):
    def excepthook(*exc):
        mark_failed()
        hook(*exc)

    return excepthook


def cleanup() -> None:
    """Leave the process group if this module created it (registered at exit by ``init``).

    A rank that ends normally first waits (Gloo, up to LEAVE_WAIT) for the others: one that
    tears its connections down while another still reads from them can abort that one at
    exit. A failed rank, and NCCL (no barrier with a timeout), leave at once."""
    global _owned
    if _owned and dist.is_available() and dist.is_initialized():
        if not _failed and dist.get_backend() == "gloo":
            try:
                dist.monitored_barrier(timeout=LEAVE_WAIT, wait_all_ranks=True)
            except RuntimeError:  # a rank gone or stuck: leave anyway
                pass
        dist.destroy_process_group()
    _owned = False


# ----------------------------------------------------------------------------- collectives
def barrier() -> None:
    if active():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over all ranks, in place; returns it. Bool tensors are summed as
    integers (Gloo has no boolean reduction)."""
    if not active():
        return t
    if t.dtype == torch.bool:
        s = t.to(torch.int32)
        dist.all_reduce(s)
        t.copy_(s.bool())
        return t
    dist.all_reduce(t)
    return t


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` (any picklable value) on every rank."""
    if not active():
        return obj
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Give every rank rank ``src``'s buffers (batch-norm running statistics). DDP
    broadcasts them at the start of each training forward, so after an epoch's last
    step they differ by that step's local update; validation and the checkpoint must
    see one model."""
    if not active():
        return
    for b in module.buffers():
        dist.broadcast(b, src=src)


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. decodes the data cache); the others then run it
    and find the work done."""
    if not active():
        yield
        return
    if not is_main():
        dist.barrier()
    yield
    if is_main():
        dist.barrier()


# ----------------------------------------------------------------------------- sharding
def global_to_local_batch(global_batch: int, world: int | None = None, key: Key = ("train", "batch_size")) -> int:
    """The batch size is the GLOBAL batch (what one optimizer step sees, whatever the
    number of processes); each rank takes an equal share. A batch that does not divide
    is a ValueProblem at ``key``."""
    w = world_size() if world is None else world
    if global_batch % w:
        raise ValueProblem(
            key,
            f"{global_batch} is the global batch and must divide evenly over the {w} processes; use a multiple of {w}",
        )
    return global_batch // w


def my_chunks(n_chunks: int) -> range:
    """The chunks (batches) this rank handles when work comes in ``n_chunks`` fixed
    chunks: round-robin, so every chunk is exactly the one a single process would run."""
    return range(rank(), n_chunks, world_size())


def my_slice(n: int) -> slice:
    """This rank's contiguous share of ``n`` items (sizes differ by at most one)."""
    r, w = rank(), world_size()
    return slice(r * n // w, (r + 1) * n // w)


# ----------------------------------------------------------------------------- randomness
class RankStreams:
    """The loader's augment step under DDP. Every rank must draw the same permutation
    (the loader shards it), so all share the epoch seed; the loader draws it just
    before augmenting the epoch's first batch, and at that call each rank reseeds the
    global RNG with its own seed. From there augmentation, MixUp/CutMix, dropout and
    attack starts differ between ranks, as between examples of one batch, and stay
    reproducible (the seed depends only on seed, epoch and rank)."""

    def __init__(self, augment: Callable[[torch.Tensor], torch.Tensor] | None, seed: int, rank: int):
        self.augment = augment
        self.seed = seed
        self.rank = rank
        self._pending: int | None = None

    def start_epoch(self, epoch: int) -> None:
        self._pending = (epoch_seed(self.seed, epoch) + 1_000_033 * (self.rank + 1)) % (2**63 - 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._pending is not None:
            torch.manual_seed(self._pending)
            self._pending = None
        return self.augment(x) if self.augment is not None else x


# ----------------------------------------------------------------------------- models
def wrap_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``module`` (a no-op in a single process). DDP
    broadcasts rank 0's weights and buffers when it is built, so all ranks start equal."""
    if not active():
        return module
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, output_device=ids[0] if ids else None)


def convert_sync_bn(module: nn.Module, device: torch.device) -> nn.Module:
    """Batch norm over the global batch (statistics all-reduced every forward), CUDA only."""
    if device.type != "cuda":
        raise ValueProblem(("train", "sync_bn"), SYNC_BN_NEEDS_CUDA)
    if not active():
        return module
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)
