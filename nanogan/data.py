"""Datasets as uint8 image tensors: Fashion-MNIST, CIFAR-10, image folders and zips.

Two paths, one interface (`__len__`, `__getitem__ -> (uint8 (c, r, r), label)`, `images_uint8`,
`labels`, and `name, class_names, channels, resolution, num_classes, xflip, skipped`):

- decoded (`ImageDataset`, nanogan/decoded.py): the whole source as one uint8 array (n, c, r, r) — in memory for
  Fashion-MNIST and CIFAR-10, a memory-mapped .npy cache for folders and zips, decoded once by
  one process while the others wait on a file lock. Fastest, but n·c·r² bytes: 220 GB for FFHQ
  at 1024².
- streamed (`StreamingDataset`, nanogan/streaming.py): each image decoded when it is read, in the DataLoader workers
  of the process that needs it; best from a zip prepared by `nanogan.prepare` (PNGs at one
  resolution, labels in its dataset.json). Start-up reads the zip's directory, or a folder's
  cached index, and decodes nothing.

`open_dataset(..., cache="auto")` decodes what fits `CACHE_BUDGET` and streams the rest. Both
paths give the same pixels for the same index, so the data order (`InfiniteSampler`, a function
of (seed, step)) means the same images whichever path reads them. That holds with unreadable
images too (skip_bad=True): both keep n indices, and index i of a bad image gives the next
readable image (i + 1, i + 2, … modulo n) with its label; `skipped` lists the bad ones.
(`labels()` of a streamed dataset gives each file's own label, since it cannot know which files
are bad without decoding them all; indexing gives the substitute's, on both paths.)

    x ∈ {0, …, 255}  ->  to_float(x) = x / 127.5 − 1 ∈ [−1, 1],   to_uint8 the inverse.

Papers: Fashion-MNIST (Xiao, Rasul, Vollgraf 2017, arXiv:1708.07747): 70,000 grey 28×28 images
of 10 clothing classes, padded here with zeros to 32×32 so the models' resolutions stay powers of
two. CIFAR-10 (Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny Images"):
60,000 32×32 RGB images, 10 classes. ProGAN (Appendix F and G, "mirror augmentation") and
StyleGAN2 (Appendix B, FFHQ) train with horizontal flips: `xflip` doubles the dataset with
mirrored copies at fixed indices, so that a resumed run sees exactly the same images.

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

import numpy as np
import torch
import torch.nn.functional as F

from nanogan.config import check_resolution
from nanogan.decoded import ImageDataset, image_folder_dataset
from nanogan.randomness import derive_seed
from nanogan.sources import (DataError, ImageSource, dataset_name, native_resolution,
                             user_cache_dir)
from nanogan.streaming import StreamingDataset

logger = logging.getLogger(__name__)

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
CACHE_MODES = ("auto", "ram", "stream")


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # not a POSIX system
        return None


# The largest decoded copy (n·c·r² bytes) that cache="auto" builds. The copy is a memmap read
# through the page cache: beyond a quarter of RAM it competes with the model, the loader workers
# and the OS for memory and reads hit the disk, and beyond 4 GiB the one-off decode (minutes)
# and the second copy on disk stop being worth it, because streaming from a prepared zip with a
# few workers already keeps up with one GPU (benchmarks/data_bench.py). Fashion-MNIST (72 MB)
# and CIFAR-10 (150 MB) are far below it; FFHQ at 256² (13.8 GB) is streamed.
CACHE_BUDGET = min(4 << 30, (_physical_memory() or 16 << 30) // 4)


class DatasetNotFoundError(FileNotFoundError):
    """No copy of a dataset was found (the message lists every place tried and how to get one)."""


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
        "folder holding the four idx .gz files; passing the folder (root=); or "
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
        raise DataError(f"{source}: not a readable gzip file ({err}); delete it and "
                        "retry") from None
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


# -------------------------------------------------------------------- pixels and data order


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


# ----------------------------------------------------------------------------- resampling


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


# ---------------------------------------------------------------------------------- CIFAR-10

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")
CIFAR10_RECORD = 1 + 3 * 32 * 32  # label byte, then the red, green and blue 32×32 planes


def cifar10_folder(path: Path) -> Path | None:
    """The folder of CIFAR-10 .bin batches at `path` or in its cifar-10-batches-bin/, if any."""
    for folder in (path, path / "cifar-10-batches-bin"):
        if (folder / "data_batch_1.bin").is_file() or (folder / "test_batch.bin").is_file():
            return folder
    return None


def load_cifar10(folder: Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 3, 32, 32) images and int64 labels from CIFAR-10's binary version."""
    files = (sorted(folder.glob("data_batch_*.bin"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
             if split == "train" else [p for p in [folder / "test_batch.bin"] if p.is_file()])
    if not files:
        raise DataError(f"{folder}: no CIFAR-10 {split} batches "
                        f"({'data_batch_N.bin' if split == 'train' else 'test_batch.bin'})")
    images, labels = [], []
    for path in files:
        raw = path.read_bytes()
        if len(raw) == 0 or len(raw) % CIFAR10_RECORD:
            raise DataError(f"{path}: {len(raw)} bytes is not a whole number of "
                            f"{CIFAR10_RECORD}-byte CIFAR-10 records")
        records = np.frombuffer(raw, np.uint8).reshape(-1, CIFAR10_RECORD)
        if records[:, 0].max() >= len(CIFAR10_CLASSES):
            raise DataError(f"{path}: label {records[:, 0].max()} is not one of the 10 classes")
        labels.append(records[:, 0].astype(np.int64))
        images.append(records[:, 1:].reshape(-1, 3, 32, 32))
    return np.concatenate(images), np.concatenate(labels)


def grey(images: np.ndarray) -> np.ndarray:
    """uint8 (n, 3, h, w) -> (n, 1, h, w) by ITU-R 601-2 luma, in Pillow's fixed point."""
    r, g, b = (images[:, i : i + 1].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


# ------------------------------------------------------------------------------- open_dataset


def _kind(source: str | Path | None) -> tuple[str, Path | None]:
    """Which reader open_dataset uses, and the path it reads: ("fashion-mnist", None) for the
    name (downloaded), ("fashion-mnist", folder) for a folder of its four files, ("cifar-10",
    folder), or ("images", path) for anything else (a folder or zip of images, or what the
    image reader refuses)."""
    if source is None or str(source).lower() == "fashion-mnist":
        return "fashion-mnist", None
    path = Path(source).expanduser()
    if path.is_dir() and all((path / name).is_file() for name in FASHION_MNIST_FILES):
        return "fashion-mnist", path
    if path.is_dir() and cifar10_folder(path) is not None:
        return "cifar-10", path
    return "images", path


def has_test_split(source: str | Path | None) -> bool:
    """Fashion-MNIST and CIFAR-10 have a test split; image folders and zips have only one."""
    return _kind(source)[0] != "images"


def cache_budget_bytes(cache_budget: int | None = None) -> int:
    """The budget of cache="auto": the argument, else $NANOGAN_CACHE_BUDGET, else CACHE_BUDGET.

    The variable takes bytes with an optional K, M or G suffix (powers of 1024): "512M".
    """
    if cache_budget is not None:
        if cache_budget < 0:
            raise DataError(f"cache_budget must be >= 0 bytes, got {cache_budget}")
        return int(cache_budget)
    text = os.environ.get("NANOGAN_CACHE_BUDGET", "").strip()
    if not text:
        return CACHE_BUDGET
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1].upper(), 1)
    try:
        value = float(text[:-1] if scale > 1 else text)
    except ValueError:
        value = -1
    if not (0 <= value < float("inf")):  # NaN fails too
        raise DataError(f"NANOGAN_CACHE_BUDGET must be a finite number of bytes >= 0 with an "
                        f"optional K, M or G suffix (e.g. 512M), got {text!r}")
    return int(value * scale)


def open_dataset(source: str | Path | None = None, *, resolution: int | None = None,
                 channels: int | None = None, split: str = "train", xflip: bool = False,
                 skip_bad: bool = False, cache_dir: Path | None = None, cache: str = "auto",
                 cache_budget: int | None = None) -> ImageDataset | StreamingDataset:
    """Open Fashion-MNIST (None or "fashion-mnist"), an image folder, a .zip, or CIFAR-10.

    `cache` chooses how a folder or zip is read: "ram" decodes it once into a memmap cache
    (built by one process while the others wait), "stream" decodes each image when it is read
    (`StreamingDataset`), "auto" decodes when the decoded size n·c·r² fits `cache_budget`
    (`cache_budget_bytes`) and streams otherwise. Fashion-MNIST and CIFAR-10 are always held
    in memory (decoding them is a reshape): every value of `cache` gives the in-memory dataset.
    A prepared zip (nanogan.prepare) is recognised by its dataset.json on both paths.
    """
    if resolution is not None:
        check_resolution(resolution)
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    if cache not in CACHE_MODES:
        raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}, got {cache!r}")
    kind, path = _kind(source)
    if kind == "fashion-mnist":  # path None: the named dataset, downloaded where missing
        return fashion_mnist_dataset(path, split=split, resolution=resolution, channels=channels,
                                     xflip=xflip, download=path is None)
    if not path.exists():
        raise DatasetNotFoundError(f"{source}: no such file or folder (expected 'fashion-mnist', "
                                   "an image folder, a .zip of images or a CIFAR-10 folder)")
    if kind == "cifar-10":
        resolution, channels = resolution or 32, channels or 3
        images, labels = load_cifar10(cifar10_folder(path), split)
        images = resize_batch(grey(images) if channels == 1 else images, resolution)
        name = "cifar-10" if (resolution, channels) == (32, 3) else (
            f"cifar-10@{resolution}px-{channels}ch")
        return ImageDataset(images, labels, name=name + ("+xflip" if xflip else ""),
                            class_names=CIFAR10_CLASSES, xflip=xflip)
    if path.is_file() and path.suffix.lower() != ".zip":
        raise DataError(f"{source}: not a dataset nanogan can read (expected 'fashion-mnist', an "
                        "image folder, a .zip of images or a CIFAR-10 folder)")
    if split != "train":
        raise ValueError(f"{source}: image folders and zips have only one split; "
                         f"split={split!r} needs Fashion-MNIST or CIFAR-10")
    folder = Path(cache_dir) if cache_dir is not None else user_cache_dir() / "datasets"
    images = ImageSource(path, folder)
    resolution = resolution or native_resolution(images)
    channels = channels or (images.prepared["channels"] if images.prepared else 3)
    if images.prepared and images.resolution != resolution:
        logger.warning("%s: prepared at %d px, resized to %d px as each image is read (prepare "
                       "it at %d px to skip the resizing)", path, images.resolution, resolution,
                       resolution)
    if cache == "auto":
        size, budget = len(images) * channels * resolution**2, cache_budget_bytes(cache_budget)
        cache = "ram" if size <= budget else "stream"
        logger.info("%s: %.3g GB decoded, budget %.3g GB: cache=%s", path, size / 1e9,
                    budget / 1e9, cache)
    if cache == "ram":
        return image_folder_dataset(path, resolution=resolution, channels=channels, xflip=xflip,
                                    skip_bad=skip_bad, cache_dir=folder, source=images)
    name = dataset_name(path, resolution, channels, xflip)
    return StreamingDataset(images, resolution=resolution, channels=channels, xflip=xflip,
                            skip_bad=skip_bad, name=name)
