"""Datasets as uint8 image tensors: Fashion-MNIST, CIFAR-10, image folders and zips.

Two paths, one interface (`__len__`, `__getitem__ -> (uint8 (c, r, r), label)`, `images_uint8`,
`labels`, and `name, class_names, channels, resolution, num_classes, xflip, skipped`):

- decoded (`ImageDataset`): the whole source as one uint8 array (n, c, r, r) — in memory for
  Fashion-MNIST and CIFAR-10, a memory-mapped .npy cache for folders and zips, decoded once by
  one process while the others wait on a file lock. Fastest, but n·c·r² bytes: 220 GB for FFHQ
  at 1024².
- streamed (`StreamingDataset`): each image decoded when it is read, in the DataLoader workers
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

import contextlib
import gzip
import hashlib
import io
import json
import logging
import os
import shutil
import struct
import tempfile
import threading
import urllib.request
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from nanogan.config import check_resolution
from nanogan.randomness import derive_seed

try:
    import fcntl
except ImportError:  # Windows: no advisory locks (see exclusive_lock)
    fcntl = None

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


class UnreadableImageError(DataError):
    """An image of a folder or zip that cannot be decoded: skip_bad=True skips and counts it."""


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


# ------------------------------------------------------------------------------- the dataset


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


# ------------------------------------------------------------------------ image folders and zips

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")
# 2: folders keyed by their directories' mtimes, not every file's stat; 3: a bad image's row
# holds the next readable image (n rows, as streamed), no longer dropped
CACHE_VERSION = 3
INDEX_VERSION = 1
PREPARED_FORMAT, PREPARED_VERSION = "nanogan-dataset", 1
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


def convert_mode(image: Image.Image, channels: int) -> Image.Image:
    """A decoded Pillow image in mode "L" (channels 1) or "RGB" (3); raises on corrupt data.

    Alpha is composited on black; grey becomes RGB by repetition and RGB becomes grey by ITU-R
    601-2 luma; 16-bit grey is scaled by 255/65535 (Pillow alone would clip it); palettes are
    expanded.
    """
    image.load()  # decode now: truncated or corrupt data raises here, not later
    if image.mode.startswith("I"):
        image = Image.fromarray((np.asarray(image, np.float64) / 257).round().astype(np.uint8))
    if "A" in image.mode or "a" in image.mode or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    mode = "L" if channels == 1 else "RGB"
    return image if image.mode == mode else image.convert(mode)


def decode_image(data: bytes, resolution: int, channels: int) -> np.ndarray:
    """Encoded image bytes -> uint8 (channels, resolution, resolution).

    The largest centred square is cropped and resized with Lanczos (the same geometry as
    resizing the shorter side to `resolution` and cropping the centre). Alpha is composited on
    black; grey becomes RGB by repetition and RGB becomes grey by ITU-R 601-2 luma; 16-bit grey
    is scaled by 255/65535 (Pillow alone would clip it).
    """
    with Image.open(io.BytesIO(data)) as image:
        image = convert_mode(image, channels)
        w, h = image.size
        s = min(w, h)
        if w != h:
            left, top = (w - s) // 2, (h - s) // 2
            image = image.crop((left, top, left + s, top + s))
        if s != resolution:
            image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
        array = np.asarray(image)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _pread(fd: int, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    with _PREAD_LOCK:  # no positioned read (Windows): seek and read under a lock
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, size)


_PREAD_LOCK = threading.Lock()


class ZipMembers:
    """Chosen members of a zip archive, read by byte offset with one file descriptor a process.

    The central directory is parsed once (by zipfile) into numpy arrays of offsets, sizes,
    methods and CRCs, about 21 bytes a member, which forked DataLoader workers share
    copy-on-write. A `zipfile.ZipFile` per worker would instead re-parse the directory in every
    worker and keep ~550 bytes of ZipInfo per member: 0.7 GB a process for ImageNet's 1.28M.
    Reads are positioned (`os.pread`), so threads and processes never share a file offset, and
    a descriptor is only used by the process that opened it.
    """

    def __init__(self, path: Path, infos: Sequence[zipfile.ZipInfo]):
        for info in infos:
            if info.flag_bits & 1 or info.compress_type not in (zipfile.ZIP_STORED,
                                                                zipfile.ZIP_DEFLATED):
                raise DataError(f"{path}:{info.filename}: encrypted or compressed with zip method "
                                f"{info.compress_type}; nanogan reads stored and deflated members "
                                "— re-zip it with deflate (`zip -r`) or unzip it and prepare "
                                "the folder with nanogan.prepare")
        self.path = path
        self.offset = np.array([i.header_offset for i in infos], np.int64)
        self.size = np.array([i.compress_size for i in infos], np.int64)
        self.deflated = np.array([i.compress_type == zipfile.ZIP_DEFLATED for i in infos], bool)
        self.crc = np.array([i.CRC for i in infos], np.uint32)
        self._fd: int | None = None
        self._pid = -1

    def read(self, i: int) -> bytes:
        """The uncompressed bytes of member i, checked against its CRC-32."""
        if self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0)), \
                os.getpid()
        offset, size = int(self.offset[i]), int(self.size[i])
        header = _pread(self._fd, 30, offset)  # the local file header: 30 bytes, name, extra
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"no local file header at byte {offset}")
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        data = _pread(self._fd, size, offset + 30 + name_length + extra_length)
        if len(data) != size:
            raise zipfile.BadZipFile(f"{size - len(data)} of its {size} bytes are missing")
        if self.deflated[i]:
            data = zlib.decompress(data, -15)  # raw deflate, no zlib header
        if zlib.crc32(data) != int(self.crc[i]):
            raise zipfile.BadZipFile("CRC-32 mismatch (the data is corrupt)")
        return data

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd, self._pid = None, -1

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None, "_pid": -1}

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit `os` may already be gone
            self.close()


def _foreign_meta(raw: bytes, where: str) -> dict | list | None:
    """A root dataset.json that is not nanogan's (no "format" key, e.g. StyleGAN2-ADA's
    `{"labels": ...}`), parsed; None when it is nanogan's or not valid JSON (both are then
    read_prepared_meta's to judge)."""
    try:
        meta = json.loads(raw)
    except ValueError:
        return None
    return None if isinstance(meta, dict) and "format" in meta else meta


