"""Datasets as uint8 image tensors: Fashion-MNIST, image folders, zip archives, CIFAR-10.

Every source is decoded once, in the calling process, into one uint8 array (n, c, r, r): an
in-memory array for Fashion-MNIST and CIFAR-10, a memory-mapped .npy cache for folders and zips.
Training then only indexes that array, so a corrupt file is reported (or skipped) at start-up,
never deep inside a DataLoader worker, and no image is decoded twice.

    x ∈ {0, …, 255}  ->  to_float(x) = x / 127.5 − 1 ∈ [−1, 1],   to_uint8 the inverse.

Papers: Fashion-MNIST (Xiao, Rasul, Vollgraf 2017, arXiv:1708.07747): 70,000 grey 28×28 images
of 10 clothing classes, padded here with zeros to 32×32 so the models' resolutions stay powers of
two. CIFAR-10 (Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny Images"):
60,000 32×32 RGB images, 10 classes. ProGAN §6.1 / StyleGAN2 train with horizontal flips
(`xflip`), doubling the dataset deterministically so that runs resume exactly.

Shapes: a dataset item is (uint8 (c, r, r), label); `images_uint8` gives (b, c, r, r).
Lesson: lessons/00_reading_this_repo.md
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from nanogan.randomness import derive_seed

logger = logging.getLogger(__name__)

RESOLUTIONS = tuple(2**k for k in range(2, 11))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# SHA-256 and size of the *decompressed* idx files: Debian recompresses the .gz files, so the
# compressed bytes differ between sources while their contents do not.
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz":
        ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47040016),
    "train-labels-idx1-ubyte.gz":
        ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60008),
    "t10k-images-idx3-ubyte.gz":
        ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7840016),
    "t10k-labels-idx1-ubyte.gz":
        ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10008),
}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SPLITS = {"train": "train", "test": "t10k"}


class DatasetNotFoundError(FileNotFoundError):
    """No copy of a dataset was found (the message lists every place tried and how to get one)."""


class DataError(ValueError):
    """A data file that cannot be used; the message names the file and the reason."""


def user_cache_dir() -> Path:
    """$XDG_CACHE_HOME/nanogan, by default ~/.cache/nanogan."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nanogan"


# ------------------------------------------------------------------------------ Fashion-MNIST


def find_fashion_mnist(root: str | Path | None = None, *, download: bool = True) -> Path:
    """The folder holding the four Fashion-MNIST .gz files, downloading them if allowed."""
    candidates, tried = [], []
    for label, base in (("given folder", root), ("$NANOGAN_DATA", os.environ.get("NANOGAN_DATA"))):
        if base:
            candidates += [(label, Path(base)), (label, Path(base) / "fashion-mnist")]
        elif label == "$NANOGAN_DATA":
            tried.append("$NANOGAN_DATA is not set")
    cache = user_cache_dir() / "fashion-mnist"
    candidates += [("user cache", cache), ("Debian's dataset-fashion-mnist", DEBIAN_FASHION_MNIST)]
    for label, folder in candidates:
        missing = [name for name in FASHION_MNIST_FILES if not (folder / name).is_file()]
        if not missing:
            return folder
        why = "does not exist" if not folder.is_dir() else "lacks " + ", ".join(missing)
        tried.append(f"{folder} ({label}): {why}")
    if download:
        try:
            return download_fashion_mnist(cache)
        except OSError as err:
            tried.append(f"download from {FASHION_MNIST_URL} into {cache} failed: {err}")
    else:
        tried.append(f"download from {FASHION_MNIST_URL}: not allowed (download=False)")
    raise DatasetNotFoundError(
        "Fashion-MNIST not found. Looked in:\n" + "".join(f"  - {t}\n" for t in tried)
        + "Get it by one of: `apt-get install dataset-fashion-mnist`; setting NANOGAN_DATA to a "
        "folder holding the four idx .gz files; passing --data FOLDER (root= in Python); or "
        "allowing the download (download=True) on a machine with internet access.")


