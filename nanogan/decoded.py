"""The decoded path: images held as one uint8 array (n, c, r, r), in memory or memory-mapped.

`ImageDataset` indexes such an array with no decoding per item: Fashion-MNIST and CIFAR-10 are
held in memory, folders and zips are read through the cache that `image_folder_dataset` builds.
That cache decodes an `ImageSource` once into three files under user_cache_dir()/datasets:
`<stem>.images.npy` (uint8 (n, c, r, r), numpy's .npy format, memory-mapped when read),
`<stem>.labels.npy` (int64 (n,)) and `<stem>.json` (the source, the skipped images and the class
names), written last; the stem is keyed by CACHE_VERSION, the source's path and key, the
resolution and the channels. One process decodes while the others wait on `<stem>.lock`.
Fastest to read, but n·c·r² bytes: 220 GB for FFHQ at 1024² (`nanogan.streaming` is the other
path, and `nanogan.data.open_dataset` chooses between them).

Papers: ProGAN (Appendix F and G) and StyleGAN2 (Appendix B) mirror their data: `xflip` doubles
the dataset with mirrored copies at fixed indices, so that a resumed run sees the same images.
Shapes: a dataset item is (uint8 (c, r, r), label); `images_uint8` gives (b, c, r, r).
Lesson: lessons/00_reading_this_repo.md
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from nanogan.sources import (DataError, ImageSource, UnreadableImageError, dataset_name,
                             decode_image, native_resolution, slug, user_cache_dir, write_atomic)

try:
    import fcntl
except ImportError:  # Windows: no advisory locks (see exclusive_lock)
    fcntl = None

logger = logging.getLogger(__name__)

# 2: folders keyed by their directories' mtimes, not every file's stat; 3: a bad image's row
# holds the next readable image (n rows, as streamed), no longer dropped
CACHE_VERSION = 3


class ImageDataset(torch.utils.data.Dataset):
    """Decoded uint8 images (n, c, r, r) and labels; index n + i is image i mirrored (xflip)."""

    cache = "ram"

    def __init__(self, images: np.ndarray | torch.Tensor,
                 labels: np.ndarray | torch.Tensor | None = None, *, name: str,
                 class_names: Sequence[str] = (), channels: int | None = None, xflip: bool = False,
                 skipped: Sequence[tuple[str, str]] = ()):
        images = images.numpy() if isinstance(images, torch.Tensor) else images
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[2] != images.shape[3]:
            raise ValueError(f"images must be uint8 (n, c, r, r), got {images.dtype} "
                             f"{images.shape}")
        if len(images) == 0:
            raise DataError(f"{name}: the dataset is empty")
        self.channels = channels or images.shape[1]
        if (images.shape[1], self.channels) not in ((1, 1), (3, 3), (1, 3)):
            raise ValueError(f"cannot show {images.shape[1]}-channel images with "
                             f"{self.channels} channels")
        self._images = images
        self._labels = np.zeros(len(images), np.int64) if labels is None else np.asarray(
            labels, np.int64)
        if self._labels.shape != (len(images),):
            raise ValueError(f"{len(images)} images but labels of shape {self._labels.shape}")
        self.name, self.class_names = name, tuple(class_names)
        self.resolution, self.num_classes = images.shape[-1], len(self.class_names)
        self.xflip, self.skipped = xflip, list(skipped)

    def __len__(self) -> int:
        return len(self._images) * (2 if self.xflip else 1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        images = self.images_uint8([index])
        return images[0], int(self._labels[int(index) % len(self._images)])

    def images_uint8(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (b, c, r, r) images for dataset indices, read from memory with no decoding."""
        index = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices,
                           np.int64).reshape(-1)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"index out of range for a dataset of {len(self)} images")
        n = len(self._images)
        out = self._images[index % n]  # fancy indexing copies, even from a memmap
        flip = index >= n
        out[flip] = out[flip][..., ::-1]
        out = torch.from_numpy(out)
        if out.shape[1] != self.channels:  # grey data shown as RGB
            out = out.expand(-1, self.channels, -1, -1).contiguous()
        return out

    def labels(self) -> torch.Tensor:
        """int64 (len(self),) labels (all 0 when the dataset is unlabeled)."""
        return torch.from_numpy(np.tile(self._labels, 2 if self.xflip else 1))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if isinstance(self._images, np.memmap):  # workers reopen the cache instead of copying it
            state["_images"] = Path(self._images.filename)
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["_images"], Path):
            state["_images"] = np.load(state["_images"], mmap_mode="r")
        self.__dict__.update(state)

    def __repr__(self) -> str:
        r = self.resolution
        return (f"ImageDataset({self.name!r}, {len(self)} images, {self.channels}×{r}×{r}, "
                f"{self.num_classes} classes)")


# ---------------------------------------------------------------------- the decoded cache


