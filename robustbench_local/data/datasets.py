"""The dataset registry and ``load_dataset``: every dataset loads to uint8 tensors in
(N, C, H, W) plus a DatasetInfo (classes, per-channel mean/std, input shape, source).

A registry entry is a loader callable ``fn(request) -> RawData`` that finds the data
in the search roots (or downloads it) and reads train and test. ``load_dataset`` then
computes the channel statistics on the whole original train split and carves a
deterministic validation split out of train; the test split is never touched."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import DataNotFound, RobustError
from ..registry import Registry
from . import formats
from .cache import cache_file, load_or_build
from .search import data_search_roots, download_into, download_root

# ----------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class DatasetInfo:
    name: str  # 'cifar10', 'cifar100', 'fashion-mnist', 'imagefolder:/abs/path'
    classes: tuple[str, ...]  # class names in label order
    mean: tuple[float, ...]  # per channel, over the whole original train split, pixels in [0,1]
    std: tuple[float, ...]  # population std per channel, same pixels
    input_shape: tuple[int, int, int]  # (C, H, W)
    source: str  # path the data was read from

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "classes": list(self.classes),
            "num_classes": self.num_classes,
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
            "input_shape": list(self.input_shape),
            "source": self.source,
        }


@dataclass
class Split:
    x: torch.Tensor  # uint8 (N, C, H, W), contiguous
    y: torch.Tensor  # int64 (N,)
    index: torch.Tensor  # int64 (N,): position of each example in the original train or test split
    name: str  # 'train' | 'val' | 'test'

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.dim() != 4:
            raise ValueError(f"Split.x must be uint8 (N, C, H, W), got {self.x.dtype} {tuple(self.x.shape)}")
        if not (len(self.x) == len(self.y) == len(self.index)):
            raise ValueError("Split.x, y and index must have the same length")

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: torch.Tensor) -> "Split":
        idx = torch.as_tensor(idx)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        idx = idx.to(device=self.x.device, dtype=torch.int64)
        return Split(self.x[idx].contiguous(), self.y[idx], self.index[idx], self.name)

    def subset(self, n: int, seed: int = 0) -> "Split":
        """The first n of a seeded permutation: the same n and seed always pick the same examples."""
        if n < 1:
            raise RobustError(f"a subset needs at least 1 example, got {n}")
        if n > len(self):
            raise RobustError(f"subset of {n} asked for, but the {self.name} split has only {len(self)} examples")
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        return self.take(perm[:n])


@dataclass
class DatasetBundle:
    info: DatasetInfo
    train: Split
    val: Split
    test: Split

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise RobustError(f"unknown split '{name}'; valid splits: train, val, test")
        return getattr(self, name)


# ----------------------------------------------------------------------------- loader plumbing


@dataclass(frozen=True)
class LoadRequest:
    """What a registry loader gets: where to look and how to read."""

    roots: list[Path]
    data_root: str | None
    image_size: int | None
    download: bool
    cache_dir: str | None
    arg: str | None  # the PATH of 'imagefolder:PATH'


@dataclass
class RawData:
    """What a registry loader returns: both original splits, before statistics and the val split."""

    classes: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str
    mean: tuple[float, ...] | None = None  # filled from the decode cache when it has them
    std: tuple[float, ...] | None = None


DATASETS: Registry[Callable[[LoadRequest], RawData]] = Registry("dataset")

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of uint8 images, as pixels in [0,1]. Computed
    exactly from a 256-bin histogram per channel (fast, and independent of batching)."""
    if len(x) == 0:
        raise RobustError("cannot compute channel statistics of an empty train split")
    values = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for c in range(x.shape[1]):
        counts = torch.bincount(x[:, c].reshape(-1), minlength=256).to(torch.float64)
        total = counts.sum()
        mean = (counts * values).sum() / total
        var = (counts * (values - mean).square()).sum() / total
        means.append(float(mean) / 255)
        stds.append(float(var.sqrt()) / 255)
    return tuple(means), tuple(stds)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    from torchvision.transforms.v2.functional import resize

    out = [resize(chunk, [size, size], antialias=True) for chunk in x.split(4096)]
    return torch.cat(out).contiguous() if out else x.new_empty((0, x.shape[1], size, size))


