"""Datasets as uint8 image tensors: Fashion-MNIST, image folders, zip archives, CIFAR-10.

Every source is decoded once, in the calling process, into one uint8 array (n, c, r, r): an
in-memory array for Fashion-MNIST and CIFAR-10, a memory-mapped .npy cache for folders and zips.
Training then only indexes that array, so a corrupt file is reported (or skipped) at start-up,
never deep inside a DataLoader worker, and no image is decoded twice.

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
import io
import json
import logging
import os
import shutil
import tempfile
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
CACHE_VERSION = 1


def decode_image(data: bytes, resolution: int, channels: int) -> np.ndarray:
    """Encoded image bytes -> uint8 (channels, resolution, resolution).

    The largest centred square is cropped and resized with Lanczos (the same geometry as
    resizing the shorter side to `resolution` and cropping the centre). Alpha is composited on
    black; grey becomes RGB by repetition and RGB becomes grey by ITU-R 601-2 luma; 16-bit grey
    is scaled by 255/65535 (Pillow alone would clip it).
    """
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # decode now: truncated or corrupt data raises here, not later
        if image.mode.startswith("I"):
            image = Image.fromarray((np.asarray(image, np.float64) / 257).round().astype(np.uint8))
        if "A" in image.mode or "a" in image.mode or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
        image = image.convert("L" if channels == 1 else "RGB")
    w, h = image.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    image = image.crop((left, top, left + s, top + s))
    if s != resolution:
        image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
    array = np.asarray(image)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


class ImageSource:
    """The image files of a folder (recursively) or a zip archive, sorted, with their labels.

    Labels come from the first-level sub-folders (sorted names); a single image directly in the
    root makes the whole source unlabeled. In a zip, one folder holding everything is a wrapper
    (`zip -r cats.zip cats/`), not a class, and is looked through. Hidden files are ignored.
    """

    def __init__(self, path: Path):
        self.path, self.is_zip, self._archive = path, path.is_file(), None
        if self.is_zip:
            try:
                with zipfile.ZipFile(path) as archive:
                    names = [i.filename for i in archive.infolist() if not i.is_dir()]
            except (zipfile.BadZipFile, OSError) as err:
                raise DataError(f"{path}: not a readable zip archive ({err})") from None
        else:
            names = [Path(d, f).relative_to(path).as_posix()
                     for d, _, files in os.walk(path, followlinks=True) for f in files]
        self.names = sorted(n for n in names if n.lower().endswith(IMAGE_EXTENSIONS) and not any(
            part.startswith(".") or part == "__MACOSX" for part in n.split("/")))
        parts = [n.split("/") for n in self.names]
        if self.is_zip and parts and all(len(p) > 1 for p in parts) and len(
                {p[0] for p in parts}) == 1:
            parts = [p[1:] for p in parts]
        labeled = bool(parts) and all(len(p) > 1 for p in parts)
        self.class_names = sorted({p[0] for p in parts}) if labeled else []
        index = {c: i for i, c in enumerate(self.class_names)}
        self.labels = np.array([index[p[0]] if labeled else 0 for p in parts], np.int64)

    def fingerprint(self) -> list:
        """What the decoded cache depends on: the archive's or every file's size and mtime."""
        files = [""] if self.is_zip else self.names
        stats = [(self.path / f if f else self.path).stat() for f in files]
        return [(f, st.st_size, st.st_mtime_ns) for f, st in zip(files, stats)]

    def where(self, i: int) -> str:
        return f"{self.path}:{self.names[i]}" if self.is_zip else str(self.path / self.names[i])

    def read(self, i: int) -> bytes:
        """The bytes of image i (zipfile serializes concurrent reads of one archive itself)."""
        if not self.is_zip:
            return (self.path / self.names[i]).read_bytes()
        if self._archive is None:
            self._archive = zipfile.ZipFile(self.path)
        return self._archive.read(self.names[i])

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()
            self._archive = None


def image_folder_dataset(path: Path, *, resolution: int | None = None, channels: int = 3,
                         xflip: bool = False, skip_bad: bool = False,
                         cache_dir: Path | None = None) -> ImageDataset:
    """Decode a folder or zip of images once into a cached uint8 memmap, then index it.

    The cache (images .npy, labels .npy, a .json written last) is keyed by the source's path,
    every file's size and mtime (the archive's for a zip), the resolution and the channels.
    """
    source = ImageSource(path)
    if not source.names:
        raise DataError(f"{path}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)} "
                        f"files{' in the archive' if source.is_zip else ', recursively'})")
    try:
        resolution = resolution or _native_resolution(source)
        key = hashlib.sha256(json.dumps([CACHE_VERSION, str(path.resolve()), source.fingerprint(),
                                         resolution, channels]).encode()).hexdigest()[:16]
        folder = Path(cache_dir) if cache_dir is not None else user_cache_dir() / "datasets"
        stem = folder / f"{''.join(c if c.isalnum() else '-' for c in path.name)}-{key}"
        meta_path, images_path, labels_path = (Path(f"{stem}{suffix}") for suffix in
                                               (".json", ".images.npy", ".labels.npy"))
        if not (meta_path.is_file() and images_path.is_file() and labels_path.is_file()):
            folder.mkdir(parents=True, exist_ok=True)
            skipped = _decode_all(source, resolution, channels, skip_bad, images_path, labels_path)
            _write_atomic(meta_path, json.dumps({"source": str(path), "skipped": skipped,
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
    name = f"{path.resolve()}@{resolution}px-{channels}ch" + ("+xflip" if xflip else "")
    return ImageDataset(np.load(images_path, mmap_mode="r"), np.load(labels_path), name=name,
                        class_names=meta["class_names"], xflip=xflip, skipped=skipped)


def _native_resolution(source: ImageSource) -> int:
    """The largest allowed power of two not above the first readable image's shorter side."""
    for i in range(len(source.names)):
        try:
            with Image.open(io.BytesIO(source.read(i))) as image:
                side = min(image.size)
        except Exception:  # noqa: BLE001 - a bad file is reported by the decoding pass
            continue
        return max(r for r in RESOLUTIONS if r <= max(side, RESOLUTIONS[0]))
    return RESOLUTIONS[0]


