"""Progress of long work (training epochs, validation and test passes, attacks), shown
the same way everywhere.

- On a terminal: a rich Progress (description, bar, done/total, status, elapsed, ETA)
  that rich redraws several times a second from its own thread, so the clock and the
  ETA move between updates. A bar disappears when its task ends (the caller prints
  the result).
- Not on a terminal (CI, logs, pipes): one plain line per task at most every
  ``every`` seconds (30 by default), and a final line when a task that printed
  lines ends (a short task's result is printed by its caller).
- Quiet: nothing.

    with progress_display(console) as p:
        with p.task("PGD-20 @ L-inf 8/255", total=812, unit="points") as t:
            t.advance(256, info="robust so far: 120 of 256")
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .text import clock as clock_text

PLAIN_EVERY = 30.0  # seconds between plain lines of one task
HEARTBEAT = 5.0  # how often plain mode looks for a task that has gone quiet (None: only on updates)
REFRESH_PER_SECOND = 4  # terminal redraws


class Task:
    """One piece of work with an optional total. ``info`` is a short status shown
    after the count (e.g. the loss, or how many points are still robust)."""

    def __init__(self, display: ProgressDisplay, description: str, total: int | None, unit: str, final: bool):
        self.display = display
        self.description = description
        self.total = total
        self.unit = unit
        self.final = final
        self.completed = 0
        self.info = ""
        self.started = self.last_line = display.clock()
        self.closed = False
        self.rich_id = None
        self.lines = 0  # plain lines printed so far

    def advance(self, k: int = 1, info: str | None = None) -> None:
        self.update(completed=self.completed + k, info=info)

    def update(
        self,
        *,
        completed: int | None = None,
        total: int | None = None,
        description: str | None = None,
        info: str | None = None,
    ) -> None:
        if completed is not None:
            self.completed = completed
        if total is not None:
            self.total = total
        if description is not None:
            self.description = description
        if info is not None:
            self.info = info
        self.display._changed(self)

    def close(self, ok: bool = True) -> None:
        self.display._close(self, ok)

    def __enter__(self) -> Task:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(ok=exc_type is None)

    def count_text(self) -> str:
        if self.total is None:  # work without a count shows only its description and time
            return f"{self.completed:,} {self.unit}".rstrip() if self.completed else ""
        return f"{self.completed:,}/{self.total:,} {self.unit}".rstrip()

    def line(self, now: float, final: bool = False) -> str:
        """The plain line: 'NAME: 300/1,000 points (30%), INFO; 0:42 elapsed, ETA 1:38'."""
        elapsed = now - self.started
        count = self.count_text()
        if self.total and not final:
            count += f" ({100 * self.completed / self.total:.0f}%)"
        details = ", ".join(filter(None, (count, self.info)))
        text = f"{self.description}: {details}" if details else self.description
        if final:
            return text + f"; done in {clock_text(elapsed)}"
        text += f"; {clock_text(elapsed)} elapsed"
        if self.total and 0 < self.completed < self.total:
            text += f", ETA {clock_text(elapsed * (self.total - self.completed) / self.completed)}"
        return text


class ProgressDisplay:
    """Hands out Tasks and shows them in one of three modes ('terminal', 'plain',
    'quiet'). ``interactive`` None: terminal mode when the console is a terminal
    and $CI is unset. ``clock`` and ``every`` are injectable for tests."""

    def __init__(
        self,
        console=None,
        *,
        quiet: bool = False,
        interactive: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        every: float | None = None,
        heartbeat: float | None = HEARTBEAT,
    ):
        from rich.console import Console  # deferred: start-up time (rich, on a terminal only)

        self.console = console or Console(highlight=False)
        if interactive is None:
            interactive = self.console.is_terminal and os.environ.get("CI") is None
        self.mode = "quiet" if quiet else "terminal" if interactive else "plain"
        self.clock = clock
        self.every = PLAIN_EVERY if every is None else every
        self.heartbeat = heartbeat
        self.tasks: list[Task] = []
        self._lock = threading.RLock()
        self._progress = None  # the rich Progress while a task is open (terminal mode)
        self._stop_beat: threading.Event | None = None

    # ---------------------------------------------------------------- tasks
    def task(self, description: str, total: int | None = None, unit: str = "", *, final: bool = True) -> Task:
        """A new task; use it as a context manager (or call close()). ``final``: off
        a terminal, print a last line when it ends."""
        t = Task(self, description, total, unit, final)
        if self.mode == "quiet":
            return t
        with self._lock:
            self.tasks.append(t)
            if self.mode == "terminal":
                self._rich().start()
                t.rich_id = self._progress.add_task(description, total=total, count=t.count_text(), info="")
            elif self.heartbeat and self._stop_beat is None:
                self._stop_beat = threading.Event()
                threading.Thread(target=self._beat, args=(self._stop_beat,), daemon=True).start()
        return t

    def _changed(self, t: Task) -> None:
        if self.mode == "quiet" or t.closed:
            return
        with self._lock:
            if self.mode == "terminal":
                self._progress.update(
                    t.rich_id,
                    completed=t.completed,
                    total=t.total,
                    description=t.description,
                    count=t.count_text(),
                    info=t.info,
                )
            else:
                self._maybe_line(t)

    def _maybe_line(self, t: Task) -> None:
        now = self.clock()
        if now - t.last_line >= self.every:
            t.last_line = now
            t.lines += 1
            self._print(t.line(now))

    def _close(self, t: Task, ok: bool) -> None:
        if t.closed:
            return
        t.closed = True
        if self.mode == "quiet":
            return
        with self._lock:
            self.tasks.remove(t)
            if self.mode == "terminal":
                self._progress.remove_task(t.rich_id)
                if not self.tasks:  # no live display between tasks: plain prints stay plain
                    self._progress.stop()
                    self._progress = None
            else:
                if ok and t.final and t.lines:  # a task that printed lines says it ended;
                    self._print(t.line(self.clock(), final=True))  # a short one leaves its result to the caller
                if not self.tasks and self._stop_beat is not None:
                    self._stop_beat.set()
                    self._stop_beat = None

    def close(self) -> None:
        """Ends every open task (no final lines) and the live display."""
        for t in list(self.tasks):
            t.close(ok=False)

    # ---------------------------------------------------------------- output
    def _print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def _rich(self):
        if self._progress is None:
            # deferred: start-up time (rich's progress bars, on a terminal only)
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[count]}"),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
                get_time=self.clock,
                auto_refresh=True,
                refresh_per_second=REFRESH_PER_SECOND,
            )
        return self._progress

    def _beat(self, stop: threading.Event) -> None:
        # a task whose next update is far away (one long attack batch) still gets its line
        while not stop.wait(self.heartbeat):
            with self._lock:
                for t in list(self.tasks):
                    self._maybe_line(t)


@contextmanager
def progress_display(
    console=None, *, quiet: bool = False, interactive: bool | None = None, **kwargs
) -> Iterator[ProgressDisplay]:
    """A ProgressDisplay that is closed (live display stopped) however the block ends."""
    display = ProgressDisplay(console, quiet=quiet, interactive=interactive, **kwargs)
    try:
        yield display
    finally:
        display.close()