def _finish(raw: RawData, image_size: int | None) -> RawData:
    """Resizes tensor-format datasets (pickle, IDX) when an image size was asked for;
    decoded image trees are resized by PIL at decode time already."""
    if image_size is not None and raw.train_x.shape[-1] != image_size:
        raw.train_x = _resize(raw.train_x, image_size)
        raw.test_x = _resize(raw.test_x, image_size)
        raw.mean = raw.std = None
    return raw


def _not_found(name: str, looked_for: list[str], req: LoadRequest, download_note: str, how: str) -> DataNotFound:
    places = ", ".join(str(r) for r in req.roots)
    return DataNotFound(f"{name} not found: looked for {', '.join(looked_for)} in {places}; {download_note}; {how}")


def _try_download(what: str, req: LoadRequest, folder: str, fetch: Callable[[Path], None]) -> tuple[Path | None, str]:
    """(saved folder, '') on success, or (None, a note on why not) for the error message."""
    if not req.download:
        return None, "download not tried (downloading was turned off)"
    target = download_root(req.data_root)
    try:
        return download_into(target, folder, fetch), ""
    except Exception as e:  # no network, refused, bad checksum: all end in one clear line
        reason = str(e).replace("\n", " ").strip() or type(e).__name__
        return None, f"download of {what} into {target} failed ({reason})"


def _load_image_tree(source: Path, image_size: int | None, cache_dir: str | None) -> RawData:
    """Decodes an ImageFolder source once into the cache; later loads read the cache."""
    path = cache_file(source, formats.source_fingerprint(source), image_size, cache_dir)

    def build() -> dict:
        tree = formats.decode_image_tree(source, image_size)
        mean, std = channel_stats(tree.train_x)
        return {
            "classes": list(tree.classes),
            "layout": tree.layout,
            "source": str(source),
            "train_x": tree.train_x,
            "train_y": tree.train_y,
            "test_x": tree.test_x,
            "test_y": tree.test_y,
            "mean": torch.tensor(mean, dtype=torch.float64),
            "std": torch.tensor(std, dtype=torch.float64),
        }

    entry = load_or_build(path, build, str(source))
    return RawData(
        classes=list(entry["classes"]),
        train_x=entry["train_x"],
        train_y=entry["train_y"],
        test_x=entry["test_x"],
        test_y=entry["test_y"],
        source=str(source),
        mean=tuple(entry["mean"].tolist()),
        std=tuple(entry["std"].tolist()),
    )


def _require_files(folder: Path, names: list[str]) -> None:
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise RobustError(f"{folder} is incomplete: missing {', '.join(missing)}; remove it or complete it")


# ----------------------------------------------------------------------------- CIFAR


@dataclass(frozen=True)
class CifarFormat:
    """torchvision's on-disk CIFAR layout. Kept here so that reading never imports
    torchvision (its import costs seconds); downloads still use torchvision's URLs and
    checksums from the class named by ``torchvision_class``."""

    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    meta_key: str
    label_key: str
    torchvision_class: str


