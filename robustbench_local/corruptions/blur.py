"""Blur corruptions of CIFAR-10-C (defocus, glass, motion, zoom) and the spatial helpers the
weather corruptions share: the ImageMagick-style motion line, centre zoom and resizing.

Each corruption takes ``x`` (float HxWxC in [0,1]), the severity (1..5), ``s`` = min(H, W) / 32
(the factor for parameters given in pixels) and a ``numpy.random.Generator``; it returns an
unclipped float array of the same shape. Boundary handling follows the reference's libraries:
skimage.filters.gaussian ('nearest'), cv2.filter2D ('mirror' = BORDER_REFLECT_101), ImageMagick
(edge pixels repeat)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

# per severity: disk radius (px), anti-alias Gaussian sigma (px)
DEFOCUS = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))
# per severity: Gaussian sigma (px), largest shift (px), shuffle passes
GLASS = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))
# per severity: ImageMagick -motion-blur radius and sigma (px); the angle is uniform in [-45, 45] degrees
MOTION = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))
# per severity: the zoom factors averaged with the image, 1.00, 1.01, ... (the reference's np.arange)
ZOOM = tuple(tuple(round(1 + 0.01 * k, 2) for k in range(n)) for n in (6, 11, 16, 21, 26))


def gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    """skimage.filters.gaussian(x, sigma, channel_axis=-1): spatial axes only, edges repeated."""
    if sigma <= 0:
        return x
    return ndimage.gaussian_filter(x, sigma=(sigma, sigma) + (0,) * (x.ndim - 2), mode="nearest", truncate=4.0)


def _gaussian_taps(size: int, sigma: float) -> np.ndarray:
    t = np.arange(size) - (size - 1) / 2
    g = np.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """A flat disk of ``radius`` normalised to sum 1, softened by a small (3x3, 5x5 past radius 8)
    Gaussian as the reference does, and cropped to its non-zero support."""
    half = max(8, math.ceil(radius))
    t = np.arange(-half, half + 1)
    disk = (t[:, None] ** 2 + t[None, :] ** 2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    g = _gaussian_taps(3 if radius <= 8 else 5, alias_blur)
    kernel = ndimage.correlate(disk, np.outer(g, g), mode="mirror")
    rows, cols = np.nonzero(kernel > 0)
    return kernel[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def defocus_blur(x, severity, s, rng):
    radius, alias = DEFOCUS[severity - 1]
    kernel = disk_kernel(radius * s, alias * s)
    return ndimage.correlate(x, kernel[:, :, None], mode="mirror")


def glass_offsets(shape, delta: int, rng: np.random.Generator) -> np.ndarray:
    """One pass's random shifts, (rows, cols, 2) for (dy, dx), each in [-delta, delta - 1]: the
    reference's np.random.randint(-delta, delta) excludes +delta."""
    h, w = shape[:2]
    return rng.integers(-delta, delta, size=(max(h - 2 * delta, 0), max(w - 2 * delta, 0), 2))


def glass_pass_loop(x: np.ndarray, offsets: np.ndarray, delta: int) -> np.ndarray:
    """One shuffle pass as the reference runs it: pixels from the bottom-right corner up to
    (delta + 1, delta + 1), each overwritten in place by the pixel (dy, dx) away. The
    reference's tuple 'swap' of numpy row views copies one way only, so this is a copy, not a
    swap; CIFAR-10-C was made this way. Pure Python, about 1 us per pixel."""
    x = x.copy()
    h, w = x.shape[:2]
    for i, r in enumerate(range(h - delta, delta, -1)):
        for j, c in enumerate(range(w - delta, delta, -1)):
            dy, dx = offsets[i, j]
            x[r, c] = x[r + dy, c + dx]
    return x


