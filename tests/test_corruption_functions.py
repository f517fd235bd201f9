"""The CIFAR-10-C corruption functions on real images: 4 CIFAR-10 test images (32x32 RGB, and
one resized to 64x64) and 2 Fashion-MNIST test images (28x28 grayscale)."""

from __future__ import annotations

import numpy as np
import pytest

from robustbench_local.corruptions import FAMILIES, blur, weather
from robustbench_local.corruptions.functions import (
    DIFFERS,
    NAMES,
    PARAMETERS,
    STOCHASTIC,
    corrupt,
    elastic_field,
)
from robustbench_local.errors import RobustError


def _hwc(x) -> np.ndarray:
    return x.permute(0, 2, 3, 1).numpy().astype(np.float32) / 255


@pytest.fixture(scope="module")
def cifar_images(cifar10) -> list[np.ndarray]:
    return list(_hwc(cifar10.test.x[:4]))


@pytest.fixture(scope="module")
def fmnist_images(fmnist) -> list[np.ndarray]:
    return list(_hwc(fmnist.test.x[:2]))


@pytest.fixture(scope="module")
def big_image(cifar10) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(cifar10.test.x[4].permute(1, 2, 0).numpy()).resize((64, 64), Image.Resampling.BICUBIC)
    return np.asarray(img).astype(np.float32) / 255


def _change(x, name, severity, seed=0) -> float:
    return float(np.abs(corrupt(x, name, severity, np.random.default_rng(seed)) - x).mean())


def test_names_families_and_parameters():
    assert len(NAMES) == 15 and NAMES[0] == "gaussian_noise" and NAMES[-1] == "jpeg_compression"
    assert set(FAMILIES) == set(NAMES) == set(PARAMETERS)
    counts = {f: list(FAMILIES.values()).count(f) for f in ("noise", "blur", "weather", "digital")}
    assert counts == {"noise": 3, "blur": 4, "weather": 4, "digital": 4}
    assert all(len(p) == 5 for p in PARAMETERS.values())
    assert {"frost", "motion_blur"} <= set(DIFFERS) <= set(NAMES)
    assert all("\n" not in why and why.endswith(".") for why in DIFFERS.values())


def test_every_corruption_keeps_shape_dtype_and_range(cifar_images, fmnist_images, big_image):
    for x in cifar_images + fmnist_images + [big_image]:
        for name in NAMES:
            for severity in range(1, 6):
                y = corrupt(x, name, severity, np.random.default_rng(severity))
                where = f"{name} severity {severity} on {x.shape}"
                assert y.shape == x.shape and y.dtype == np.float32, where
                assert 0.0 <= y.min() and y.max() <= 1.0, where
                assert not np.array_equal(y, x), f"{where} left the image unchanged"


def test_severity_is_monotone_on_cifar(cifar_images):
    """Mean absolute pixel change from the clean image, over 4 images (one seed per image for
    all severities): severity 5 > severity 1 and non-decreasing within 0.005 between neighbours.
    Frost and elastic are checked by what their published schedules do grow (tests below)."""
    for name in NAMES:
        if name in ("frost", "elastic_transform"):
            continue
        change = [np.mean([_change(x, name, s, seed=i) for i, x in enumerate(cifar_images)]) for s in range(1, 6)]
        shown = f"{name}: " + " ".join(f"{c:.4f}" for c in change)
        assert change[4] > change[0] + 0.005, shown
        assert min(np.diff(change)) >= -0.005, shown


def test_frost_keeps_less_of_the_image_as_severity_grows(cifar_images):
    """CIFAR-10-C's frost weights (image, frost) are (1, .2), (1, .3), (.9, .4), (.85, .4),
    (.75, .45): the image's share falls at every step, but the mean pixel change does not grow
    at every step (severity 4 only darkens the image under the same frost as severity 3). What
    grows is how much the frost hides: the correlation with the clean image falls."""
    for i, x in enumerate(cifar_images):
        corr = [
            np.corrcoef(x.ravel(), corrupt(x, "frost", s, np.random.default_rng(i)).ravel())[0, 1] for s in range(1, 6)
        ]
        assert all(np.diff(corr) < 0), corr


def test_elastic_local_displacement_grows_with_severity():
    """CIFAR-10-C's elastic schedule shrinks the random affine jitter (2.56 to 0.96 px) while the
    local displacement grows; on CIFAR images the jitter dominates the mean pixel change, which
    therefore falls with severity. The local displacement field is what grows."""
    rng = np.random.default_rng(0)
    spread = [np.std(np.stack(elastic_field(32, 32, 1.0, s, rng))) for s in range(1, 6)]
    assert spread[0] == 0 and all(np.diff(spread) > 0), spread
    jitter = [p[2] for p in PARAMETERS["elastic_transform"]]
    assert all(np.diff(jitter) < 0)