CIFAR10_FORMAT = CifarFormat("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                             "batches.meta", "label_names", "labels", "CIFAR10")
CIFAR100_FORMAT = CifarFormat("cifar-100-python", ("train",), ("test",), "meta", "fine_label_names", "fine_labels",
                              "CIFAR100")


def _cifar_download(fmt: CifarFormat) -> Callable[[Path], None]:
    def fetch(tmp: Path) -> None:
        import torchvision.datasets as tvd
        from torchvision.datasets.utils import download_and_extract_archive

        cls = getattr(tvd, fmt.torchvision_class)
        if cls.base_folder != fmt.folder:
            raise RuntimeError(f"torchvision's {fmt.torchvision_class} now extracts to {cls.base_folder}/, expected {fmt.folder}/")
        download_and_extract_archive(cls.url, download_root=str(tmp), filename=cls.filename, md5=cls.tgz_md5)

    return fetch


def _read_cifar_pickles(folder: Path, fmt: CifarFormat) -> RawData:
    _require_files(folder, [*fmt.train_files, *fmt.test_files, fmt.meta_file])
    train_x, train_y = formats.read_cifar_batches(folder, list(fmt.train_files), fmt.label_key)
    test_x, test_y = formats.read_cifar_batches(folder, list(fmt.test_files), fmt.label_key)
    classes = formats.read_cifar_classes(folder / fmt.meta_file, fmt.meta_key)
    for split, y in (("train", train_y), ("test", test_y)):
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(classes)):
            raise RobustError(f"{folder}: {split} labels fall outside the {len(classes)} classes of its meta file")
    return RawData(classes, train_x, train_y, test_x, test_y, source=str(folder))


@DATASETS.register("cifar10", builtin=True)
def load_cifar10(req: LoadRequest) -> RawData:
    """torchvision's cifar-10-batches-py/, or the JPEG ImageFolder copy (cifar10-jpeg.tar.gz,
    or an extracted cifar10-jpeg/ or cifar10/ with train/ and test/), first hit wins."""
    fmt = CIFAR10_FORMAT
    for root in req.roots:
        folder = root / fmt.folder
        if folder.is_dir():
            return _finish(_read_cifar_pickles(folder, fmt), req.image_size)
        tree: Path | None = None
        if (root / "cifar10-jpeg.tar.gz").is_file():
            tree = root / "cifar10-jpeg.tar.gz"
        else:
            for name in ("cifar10-jpeg", "cifar10"):
                if (root / name / "train").is_dir() and (root / name / "test").is_dir():
                    tree = root / name
                    break
        if tree is not None:
            raw = _load_image_tree(tree, req.image_size, req.cache_dir)
            if tuple(raw.classes) != CIFAR10_CLASSES:
                raise RobustError(f"{tree} has class folders {', '.join(raw.classes)}, not CIFAR-10's {', '.join(CIFAR10_CLASSES)}")
            return raw
    saved, note = _try_download("CIFAR-10", req, fmt.folder, _cifar_download(fmt))
    if saved is not None:
        return _finish(_read_cifar_pickles(saved, fmt), req.image_size)
    raise _not_found(
        "cifar10", ["cifar-10-batches-py/", "cifar10-jpeg.tar.gz", "cifar10-jpeg/", "cifar10/"], req, note,
        "put cifar10-jpeg.tar.gz or torchvision's cifar-10-batches-py/ in ./data, "
        "or point --data-root or $ROBUST_DATA at the folder that holds it",
    )


@DATASETS.register("cifar100", builtin=True)
def load_cifar100(req: LoadRequest) -> RawData:
    """torchvision's cifar-100-python/ (train, test, meta); fine labels, 100 classes."""
    fmt = CIFAR100_FORMAT
    for root in req.roots:
        folder = root / fmt.folder
        if folder.is_dir():
            return _finish(_read_cifar_pickles(folder, fmt), req.image_size)
    saved, note = _try_download("CIFAR-100", req, fmt.folder, _cifar_download(fmt))
    if saved is not None:
        return _finish(_read_cifar_pickles(saved, fmt), req.image_size)
    raise _not_found(
        "cifar100", ["cifar-100-python/"], req, note,
        "put torchvision's cifar-100-python/ (from cifar-100-python.tar.gz) in ./data, "
        "or point --data-root or $ROBUST_DATA at the folder that holds it",
    )


# ----------------------------------------------------------------------------- Fashion-MNIST

