"""Fashion-MNIST: the four IDX files, gzip'd or not, in fashion-mnist/ or torchvision's
FashionMNIST/raw/; downloads try torchvision's mirrors in turn."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import RobustError
from . import formats
from .sources import DATASETS, LoadRequest, RawData, not_found, resized, try_download

# torchvision's FashionMNIST.classes, in label order
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FMNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


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
    return RawData(
        list(FASHION_MNIST_CLASSES), to_x(train_img), to_y(train_lab), to_x(test_img), to_y(test_lab), str(folder)
    )


def _fmnist_download(tmp: Path) -> None:
    # deferred: start-up time (torchvision datasets, for a download only)
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
                return resized(_read_fmnist(folder), req.image_size)
    saved, note = try_download("Fashion-MNIST", req, "FashionMNIST/raw", _fmnist_download)
    if saved is not None:
        return resized(_read_fmnist(saved), req.image_size)
    raise not_found(
        "fashion-mnist",
        ["fashion-mnist/", "FashionMNIST/raw/ (the 4 IDX files)"],
        req,
        note,
        "put the 4 *-idx?-ubyte.gz files in ./data/fashion-mnist, "
        "or point --data-root or $ROBUST_DATA at the folder that holds fashion-mnist/",
    )