def _ada_labels(meta, names: Sequence[str], where: str) -> tuple[list[str], np.ndarray] | None:
    """Class names and labels from a StyleGAN2-ADA dataset.json (`{"labels": [[member, class],
    …]}`, mapped by member name), or None when it has none (`{"labels": null}`, or not ADA's)."""
    if not isinstance(meta, dict) or "labels" not in meta:
        return None
    labels = meta["labels"]
    if labels is None:  # ADA's unlabeled zip: its 00000/ folders are not classes
        return [], np.zeros(len(names), np.int64)
    by_name = {}
    if isinstance(labels, list):
        for item in labels:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                    and type(item[1]) is int and item[1] >= 0):
                by_name = None
                break
            by_name[item[0]] = item[1]
    missing = [n for n in names if n not in by_name] if by_name is not None else names
    if by_name is None or missing:
        raise DataError(f"{where}: \"labels\" must be null or a list of [member name, class "
                        "index >= 0] pairs covering every image (StyleGAN2-ADA's dataset_tool "
                        "format)" + (f"; {missing[0]} has none" if by_name is not None else ""))
    labels = np.array([by_name[n] for n in names], np.int64)
    return [str(k) for k in range(int(labels.max()) + 1)], labels


def read_prepared_meta(raw: bytes, where: str) -> dict:
    """The dataset.json of a prepared zip, validated: a DataError names the field that is wrong."""
    try:
        meta = json.loads(raw)
    except ValueError as err:
        raise DataError(f"{where}: not valid JSON ({err}); prepare the zip again") from None
    if not isinstance(meta, dict) or meta.get("format") != PREPARED_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise DataError(f"{where}: format is {found!r}, expected {PREPARED_FORMAT!r}")
    version = meta.get("version")
    if not isinstance(version, int) or version < 1:
        raise DataError(f"{where}: version must be a positive integer, got {version!r}")
    if version > PREPARED_VERSION:
        raise DataError(f"{where}: a version {version} dataset, newer than this nanogan reads "
                        f"(version {PREPARED_VERSION}); update nanogan or prepare the data again")

    def require(field: str, ok: bool, expected: str) -> None:
        if not ok:
            raise DataError(f"{where}: field {field!r} must be {expected}, got "
                            f"{str(meta.get(field, '(missing)'))[:80]}")

    n, names = meta.get("images"), meta.get("class_names")
    require("resolution", meta.get("resolution") in RESOLUTIONS, f"one of {list(RESOLUTIONS)}")
    require("channels", meta.get("channels") in (1, 3), "1 or 3")
    require("images", isinstance(n, int) and n >= 1, "a positive number of images")
    require("class_names", isinstance(names, list) and all(isinstance(c, str) for c in names),
            "a list of strings")
    k, labels = max(len(names), 1), meta.get("labels")
    require("labels", isinstance(labels, list) and len(labels) == n and all(
        type(y) is int and 0 <= y < k for y in labels), f"a list of {n} class indices in [0, {k})")
    skipped = meta.get("skipped", [])
    require("skipped", isinstance(skipped, list) and all(
        isinstance(s, list) and len(s) == 2 for s in skipped), "a list of [where, reason] pairs")
    return meta


