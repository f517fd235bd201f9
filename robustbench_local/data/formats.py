"""Readers for the on-disk formats: CIFAR python pickle batches, IDX (MNIST-style)
files, and ImageFolder trees given as a directory or a tar/tar.gz archive.

Every reader returns uint8 tensors in (N, C, H, W) order and int64 labels. Pickled
CIFAR batches go through a restricted unpickler: a data file can rebuild numpy
arrays and plain containers, never call anything else."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from ..errors import RobustError

try:  # numpy >= 2 keeps the implementation in numpy._core
    from numpy._core import multiarray, numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray, numeric  # type: ignore[no-redef]

# ----------------------------------------------------------------------------- CIFAR pickles


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 pickles (protocol <= 2) store numpy's raw bytes as a latin1 str plus a call
    # to _codecs.encode; only that one harmless codec is let through.
    if encoding.replace("-", "").lower() not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"codec '{encoding}' is not allowed in a data file")
    return text.encode("latin1")


def _numpy_globals() -> dict[tuple[str, str], object]:
    allowed = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    # Pickles name the module they were written with; accept both spellings.
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
        if hasattr(numeric, "_frombuffer"):
            allowed[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals that numpy array pickles need; anything else (os.system,
    builtins.eval, ...) fails before it can run."""

    _allowed = _numpy_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a data file") from None


