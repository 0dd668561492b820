"""Prepare a dataset once: any source -> a zip of PNGs at one resolution, with labels inside.

    python -m nanogan.prepare SRC OUT.zip --resolution 256 [--channels 1|3]
        [--transform center-crop|resize] [--max-images N] [--workers K] [--skip-bad] [--overwrite]

SRC is an image folder (first-level sub-folders are classes), a zip of images (both listed by
`sources.ImageSource`), a CIFAR-10 folder (binary version), a Fashion-MNIST folder, `fashion-mnist`
(the train split, found or downloaded as in `data.py`) or a zip made by this command (its labels
are kept: re-preparing at another size). Non-image files are ignored and counted. The output is a
plain zip (ZIP_STORED: PNG is compressed already) holding

    images/00000000.png …  8-bit PNGs of exactly R×R, mode "L" (1 channel) or "RGB" (3)
    dataset.json          written last: {"format": "nanogan-dataset", "version": 1,
                          "resolution", "channels", "class_names", "images", "labels",
                          "skipped": [[where, reason], …], "source", "transform"}

Image i has label labels[i]; the order is the source's (sorted file names; the dataset's own
order for CIFAR-10 and Fashion-MNIST), unreadable images removed (`skip_bad`), then cut to
`max_images`. Every member has a fixed date, so the same inputs give the same bytes.

Geometry. `center-crop` crops the largest centred square and resizes it with Lanczos: exactly
`sources.decode_image`, so a prepared zip holds the pixels the in-memory path would train on.
`resize` squashes the whole image to R×R (Lanczos). CIFAR-10 and Fashion-MNIST (28² padded with
zeros to 32²) are square and resized like `data.py` does (antialiased bilinear).

Speed and memory. Images are decoded and PNG-encoded in worker processes, a bounded window of
chunks in flight, and written in order by this process, so no more than a few chunks of images
are ever held; what grows is zipfile's directory of the members written (~0.4 KB an image:
0.5 GB for ImageNet's 1.28M) and the labels. The zip is built in a temporary file beside OUT,
fsynced and renamed, so OUT is never half-written. A run stopped by Ctrl-C or an error deletes
that file; one killed outright (SIGKILL, the OOM killer, a power loss) can leave it, named
`.OUT.zip.<random>.tmp` in OUT's folder: it is safe to delete.

This module is an entry point like train.py: typer and rich are imported inside `main` only, and
the library function `prepare` never prints (it reports through its `progress` callback).
Lesson: lessons/00_reading_this_repo.md
"""

from __future__ import annotations

import enum
import io
import json
import os
import signal
import sys
import tempfile
import time
import zipfile
from collections import deque
from contextlib import closing
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

from nanogan import sources
from nanogan.checkpoint import fsync_folder
from nanogan.config import ConfigError, check_resolution
from nanogan.data import (CIFAR10_CLASSES, FASHION_MNIST_CLASSES, FASHION_MNIST_FILES,
                          DatasetNotFoundError, cifar10_folder, grey, load_cifar10,
                          load_fashion_mnist, resize_batch)
from nanogan.sources import (PREPARED_FORMAT, PREPARED_VERSION, DataError, ImageSource,
                             UnreadableImageError, convert_mode, decode_image)

TRANSFORMS = ("center-crop", "resize")
CHUNK = {"files": 32, "arrays": 256}  # images per task sent to a worker
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # a fixed member date: the same inputs give the same zip
# zlib level of the PNGs. Measured on 256² RGB images on this 2-core CPU: level 1 encodes 3–5×
# faster than Pillow's default 6 (8–15 ms against 37–58 ms), its files are 2% (noisy photo) to
# 33% (smooth image) larger, and decoding them takes the same time within the noise (3–4 ms).
PNG_LEVEL = 1


# ------------------------------------------------------------------------------- decoding