class ImageSource:
    """The images of a folder (recursively), a zip archive, or a prepared zip, with labels.

    Folders and plain zips: image files sorted by path; labels from the first-level sub-folders
    (sorted names); a single image directly in the root makes the whole source unlabeled. In a
    zip, one folder holding everything is a wrapper (`zip -r cats.zip cats/`), not a class, and
    is looked through. Hidden files and __MACOSX are ignored. A folder's file list comes from its
    cached index (`folder_index`); a zip's from its central directory.

    A prepared zip (made by nanogan.prepare) holds dataset.json and images/{i:08d}.png; its
    labels, class names, resolution and channels come from dataset.json, never from folder names.

    `key` is what caches of decoded images depend on: for a zip its size and mtime, for a folder
    its index (file list and directory mtimes). An image edited in place without renaming is
    not seen by it: touch the folder (`touch DIR`) or delete the cache (user_cache_dir()).
    """

    def __init__(self, path: Path, index_dir: Path | None = None):
        index_dir = index_dir or user_cache_dir() / "datasets"
        self.path, self.is_zip, self.prepared = path, path.is_file(), None
        self._names = self._members = self._ada_labels = None
        if self.is_zip:
            stat = path.stat()
            self.key = [stat.st_size, stat.st_mtime_ns]
            names, ignored = self._open_zip()
        else:
            index = folder_index(path, index_dir)
            self.key = [index["dirs"], index["mtimes"]]
            names, ignored = index["names"], index["ignored"]
        if self.prepared is None:
            self._set_plain(names, ignored)

    def _open_zip(self) -> tuple[list[str], dict[str, int]]:
        try:
            with zipfile.ZipFile(self.path) as archive:  # reads the central directory only
                infos = {i.filename: i for i in archive.infolist() if not i.is_dir()}
                raw = archive.read("dataset.json") if "dataset.json" in infos else None
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
            raise DataError(f"{self.path}: not a readable zip archive ({err}); if it was being "
                            "written or copied, it is incomplete: make or copy it again") from None
        other = _foreign_meta(raw, f"{self.path}:dataset.json") if raw is not None else None
        if raw is not None and other is None:
            meta = read_prepared_meta(raw, f"{self.path}:dataset.json")
            chosen = []
            for i in range(meta["images"]):
                info = infos.get(f"images/{i:08d}.png")
                if info is None:
                    raise DataError(f"{self.path}: dataset.json lists {meta['images']} images but "
                                    f"images/{i:08d}.png is missing; prepare the zip again")
                chosen.append(info)
            # the labels are kept as one array: the dict is pickled into every loader worker
            self.prepared = {k: v for k, v in meta.items() if k != "labels"}
            self.labels = np.array(meta["labels"], np.int64)
            self.class_names = list(meta["class_names"])
            self._members = ZipMembers(self.path, chosen)
            return [], {}
        names, ignored = _split_names(infos)  # a foreign dataset.json counts as ignored
        self._members = ZipMembers(self.path, [infos[n] for n in names])
        if other is not None:
            self._ada_labels = _ada_labels(other, names, f"{self.path}:dataset.json")
        return names, ignored

    def _set_plain(self, names: list[str], ignored: dict[str, int]) -> None:
        self.ignored = ignored
        if not names:
            what = "in the archive" if self.is_zip else "in it or its sub-folders"
            others = sum(ignored.values())
            listed = ", ".join(f"{e} ×{c}" for e, c in sorted(ignored.items(), key=lambda x:
                                                                 -x[1])[:6])
            raise DataError(f"{self.path}: no images found {what}"
                            + (f"; ignored {others} other files ({listed})" if others else
                               " (it holds no files)")
                            + f". nanogan reads {', '.join(IMAGE_EXTENSIONS)} files (any case; "
                            "hidden files and __MACOSX are skipped)")
        parts = [n.split("/") for n in names]
        if self.is_zip and all(len(p) > 1 for p in parts) and len({p[0] for p in parts}) == 1:
            parts = [p[1:] for p in parts]
        labeled = all(len(p) > 1 for p in parts)
        self.class_names = sorted({p[0] for p in parts}) if labeled else []
        index = {c: i for i, c in enumerate(self.class_names)}
        self.labels = np.array([index[p[0]] if labeled else 0 for p in parts], np.int64)
        if self._ada_labels is not None:  # a StyleGAN2-ADA zip: its dataset.json has the say
            self.class_names, self.labels = self._ada_labels
        # utf-8 bytes in one numpy array: no Python object per name, so forked workers that read
        # names do not touch refcounts and copy the pages ("copy-on-read")
        self._names = np.array([n.encode() for n in names])

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def resolution(self) -> int | None:
        """The prepared resolution, or None for a folder or plain zip."""
        return self.prepared["resolution"] if self.prepared else None

    def name(self, i: int) -> str:
        return f"images/{i:08d}.png" if self.prepared else self._names[i].decode()

    def where(self, i: int) -> str:
        """`archive.zip:member` or the file's path: what a message about image i names."""
        return f"{self.path}:{self.name(i)}" if self.is_zip else str(self.path / self.name(i))

    def read(self, i: int) -> bytes:
        """The encoded bytes of image i."""
        if self._members is not None:
            return self._members.read(i)
        with open(self.path / self.name(i), "rb") as f:
            return f.read()

    def close(self) -> None:
        if self._members is not None:
            self._members.close()


