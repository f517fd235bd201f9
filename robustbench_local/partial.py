"""An attack's finished batches, kept on disk while it runs, so that an evaluation cut
off part-way (AutoAttack on 1,000 points takes an hour on a CPU) resumes at the batch
where it stopped instead of from the first point.

Each batch draws its random numbers from its own seed (evaluation.run_attack), so a
resumed run gives exactly the numbers of an uninterrupted one. The file is keyed by
everything the result depends on (checkpoint sha256, attack and threat, points, which
points are attacked, seed, batch size); a file with another key is ignored and
replaced. It holds tensors and plain values only and is read with weights_only=True."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import torch

from .fileio import atomic_path

log = logging.getLogger(__name__)


def run_key(**parts) -> str:
    """A stable digest of JSON-able parts and tensors (tensors by their bytes)."""
    h = hashlib.sha256()
    for name in sorted(parts):
        value = parts[name]
        h.update(name.encode())
        if isinstance(value, torch.Tensor):
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(json.dumps(value, sort_keys=True, default=str).encode())
    return h.hexdigest()


class PartialRun:
    """Batches done so far of one attack run: ``done`` (batch numbers), ``fooled`` and
    ``norms`` over all points, and ``seconds`` the earlier runs spent on them (so a
    resumed attack's record counts its whole cost). ``save`` after each batch; ``finish``
    when the attack has run through, which removes the file."""

    def __init__(self, folder: str | Path, key: str):
        self.key = key
        self.path = Path(folder) / f"partial-{key[:20]}.pt"
        self.done: set[int] = set()
        self.fooled: torch.Tensor | None = None
        self.norms: torch.Tensor | None = None
        self.seconds = 0.0  # spent on the done batches by earlier, cut-off runs
        self._started = time.perf_counter()

    def load(self, n_points: int, device: torch.device) -> bool:
        """Reads what an earlier, cut-off run finished; False when there is nothing to resume."""
        if not self.path.is_file():
            return False
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # a torn or foreign file: start over rather than trust it
            log.warning("ignoring unreadable partial results %s (%s)", self.path, e)
            return False
        if state.get("key") != self.key or len(state.get("fooled", ())) != n_points:
            return False
        self.done = set(int(j) for j in state["done"])
        self.fooled = state["fooled"].to(device)
        norms = state.get("norms")
        self.norms = None if norms is None else norms.to(device)
        self.seconds = float(state.get("seconds", 0.0))
        self._started = time.perf_counter()
        return True

    def save(self, batch: int, fooled: torch.Tensor, norms: torch.Tensor | None) -> None:
        self.done.add(batch)
        state = {
            "key": self.key,
            "done": sorted(self.done),
            "fooled": fooled.detach().cpu().clone(),
            "norms": None if norms is None else norms.detach().cpu().clone(),
            "seconds": self.seconds + time.perf_counter() - self._started,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)