def _decode_all(source: ImageSource, resolution: int, channels: int, skip_bad: bool,
                images_path: Path, labels_path: Path) -> list[tuple[str, str]]:
    """Decode every image (threads: Pillow releases the GIL) into a temporary .npy, then rename."""
    n = len(source.names)

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
        keep, skipped = [], []
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
                    else:
                        out[len(keep)] = result
                        keep.append(i)
        if not keep:
            raise DataError(f"{source.path}: none of its {n} images could be read "
                            f"(first: {skipped[0][0]}: {skipped[0][1]})")
        out.flush()
        if len(keep) < n:  # a smaller file holding only the images kept
            kept = np.lib.format.open_memmap(tmp + ".kept", "w+", np.uint8,
                                             (len(keep), *out.shape[1:]))
            kept[:] = out[: len(keep)]
            kept.flush()
            del kept
            os.replace(tmp + ".kept", tmp)
        del out
        _write_atomic(labels_path, _npy_bytes(source.labels[keep]))
        os.replace(tmp, images_path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        Path(tmp + ".kept").unlink(missing_ok=True)
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


def has_test_split(source: str | Path | None) -> bool:
    """Fashion-MNIST and CIFAR-10 have a test split; image folders and zips have only one."""
    if source is None or str(source).lower() == "fashion-mnist":
        return True
    path = Path(source).expanduser()
    return path.is_dir() and (all((path / name).is_file() for name in FASHION_MNIST_FILES)
                              or cifar10_folder(path) is not None)


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
    cifar = cifar10_folder(path) if path.is_dir() else None
    if cifar is not None:
        resolution, channels = resolution or 32, channels or 3
        images, labels = load_cifar10(cifar, split)
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
    return image_folder_dataset(path, resolution=resolution, channels=channels or 3, xflip=xflip,
                                skip_bad=skip_bad, cache_dir=cache_dir)