def _split_names(names) -> tuple[list[str], dict[str, int]]:
    """Image names (sorted) and the count of every other file, by extension."""
    keep, ignored = [], {}
    for name in names:
        if any(part.startswith(".") or part == "__MACOSX" for part in name.split("/")):
            ext = "hidden"
        elif name.lower().endswith(IMAGE_EXTENSIONS):
            keep.append(name)
            continue
        else:
            ext = os.path.splitext(name)[1].lower() or "no extension"
        ignored[ext] = ignored.get(ext, 0) + 1
    return sorted(keep), ignored


def _slug(path: Path) -> str:
    return "".join(c if c.isalnum() else "-" for c in path.name)


def _dir_mtimes(root: Path, dirs: Sequence[str]) -> list[int] | None:
    try:
        return [os.stat(root / d).st_mtime_ns for d in dirs]
    except OSError:
        return None


def folder_index(path: Path, index_dir: Path) -> dict:
    """The sorted image names of a folder, listed once and kept in `index_dir`.

    The index stays valid while the mtime of the folder and of every sub-folder is unchanged
    (adding, removing or renaming a file changes its directory's mtime), so a start costs one
    stat per directory, none per file. Editing a file in place changes no directory: run
    `touch DIR` (or delete the index and caches under user_cache_dir()) after such an edit.
    """
    resolved = path.resolve()
    file = index_dir / f"{_slug(path)}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:16]}" \
                       ".index.json"
    try:
        index = json.loads(file.read_text())
        if (index["version"] == INDEX_VERSION and index["path"] == str(resolved)
                and _dir_mtimes(path, index["dirs"]) == index["mtimes"]):
            return index
    except (OSError, ValueError, KeyError, TypeError):
        pass
    dirs, mtimes, files, todo = [], [], [], ["."]
    while todo:  # depth first, sorted; each mtime is taken before its directory is listed, so
        rel = todo.pop()  # a file added during the listing makes the next start list again
        dirs.append(rel)
        mtimes.append(os.stat(path / rel).st_mtime_ns)
        subdirs = []
        with os.scandir(path / rel) as entries:
            for entry in entries:
                name = entry.name if rel == "." else f"{rel}/{entry.name}"
                (subdirs if entry.is_dir() else files).append(name)  # symlinks followed
        todo += sorted(subdirs, reverse=True)
    names, ignored = _split_names(files)
    index = {"version": INDEX_VERSION, "path": str(resolved), "dirs": dirs, "mtimes": mtimes,
             "names": names, "ignored": ignored}
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(file, json.dumps(index).encode())
    except OSError as err:  # a read-only cache only costs the next start a listing
        logger.warning("%s: cannot keep the folder index there (%s)", file, err)
    return index