def read_cifar_pickle(path: Path) -> dict[str, object]:
    """One CIFAR batch or meta file as a dict with str keys (the originals were written by
    Python 2, whose str keys need latin1; files written by Python 3 may use bytes keys)."""
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise RobustError(f"{path} is not a readable CIFAR pickle file: {e}") from None
    if not isinstance(obj, dict):
        raise RobustError(f"{path} is not a CIFAR pickle file: it holds a {type(obj).__name__}, not a dict")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _as_str(v: object) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def read_cifar_batches(folder: Path, files: list[str], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenates CIFAR batch files: 'data' is (N, 3072) uint8 rows in R, G, B planes of
    32x32; labels are under ``label_key`` ('labels' for CIFAR-10, 'fine_labels' for CIFAR-100)."""
    xs, ys = [], []
    for name in files:
        path = folder / name
        entry = read_cifar_pickle(path)
        data, labels = entry.get("data"), entry.get(label_key)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise RobustError(f"{path}: 'data' must be a uint8 array of shape (N, 3072)")
        if labels is None or len(labels) != len(data):
            raise RobustError(f"{path}: '{label_key}' must hold one label per row of 'data'")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(np.asarray(labels, dtype=np.int64))
    x = torch.from_numpy(np.ascontiguousarray(np.concatenate(xs)))
    y = torch.from_numpy(np.concatenate(ys))
    return x, y


def read_cifar_classes(path: Path, key: str) -> list[str]:
    meta = read_cifar_pickle(path)
    names = meta.get(key)
    if not isinstance(names, (list, tuple)) or not names:
        raise RobustError(f"{path}: no class names under '{key}'")
    return [_as_str(n) for n in names]


# ----------------------------------------------------------------------------- IDX

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST / Fashion-MNIST format), gzip'd or not: two zero bytes, a
    dtype code, the number of dimensions, big-endian int32 sizes, then the data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise RobustError(f"cannot read IDX file {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise RobustError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4).astype(np.int64)
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise RobustError(f"{path}: IDX header promises {expected} bytes of data, file has {len(raw) - offset}")
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(tuple(dims))


# ----------------------------------------------------------------------------- ImageFolder

# torchvision's ImageFolder extensions
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
SINGLE_FOLDER_TEST_FRACTION = 0.2
SINGLE_FOLDER_SEED = 0


def is_archive(path: Path) -> bool:
    return path.is_file() and (path.name.endswith((".tar", ".tar.gz", ".tgz")) or tarfile.is_tarfile(path))


def _is_image_name(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    # skip hidden files and folders (.DS_Store, macOS ._ resource forks, .git)
    return bool(parts) and not any(p.startswith(".") for p in parts) and rel.lower().endswith(IMAGE_EXTENSIONS)


def _is_visible(rel: str) -> bool:
    # hidden folders (.git) and macOS archive metadata are never class folders
    return not any(p.startswith(".") or p == "__MACOSX" for p in PurePosixPath(rel).parts)


def iter_image_files(source: Path, folders: set[str] | None = None) -> Iterator[tuple[str, bytes]]:
    """(relative posix path, file bytes) for every image under a directory, or in a tar
    archive read as one stream (gzip is decompressed once, nothing is extracted to disk).
    ``folders``, when given, collects every (non-hidden) folder met, empty ones included."""
    if source.is_dir():
        for dirpath, dirnames, filenames in os.walk(source):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(source).as_posix()
            if folders is not None and rel_dir != "." and _is_visible(rel_dir):
                folders.add(rel_dir)
            for fn in sorted(filenames):
                full = Path(dirpath) / fn
                rel = full.relative_to(source).as_posix()
                if _is_image_name(rel) and full.is_file():
                    yield rel, full.read_bytes()
        return
    try:
        with tarfile.open(source, "r|*") as tf:
            for member in tf:
                name = member.name
                while name.startswith("./"):
                    name = name[2:]
                rel = PurePosixPath(name.lstrip("/"))
                rel_s = rel.as_posix()
                if (
                    member.isdir()
                    and folders is not None
                    and rel_s not in ("", ".")
                    and _is_visible(rel_s)
                    and ".." not in rel.parts
                ):
                    folders.add(rel_s)
                if not member.isfile():  # links and devices are never followed
                    continue
                if not _is_image_name(rel_s) or ".." in rel.parts:
                    continue
                f = tf.extractfile(member)
                if f is not None:
                    yield rel_s, f.read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise RobustError(f"cannot read archive {source}: {e}") from None


def source_fingerprint(source: Path) -> str:
    """What identifies the content of a source for the cache: sha256 of an archive file;
    for a directory, sha256 over relative paths, sizes and modification times, and the
    folder names (a new empty class folder must not hit the old cache entry)."""
    h = hashlib.sha256()
    if source.is_dir():
        for dirpath, dirnames, filenames in os.walk(source):
            dirnames.sort()
            h.update(f"{Path(dirpath).relative_to(source).as_posix()}/\n".encode())
            for fn in sorted(filenames):
                full = Path(dirpath) / fn
                st = full.stat()
                h.update(f"{full.relative_to(source).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return "dir:" + h.hexdigest()
    with open(source, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "file:" + h.hexdigest()


def _namer(source: Path):
    """How a message names a file or folder of a source: its path, or its member path
    in an archive."""
    if source.is_dir():
        return lambda rel: str(source / rel)
    return lambda rel: f"{rel} in {source}"


def _decode(name: str, data: bytes, image_size: int | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError  # deferred: start-up time (PIL, for image folders only)

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.mode != "RGB":  # convert copies even when there is nothing to do
                im = im.convert("RGB")
            if image_size is not None and im.size != (image_size, image_size):
                im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    # PIL's own texts name an in-memory buffer (<_io.BytesIO object at 0x...>), not the file
    except UnidentifiedImageError:
        raise RobustError(
            f"cannot decode {name}: it is not an image PIL can read (damaged, or not the format its "
            "name says); fix or remove it"
        ) from None
    except Image.DecompressionBombError:
        raise RobustError(
            f"cannot decode {name}: it has more pixels than PIL's safety limit allows; shrink or remove it"
        ) from None
    except (OSError, ValueError, SyntaxError) as e:
        reason = re.sub(
            r"<[^<>]* at 0x[0-9a-fA-F]+>",
            "the file",
            str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__,
        )
        raise RobustError(f"cannot decode {name}: the image is damaged ({reason}); fix or remove it") from None


@dataclass
class ImageTree:
    """A decoded ImageFolder source: classes sorted by folder name, images in path order."""

    classes: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    layout: str  # 'train/test' or 'single folder'


def _strip_common_prefix(paths: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    # An archive usually wraps everything in one top folder (animals/train/cat/1.jpg);
    # drop such folders while at least class/file remains below them.
    while paths and all(len(p) >= 3 for p in paths):
        first = paths[0][0]
        if first in ("train", "test") or any(p[0] != first for p in paths):
            break
        paths = [p[1:] for p in paths]
    return paths


def _check_class_folders(keys: list[tuple[str, ...]], stripped: dict, folders: set[str], split: bool, name) -> None:
    """A class folder without images would drop its class without a word (the model
    would get fewer outputs), so it is an error naming the folder. ``split``: the
    train/<class>/ and test/<class>/ layout, else <class>/."""
    k0 = keys[0]
    prefix = k0[: len(k0) - len(stripped[k0])]  # the wrapping folders _strip_common_prefix dropped
    with_images = {k[:-1] for k in keys}
    for folder in sorted(folders):
        parts = PurePosixPath(folder).parts
        rest = parts[len(prefix) :]
        is_class = parts[: len(prefix)] == prefix and len(rest) == (2 if split else 1)
        if not is_class or (split and rest[0] not in ("train", "test")):
            continue
        if parts not in with_images:
            raise RobustError(
                f"class folder {name(folder)} holds no images ({', '.join(IMAGE_EXTENSIONS)}); add its "
                "images or remove the folder"
            )


def decode_image_tree(source: Path, image_size: int | None) -> ImageTree:
    """Decodes every image once (PIL, converted to RGB, resized to image_size if given)
    and lays them out as train/test by the folder structure:

    - ``train/<class>/*`` and ``test/<class>/*``: used as they are;
    - ``<class>/*`` only: each class is split into train and test by a fixed seed
      (SINGLE_FOLDER_TEST_FRACTION of it goes to test)."""
    decoded: dict[tuple[str, ...], np.ndarray] = {}
    first_shape: tuple[tuple[int, ...], str] | None = None
    folders: set[str] = set()
    name = _namer(source)
    for rel, data in iter_image_files(source, folders):
        arr = _decode(name(rel), data, image_size)
        if first_shape is None:
            first_shape = (arr.shape, rel)
        elif arr.shape != first_shape[0]:
            (h0, w0, _), rel0 = first_shape
            raise RobustError(
                f"images in {source} differ in size ({w0}x{h0} for {rel0}, {arr.shape[1]}x{arr.shape[0]} for {rel}); "
                "pass --image-size N to resize them all to NxN"
            )
        decoded[PurePosixPath(rel).parts] = arr
    if not decoded:
        raise RobustError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {source}")

    keys = list(decoded)
    stripped = dict(zip(keys, _strip_common_prefix(keys)))
    tops = {p[0] for p in stripped.values()}

    def stack(items: list[tuple[tuple[str, ...], int]]) -> tuple[torch.Tensor, torch.Tensor]:
        if not items:
            shape = first_shape[0]
            return torch.empty((0, shape[2], shape[0], shape[1]), dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
        x = torch.from_numpy(np.stack([decoded[k] for k, _ in items])).permute(0, 3, 1, 2).contiguous()
        y = torch.tensor([c for _, c in items], dtype=torch.int64)
        return x, y

    if {"train", "test"} <= tops:
        _check_class_folders(keys, stripped, folders, True, name)
        per_split: dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]] = {"train": [], "test": []}
        for key, parts in stripped.items():
            if parts[0] in per_split and len(parts) == 3:
                per_split[parts[0]].append((key, parts))
        classes = sorted({parts[1] for _, parts in per_split["train"]})
        if not classes:
            raise RobustError(f"{source}: train/ holds no class folders (expected train/<class>/<image>)")
        unknown = sorted({parts[1] for _, parts in per_split["test"]} - set(classes))
        if unknown:
            raise RobustError(f"{source}: test/ has classes with no train/ folder: {', '.join(unknown)}")
        index = {c: i for i, c in enumerate(classes)}
        train = sorted(per_split["train"], key=lambda kp: kp[1])
        test = sorted(per_split["test"], key=lambda kp: kp[1])
        train_x, train_y = stack([(k, index[p[1]]) for k, p in train])
        test_x, test_y = stack([(k, index[p[1]]) for k, p in test])
        return ImageTree(classes, train_x, train_y, test_x, test_y, "train/test")

    bad = [("/".join(k)) for k, p in stripped.items() if len(p) != 2]
    if bad:
        raise RobustError(
            f"{source}: expected train/<class>/<image> and test/<class>/<image>, or <class>/<image>; found {bad[0]}"
        )
    _check_class_folders(keys, stripped, folders, False, name)
    classes = sorted(tops)
    gen = torch.Generator().manual_seed(SINGLE_FOLDER_SEED)
    train_items, test_items = [], []
    for ci, cls in enumerate(classes):
        members = sorted((p, k) for k, p in stripped.items() if p[0] == cls)
        n_test = int(round(SINGLE_FOLDER_TEST_FRACTION * len(members)))
        test_pos = set(torch.randperm(len(members), generator=gen)[:n_test].tolist())
        for pos, (_, k) in enumerate(members):
            (test_items if pos in test_pos else train_items).append((k, ci))
    train_x, train_y = stack(train_items)
    test_x, test_y = stack(test_items)
    return ImageTree(classes, train_x, train_y, test_x, test_y, "single folder")