def glass_pass(x: np.ndarray, offsets: np.ndarray, delta: int) -> np.ndarray:
    """The same pass vectorised. Exact for delta == 1: shifts are then -1 or 0, so every pixel
    reads one the descending sweep has not yet overwritten; larger deltas take the loop."""
    if delta != 1:
        return glass_pass_loop(x, offsets, delta)
    h, w = x.shape[:2]
    rows = np.arange(h - delta, delta, -1)[:, None]
    cols = np.arange(w - delta, delta, -1)[None, :]
    out = x.copy()
    out[rows, cols] = x[rows + offsets[..., 0], cols + offsets[..., 1]]
    return out


def glass_blur(x, severity, s, rng):
    sigma, delta, passes = GLASS[severity - 1]
    sigma, delta = sigma * s, max(1, round(delta * s))
    # the reference rounds down to uint8 between the blur and the shuffle
    x = np.floor(gaussian(x, sigma) * 255) / 255
    for _ in range(passes):
        x = glass_pass(x, glass_offsets(x.shape, delta, rng), delta)
    return gaussian(x, sigma)


def motion_line(radius: float, sigma: float, angle: float):
    """ImageMagick's MotionBlurImage kernel: 2*ceil(radius)+1 taps on a one-sided line at
    ``angle`` degrees (x right, y down), weights exp(-i^2 / 2 sigma^2) normalised, each tap
    rounded to the nearest pixel. Returns (dy, dx, weights)."""
    i = np.arange(2 * math.ceil(radius) + 1)
    weights = np.exp(-(i**2) / (2 * sigma**2))
    a = math.radians(angle)
    dx = np.ceil(i * math.cos(a) - 0.5).astype(int)
    dy = np.ceil(i * math.sin(a) - 0.5).astype(int)
    return dy, dx, weights / weights.sum()


def shift_sum(x: np.ndarray, dy: np.ndarray, dx: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_i weights[i] * x[r + dy[i], c + dx[i]], edge pixels repeated outside the image."""
    py, px = int(np.abs(dy).max()), int(np.abs(dx).max())
    pad = ((py, py), (px, px)) + ((0, 0),) * (x.ndim - 2)
    xp = np.pad(x, pad, mode="edge")
    h, w = x.shape[:2]
    out = np.zeros(x.shape, dtype=np.float64)
    for oy, ox, wt in zip(dy, dx, weights):
        out += wt * xp[py + oy : py + oy + h, px + ox : px + ox + w]
    return out


def motion_blur(x, severity, s, rng):
    radius, sigma = MOTION[severity - 1]
    angle = rng.uniform(-45, 45)
    return shift_sum(x, *motion_line(radius * s, sigma * s, angle))


def zoom_to(x: np.ndarray, factor: float, h: int, w: int) -> np.ndarray:
    """Bilinear zoom of all of ``x`` by ``factor`` (scipy.ndimage.zoom), centre-cropped to h x w."""
    z = ndimage.zoom(x, (factor, factor) + (1,) * (x.ndim - 2), order=1)
    top, left = (z.shape[0] - h) // 2, (z.shape[1] - w) // 2
    return z[top : top + h, left : left + w]


def clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """The centre ceil(H / factor) x ceil(W / factor) of ``x`` zoomed back to H x W (factor >= 1)."""
    h, w = x.shape[:2]
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    return zoom_to(x[top : top + ch, left : left + cw], factor, h, w)


def zoom_blur(x, severity, s, rng):
    factors = ZOOM[severity - 1]
    total = x.copy()
    for f in factors:
        total += clipped_zoom(x, f)
    return total / (len(factors) + 1)


def resize(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of a 2-D array to h x w with pixel centres aligned (as cv2.resize)."""
    if a.shape == (h, w):
        return a
    r = (np.arange(h) + 0.5) * a.shape[0] / h - 0.5
    c = (np.arange(w) + 0.5) * a.shape[1] / w - 0.5
    rr, cc = np.meshgrid(r, c, indexing="ij")
    return ndimage.map_coordinates(a, (rr, cc), order=1, mode="nearest")