# ------------------------------------------------------------------------------- streaming


class StreamingDataset(torch.utils.data.Dataset):
    """Images decoded one per item from an ImageSource; the interface of ImageDataset.

    Index n + i is image i mirrored (xflip). Nothing is decoded at start-up; DataLoader workers
    each open their own file descriptor (forked or pickled copies never share one). The result
    is exactly the decoded path's (`decode_image`, same index order), so the data order stays
    a function of (seed, step) whichever path reads it.

    A file that cannot be read raises UnreadableImageError naming `archive.zip:member` or the
    path. With skip_bad=True it is replaced by the next readable image (i + 1, i + 2, … modulo
    n, mirrored if the index was a mirror, with that image's label): a choice that depends only
    on the data, so resumed and N-process runs stay exact. Each process logs one warning per bad
    image and appends it to its own `skipped` (a worker's list is not seen by the main process).
    The decoded path fills a bad image's row by the same rule, so the two paths stay equal.
    """

    cache = "stream"

    def __init__(self, source: ImageSource, *, resolution: int, channels: int, name: str,
                 xflip: bool = False, skip_bad: bool = False):
        self.source, self.resolution, self.channels = source, resolution, channels
        self.name, self.xflip, self.skip_bad = name, xflip, skip_bad
        self.class_names = tuple(source.class_names)
        self.num_classes = len(self.class_names)
        self.skipped = [tuple(s) for s in (source.prepared or {}).get("skipped", [])]
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.source) * (2 if self.xflip else 1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        n = len(self.source)
        image, i = self._decode(index % n)
        if index >= n:
            image = image[..., ::-1]
        # one copy: contiguous, and writable (Pillow's array is read-only)
        return torch.from_numpy(np.array(image, order="C")), int(self.source.labels[i])

    def _decode(self, i: int) -> tuple[np.ndarray, int]:
        """Image i, or with skip_bad the next readable one, and the index actually read."""
        n = len(self.source)
        for j in (k % n for k in range(i, i + n)):
            if j in self._bad:
                continue
            try:
                return decode_image(self.source.read(j), self.resolution, self.channels), j
            except Exception as err:  # noqa: BLE001 - any failure is this file's failure
                reason, where = f"{type(err).__name__}: {err}", self.source.where(j)
                if not self.skip_bad:
                    raise UnreadableImageError(
                        f"{where}: cannot read this image ({reason}); fix or delete it (prepare "
                        "the zip again), or pass skip_bad=True to read the next "
                        "image in its place") from None
                self._bad.add(j)
                self.skipped.append((where, reason))
                logger.warning("%s: cannot read this image (%s); reading the next one in its "
                               "place", where, reason)
        raise DataError(f"{self.source.path}: none of its {n} images could be read")

    def images_uint8(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (b, c, r, r) images for dataset indices, each decoded now."""
        index = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices,
                           np.int64).reshape(-1)
        if not index.size:
            return torch.empty(0, self.channels, self.resolution, self.resolution,
                               dtype=torch.uint8)
        return torch.stack([self[i][0] for i in index.tolist()])

    def labels(self) -> torch.Tensor:
        """int64 (len(self),) labels (all 0 when the dataset is unlabeled): each file's own, as
        listed; with skip_bad, a bad file's index reads the next readable image and its label,
        which only indexing shows (the decoded path's labels() already holds the substitutes)."""
        return torch.from_numpy(np.tile(self.source.labels, 2 if self.xflip else 1))

    def __repr__(self) -> str:
        r = self.resolution
        return (f"StreamingDataset({self.name!r}, {len(self)} images, {self.channels}×{r}×{r}, "
                f"{self.num_classes} classes)")


SUBSET_SEED = 0  # ADA's --subset: one fixed subset of a dataset, whatever the run's --seed


class Subset(torch.utils.data.Dataset):
    """The same `n` images of a dataset in every run: the interface of the dataset it wraps.

    The images are the first n of a permutation drawn with `SUBSET_SEED` (independent of the
    training seed), in the dataset's order, as ADA's `--subset` (Karras et al. 2020,
    arXiv:2006.06676, §4: training sets of 1k–50k images). A mirrored dataset (xflip) is
    subset first and then mirrored: its n + i-th image is the i-th image flipped.
    """

    def __init__(self, dataset, n: int):
        base = len(dataset) // (2 if dataset.xflip else 1)
        if not 1 <= n <= base:
            raise DataError(f"max_images must be between 1 and the {base} images of "
                            f"{dataset.name}, got {n}")
        order = torch.randperm(base, generator=torch.Generator().manual_seed(SUBSET_SEED))
        chosen = order[:n].sort().values
        self._index = torch.cat([chosen, chosen + base]) if dataset.xflip else chosen
        self.dataset, self.size = dataset, n
        for name in ("channels", "resolution", "num_classes", "class_names", "xflip", "skipped",
                     "cache"):
            setattr(self, name, getattr(dataset, name))
        flip = "+xflip"
        plain = dataset.name[: -len(flip)] if dataset.xflip and dataset.name.endswith(flip) \
            else dataset.name
        self.name = f"{plain}[{n} of {base}]" + (flip if dataset.xflip else "")

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= int(index) < len(self):
            raise IndexError(f"index {index} out of range for a subset of {len(self)} images")
        return self.dataset[int(self._index[int(index)])]

    def images_uint8(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        index = torch.as_tensor(np.asarray(indices.cpu() if isinstance(indices, torch.Tensor)
                                           else indices, np.int64).reshape(-1))
        if index.numel() and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"index out of range for a subset of {len(self)} images")
        return self.dataset.images_uint8(self._index[index])

    def labels(self) -> torch.Tensor:
        return self.dataset.labels()[self._index]

    def __repr__(self) -> str:
        return f"Subset({self.name!r}, {len(self)} images of {self.dataset!r})"


def subset(dataset, n: int | None):
    """`Subset(dataset, n)`, or the dataset itself when n is None (every image)."""
    return dataset if n is None else Subset(dataset, n)


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
        resolution = resolution or _native_resolution(source)
        key = hashlib.sha256(json.dumps([CACHE_VERSION, str(path.resolve()), source.key,
                                         resolution, channels]).encode()).hexdigest()[:16]
        stem = folder / f"{_slug(path)}-{key}"
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
                    _write_atomic(meta_path, json.dumps({
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
                        name=_dataset_name(path, resolution, channels, xflip),
                        class_names=meta["class_names"], xflip=xflip, skipped=prepared + skipped)


def _dataset_name(path: Path, resolution: int, channels: int, xflip: bool) -> str:
    """The same on both paths: they give the same images (feature caches are keyed by it)."""
    return f"{path.resolve()}@{resolution}px-{channels}ch" + ("+xflip" if xflip else "")


def _native_resolution(source: ImageSource) -> int:
    """The prepared resolution, else the largest allowed power of two not above the first
    readable image's shorter side."""
    if source.resolution:
        return source.resolution
    for i in range(len(source)):
        try:
            with Image.open(io.BytesIO(source.read(i))) as image:
                side = min(image.size)
        except Exception:  # noqa: BLE001 - a bad file is reported when it is decoded
            continue
        return max(r for r in RESOLUTIONS if r <= max(side, RESOLUTIONS[0]))
    return RESOLUTIONS[0]


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
        _write_atomic(labels_path, _npy_bytes(labels))
        os.replace(tmp, images_path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return skipped


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _write_atomic(path: Path, content: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


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
    resolution = resolution or _native_resolution(images)
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
    name = _dataset_name(path, resolution, channels, xflip)
    return StreamingDataset(images, resolution=resolution, channels=channels, xflip=xflip,
                            skip_bad=skip_bad, name=name)
