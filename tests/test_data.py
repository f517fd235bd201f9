"""Data package: loaders on the real offline data, formats written by the tests
themselves (image trees, CIFAR pickles), the cache, the search error, batched
augmentation, the tensor loader and `robust data`."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from robustbench_local.cli import main
from robustbench_local.data import (
    AUGMENT_POLICIES,
    DATASETS,
    Split,
    TensorLoader,
    build_augment,
    color_jitter,
    cutout,
    data_search_roots,
    default_augment,
    describe_datasets,
    formats,
    hflip,
    load_dataset,
    random_crop,
    search,
)
from robustbench_local.data import cache as cache_mod
from robustbench_local.errors import DataNotFound, RobustError

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def per_class(y: torch.Tensor, k: int) -> list[int]:
    return torch.bincount(y, minlength=k).tolist()


def rows(x: torch.Tensor) -> list[bytes]:
    """Images as sorted byte strings: a multiset to compare what a loader yields."""
    x = x.to(torch.uint8) if x.dtype == torch.uint8 else (x * 255).round().to(torch.uint8)
    return sorted(bytes(r) for r in x.reshape(len(x), -1).cpu().numpy())


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """Every search root points at an empty folder: ROBUST_DATA, the cwd and the repo's shared/data."""
    for name in ("root", "env", "cwd", "shared"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("ROBUST_DATA", str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(search, "REPO_SHARED_DATA", tmp_path / "shared")
    return tmp_path


# ----------------------------------------------------------------------------- real CIFAR-10


def test_cifar10_shapes_dtypes_and_classes(cifar10):
    b = cifar10
    assert b.info.name == "cifar10"
    assert list(b.info.classes) == CIFAR10_CLASSES and b.info.num_classes == 10
    assert b.info.input_shape == (3, 32, 32)
    assert Path(b.info.source).name == "cifar10-jpeg.tar.gz"
    assert (len(b.train), len(b.val), len(b.test)) == (45000, 5000, 10000)
    for s in (b.train, b.val, b.test):
        assert s.x.dtype == torch.uint8 and s.x.is_contiguous() and s.x.shape[1:] == (3, 32, 32)
        assert s.y.dtype == torch.int64 and s.index.dtype == torch.int64
    # 5,000 train and 1,000 test images per class before the val split
    assert per_class(torch.cat([b.train.y, b.val.y]), 10) == [5000] * 10
    assert per_class(b.test.y, 10) == [1000] * 10
    # train and val together are the original train split, each position once
    assert torch.equal(torch.cat([b.train.index, b.val.index]).sort().values, torch.arange(50000))
    assert torch.equal(b.test.index, torch.arange(10000))
    # the well-known CIFAR-10 statistics, a touch off because of the JPEG copy
    assert np.allclose(b.info.mean, (0.4914, 0.4822, 0.4465), atol=0.01)
    assert np.allclose(b.info.std, (0.2470, 0.2435, 0.2616), atol=0.01)
    d = b.info.to_dict()
    assert json.loads(json.dumps(d)) == d and d["num_classes"] == 10


def test_cifar10_labels_and_pixels_match_the_archive(cifar10):
    # images are ordered by (class folder, file name): the first ship of test/ is test position 8000
    with tarfile.open(SHARED / "cifar10-jpeg.tar.gz", "r|gz") as tf:
        ships = {}
        for m in tf:
            if m.isfile() and m.name.startswith("test/ship/"):
                ships[m.name] = tf.extractfile(m).read()
    first = sorted(ships)[0]
    expected = np.array(Image.open(io.BytesIO(ships[first])).convert("RGB"))
    assert cifar10.test.y[8000].item() == CIFAR10_CLASSES.index("ship")
    assert torch.equal(cifar10.test.x[8000], torch.from_numpy(expected).permute(2, 0, 1))


def test_cifar10_second_load_reads_the_cache_without_decoding(cifar10, monkeypatch):
    source = Path(cifar10.info.source)
    path = cache_mod.cache_file(source, formats.source_fingerprint(source), None)
    assert path.is_file()
    mtime = path.stat().st_mtime_ns

    def no_decode(*a, **k):
        raise AssertionError("decoded again although the cache holds the data")

    monkeypatch.setattr(formats, "decode_image_tree", no_decode)
    again = load_dataset("cifar10", download=False)
    assert path.stat().st_mtime_ns == mtime
    assert torch.equal(again.test.x, cifar10.test.x) and torch.equal(again.val.index, cifar10.val.index)
    assert again.info == cifar10.info


# ----------------------------------------------------------------------------- real Fashion-MNIST


def test_fashion_mnist(fmnist):
    b = fmnist
    assert b.info.classes[0] == "T-shirt/top" and b.info.classes[9] == "Ankle boot"
    assert b.info.input_shape == (1, 28, 28) and len(b.info.mean) == 1
    assert (len(b.train), len(b.val), len(b.test)) == (54000, 6000, 10000)
    assert b.train.x.dtype == torch.uint8 and b.train.x.shape[1:] == (1, 28, 28)
    assert per_class(torch.cat([b.train.y, b.val.y]), 10) == [6000] * 10
    assert per_class(b.test.y, 10) == [1000] * 10
    # labels and pixels in file order: compare with the raw IDX bytes
    with gzip.open(SHARED / "fashion-mnist" / "train-labels-idx1-ubyte.gz") as f:
        raw_labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    with gzip.open(SHARED / "fashion-mnist" / "t10k-images-idx3-ubyte.gz") as f:
        raw_test = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    assert torch.equal(b.train.y, torch.from_numpy(raw_labels[b.train.index.numpy()].astype(np.int64)))
    assert torch.equal(b.test.x[:, 0], torch.from_numpy(raw_test.copy()))
    assert abs(b.info.mean[0] - 0.2860) < 1e-3 and abs(b.info.std[0] - 0.3530) < 1e-3


# ----------------------------------------------------------------------------- validation split and subsets


def test_val_split_disjoint_deterministic_and_seeded(fmnist):
    tr, va = set(fmnist.train.index.tolist()), set(fmnist.val.index.tolist())
    assert not tr & va and len(tr | va) == 60000
    # val rows really are the original train rows at those positions
    assert torch.equal(fmnist.val.index, fmnist.val.index.sort().values)
    again = load_dataset("fashion-mnist", download=False)
    assert torch.equal(again.val.index, fmnist.val.index) and torch.equal(again.val.x, fmnist.val.x)
    other = load_dataset("fashion-mnist", download=False, split_seed=1, val_fraction=0.2)
    assert len(other.val) == 12000 and not torch.equal(other.val.index[:6000], fmnist.val.index)
    assert torch.equal(other.test.x, fmnist.test.x)  # test is never touched
    none = load_dataset("fashion-mnist", download=False, val_fraction=0.0)
    assert len(none.val) == 0 and len(none.train) == 60000 and none.val.x.shape[1:] == (1, 28, 28)
    for bad in (-0.1, 1.0):
        with pytest.raises(RobustError, match="validation fraction"):
            load_dataset("fashion-mnist", download=False, val_fraction=bad)


def test_subset_and_take(cifar10):
    a = cifar10.train.subset(500, seed=3)
    b = cifar10.train.subset(500, seed=3)
    c = cifar10.train.subset(500, seed=4)
    assert torch.equal(a.index, b.index) and not torch.equal(a.index, c.index)
    assert len(set(a.index.tolist())) == 500 and a.name == "train"
    perm = torch.randperm(45000, generator=torch.Generator().manual_seed(3))[:500]
    assert torch.equal(a.x, cifar10.train.x[perm]) and torch.equal(a.y, cifar10.train.y[perm])
    with pytest.raises(RobustError, match="45000"):
        cifar10.train.subset(45001)
    with pytest.raises(ValueError, match="uint8"):
        Split(a.x.float(), a.y, a.index, "train")
    assert cifar10.split("val") is cifar10.val
    with pytest.raises(RobustError, match="unknown split"):
        cifar10.split("holdout")


# ----------------------------------------------------------------------------- image folders


def write_tree(root: Path, classes=("dog", "cat", "frog"), n=5, size=(8, 8), split=True, odd_size=None) -> dict:
    """PNG images with one known colour each; returns {relative path: colour}."""
    colours = {}
    for ci, cls in enumerate(classes):
        for i in range(n):
            for part in ("train", "test") if split else ("",):
                if split and part == "test" and i >= 2:
                    continue
                rel = Path(part) / cls / f"{i:03d}.png" if part else Path(cls) / f"{i:03d}.png"
                colour = (ci * 70 + i * 9 + (part == "test") * 3, 255 - ci * 40, i * 20)
                wh = odd_size if (odd_size and ci == 0 and i == 0) else size
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", wh, colour).save(root / rel)
                colours[rel.as_posix()] = colour
    (root / ".DS_Store").write_bytes(b"junk that is not an image")
    return colours


def tar_of(tree: Path, out: Path, top: str = "animals") -> Path:
    with tarfile.open(out, "w:gz") as tf:
        tf.add(tree, arcname=top)
    return out


@pytest.mark.parametrize("as_tar", [False, True])
def test_imagefolder_with_train_and_test(tmp_path, as_tar):
    tree = tmp_path / "tree"
    colours = write_tree(tree)
    src = tar_of(tree, tmp_path / "animals.tar.gz") if as_tar else tree
    b = load_dataset(f"imagefolder:{src}", cache_dir=tmp_path / "cache", val_fraction=0.0)
    assert b.info.name == f"imagefolder:{src}" and b.info.classes == ("cat", "dog", "frog")
    assert b.info.input_shape == (3, 8, 8)
    assert (len(b.train), len(b.test)) == (15, 6)
    assert per_class(b.train.y, 3) == [5, 5, 5] and per_class(b.test.y, 3) == [2, 2, 2]
    # order is (class, file): train position 0 is cat/000, position 5 is dog/000
    assert b.train.x[0, :, 0, 0].tolist() == list(colours["train/cat/000.png"])
    assert b.train.x[5, :, 3, 3].tolist() == list(colours["train/dog/000.png"])
    assert b.test.x[1, :, 0, 0].tolist() == list(colours["test/cat/001.png"])
    expected_mean = np.mean([colours[k] for k in colours if k.startswith("train/")], axis=0) / 255
    assert np.allclose(b.info.mean, expected_mean)


@pytest.mark.parametrize("as_tar", [False, True])
def test_imagefolder_single_folder_is_split_by_a_fixed_seed(tmp_path, as_tar):
    tree = tmp_path / "tree"
    colours = write_tree(tree, n=10, split=False)
    src = tar_of(tree, tmp_path / "flat.tgz") if as_tar else tree
    b = load_dataset(f"imagefolder:{src}", cache_dir=tmp_path / "cache", val_fraction=0.0)
    assert b.info.classes == ("cat", "dog", "frog")
    assert per_class(b.train.y, 3) == [8, 8, 8] and per_class(b.test.y, 3) == [2, 2, 2]
    # train and test together are every image exactly once
    all_px = sorted(tuple(c) for c in colours.values())
    got = sorted(tuple(p) for p in torch.cat([b.train.x, b.test.x])[:, :, 0, 0].tolist())
    assert got == all_px
    again = load_dataset(f"imagefolder:{src}", cache_dir=tmp_path / "cache2", val_fraction=0.0)
    assert torch.equal(again.test.x, b.test.x)


def test_imagefolder_sizes_must_agree_unless_resized(tmp_path):
    tree = tmp_path / "tree"
    write_tree(tree, size=(8, 8), odd_size=(12, 10))
    with pytest.raises(RobustError, match="differ in size.*--image-size"):
        load_dataset(f"imagefolder:{tree}", cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("*.pt"))  # nothing half-done written
    b = load_dataset(f"imagefolder:{tree}", cache_dir=tmp_path / "cache", image_size=4)
    assert b.info.input_shape == (3, 4, 4) and b.train.x.shape[1:] == (3, 4, 4)
    # a solid colour stays that colour after resizing
    assert b.train.x[1, :, 2, 2].tolist() == b.train.x[1, :, 0, 0].tolist()


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataNotFound, match="looked at"):
        load_dataset(f"imagefolder:{tmp_path / 'absent'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RobustError, match="no images"):
        load_dataset(f"imagefolder:{tmp_path / 'empty'}", cache_dir=tmp_path / "cache")
    with pytest.raises(RobustError, match="needs a path"):
        load_dataset("imagefolder")
    with pytest.raises(RobustError, match="valid datasets: .*imagefolder:PATH"):
        load_dataset("cifar11")
    with pytest.raises(RobustError, match="data.image_size: must be a positive number of pixels"):
        load_dataset("cifar10", image_size=0)


def test_image_cache_is_keyed_by_content_and_rebuilt_when_broken(tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    write_tree(tree)
    cache = tmp_path / "cache"
    first = load_dataset(f"imagefolder:{tree}", cache_dir=cache)
    files = list(cache.glob("*.pt"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns

    calls = []
    real = formats.decode_image_tree
    monkeypatch.setattr(formats, "decode_image_tree", lambda *a: calls.append(a) or real(*a))
    second = load_dataset(f"imagefolder:{tree}", cache_dir=cache)
    assert calls == [] and files[0].stat().st_mtime_ns == mtime
    assert torch.equal(first.train.x, second.train.x) and first.info == second.info

    # ROBUST_CACHE is the default cache folder
    monkeypatch.setenv("ROBUST_CACHE", str(cache))
    load_dataset(f"imagefolder:{tree}")
    assert calls == []

    # a changed file changes the key: decoded again into a second cache file
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tree / "train" / "cat" / "000.png")
    os.utime(tree / "train" / "cat" / "000.png", ns=(1, 1))
    changed = load_dataset(f"imagefolder:{tree}", cache_dir=cache)
    assert len(calls) == 1 and len(list(cache.glob("*.pt"))) == 2
    assert changed.train.x[0, :, 0, 0].tolist() == [1, 2, 3]

    # a truncated cache file is decoded again and replaced
    newest = max(cache.glob("*.pt"), key=lambda p: p.stat().st_mtime_ns)
    newest.write_bytes(b"not a torch file")
    again = load_dataset(f"imagefolder:{tree}", cache_dir=cache)
    assert len(calls) == 2 and torch.equal(again.train.x, changed.train.x)


# ----------------------------------------------------------------------------- CIFAR pickle formats


def write_cifar100(root: Path, n_train=20, n_test=10, protocol=2) -> tuple[np.ndarray, list[int]]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    fine_names = [f"class{i:02d}" for i in range(100)]
    data = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        data[split] = (x, fine)
        entry = {
            b"filenames": [f"img{i}.png".encode() for i in range(n)],
            b"batch_label": split.encode(),
            b"fine_labels": fine,
            b"coarse_labels": [v // 5 for v in fine],
            b"data": x,
        }
        (folder / split).write_bytes(pickle.dumps(entry, protocol=protocol))
    meta = {b"fine_label_names": [s.encode() for s in fine_names], b"coarse_label_names": [b"c"] * 20}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return data


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar100_tiny_file_in_torchvisions_format(tmp_path, protocol):
    data = write_cifar100(tmp_path, protocol=protocol)
    b = load_dataset("cifar100", data_root=str(tmp_path), val_fraction=0.25, download=False)
    assert b.info.num_classes == 100 and b.info.classes[7] == "class07"
    assert Path(b.info.source) == tmp_path / "cifar-100-python"
    assert (len(b.train), len(b.val), len(b.test)) == (15, 5, 10)
    x, fine = data["test"]
    assert torch.equal(b.test.x, torch.from_numpy(x.reshape(-1, 3, 32, 32)))
    assert b.test.y.tolist() == fine
    x, fine = data["train"]
    i = int(b.val.index[0])
    assert torch.equal(b.val.x[0], torch.from_numpy(x[i].reshape(3, 32, 32))) and b.val.y[0].item() == fine[i]


def test_cifar10_pickle_format_comes_first_in_its_root(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    batches = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, 4)]
        batches.append((x, labels))
        (folder / name).write_bytes(pickle.dumps({b"data": x, b"labels": labels, b"batch_label": name.encode()}, 2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in CIFAR10_CLASSES]}, 2))
    b = load_dataset("cifar10", data_root=str(tmp_path), val_fraction=0.0, image_size=16)
    assert Path(b.info.source) == folder and list(b.info.classes) == CIFAR10_CLASSES
    assert (len(b.train), len(b.test)) == (20, 4) and b.info.input_shape == (3, 16, 16)
    assert b.train.y.tolist() == sum((lab for _, lab in batches[:5]), [])


class Payload:
    """Unpickling this calls os.system: a data file must never get that far."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_pickles_cannot_run_code(tmp_path):
    write_cifar100(tmp_path)
    marker = tmp_path / "payload-ran"
    bad = {b"data": Payload(marker), b"fine_labels": [0]}
    (tmp_path / "cifar-100-python" / "train").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(RobustError, match="not allowed"):
        load_dataset("cifar100", data_root=str(tmp_path), download=False)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        formats.RestrictedUnpickler(io.BytesIO(pickle.dumps(Payload(marker)))).load()
    assert not marker.exists()


# ----------------------------------------------------------------------------- search and missing data


def test_search_roots_order(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUST_DATA", str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path)
    roots = data_search_roots(str(tmp_path / "mine"))
    assert roots[:4] == [tmp_path / "mine", tmp_path / "env", tmp_path / "data", tmp_path.parent / "shared" / "data"]
    assert roots[-1] == SHARED and len(roots) == len(set(roots)) == 5
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)  # the repo root
    assert data_search_roots().count(SHARED) == 1  # ../shared/data and the repo's copy are one place


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "fashion-mnist"])
def test_missing_data_names_every_place_searched(no_data, name):
    with pytest.raises(DataNotFound) as e:
        load_dataset(name, data_root=str(no_data / "root"), download=False)
    msg = str(e.value)
    assert "\n" not in msg and "--data-root" in msg and "$ROBUST_DATA" in msg and "download not tried" in msg
    for place in ("root", "env", "cwd/data", "shared"):
        assert str(no_data / place) in msg


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "fashion-mnist"])
def test_failed_download_fails_cleanly(no_data, monkeypatch, name):
    def offline(*a, **k):  # what a machine without a network answers
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    target = no_data / "root" / "fresh"
    with pytest.raises(DataNotFound, match=f"download of .* into {target} failed.*Name or service not known"):
        load_dataset(name, data_root=str(target), download=True)
    assert not target.exists()  # no partial archive, not even the folder it made
    # with no --data-root the download goes to ./data, which is cleaned up the same way
    with pytest.raises(DataNotFound, match=f"into {no_data / 'env'} failed"):
        load_dataset(name, download=True)
    assert list((no_data / "env").iterdir()) == []


# ----------------------------------------------------------------------------- augmentation


@pytest.fixture(scope="module")
def batch(cifar10):
    return cifar10.test.x[:64].float() / 255


def test_flip(batch):
    torch.manual_seed(0)
    assert torch.equal(hflip(hflip(batch, 1.0), 1.0), batch)
    assert torch.equal(hflip(batch, 1.0)[..., 0], batch[..., -1])
    assert torch.equal(hflip(batch, 0.0), batch)
    out = hflip(batch, 0.5)
    flipped = (out == batch.flip(3)).flatten(1).all(1)
    kept = (out == batch).flatten(1).all(1)
    assert bool((flipped | kept).all()) and 10 < int((flipped & ~kept).sum()) < 54


def _window_offsets(out, padded, pad: int, what: str) -> list[tuple[int, int]]:
    """For the first 8 images, the (row, column) offset at which each output is a window
    of its padded image; fails naming the first one that is not."""
    shifts = []
    for i in range(8):
        found = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + 32, dx : dx + 32])
        ]
        assert found, f"{what} {i} is not a window of its padded image"
        shifts.append(found[0])
    return shifts


def test_random_crop_is_a_shifted_window_of_the_padded_image(batch):
    torch.manual_seed(1)
    assert torch.equal(random_crop(batch, 0), batch)
    out = random_crop(batch, 4)
    assert out.shape == batch.shape
    shifts = _window_offsets(out, torch.nn.functional.pad(batch, (4, 4, 4, 4)), 4, "crop")
    assert len(set(shifts)) > 1  # offsets differ per image


def test_light_policy_translates_with_reflect_padding(batch, cifar10):
    torch.manual_seed(2)
    aug = build_augment("light", cifar10.info)
    assert "random_translate(2, reflect)" in repr(aug)
    out = random_crop(batch, 2, mode="reflect")
    shifts = _window_offsets(out, torch.nn.functional.pad(batch, (2, 2, 2, 2), mode="reflect"), 2, "translate")
    assert len(set(shifts)) > 1
    assert aug(batch).shape == batch.shape


def test_jitter_and_cutout(batch, fmnist):
    torch.manual_seed(2)
    j = color_jitter(batch, 0.4, 0.4, 0.4)
    assert j.shape == batch.shape and 0 <= j.min() and j.max() <= 1 and not torch.equal(j, batch)
    gray = fmnist.test.x[:32].float() / 255
    jg = color_jitter(gray, 0.4, 0.4, 0.4)
    assert jg.shape == gray.shape and 0 <= jg.min() and jg.max() <= 1
    c = cutout(batch, 8, fill=(0.25, 0.5, 0.75))
    changed = (c != batch).any(1)  # (B, H, W)
    assert int(changed.flatten(1).sum(1).max()) <= 64
    assert bool(((c[:, 0] == 0.25) | ~changed).all())
    assert int(changed.flatten(1).any(1).sum()) > 48  # nearly every image lost a square


@pytest.mark.parametrize("policy", AUGMENT_POLICIES)
def test_policies_keep_shape_and_range(batch, cifar10, fmnist, policy):
    for info, x in ((cifar10.info, batch), (fmnist.info, fmnist.test.x[:32].float() / 255)):
        aug = build_augment(policy, info)
        if policy == "none":
            assert aug is None
            continue
        torch.manual_seed(3)
        out = aug(x)
        assert out.shape == x.shape and out.dtype == torch.float32
        assert 0 <= out.min() and out.max() <= 1 and not torch.equal(out, x)
        torch.manual_seed(3)
        assert torch.equal(aug(x), out)  # the global RNG alone decides
    assert default_augment(cifar10.info) == "basic" and default_augment(fmnist.info) == "basic"
    with pytest.raises(RobustError, match="none, light, basic, strong"):
        build_augment("wild", cifar10.info)


# ----------------------------------------------------------------------------- loader


@pytest.fixture(scope="module")
def small(fmnist):
    return fmnist.train.subset(1000, seed=0)


def test_loader_yields_every_example_once(small):
    torch.manual_seed(0)
    loader = TensorLoader(small, 96, device="cpu", shuffle=True)
    batches = list(loader)
    assert len(batches) == len(loader) == 11 and len(batches[-1][0]) == 1000 - 10 * 96
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (1, 28, 28)
    assert 0 <= x.min() and x.max() <= 1
    assert rows(x) == rows(small.x)
    assert sorted(y.tolist()) == sorted(small.y.tolist())
    assert not torch.equal(x, small.x.float() / 255)  # shuffled
    # labels travel with their images
    first = batches[0][0][0]
    match = (small.x.float() / 255 == first).flatten(1).all(1).nonzero().flatten()
    assert batches[0][1][0].item() in small.y[match].tolist()
    dropped = TensorLoader(small, 96, device="cpu", shuffle=False, drop_last=True)
    assert len(dropped) == 10 and sum(len(b[1]) for b in dropped) == 960
    plain = torch.cat([b[0] for b in TensorLoader(small, 300, device="cpu", shuffle=False)])
    assert torch.equal(plain, small.x.float() / 255)


def test_loader_same_seed_same_batches(small, fmnist):
    aug = build_augment("strong", fmnist.info)
    loader = TensorLoader(small, 128, device="cpu", shuffle=True, augment=aug, channels_last=True)
    torch.manual_seed(7)
    a = list(loader)
    torch.manual_seed(7)
    b = list(loader)
    c = list(loader)  # the RNG moved on: a different epoch
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert not torch.equal(a[0][1], c[0][1])


@pytest.mark.parametrize("n", [1000, 999])
def test_ddp_shards_are_disjoint_and_cover(small, n):
    split = small.take(torch.arange(n))
    shards = []
    for rank in range(2):
        torch.manual_seed(11)  # every rank starts the epoch from the same seed
        loader = TensorLoader(split, 64, device="cpu", shuffle=True, rank=rank, world_size=2)
        shards.append(torch.cat([x for x, _ in loader]))
        assert len(loader) == 8
    assert len(shards[0]) == len(shards[1]) == n // 2
    together = rows(torch.cat(shards))
    full = rows(split.x)
    if n % 2 == 0:
        assert together == full  # disjoint and covering: each example exactly once
    else:  # one example sits out this epoch; nothing is repeated
        from collections import Counter

        missing = Counter(full) - Counter(together)
        assert sum(missing.values()) == 1 and not Counter(together) - Counter(full)
    with pytest.raises(RobustError):
        TensorLoader(split, 64, device="cpu", shuffle=True, rank=2, world_size=2)


# ----------------------------------------------------------------------------- robust data


def test_describe_and_cli(tmp_path, monkeypatch):
    write_cifar100(tmp_path / "root")
    runner = CliRunner()
    res = runner.invoke(main, ["data", "--data-root", str(tmp_path / "root"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    by_name = {r["name"]: r for r in out["datasets"]}
    assert set(by_name) == {n for n in DATASETS.names() if n != "imagefolder"}
    assert by_name["cifar10"]["found"] and by_name["cifar10"]["classes"] == CIFAR10_CLASSES
    assert (by_name["cifar10"]["train"], by_name["cifar10"]["val"], by_name["cifar10"]["test"]) == (45000, 5000, 10000)
    assert by_name["cifar100"]["source"] == str(tmp_path / "root" / "cifar-100-python")
    assert by_name["fashion-mnist"]["num_classes"] == 10
    assert out["search_roots"][0] == str(tmp_path / "root")

    res = runner.invoke(main, ["data"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "cifar10-jpeg.tar.gz" in res.output and "airplane" in res.output and "45,000 / 5,000 / 10,000" in res.output

    res = runner.invoke(main, ["data", "--dataset", "nope"])
    assert res.exit_code == 2 and "unknown dataset 'nope'" in res.output


def test_cli_when_nothing_is_found(no_data):
    res = CliRunner().invoke(main, ["data"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert res.output.count("not found") >= 6  # in the table and in each explanation
    assert str(no_data / "shared") in res.output
    rows_ = describe_datasets()
    assert all(not r["found"] and str(no_data / "env") in r["detail"] for r in rows_)


def test_format_constants_match_torchvision():
    # reading never imports torchvision (seconds of import time), so its facts are copied: keep them equal
    from torchvision.datasets import CIFAR10, CIFAR100, FashionMNIST

    from robustbench_local.data.cifar import CIFAR10_FORMAT, CIFAR100_FORMAT
    from robustbench_local.data.fashion_mnist import FASHION_MNIST_CLASSES

    for fmt, cls in ((CIFAR10_FORMAT, CIFAR10), (CIFAR100_FORMAT, CIFAR100)):
        assert fmt.folder == cls.base_folder and fmt.torchvision_class == cls.__name__
        assert list(fmt.train_files) == [f for f, _ in cls.train_list]
        assert list(fmt.test_files) == [f for f, _ in cls.test_list]
        assert (fmt.meta_file, fmt.meta_key) == (cls.meta["filename"], cls.meta["key"])
    assert list(FASHION_MNIST_CLASSES) == FashionMNIST.classes
