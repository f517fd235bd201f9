"""What fit() shows while it trains: Reporter (a progress task per epoch, validation
and test pass, one line per epoch and a summary) on top of progress.py's generic
display, and the one-line duration of a training run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from .progress import ProgressDisplay
from .runtime import is_interactive
from .text import acc_text, duration, pct, plural

if TYPE_CHECKING:  # only for annotations: train_setup.py imports the models and methods
    from .train_setup import Run


class Reporter:
    """What fit() shows: a progress task per epoch, validation and test pass (see
    progress.py: a live bar on a terminal, a plain line every 30 s otherwise), one
    line per epoch and a summary; nothing when quiet."""

    def __init__(self, console=None, interactive: bool | None = None, quiet: bool = False):
        self.quiet = quiet
        self.console = console or Console(highlight=False)
        self.display = ProgressDisplay(
            self.console, quiet=quiet, interactive=is_interactive() if interactive is None else interactive
        )
        self.interactive = self.display.mode == "terminal"
        self._epoch = None

    def say(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def task(self, description: str, total: int | None = None, unit: str = "images"):
        """A pass with its own progress (validation, test); its result is printed by the caller."""
        return self.display.task(description, total, unit, final=False)

    def begin_epoch(self, epoch: int, epochs: int, batches: int) -> None:
        if self._epoch is not None:
            self._epoch.close()
        self._epoch = self.display.task(f"epoch {epoch}/{epochs}", batches, "batches", final=False)

    @property
    def wants_batches(self) -> bool:
        return not self.quiet

    def batch(self, done: int, loss: float | None = None, acc: float | None = None, ips: float | None = None) -> None:
        """Every batch moves the count; the numbers come when the caller has read them."""
        if self._epoch is not None:
            info = None if loss is None else f"loss {loss:.3f}  acc {pct(acc)}  {ips:,.0f} img/s"
            self._epoch.update(completed=done, info=info)

    def end_epoch(self) -> None:
        if self._epoch is not None:
            self._epoch.close()
            self._epoch = None

    def epoch(
        self,
        row: dict,
        epochs: int,
        best: bool,
        extra: Sequence[str],
        train_seconds: float | None = None,
        val_seconds: float | None = None,
        n_val: int | None = None,
    ) -> None:
        extras = "".join(f"  {c} {_column_text(c, row.get(c))}" for c in extra)
        n = f" (n={n_val:,})" if n_val is not None else ""
        took = (
            f"train {train_seconds:.1f} s + val {val_seconds:.1f} s"
            if train_seconds is not None
            else f"{row['seconds']:.1f} s"
        )
        self.say(
            f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} acc {pct(row['train_acc'])}  "
            f"val loss {row['val_loss']:.4f} acc {pct(row['val_acc'])}{n}{extras}  lr {row['lr']:.4g}  "
            f"{took}  {row['images_per_s']:,.0f} img/s" + ("  *best" if best else "")
        )

    def stop(self) -> None:
        self._epoch = None
        self.display.close()

    def summary(self, rows: list[tuple[str, str]], title: str) -> None:
        if self.quiet:
            return
        if self.interactive:
            table = Table(title=title, show_header=False)
            table.add_column(style="bold")
            table.add_column()
            for k, v in rows:
                table.add_row(k, v)
            self.console.print(table)
        else:
            self.say(title)
            for k, v in rows:
                self.say(f"  {k}: {v}")


def _column_text(name: str, value) -> str:
    """An extra validation column as printed: accuracies as percents."""
    if isinstance(value, float):
        return pct(value) if name.endswith("acc") else f"{value:.4f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def duration_text(seconds: dict | None, epochs: int) -> str:
    """A training run's one duration, from the record's seconds (training and
    validation, every session of a resumed run; the final test pass not included):
    '42.3 s over 2 epochs (train 15.0 s + val 6.2 s per epoch)'."""
    if not seconds or not epochs:
        return "unknown"
    train, val = seconds["train"], seconds["val"]
    return (
        f"{duration(train + val)} over {plural(epochs, 'epoch')} "
        f"(train {train / epochs:.1f} s + val {val / epochs:.1f} s per epoch)"
    )


def summary_rows(
    run: Run,
    history: list[dict],
    best: dict,
    metrics: dict,
    test_n: int,
    seconds: dict,
    record_path: Path | None,
    stopped: str | None,
) -> list[tuple[str, str]]:
    """The rows of fit()'s closing summary: best epoch, val and test accuracy, time and files."""
    return (
        [
            ("best epoch", f"{best['epoch']} of {len(history)} (by {run.selection.metric} on validation)"),
            ("val acc", acc_text(metrics["val_acc"], metrics["val_n"], metrics["val_ci95"])),
            ("test acc", acc_text(metrics["test_acc"], test_n, metrics["test_ci95"]) + " (best.pth, reported only)"),
            ("time", duration_text(seconds, len(history))),
            ("best.pth", str(run.best_path)),
            ("last.pth", str(run.last_path)),
        ]
        + ([("record", str(record_path))] if record_path else [])
        + ([("stopped", stopped)] if stopped else [])
    )