def decode(data: bytes, resolution: int, channels: int,
           transform: str = "center-crop") -> np.ndarray:
    """Encoded image bytes -> uint8 (channels, resolution, resolution).

    center-crop: `sources.decode_image` (largest centred square, Lanczos). resize: the whole image
    resized to resolution² with Lanczos, aspect ratio ignored. Both convert modes alike: alpha
    composited on black, 16-bit scaled by 255/65535, palette expanded, grey <-> RGB.
    """
    if transform == "center-crop":
        return decode_image(data, resolution, channels)
    if transform != "resize":
        raise ValueError(f"transform must be one of {list(TRANSFORMS)}, got {transform!r}")
    with Image.open(io.BytesIO(data)) as image:
        image = convert_mode(image, channels)  # sources.decode_image's conversions
    if image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
    array = np.asarray(image)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def encode_png(image: np.ndarray) -> bytes:
    """uint8 (1 or 3, r, r) -> PNG bytes of mode "L" or "RGB", zlib level PNG_LEVEL."""
    pixels = image[0] if image.shape[0] == 1 else np.ascontiguousarray(image.transpose(1, 2, 0))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=PNG_LEVEL)
    return buffer.getvalue()


_SOURCE: ImageSource | None = None  # the folder or zip a worker reads (set by _init_worker)


def _encode_files(indices: range, resolution: int, channels: int,
                  transform: str) -> list[bytes | str]:
    """A worker's task: PNG bytes for each image of _SOURCE, or the reason it cannot be read."""
    out: list[bytes | str] = []
    for i in indices:
        try:
            out.append(encode_png(decode(_SOURCE.read(i), resolution, channels, transform)))
        except UnidentifiedImageError:  # its message holds a memory address: not reproducible
            out.append("UnidentifiedImageError: not an image format Pillow can read")
        except Exception as err:  # noqa: BLE001 - any failure is this file's failure
            out.append(f"{type(err).__name__}: {err}")
    return out


def _encode_arrays(images: np.ndarray) -> list[bytes | str]:
    """A worker's task: PNG bytes for each image of a uint8 (n, c, r, r) chunk."""
    return [encode_png(image) for image in images]


def _init_worker(source: ImageSource | None) -> None:
    """A worker leaves Ctrl-C to the main process (which stops it) and keeps its source (inherited
    when forked; ImageSource opens its own file descriptor in each process)."""
    global _SOURCE
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _SOURCE = source


# -------------------------------------------------------------------------------- sources


class FileSource:
    """The images of a folder or zip, as `sources.ImageSource` lists them (sorted, labels from the
    sub-folders; a prepared zip keeps the labels, class names and, by default, the channels and
    resolution of its dataset.json)."""

    def __init__(self, src: str, path: Path):
        self.src, self.files = src, ImageSource(path)  # raises DataError when it holds no image
        self.class_names, self.labels = list(self.files.class_names), self.files.labels
        self.ignored = sum(getattr(self.files, "ignored", {}).values())  # non-image files
        self.default_channels = self.files.prepared["channels"] if self.files.prepared else 3

    def __len__(self) -> int:
        return len(self.files)

    def where(self, i: int) -> str:
        return self.files.where(i)

    def native_resolution(self) -> int:
        """A prepared zip's resolution, else the largest allowed power of two not above the first
        readable image's shorter side."""
        return sources.native_resolution(self.files)

    def task(self, indices: range, resolution: int, channels: int, transform: str) -> tuple:
        return _encode_files, (indices, resolution, channels, transform)

    def close(self) -> None:
        self.files.close()


class ArraySource:
    """CIFAR-10 or Fashion-MNIST, decoded whole by `data.py` (square: the transform is moot)."""

    def __init__(self, src: str, images: np.ndarray, labels: np.ndarray, class_names, *,
                 native: int, default_channels: int):
        self.src, self.images, self.labels = src, images, labels
        self.class_names, self.native, self.default_channels = list(class_names), native, (
            default_channels)
        self.ignored = 0

    def __len__(self) -> int:
        return len(self.images)

    def where(self, i: int) -> str:
        return f"{self.src}[{i}]"

    def native_resolution(self) -> int:
        return self.native

    def task(self, indices: range, resolution: int, channels: int, transform: str) -> tuple:
        images = self.images[indices.start : indices.stop]
        if channels == 1 and images.shape[1] == 3:
            images = grey(images)
        images = resize_batch(images, resolution)  # after grey, as data.open_dataset does
        if channels == 3 and images.shape[1] == 1:
            images = np.repeat(images, 3, axis=1)
        return _encode_arrays, (images,)

    def close(self) -> None:
        pass