def test_same_seed_same_bytes_other_seed_differs(cifar_images, fmnist_images):
    for x in (cifar_images[0], fmnist_images[0]):
        for name in NAMES:
            a = corrupt(x, name, 3, np.random.default_rng(5))
            np.random.seed(123)  # the global NumPy state must play no part
            b = corrupt(x, name, 3, np.random.default_rng(5))
            c = corrupt(x, name, 3, np.random.default_rng(6))
            assert np.array_equal(a, b), name
            assert np.array_equal(a, c) == (name not in STOCHASTIC), name


def test_glass_blur_vectorised_pass_is_the_reference_loop(cifar_images):
    x = cifar_images[1].astype(np.float64)
    rng = np.random.default_rng(0)
    for _ in range(3):
        offsets = blur.glass_offsets(x.shape, 1, rng)
        assert set(np.unique(offsets)) == {-1, 0}  # randint(-1, 1) excludes +1
        assert np.array_equal(blur.glass_pass(x, offsets, 1), blur.glass_pass_loop(x, offsets, 1))


def test_motion_line_smears_along_its_angle():
    dy, dx, w = blur.motion_line(6, 2, 0)
    assert list(dx) == list(range(13)) and not dy.any() and np.isclose(w.sum(), 1) and all(np.diff(w) < 0)
    dy, dx, _ = blur.motion_line(6, 2, 90)
    assert list(dy) == list(range(13)) and not dx.any()
    point = np.zeros((32, 32, 1))
    point[16, 16] = 1
    out = blur.shift_sum(point, *blur.motion_line(6, 2, 0))[..., 0]
    rows, cols = np.nonzero(out)
    assert set(rows) == {16} and cols.max() == 16 and cols.min() == 4  # one-sided, 13 taps


def test_defocus_matches_opencv_reference(cifar_images):
    cv2 = pytest.importorskip("cv2")
    x = cifar_images[2].astype(np.float64)
    for severity, (radius, alias) in enumerate(blur.DEFOCUS, start=1):
        t = np.arange(-8, 9)
        disk = (t[:, None] ** 2 + t[None, :] ** 2 <= radius**2).astype(np.float64)
        kernel = cv2.GaussianBlur(disk / disk.sum(), ksize=(3, 3), sigmaX=alias)
        ref = np.stack([cv2.filter2D(x[..., k], -1, kernel) for k in range(3)], axis=-1)
        assert np.allclose(
            corrupt(cifar_images[2], "defocus_blur", severity, np.random.default_rng(0)), np.clip(ref, 0, 1), atol=1e-6
        )


def test_brightness_is_an_hsv_value_shift(cifar_images, fmnist_images):
    from skimage.color import hsv2rgb, rgb2hsv

    for severity, c in enumerate(weather.BRIGHTNESS, start=1):
        for x in cifar_images:
            hsv = rgb2hsv(x.astype(np.float64))
            hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
            assert np.allclose(
                corrupt(x, "brightness", severity, np.random.default_rng(0)), np.clip(hsv2rgb(hsv), 0, 1), atol=1e-6
            )
        # grayscale goes through RGB and back: the same as adding c to the gray value
        g = fmnist_images[0]
        assert np.allclose(
            corrupt(g, "brightness", severity, np.random.default_rng(0)), np.clip(g + c, 0, 1), atol=1e-6
        )


@pytest.mark.parametrize(
    "name,severity,listed",
    [
        ("fog_blur", 1, "gaussian_noise, shot_noise, impulse_noise"),
        ("Gaussian Noise", 1, "jpeg_compression"),
        ("frost", 0, "1, 2, 3, 4 or 5"),
        ("frost", 6, "1, 2, 3, 4 or 5"),
        ("frost", 2.0, "1, 2, 3, 4 or 5"),
        ("frost", True, "1, 2, 3, 4 or 5"),
    ],
)
def test_bad_name_or_severity_is_one_line(cifar_images, name, severity, listed):
    with pytest.raises(RobustError, match=listed) as e:
        corrupt(cifar_images[0], name, severity, np.random.default_rng(0))
    assert "\n" not in str(e.value)


def test_bad_image_or_rng_is_one_line(cifar_images):
    x = cifar_images[0]
    bad = [(x * 255).astype(np.uint8), x[..., :2], x[None], x * 2, x[:4, :4]]
    for image in bad:
        with pytest.raises(RobustError, match="corrupt\\(\\)") as e:
            corrupt(image, "snow", 1, np.random.default_rng(0))
        assert "\n" not in str(e.value)
    with pytest.raises(RobustError, match="numpy.random.Generator"):
        corrupt(x, "snow", 1, 0)