# torchvision's FashionMNIST.classes, in label order
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
_FMNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_fmnist(folder: Path) -> RawData:
    paths = [_idx_file(folder, stem) for stem in _FMNIST_FILES]
    arrays = [formats.read_idx(p) for p in paths]  # type: ignore[arg-type]
    train_img, train_lab, test_img, test_lab = arrays
    for img, lab, p in ((train_img, train_lab, paths[0]), (test_img, test_lab, paths[2])):
        if img.ndim != 3 or img.dtype != "uint8" or lab.ndim != 1 or len(img) != len(lab):
            raise RobustError(f"{p}: expected uint8 images (N, H, W) with one label each")
    to_x = lambda a: torch.from_numpy(a.copy()).unsqueeze(1).contiguous()  # noqa: E731 (N, 1, H, W)
    to_y = lambda a: torch.from_numpy(a.astype("int64"))  # noqa: E731
    return RawData(list(FASHION_MNIST_CLASSES), to_x(train_img), to_y(train_lab), to_x(test_img), to_y(test_lab), str(folder))


def _fmnist_download(tmp: Path) -> None:
    from torchvision.datasets import FashionMNIST
    from torchvision.datasets.utils import download_and_extract_archive

    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for filename, md5 in FashionMNIST.resources:
        last: Exception | None = None
        for mirror in FashionMNIST.mirrors:
            try:
                download_and_extract_archive(f"{mirror}{filename}", download_root=str(raw), filename=filename, md5=md5)
                break
            except Exception as e:  # try the next mirror
                last = e
        else:
            raise RuntimeError(f"{filename}: {last}")


@DATASETS.register("fashion-mnist", builtin=True)
def load_fashion_mnist(req: LoadRequest) -> RawData:
    """The IDX files (gzip'd or not) in fashion-mnist/ or torchvision's FashionMNIST/raw/."""
    for root in req.roots:
        for folder in (root / "fashion-mnist", root / "FashionMNIST" / "raw"):
            if folder.is_dir() and all(_idx_file(folder, s) for s in _FMNIST_FILES):
                return _finish(_read_fmnist(folder), req.image_size)
    saved, note = _try_download("Fashion-MNIST", req, "FashionMNIST/raw", _fmnist_download)
    if saved is not None:
        return _finish(_read_fmnist(saved), req.image_size)
    raise _not_found(
        "fashion-mnist", ["fashion-mnist/", "FashionMNIST/raw/ (the 4 IDX files)"], req, note,
        "put the 4 *-idx?-ubyte.gz files in ./data/fashion-mnist, "
        "or point --data-root or $ROBUST_DATA at the folder that holds fashion-mnist/",
    )


# ----------------------------------------------------------------------------- ImageFolder


@DATASETS.register("imagefolder", builtin=False)
def load_imagefolder(req: LoadRequest) -> RawData:
    """imagefolder:PATH, PATH a folder or a tar/tar.gz, with train/ and test/ or a single
    folder of class folders (split into train and test by a fixed seed). A relative PATH
    is looked up in the current folder, then in each search root."""
    if not req.arg:
        raise RobustError("imagefolder needs a path: --dataset imagefolder:PATH (a folder or a tar/tar.gz)")
    given = Path(req.arg).expanduser()
    places = [given] if given.is_absolute() else [Path.cwd() / given] + [root / given for root in req.roots]
    for place in places:
        if place.is_dir() or formats.is_archive(place):
            return _load_image_tree(Path(os.path.abspath(place)), req.image_size, req.cache_dir)
    raise DataNotFound(
        f"imagefolder {req.arg} not found: looked at {', '.join(str(p) for p in places)}; "
        "give an existing folder or tar/tar.gz with train/<class>/ and test/<class>/, or one folder per class"
    )


# ----------------------------------------------------------------------------- load_dataset