Source = FileSource | ArraySource


def open_source(src: str | Path) -> Source:
    """The dataset at `src`: "fashion-mnist", a Fashion-MNIST or CIFAR-10 folder, an image folder
    or a .zip of images. Raises DataError naming the problem (missing, empty, not a dataset)."""
    expected = ("expected 'fashion-mnist', an image folder, a .zip of images, a CIFAR-10 folder "
                "or a Fashion-MNIST folder")
    if str(src).lower() == "fashion-mnist":
        return _fashion_source(str(src), None)
    path = Path(src).expanduser()
    if path.is_dir():
        if all((path / name).is_file() for name in FASHION_MNIST_FILES):
            return _fashion_source(str(src), path)
        cifar = cifar10_folder(path)
        if cifar is not None:
            images, labels = load_cifar10(cifar, "train")
            return ArraySource(str(src), images, labels, CIFAR10_CLASSES, native=32,
                               default_channels=3)
        return FileSource(str(src), path)
    if not path.exists():
        raise DataError(f"{src}: no such file or folder ({expected})")
    if not path.is_file() or path.suffix.lower() != ".zip":
        raise DataError(f"{src}: not a dataset nanogan can read ({expected})")
    return FileSource(str(src), path)


def _fashion_source(src: str, root: Path | None) -> ArraySource:
    images, labels = load_fashion_mnist("train", root, download=root is None)
    padded = np.pad(images.numpy(), ((0, 0), (2, 2), (2, 2)))[:, None]  # as data.py: 28² -> 32²
    return ArraySource(src, padded, labels.numpy(), FASHION_MNIST_CLASSES, native=32,
                       default_channels=1)


# -------------------------------------------------------------------------------- prepare


def check_options(out: str | Path, *, resolution: int | None = None, channels: int | None = None,
                  transform: str = "center-crop", max_images: int | None = None,
                  workers: int | None = None, overwrite: bool = False) -> None:
    """Refuse bad options before any work, each with a message naming the allowed values."""
    out = Path(out)
    if resolution is not None:
        try:
            check_resolution(resolution)
        except ConfigError as err:
            raise DataError(str(err)) from None
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    if transform not in TRANSFORMS:
        raise DataError(f"transform must be one of {list(TRANSFORMS)}, got {transform!r}")
    if max_images is not None and max_images < 1:
        raise DataError(f"max_images must be at least 1, got {max_images}")
    if workers is not None and workers < 1:
        raise DataError(f"workers must be at least 1, got {workers}")
    if out.suffix.lower() != ".zip":
        raise DataError(f"{out}: the output must be a .zip file")
    if out.is_dir():
        raise DataError(f"{out}: is a folder; the output must be a .zip file")
    if out.exists() and not overwrite:
        raise DataError(f"{out}: already exists; choose another name or pass overwrite=True "
                        "(--overwrite)")


