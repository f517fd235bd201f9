"""How numbers read to a person: counts with their noun, accuracies as percents with
their n. Records keep fractions; only what is printed goes through here."""

from __future__ import annotations

import math


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 epoch', '2 epochs', '1,000 points'; ``many`` for irregular plurals."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def pct(frac: float | None, digits: int = 1) -> str:
    """A fraction as a percent: 0.3188 -> '31.9%'; missing or NaN -> 'n/a'."""
    if frac is None or (isinstance(frac, float) and math.isnan(frac)):
        return "n/a"
    return f"{100 * frac:.{digits}f}%"


def acc_text(frac: float | None, n: int, ci: tuple[float, float] | list[float] | None = None) -> str:
    """'31.9% (n=1,000, 95% CI 29.1-34.8%)'; without ``ci``: '31.9% (n=1,000)'."""
    tail = f", 95% CI {100 * ci[0]:.1f}-{100 * ci[1]:.1f}%" if ci is not None else ""
    return f"{pct(frac)} (n={n:,}{tail})"


def clock(seconds: float) -> str:
    """Elapsed or remaining time: '0:42', '12:05', '1:02:03'."""
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def duration(seconds: float) -> str:
    """A run's length: '42.3 s' under two minutes, else '12.5 min'."""
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# training methods as a reader names them: the adversarial method, not the base loss alone
ADV_LABELS = {
    "pgd": "PGD-AT",
    "trades": "TRADES",
    "fgsm-rs": "FGSM-RS",
    "fgsm_rs": "FGSM-RS",
    "n-fgsm": "N-FGSM",
    "free": "Free-AT",
}
BASE_LABELS = {"standard": "standard", "mixup": "MixUp", "cutmix": "CutMix", "ova": "OVA"}


def method_label(method, adv) -> str:
    """'PGD-AT', 'MixUp + PGD-AT', 'TRADES', 'standard', 'MixUp'; '-' when unknown."""
    base = BASE_LABELS.get(method, method) if isinstance(method, str) and method else None
    if not isinstance(adv, str) or adv in ("", "none", "None", "-"):
        return base or "-"
    at = ADV_LABELS.get(adv, adv)
    return at if base in (None, "standard") else f"{base} + {at}"
