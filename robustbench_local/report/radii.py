"""Radii as the report stores, keys, sorts and writes them: a float, or a ';'-joined
string for a per-channel radius, and the threat label every table and figure uses."""

from __future__ import annotations

import math


def eps_value(v):
    """A radius as stored in a row: a float, or a ';'-joined string for per-channel
    radii (a ball in one space that is an ellipsoid/box of different sides in the other)."""
    if v is None:
        return math.nan
    if isinstance(v, (list, tuple)):
        vals = [float(x) for x in v]
        if len({round(x, 12) for x in vals}) == 1:
            return vals[0]
        return ";".join(repr(x) for x in vals)
    return float(v)


def eps_key(v) -> str:
    """A radius to 6 significant digits, so float32 round-off from different code
    paths (pixel 8/255 given, or 0.0313 normalized x 0.5) does not split one threat."""
    if isinstance(v, str):
        return ";".join(f"{float(x):.6g}" for x in v.split(";"))
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{float(v):.6g}"


def eps_first(v) -> float:
    """A sortable number for a radius (the first channel of a per-channel one)."""
    if isinstance(v, str):
        return float(v.split(";")[0])
    return float(v)


def fmt_eps(v, digits: int = 4) -> str:
    if isinstance(v, str):
        return "[" + ", ".join(f"{float(x):.{digits}g}" for x in v.split(";")) + "]"
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}g}"


def fmt_eps_255(pixel) -> str:
    if isinstance(pixel, str):
        return "[" + ", ".join(f"{float(x) * 255:.3g}" for x in pixel.split(";")) + "]/255"
    return f"{pixel * 255:.3g}/255"


def threat_label(norm: str, eps_normalized, eps_pixel) -> str:
    """'L-inf eps 0.0313 normalized = 0.0157 pixel (3.99/255)'."""
    return f"{_norm_name(norm)} eps {fmt_eps(eps_normalized)} normalized = {_pixel_text(norm, eps_pixel)}"


def pixel_threat_label(norm: str, eps_pixel) -> str:
    """The label of a radius shared by models whose normalizations differ: 'L-inf eps
    0.03137 pixel (8/255), normalized per model'."""
    return f"{_norm_name(norm)} eps {_pixel_text(norm, eps_pixel)}, normalized per model"


def _norm_name(norm: str) -> str:
    return {"linf": "L-inf", "l2": "L2", "l1": "L1"}.get(str(norm), str(norm))


def _pixel_text(norm: str, eps_pixel) -> str:
    """'0.03137 pixel (8/255)': x/255 suits a per-pixel bound, so L-inf only."""
    return f"{fmt_eps(eps_pixel)} pixel" + (f" ({fmt_eps_255(eps_pixel)})" if str(norm) == "linf" else "")
