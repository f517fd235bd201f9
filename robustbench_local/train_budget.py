"""A wall-clock budget for training (train.budget_minutes, ``--budget-minutes``).

``epochs`` stays the most the run may train; after every epoch the run plans how many
epochs in all it can finish within the budget, at the pace of its slowest epoch so far
(the first is left out once there are others: it pays one-off costs such as the data
cache and lazy initialisation). The learning-rate schedule is re-planned to end on that
epoch, so a run cut short by the clock still anneals (as in Li et al. 2020, "Budgeted
training: rethinking deep neural network training under resource constraints"), and
the run stops there, naming the budget. The plan is a forecast: an epoch slower than
every earlier one can still carry the total past the budget by part of an epoch.

The minutes counted are the training record's: training steps plus validation, the
test pass of best.pth excluded."""

from __future__ import annotations

from dataclasses import dataclass

from .text import plural


@dataclass(frozen=True)
class BudgetPlan:
    epochs: int  # epochs in all, done ones included
    reason: str | None  # why the run stops before train.epochs, once it does


def plan_epochs(budget_minutes: float, epoch_seconds: list[float], most: int) -> BudgetPlan:
    """The epochs in all (at most ``most``) that fit in ``budget_minutes``, after the
    epochs done so far took ``epoch_seconds`` each."""
    done = len(epoch_seconds)
    pace = max(epoch_seconds[1:] or epoch_seconds)
    left = budget_minutes * 60.0 - sum(epoch_seconds)
    fits = done + max(0, int(left // pace)) if pace > 0 else most
    epochs = max(done, min(most, fits))
    if epochs >= most:
        return BudgetPlan(most, None)
    return BudgetPlan(
        epochs,
        f"time budget: {plural(epochs, 'epoch')} of {most} fit in {budget_minutes:g} min "
        f"at {pace / 60:.1f} min per epoch",
    )


def epochs_text(budget_minutes: float | None, n: int) -> str:
    """'13 epochs', or under a time budget '13 epochs at most in 60 min'."""
    return plural(n, "epoch") + (f" at most in {budget_minutes:g} min" if budget_minutes else "")


def epoch_seconds(history: list[dict]) -> list[float]:
    """Each epoch's seconds (its training and validation), from the history rows."""
    return [float(r.get("seconds", 0.0)) for r in history]