def _carve_val(x: torch.Tensor, y: torch.Tensor, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """Splits train into train and val by a seeded permutation; both keep original order
    and their positions in the original train split."""
    n = len(y)
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n_val == 0 and n >= 2:
        n_val = 1
    n_val = min(n_val, max(n - 1, 0))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, _ = perm[:n_val].sort()
    train_idx, _ = perm[n_val:].sort()
    train = Split(x[train_idx].contiguous(), y[train_idx], train_idx, "train")
    val = Split(x[val_idx].contiguous(), y[val_idx], val_idx, "val")
    return train, val


def _parse_name(name: str) -> tuple[str, str | None]:
    key, sep, arg = name.partition(":")
    key = key.strip().lower()
    if key not in DATASETS:
        valid = [n if DATASETS.meta(n).get("builtin") else f"{n}:PATH" for n in DATASETS.names()]
        raise RobustError(f"unknown dataset '{name}'; valid datasets: {', '.join(valid)}")
    if DATASETS.meta(key).get("builtin") and sep:
        raise RobustError(f"dataset '{key}' takes no ':PATH' (use --data-root to say where it is)")
    return key, (arg if sep else None)


def load_dataset(
    name: str,
    *,
    data_root: str | None = None,
    image_size: int | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    download: bool = True,
    cache_dir: str | None = None,
) -> DatasetBundle:
    """Loads a dataset by registry name ('cifar10', 'cifar100', 'fashion-mnist',
    'imagefolder:PATH') into uint8 train/val/test splits and its DatasetInfo.

    mean/std are computed on the whole original train split, before val is carved out
    (so they do not depend on split_seed). val is ``val_fraction`` of train, chosen by
    ``split_seed``; val_fraction=0 leaves it empty. test is the original test split."""
    key, arg = _parse_name(name)
    if image_size is not None and image_size < 1:
        raise RobustError(f"--image-size must be a positive number of pixels, got {image_size}")
    if not (0.0 <= val_fraction < 1.0) or math.isnan(val_fraction):
        raise RobustError(f"the validation fraction must be in [0, 1), got {val_fraction}")
    roots = data_search_roots(data_root)
    req = LoadRequest(roots, None if data_root is None else str(data_root), image_size, download,
                      None if cache_dir is None else str(cache_dir), arg)
    raw = DATASETS.get(key)(req)
    if len(raw.train_y) == 0:
        raise RobustError(f"{name} at {raw.source} has no training examples")
    if raw.mean is None or raw.std is None:
        raw.mean, raw.std = channel_stats(raw.train_x)
    full_name = f"imagefolder:{raw.source}" if key == "imagefolder" else key
    info = DatasetInfo(
        name=full_name,
        classes=tuple(raw.classes),
        mean=tuple(float(m) for m in raw.mean),
        std=tuple(float(s) for s in raw.std),
        input_shape=tuple(int(d) for d in raw.train_x.shape[1:]),  # type: ignore[arg-type]
        source=raw.source,
    )
    train, val = _carve_val(raw.train_x, raw.train_y, val_fraction, split_seed)
    test = Split(raw.test_x.contiguous(), raw.test_y, torch.arange(len(raw.test_y)), "test")
    return DatasetBundle(info, train, val, test)


def describe_datasets(data_root: str | None = None, names: list[str] | None = None,
                      image_size: int | None = None) -> list[dict]:
    """One dict per dataset for `robust data`: where it was found, split sizes and classes;
    a dataset that is absent gives found=False and the searched places, never an exception.
    ``names`` defaults to every built-in dataset; nothing is downloaded."""
    if names is None:
        names = [n for n in DATASETS.names() if DATASETS.meta(n).get("builtin")]
    for name in names:
        _parse_name(name)  # an unknown name is a usage error, not an absent dataset
    out = []
    for name in names:
        row: dict[str, Any] = {"name": name, "found": False, "source": "not found"}
        try:
            b = load_dataset(name, data_root=data_root, image_size=image_size, download=False)
        except RobustError as e:
            row["detail"] = str(e)
        else:
            row.update(
                name=b.info.name, found=True, source=b.info.source, train=len(b.train), val=len(b.val),
                test=len(b.test), num_classes=b.info.num_classes, classes=list(b.info.classes),
                input_shape=list(b.info.input_shape), mean=list(b.info.mean), std=list(b.info.std),
            )
        out.append(row)
    return out