@contextlib.contextmanager
def exclusive_lock(path: Path):
    """Hold an exclusive lock on the file `path` (fcntl.flock): other processes wait here.

    The lock goes with the open file, so a process that dies releases it. Where fcntl does not
    exist (Windows) there is no lock, and two processes may decode the same data once each.
    """
    with open(path, "a+b") as f:  # "a": created if missing, never truncated
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def image_folder_dataset(path: Path, *, resolution: int | None = None, channels: int = 3,
                         xflip: bool = False, skip_bad: bool = False,
                         cache_dir: Path | None = None,
                         source: ImageSource | None = None) -> ImageDataset:
    """Decode a folder or zip of images once into a cached uint8 memmap, then index it.

    The cache (images .npy, labels .npy, a .json written last) is keyed by the source's path and
    `ImageSource.key`, the resolution and the channels. It is built by one process: the others
    block on `<stem>.lock` (an flock, no torch.distributed collective, so it works before the
    process group exists) and then memory-map the finished files.
    """
    folder = Path(cache_dir) if cache_dir is not None else user_cache_dir() / "datasets"
    source = source or ImageSource(path, folder)
    try:
        resolution = resolution or native_resolution(source)
        key = hashlib.sha256(json.dumps([CACHE_VERSION, str(path.resolve()), source.key,
                                         resolution, channels]).encode()).hexdigest()[:16]
        stem = folder / f"{slug(path)}-{key}"
        meta_path, images_path, labels_path = (Path(f"{stem}{suffix}") for suffix in
                                               (".json", ".images.npy", ".labels.npy"))

        def complete() -> bool:
            return meta_path.is_file() and images_path.is_file() and labels_path.is_file()

        if not complete():
            folder.mkdir(parents=True, exist_ok=True)
            with exclusive_lock(Path(f"{stem}.lock")):
                if not complete():  # another process may have built it while this one waited
                    skipped = _decode_all(source, resolution, channels, skip_bad, images_path,
                                          labels_path)
                    write_atomic(meta_path, json.dumps({
                        "source": str(path), "skipped": skipped,
                        "class_names": source.class_names}).encode())
    finally:
        source.close()
    meta = json.loads(meta_path.read_text())
    skipped = [tuple(item) for item in meta["skipped"]]
    if skipped and not skip_bad:
        raise UnreadableImageError(f"{skipped[0][0]}: cannot read this image ({skipped[0][1]}); "
                                   f"fix or delete it, or pass skip_bad=True ({len(skipped)} "
                                   "bad in all)")
    if skipped:
        logger.warning("%s: skipped %d unreadable images", path, len(skipped))
    prepared = [tuple(s) for s in (source.prepared or {}).get("skipped", [])]
    return ImageDataset(np.load(images_path, mmap_mode="r"), np.load(labels_path),
                        name=dataset_name(path, resolution, channels, xflip),
                        class_names=meta["class_names"], xflip=xflip, skipped=prepared + skipped)


def _decode_all(source: ImageSource, resolution: int, channels: int, skip_bad: bool,
                images_path: Path, labels_path: Path) -> list[tuple[str, str]]:
    """Decode every image (threads: Pillow releases the GIL) into a temporary .npy, then rename.

    With skip_bad, row i of a bad image holds the next readable image (i + 1, i + 2, … modulo n)
    and its label: the rule of StreamingDataset, so both paths have n rows, equal row by row.
    """
    n = len(source)

    def decode(i: int) -> np.ndarray | str:
        try:
            return decode_image(source.read(i), resolution, channels)
        except Exception as err:  # noqa: BLE001 - any failure is this file's failure
            return f"{type(err).__name__}: {err}"

    fd, tmp = tempfile.mkstemp(prefix=f".{images_path.name}.", suffix=".npy",
                               dir=images_path.parent)
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(tmp, "w+", np.uint8, (n, channels, resolution, resolution))
        bad, skipped = [], []
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            for start in range(0, n, 1024):  # in chunks: bounded memory, early errors
                chunk = range(start, min(start + 1024, n))
                for i, result in zip(chunk, pool.map(decode, chunk)):
                    if isinstance(result, str) and not skip_bad:
                        raise UnreadableImageError(
                            f"{source.where(i)}: cannot read this image ({result}); fix or "
                            "delete it, or pass skip_bad=True")
                    if isinstance(result, str):
                        skipped.append((source.where(i), result))
                        bad.append(i)
                    else:
                        out[i] = result
        if len(bad) == n:
            raise DataError(f"{source.path}: none of its {n} images could be read "
                            f"(first: {skipped[0][0]}: {skipped[0][1]})")
        labels = np.array(source.labels, np.int64)
        good = np.setdiff1d(np.arange(n), bad)
        for i in bad:  # the first readable index after i, wrapping around to the first
            j = int(good[np.searchsorted(good, i) % len(good)])
            out[i], labels[i] = out[j], labels[j]
        out.flush()
        del out
        write_atomic(labels_path, _npy_bytes(labels))
        os.replace(tmp, images_path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return skipped


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