def prepare(src: str | Path | Source, out: str | Path, *, resolution: int | None = None,
            channels: int | None = None, transform: str = "center-crop",
            max_images: int | None = None, workers: int | None = None, skip_bad: bool = False,
            overwrite: bool = False, progress: Callable[[int], None] | None = None) -> dict:
    """Write the training zip `out` from `src` (a path, "fashion-mnist", or `open_source(...)`).

    Parameters
    ----------
    resolution : a power of two in sources.RESOLUTIONS; default the source's native one (the largest
        not above the first image's shorter side; 32 for CIFAR-10 and Fashion-MNIST).
    channels : 1 or 3; default 3, Fashion-MNIST 1.
    transform : "center-crop" (largest centred square, as sources.decode_image) or "resize".
    max_images : keep the first N readable images of the source's order.
    workers : decoding processes (default os.cpu_count(); 1 decodes in this process).
    skip_bad : skip unreadable images (listed in dataset.json's "skipped") instead of raising
        UnreadableImageError naming the first.
    progress : called after each chunk with the number of images written so far.

    Returns a summary: images, skipped, ignored (non-image files), seconds, images_per_s,
    resolution, channels, class_names, transform, source, out.
    """
    check_options(out, resolution=resolution, channels=channels, transform=transform,
                  max_images=max_images, workers=workers, overwrite=overwrite)
    out, start = Path(out), time.perf_counter()
    source = src if isinstance(src, (FileSource, ArraySource)) else open_source(src)
    resolution = resolution or source.native_resolution()
    channels = channels or source.default_channels
    workers = workers or os.cpu_count() or 1
    limit = min(len(source), max_images or len(source))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
                labels, skipped = _write_images(archive, source, resolution, channels, transform,
                                                limit, workers, skip_bad, progress)
                meta = {"format": PREPARED_FORMAT, "version": PREPARED_VERSION,
                        "resolution": resolution, "channels": channels,
                        "class_names": source.class_names, "images": len(labels),
                        "labels": labels, "skipped": [list(s) for s in skipped],
                        "source": source.src, "transform": transform}
                _write_member(archive, "dataset.json", json.dumps(meta).encode())
            f.flush()
            if hasattr(os, "fchmod"):  # not on Windows
                os.fchmod(f.fileno(), 0o644)  # mkstemp makes 0600; a dataset is meant to be shared
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
        source.close()
    fsync_folder(out.parent)
    seconds = time.perf_counter() - start
    return {"images": len(labels), "skipped": len(skipped), "ignored": source.ignored,
            "seconds": seconds, "images_per_s": len(labels) / max(seconds, 1e-9),
            "resolution": resolution, "channels": channels, "class_names": source.class_names,
            "transform": transform, "source": source.src, "out": str(out)}


def _write_images(archive: zipfile.ZipFile, source: Source, resolution: int, channels: int,
                  transform: str, limit: int, workers: int, skip_bad: bool,
                  progress: Callable[[int], None] | None) -> tuple[list[int], list]:
    """Write images/{k:08d}.png for the first `limit` readable images; their labels, the skipped."""
    labels: list[int] = []
    skipped: list[tuple[str, str]] = []

    def tasks() -> Iterator[tuple[range, tuple]]:
        """Chunks in order up to the end of the source: how many images will be skipped is not
        known while chunks are in flight, so the writer below stops at `limit`, and closing the
        in-order iterator cancels the chunks not started."""
        step = CHUNK["files" if isinstance(source, FileSource) else "arrays"]
        for start in range(0, len(source), step):
            indices = range(start, min(start + step, len(source)))
            yield indices, source.task(indices, resolution, channels, transform)

    files = source.files if isinstance(source, FileSource) else None
    with closing(_in_order(tasks(), workers, files)) as chunks:  # closed early: the workers stop
        for indices, results in chunks:
            for i, result in zip(indices, results):
                if len(labels) == limit:
                    break
                if isinstance(result, str) and not skip_bad:
                    raise UnreadableImageError(f"{source.where(i)}: cannot read this image "
                                               f"({result}); fix or delete it, or pass "
                                               "skip_bad=True (--skip-bad)")
                if isinstance(result, str):
                    skipped.append((source.where(i), result))
                    continue
                _write_member(archive, f"images/{len(labels):08d}.png", result)
                labels.append(int(source.labels[i]))
            if progress is not None:
                progress(len(labels))
            if len(labels) == limit:
                break
    if not labels:
        raise DataError(f"{source.src}: none of its {len(source)} images could be read "
                        f"(first: {skipped[0][0]}: {skipped[0][1]})")
    return labels, skipped


def _in_order(tasks: Iterator[tuple[range, tuple]], workers: int,
              files: ImageSource | None) -> Iterator[tuple[range, list]]:
    """(indices, results) for each task, in order; at most 2·workers + 2 chunks in flight."""
    global _SOURCE
    if workers == 1:  # in this process
        _SOURCE = files
        try:
            for indices, (fn, args) in tasks:
                yield indices, fn(*args)
        finally:
            _SOURCE = None
        return
    pending: deque[tuple[range, Future]] = deque()
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(files,)) as pool:
        try:
            for indices, (fn, args) in tasks:
                pending.append((indices, pool.submit(fn, *args)))
                if len(pending) > 2 * workers + 1:
                    indices, future = pending.popleft()
                    yield indices, future.result()
            while pending:
                indices, future = pending.popleft()
                yield indices, future.result()
        finally:  # stopped early (max_images, an error, Ctrl-C): drop the work not started
            for _, future in pending:
                future.cancel()