def fetch_url(url: str, dest: Path) -> None:
    """Copy the bytes at `url` into the file `dest` (the only network access in nanogan)."""
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as f:
        shutil.copyfileobj(response, f)


def download_fashion_mnist(folder: Path) -> Path:
    """Download the missing files into `folder`, each checked before it takes its final name."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in FASHION_MNIST_FILES:
        if (folder / name).is_file():
            continue
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        os.close(fd)
        try:
            fetch_url(FASHION_MNIST_URL + name, Path(tmp))
            verified_idx_bytes(Path(tmp), name, source=FASHION_MNIST_URL + name)
            os.replace(tmp, folder / name)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return folder


_VERIFIED: set[tuple[str, int, int]] = set()


def verified_idx_bytes(path: Path, name: str | None = None, *, source: str | None = None) -> bytes:
    """The decompressed bytes of a Fashion-MNIST .gz file, checked against its known SHA-256."""
    name, source = name or path.name, source or str(path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{source}: not a readable gzip file ({err}); delete it and retry") from None
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if name in FASHION_MNIST_FILES and key not in _VERIFIED:
        sha, size = FASHION_MNIST_FILES[name]
        digest = hashlib.sha256(raw).hexdigest()
        if len(raw) != size or digest != sha:
            raise DataError(f"{source}: checksum mismatch (got {len(raw)} bytes with SHA-256 "
                            f"{digest}, expected {size} bytes with {sha}); the file is corrupt or "
                            "not Fashion-MNIST — delete it and retry")
        _VERIFIED.add(key)
    return raw


def read_idx(raw: bytes, ndim: int, source: str = "idx data") -> np.ndarray:
    """Parse uint8 idx bytes (magic 0x0000 08 ndim, big-endian int32 sizes, then the data)."""
    if len(raw) < 4 + 4 * ndim or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        raise DataError(f"{source}: not an idx file of {ndim}-d unsigned bytes "
                        f"(magic {raw[:4].hex() or 'missing'}, expected 000008{ndim:02x})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(shape)):
        raise DataError(f"{source}: header says shape {shape} ({int(np.prod(shape))} bytes) but "
                        f"{len(raw) - offset} bytes follow")
    return np.frombuffer(raw, np.uint8, offset=offset).reshape(shape)


def load_fashion_mnist(split: str = "train", root: str | Path | None = None,
                       download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (n, 28, 28) and int64 labels (n,) of the "train" or "test" split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    folder = find_fashion_mnist(root, download=download)
    paths = [folder / f"{SPLITS[split]}-{kind}-idx{d}-ubyte.gz" for kind, d in (("images", 3),
                                                                                  ("labels", 1))]
    images = read_idx(verified_idx_bytes(paths[0]), 3, str(paths[0]))
    labels = read_idx(verified_idx_bytes(paths[1]), 1, str(paths[1]))
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise DataError(f"{folder}: {images.shape} images with {len(labels)} labels, expected "
                        "(n, 28, 28) images and n labels")
    if labels.max(initial=0) >= len(FASHION_MNIST_CLASSES):
        raise DataError(f"{paths[1]}: label {labels.max()} is not one of the 10 classes")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


# ------------------------------------------------------------------------------- the dataset


class ImageDataset(torch.utils.data.Dataset):
    """Decoded uint8 images (n, c, r, r) and labels; index n + i is image i mirrored (xflip)."""

    def __init__(self, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor | None
                 = None, *, name: str, class_names: Sequence[str] = (), channels: int | None = None,
                 xflip: bool = False, skipped: Sequence[tuple[str, str]] = ()):
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
        return out.expand(-1, self.channels, -1, -1).contiguous() if out.shape[1] != self.channels \
            else out

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
        return (f"ImageDataset({self.name!r}, {len(self)} images, {self.channels}×{self.resolution}"
                f"×{self.resolution}, {self.num_classes} classes)")


def to_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [-1, 1]: x / 127.5 − 1."""
    return images_uint8.float() / 127.5 - 1


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8 pixels, the inverse of to_float (clamped, rounded)."""
    return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


class InfiniteSampler(torch.utils.data.Sampler[int]):
    """An endless stream of indices; epoch e is a permutation drawn from seed (seed, e).

    `start` skips the first `start` indices of the stream in O(1), so a run resumed at step t
    with batch b (start = t·b) sees exactly the data the uninterrupted run would have seen.
    """

    def __init__(self, size: int, *, seed: int = 0, shuffle: bool = True, start: int = 0):
        if size < 1 or start < 0:
            raise ValueError(f"InfiniteSampler needs size >= 1 and start >= 0, got {size}, {start}")
        self.size, self.seed, self.shuffle, self.start = size, seed, shuffle, start

    def epoch(self, e: int) -> torch.Tensor:
        """The order of epoch e: a permutation of range(size) (the identity without shuffle)."""
        if not self.shuffle:
            return torch.arange(self.size)
        g = torch.Generator().manual_seed(derive_seed(self.seed, "data order", e))
        return torch.randperm(self.size, generator=g)

    def __iter__(self):
        e, offset = divmod(self.start, self.size)
        while True:
            yield from self.epoch(e)[offset:].tolist()
            e, offset = e + 1, 0


# ------------------------------------------------------------------------------- open_dataset


def check_resolution(resolution: int) -> None:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be a power of two in {list(RESOLUTIONS)}, "
                         f"got {resolution}")


def resize_batch(images: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 (n, c, s, s) -> (n, c, r, r) by antialiased bilinear resampling, in chunks."""
    if images.shape[-1] == resolution:
        return images
    out = np.empty((*images.shape[:2], resolution, resolution), np.uint8)
    for i in range(0, len(images), 4096):
        x = torch.from_numpy(images[i : i + 4096]).float()
        y = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True,
                          align_corners=False)
        out[i : i + 4096] = y.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def fashion_mnist_dataset(root: str | Path | None = None, *, split: str = "train",
                          resolution: int | None = None, channels: int | None = None,
                          xflip: bool = False, download: bool = True) -> ImageDataset:
    """Fashion-MNIST padded with zeros from 28×28 to 32×32 (2 px each side), then resized."""
    resolution, channels = resolution or 32, channels or 1
    check_resolution(resolution)
    images, labels = load_fashion_mnist(split, root, download)
    padded = np.pad(images.numpy(), ((0, 0), (2, 2), (2, 2)))[:, None]
    name = "fashion-mnist" if (resolution, channels) == (32, 1) else (
        f"fashion-mnist@{resolution}px-{channels}ch")
    return ImageDataset(resize_batch(padded, resolution), labels.numpy(), channels=channels,
                        name=name + ("+xflip" if xflip else ""), class_names=FASHION_MNIST_CLASSES,
                        xflip=xflip)


def open_dataset(source: str | Path | None = None, *, resolution: int | None = None,
                 channels: int | None = None, split: str = "train", xflip: bool = False,
                 skip_bad: bool = False, cache_dir: Path | None = None) -> ImageDataset:
    """Open Fashion-MNIST (None or "fashion-mnist"), an image folder, a .zip, or CIFAR-10."""
    if resolution is not None:
        check_resolution(resolution)
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    if source is None or str(source).lower() == "fashion-mnist":
        return fashion_mnist_dataset(split=split, resolution=resolution, channels=channels,
                                     xflip=xflip)
    path = Path(source).expanduser()
    if path.is_dir() and all((path / name).is_file() for name in FASHION_MNIST_FILES):
        return fashion_mnist_dataset(path, split=split, resolution=resolution, channels=channels,
                                     xflip=xflip, download=False)
    if not path.exists():
        raise DatasetNotFoundError(f"{source}: no such file or folder (expected 'fashion-mnist', "
                                   "an image folder, a .zip of images or a CIFAR-10 folder)")
    raise DataError(f"{source}: not a dataset nanogan can read")
