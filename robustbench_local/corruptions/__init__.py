"""Common corruptions, RobustBench's third track (CIFAR-10-C, Hendrycks & Dietterich
2019): the 15 corruptions at 5 severities (functions.py), corrupted sets generated
locally and cached, or read from real CIFAR-10-C files (sets.py), and a model's
accuracy under them (evaluate.py).

Needs the ``corruptions`` extra (scipy, scikit-image); only
``parse_names`` and ``parse_severities`` work without it, so that the CLI can check its
flags before anything heavy is imported."""

from __future__ import annotations

import importlib.util

from ..errors import RobustError

# the benchmark's order and spelling (CIFAR-10-C's file names); functions.NAMES is this tuple
CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
GROUPS = {
    "noise": CORRUPTIONS[0:3],
    "blur": CORRUPTIONS[3:7],
    "weather": CORRUPTIONS[7:11],
    "digital": CORRUPTIONS[11:15],
}
SEVERITIES = (1, 2, 3, 4, 5)
FAMILIES: dict[str, str] = {  # the benchmark's four groups, in its order
    **dict.fromkeys(CORRUPTIONS[0:3], "noise"),
    **dict.fromkeys(CORRUPTIONS[3:7], "blur"),
    **dict.fromkeys(CORRUPTIONS[7:11], "weather"),
    **dict.fromkeys(CORRUPTIONS[11:15], "digital"),
}
SOURCES = ("auto", "generated", "real")  # real: CIFAR-10-C / CIFAR-100-C .npy files on the data search path
EXTRA = "pip install 'robustbench_local[corruptions]' (scipy, scikit-image)"


def parse_names(text: str) -> tuple[str, ...]:
    """'all', a family (noise, blur, weather, digital) or corruption names, comma-separated
    -> names in the benchmark's order, without repeats."""
    chosen: set[str] = set()
    for part in (p.strip().lower().replace("-", "_") for p in str(text).split(",")):
        if part == "all":
            chosen.update(CORRUPTIONS)
        elif part in GROUPS:
            chosen.update(GROUPS[part])
        elif part in CORRUPTIONS:
            chosen.add(part)
        else:
            raise RobustError(f"unknown corruption '{part}'; valid: all, {', '.join(GROUPS)}, {', '.join(CORRUPTIONS)}")
    return tuple(c for c in CORRUPTIONS if c in chosen)


def parse_severities(text) -> tuple[int, ...]:
    """'all', 'A-B', or comma-separated levels 1-5 -> sorted levels."""
    if isinstance(text, int):
        text = str(text)
    out: set[int] = set()
    for part in (p.strip() for p in str(text).split(",")):
        try:
            if part == "all":
                out.update(SEVERITIES)
            elif "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
                out.update(range(a, b + 1))
                if a > b:
                    raise ValueError
            else:
                out.add(int(part))
        except ValueError:
            raise RobustError(
                f"severity must be all, a level 1-5, a range such as 1-5 or a list such as 1,3,5; got '{text}'"
            ) from None
    if not out or not out <= set(SEVERITIES):
        raise RobustError(f"severity levels run from 1 to 5; got '{text}'")
    return tuple(sorted(out))


def require_extra() -> None:
    """One line naming the install command when the corruption libraries are missing."""
    missing = [m for m in ("scipy", "skimage") if importlib.util.find_spec(m) is None]
    if missing:
        raise RobustError(f"common corruptions need {', '.join(missing)}: {EXTRA}")


def evaluate_corruptions(*args, **kwargs):
    """evaluate.evaluate_corruptions, imported on first use (scipy, scikit-image)."""
    require_extra()
    from .evaluate import evaluate_corruptions as run  # deferred: start-up time (scipy, scikit-image)

    return run(*args, **kwargs)
