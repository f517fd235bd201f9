"""imagefolder:PATH, a folder or a tar/tar.gz of class folders, decoded once into the cache."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataNotFound, RobustError
from . import formats
from .sources import DATASETS, LoadRequest, RawData, load_image_tree


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
            return load_image_tree(Path(os.path.abspath(place)), req.image_size, req.cache_dir)
    raise DataNotFound(
        f"imagefolder {req.arg} not found: looked at {', '.join(str(p) for p in places)}; "
        "give an existing folder or tar/tar.gz with train/<class>/ and test/<class>/, or one folder per class"
    )
