"""CIFAR-10 and CIFAR-100: torchvision's pickled batches (read without importing
torchvision), or for CIFAR-10 a JPEG ImageFolder copy; downloads use torchvision's URLs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import RobustError
from . import formats
from .sources import DATASETS, LoadRequest, RawData, load_image_tree, not_found, require_files, resized, try_download

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


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


CIFAR10_FORMAT = CifarFormat(
    "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    ("test_batch",),
    "batches.meta",
    "label_names",
    "labels",
    "CIFAR10",
)
CIFAR100_FORMAT = CifarFormat(
    "cifar-100-python", ("train",), ("test",), "meta", "fine_label_names", "fine_labels", "CIFAR100"
)


def _cifar_download(fmt: CifarFormat) -> Callable[[Path], None]:
    def fetch(tmp: Path) -> None:
        # deferred: start-up time (torchvision datasets, for a download only)
        import torchvision.datasets as tvd
        from torchvision.datasets.utils import download_and_extract_archive

        cls = getattr(tvd, fmt.torchvision_class)
        if cls.base_folder != fmt.folder:
            raise RuntimeError(
                f"torchvision's {fmt.torchvision_class} now extracts to {cls.base_folder}/, expected {fmt.folder}/"
            )
        download_and_extract_archive(cls.url, download_root=str(tmp), filename=cls.filename, md5=cls.tgz_md5)

    return fetch


def _read_cifar_pickles(folder: Path, fmt: CifarFormat) -> RawData:
    require_files(folder, [*fmt.train_files, *fmt.test_files, fmt.meta_file])
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
            return resized(_read_cifar_pickles(folder, fmt), req.image_size)
        tree: Path | None = None
        if (root / "cifar10-jpeg.tar.gz").is_file():
            tree = root / "cifar10-jpeg.tar.gz"
        else:
            for name in ("cifar10-jpeg", "cifar10"):
                if (root / name / "train").is_dir() and (root / name / "test").is_dir():
                    tree = root / name
                    break
        if tree is not None:
            raw = load_image_tree(tree, req.image_size, req.cache_dir)
            if tuple(raw.classes) != CIFAR10_CLASSES:
                raise RobustError(
                    f"{tree} has class folders {', '.join(raw.classes)}, not CIFAR-10's {', '.join(CIFAR10_CLASSES)}"
                )
            return raw
    saved, note = try_download("CIFAR-10", req, fmt.folder, _cifar_download(fmt))
    if saved is not None:
        return resized(_read_cifar_pickles(saved, fmt), req.image_size)
    raise not_found(
        "cifar10",
        ["cifar-10-batches-py/", "cifar10-jpeg.tar.gz", "cifar10-jpeg/", "cifar10/"],
        req,
        note,
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
            return resized(_read_cifar_pickles(folder, fmt), req.image_size)
    saved, note = try_download("CIFAR-100", req, fmt.folder, _cifar_download(fmt))
    if saved is not None:
        return resized(_read_cifar_pickles(saved, fmt), req.image_size)
    raise not_found(
        "cifar100",
        ["cifar-100-python/"],
        req,
        note,
        "put torchvision's cifar-100-python/ (from cifar-100-python.tar.gz) in ./data, "
        "or point --data-root or $ROBUST_DATA at the folder that holds it",
    )
