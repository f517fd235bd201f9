"""Weather corruptions of CIFAR-10-C: snow, frost (a procedural ice texture, see frost_texture)
and fog (a diamond-square plasma fractal), plus brightness, which the benchmark files with them.

Same calling convention as blur.py; snow, frost and brightness need 3 channels (corrupt()
hands grayscale images over repeated to RGB)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .blur import motion_line, shift_sum, zoom_to

# per severity: flake noise mean and std, flake zoom, threshold, streak radius and sigma (px), image weight
SNOW = (
    (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)
# per severity: image weight, frost weight
FROST = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))
# per severity: fog strength, plasma roughness decay
FOG = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))
# per severity: added HSV value
BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)

_LUMA = np.array([0.299, 0.587, 0.114])  # cv2.COLOR_RGB2GRAY
_ICE_TINT = np.array([0.86, 0.93, 1.0])  # frost is a pale blue-white


def snow(x, severity, s, rng):
    mean, std, zoom, threshold, radius, sigma, keep = SNOW[severity - 1]
    h, w = x.shape[:2]
    # flakes keep their size relative to the image: zoom by zoom * s; only the part that stays
    # in view after the centre zoom is drawn (the reference draws H x W and crops it)
    z = zoom * s
    field = rng.normal(mean, std, size=(math.ceil(h / z), math.ceil(w / z)))
    flakes = zoom_to(field, z, h, w)
    flakes[flakes < threshold] = 0
    flakes = np.floor(np.clip(flakes, 0, 1) * 255) / 255  # the reference's uint8 PNG round trip
    flakes = shift_sum(flakes, *motion_line(radius * s, sigma * s, rng.uniform(-135, -45)))[..., None]
    gray = (x @ _LUMA)[..., None]
    x = keep * x + (1 - keep) * np.maximum(x, gray * 1.5 + 0.5)
    return x + flakes + flakes[::-1, ::-1]


def _smooth_noise(rng, shape, sigma) -> np.ndarray:
    """Gaussian noise blurred by ``sigma`` (periodic), rescaled to zero mean and unit std."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (n - n.mean()) / (n.std() + 1e-12)


def frost_texture(h: int, w: int, s: float, rng: np.random.Generator) -> np.ndarray:
    """A seeded stand-in for the benchmark's frost photographs (h x w x 3 in [0,1], mean about
    0.48): a pale blue-white ice layer whose thickness varies smoothly over ~3*s pixels, crossed
    by crystal needles (random seeds drawn out into bright lines of 3*s to 9*s pixels along four
    random directions, so they cross like branches), and a fine grain."""
    thickness = _smooth_noise(rng, (h, w), 3 * s)
    needles = np.zeros((h, w))
    for angle in rng.uniform(0, np.pi, size=4):
        # needles stay about a pixel wide and get s times longer, so s times fewer per pixel keeps
        # the share of the image they cover (and the texture's mean) the same at every size
        seeds = np.where(rng.random((h, w)) < 0.02 / s, rng.uniform(0.5, 1.0, (h, w)), 0.0)
        half = round(rng.uniform(1.5, 4.5) * s)
        i = np.arange(-half, half + 1)
        dy, dx = np.round(i * np.sin(angle)).astype(int), np.round(i * np.cos(angle)).astype(int)
        needles = np.maximum(needles, shift_sum(seeds, dy, dx, np.ones(len(i))))
    needles = ndimage.gaussian_filter(np.minimum(needles, 1), 0.4, mode="wrap")
    grain = rng.standard_normal((h, w))
    ice = 0.36 + 0.07 * thickness + 0.45 * needles * (1 + 0.3 * thickness) + 0.04 * grain
    return np.clip(ice[..., None] * _ICE_TINT, 0, 1)


def frost(x, severity, s, rng):
    keep, weight = FROST[severity - 1]
    return keep * x + weight * frost_texture(x.shape[0], x.shape[1], s, rng)


def plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """A size x size (power of two) periodic diamond-square height map in [0,1]. Each midpoint is
    the mean of its four neighbours plus uniform noise of amplitude wibble^2, wibble starting at
    100 and divided by ``decay`` per level (the reference's fog map)."""
    grid = np.zeros((size, size))
    step, wibble = size, 100.0

    def jitter(shape):
        return wibble * rng.uniform(-wibble, wibble, shape)

    while step >= 2:
        half = step // 2
        corners = grid[0::step, 0::step]
        # square step: cell centres from the four cell corners
        around = corners + np.roll(corners, -1, axis=0)
        around = around + np.roll(around, -1, axis=1)
        grid[half::step, half::step] = around / 4 + jitter(around.shape)
        centres = grid[half::step, half::step]
        # diamond step: edge midpoints from the two corners and two centres beside them
        top = corners + np.roll(corners, -1, axis=1) + centres + np.roll(centres, 1, axis=0)
        grid[0::step, half::step] = top / 4 + jitter(top.shape)
        left = corners + np.roll(corners, -1, axis=0) + centres + np.roll(centres, 1, axis=1)
        grid[half::step, 0::step] = left / 4 + jitter(left.shape)
        step, wibble = half, wibble / decay
    grid -= grid.min()
    return grid / grid.max()


def fog(x, severity, s, rng):
    strength, decay = FOG[severity - 1]
    h, w = x.shape[:2]
    size = 1 << (max(h, w) - 1).bit_length()  # the smallest power of two >= max(h, w)
    top = x.max()
    x = x + strength * plasma_fractal(size, decay, rng)[:h, :w, None]
    return x * top / (top + strength)


def brightness(x, severity, s, rng):
    """HSV value + c, hue and saturation kept: with V = max(r, g, b) that is the RGB scaled by
    V'/V (black becomes the gray V'), the same as skimage's rgb2hsv / hsv2rgb round trip."""
    v = x.max(axis=2, keepdims=True)
    v_new = np.minimum(v + BRIGHTNESS[severity - 1], 1.0)
    return np.where(v > 0, x * (v_new / np.maximum(v, 1e-12)), v_new)