def _write_member(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.external_attr = 0o644 << 16
    archive.writestr(info, data, compress_type=zipfile.ZIP_STORED)




# ---------------------------------------------------------------------------- command line


class Transform(str, enum.Enum):
    center_crop = "center-crop"
    resize = "resize"


def main(argv: Optional[list[str]] = None) -> None:
    """The command line: a rich progress bar with img/s; errors as one line, exit status 2."""
    import typer
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console, errors = Console(), Console(stderr=True)
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.command(help="Prepare a training zip of PNGs at one resolution, labels inside.")
    def command(
        src: str = typer.Argument(..., metavar="SRC", help="An image folder (sub-folders = classes), a .zip of images, a CIFAR-10 folder, a Fashion-MNIST folder or 'fashion-mnist'."),
        out: Path = typer.Argument(..., metavar="OUT.zip", help="The .zip to write."),
        resolution: Optional[int] = typer.Option(None, help="Power-of-two side \\[default: the largest not above the first image's shorter side; 32 for CIFAR-10/Fashion-MNIST]."),
        channels: Optional[int] = typer.Option(None, help="1 (grey) or 3 (RGB) \\[default: 3; Fashion-MNIST 1]."),
        transform: Transform = typer.Option(Transform.center_crop, help="center-crop: the largest centred square; resize: the whole image squashed to a square."),
        max_images: Optional[int] = typer.Option(None, help="Keep the first N readable images."),
        workers: Optional[int] = typer.Option(None, help="Decoding processes \\[default: the number of CPUs]."),
        skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable images (listed in dataset.json) instead of stopping at the first."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
    ) -> None:
        options = dict(resolution=resolution, channels=channels, transform=transform.value,
                       max_images=max_images, workers=workers, overwrite=overwrite)
        try:
            check_options(out, **options)
            source = open_source(src)
            columns = (TextColumn("preparing"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[rate]}"), TimeElapsedColumn())
            with Progress(*columns, console=console) as bar:
                total = min(len(source), max_images or len(source))
                task = bar.add_task("prepare", total=total, rate="")
                began = time.perf_counter()

                def advance(done: int) -> None:
                    rate = done / max(time.perf_counter() - began, 1e-9)
                    bar.update(task, completed=done, rate=f"{rate:.0f} img/s")

                summary = prepare(source, out, skip_bad=skip_bad, progress=advance, **options)
                bar.update(task, total=summary["images"])
        except (DataError, DatasetNotFoundError) as err:
            errors.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from err
        except OSError as err:  # the file system refused (missing or unwritable folder, full
            where = err.filename or out  # disk): prepare() removed its temporary file
            errors.print(f"error: cannot prepare {out}: {where}: {err.strerror or err}",
                         markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from err
        except KeyboardInterrupt:
            errors.print(f"interrupted: {out} was not written", markup=False, highlight=False)
            raise typer.Exit(130) from None
        r, c, k = summary["resolution"], summary["channels"], len(summary["class_names"])
        console.print(f"wrote {out}: {summary['images']} images {c}×{r}×{r}, "
                      f"{k or 'no'} classes, {summary['skipped']} skipped, {summary['ignored']} "
                      f"non-image files ignored, {summary['seconds']:.1f} s "
                      f"({summary['images_per_s']:.0f} img/s)", markup=False, highlight=False,
                      soft_wrap=True)
        if summary["skipped"]:
            console.print(f"the skipped images and why are listed in {out}:dataset.json",
                          markup=False, highlight=False, soft_wrap=True)

    app(list(sys.argv[1:] if argv is None else argv), prog_name="python -m nanogan.prepare")


if __name__ == "__main__":
    main()
