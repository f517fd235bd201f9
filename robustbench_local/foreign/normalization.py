"""Which input normalization a foreign model expects, and where that was learned.

Every model we evaluate takes [0,1] pixels, with its normalization as the first layer
(models/normalize.py). A foreign network is wrapped the same way, so attacks work on
pixels and eps in normalized space means eps * std in pixels. A network that already
normalizes its own inputs (RobustBench's zoo, most TorchScript exports) gets
``none``: mean 0, std 1, so both eps spaces are pixel space."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RobustError
from ..threat import parse_number

# The usual published statistics (pixels in [0,1]). CIFAR's are the population std of
# the train split; the (0.2023, 0.1994, 0.2010) found in many repositories is another
# quantity, to be given with --mean/--std when a model was trained with it.
NAMED: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "none": ((0.0,), (1.0,)),
    "seed": ((0.5,), (0.5,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
CHOICES = (*NAMED, "dataset", "M,S")


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and std, a short name for the record, and where they came from."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    source: str

    def to_meta(self) -> dict:
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "normalization": self.name,
            "normalization_source": self.source,
        }


def _numbers(text: str, what: str) -> tuple[float, ...]:
    parts = [p for p in str(text).replace(" ", "").split(",") if p]
    if not parts:
        raise RobustError(f"{what} is empty; give one number, or one per channel, e.g. 0.4914,0.4822,0.4465")
    return tuple(parse_number(p, what=what) for p in parts)


def _per_channel(values: tuple[float, ...], channels: int, what: str) -> tuple[float, ...]:
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise RobustError(f"{what} has {len(values)} values but the images have {channels} channels")
    return values


def from_flags(
    normalization: str | None,
    mean: str | None,
    std: str | None,
    channels: int,
    dataset_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
) -> Normalization | None:
    """The normalization the user stated (--normalization, or --mean with --std), or
    None when they stated none."""
    if (mean is None) != (std is None):
        raise RobustError("--mean and --std go together; give both (one number or one per channel each)")
    if normalization is not None and mean is not None:
        raise RobustError("give --normalization or --mean/--std, not both")
    if mean is not None:
        m, s = _numbers(mean, "--mean"), _numbers(std, "--std")
        return _checked(
            Normalization(
                _per_channel(m, channels, "--mean"), _per_channel(s, channels, "--std"), "custom", "--mean/--std"
            )
        )
    if normalization is None:
        return None
    key = normalization.strip().lower()
    if key == "dataset":
        if dataset_stats is None:
            raise RobustError("--normalization dataset needs a dataset (--dataset NAME)")
        return _checked(
            Normalization(
                tuple(dataset_stats[0]),
                tuple(dataset_stats[1]),
                "dataset",
                "--normalization dataset (the statistics of the dataset's train split)",
            )
        )
    if key in NAMED:
        m, s = NAMED[key]
        return _checked(
            Normalization(
                _per_channel(m, channels, f"normalization {key}"),
                _per_channel(s, channels, f"normalization {key}"),
                key,
                f"--normalization {key}",
            )
        )
    if key.count(",") == 1:  # M,S: one mean and one std for every channel
        m, s = _numbers(key, "--normalization M,S")
        return _checked(Normalization((m,) * channels, (s,) * channels, "custom", f"--normalization {key}"))
    raise RobustError(
        f"unknown normalization '{normalization}'; valid: {', '.join(CHOICES)} "
        "(or --mean and --std with one value per channel)"
    )


def named(key: str, channels: int, source: str) -> Normalization:
    m, s = NAMED[key]
    return _checked(Normalization(_per_channel(m, channels, key), _per_channel(s, channels, key), key, source))


def _checked(n: Normalization) -> Normalization:
    if min(n.std) <= 0:
        raise RobustError(f"normalization std must be > 0 in every channel, got {list(n.std)}")
    return n
