"""Where images come from, read one at a time: image folders, zip archives and prepared zips.

An `ImageSource` lists the images of a folder (recursively, through a cached `folder_index`), of
a zip archive (its central directory, parsed once into `ZipMembers`) or of a zip prepared by
`nanogan.prepare`, with their labels, and reads the encoded bytes of image i; `decode_image`
turns such bytes into uint8 pixels. Nothing here keeps decoded pixels: `nanogan.decoded` decodes
a whole source once into a cache, `nanogan.streaming` decodes one image per item.

Formats read:
- a folder or plain zip: files ending in IMAGE_EXTENSIONS (any case), sorted by path, labelled
  by their first-level sub-folder; hidden files and __MACOSX are ignored.
- a prepared zip: images/{i:08d}.png and a dataset.json (`{"format": "nanogan-dataset",
  "version", "resolution", "channels", "images", "class_names", "labels", "skipped", …}`),
  validated field by field by `read_prepared_meta`.
- a StyleGAN2-ADA zip: a plain zip whose root dataset.json holds `{"labels": [[member, class],
  …]}` (or `null`), mapped by member name.

The errors of the image readers are defined here, at the bottom of the import graph: DataError
(a file that cannot be used) and UnreadableImageError (one image that cannot be decoded). Here
too are the helpers that both data paths share: `native_resolution`, `dataset_name` (the name
feature caches are keyed by), `slug` and `write_atomic`.

Shapes: `decode_image` gives uint8 (c, r, r); `ImageSource.labels` is int64 (n,).
Lesson: lessons/00_reading_this_repo.md
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import struct
import tempfile
import threading
import zipfile
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

RESOLUTIONS = tuple(2**k for k in range(2, 11))
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")
INDEX_VERSION = 1
PREPARED_FORMAT, PREPARED_VERSION = "nanogan-dataset", 1


class DataError(ValueError):
    """A data file that cannot be used; the message names the file and the reason."""


class UnreadableImageError(DataError):
    """An image of a folder or zip that cannot be decoded: skip_bad=True skips and counts it."""


def user_cache_dir() -> Path:
    """$XDG_CACHE_HOME/nanogan, by default ~/.cache/nanogan."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nanogan"


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


def slug(path: Path) -> str:
    """A path's last part with every character but letters and digits as "-": the readable head
    of a cache file's name (the folder index's here, the decoded cache's in nanogan.decoded)."""
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
    file = index_dir / f"{slug(path)}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:16]}" \
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
        write_atomic(file, json.dumps(index).encode())
    except OSError as err:  # a read-only cache only costs the next start a listing
        logger.warning("%s: cannot keep the folder index there (%s)", file, err)
    return index


def native_resolution(source: ImageSource) -> int:
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


def dataset_name(path: Path, resolution: int, channels: int, xflip: bool) -> str:
    """The name of a folder's or zip's dataset, the same on the decoded and the streaming path:
    they give the same images (feature caches are keyed by it)."""
    return f"{path.resolve()}@{resolution}px-{channels}ch" + ("+xflip" if xflip else "")


def write_atomic(path: Path, content: bytes) -> None:
    """Write `content` to a temporary file beside `path`, then rename it: readers see the old
    file or the whole new one, never a part."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
