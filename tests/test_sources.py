"""Image sources: folders, plain zips, prepared zips and StyleGAN2-ADA zips listed with their
labels; images decoded to the requested channels and centred square (checked against Pillow and
references written from the definitions); a folder listed once; bad members, archives and
dataset.json files named. The writers of each format below are written from the format's
definition and shared with test_data.py, test_decoded.py and test_streaming.py."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nanogan import sources
from nanogan.data import open_dataset
from nanogan.sources import DataError, UnreadableImageError


# -------------------------------------------------------------------------- writing sources


def smooth_images(n: int, channels: int, resolution: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, c, r, r): upsampled noise, so neighbouring pixels differ as in photographs."""
    g = np.random.default_rng(seed)
    coarse = g.integers(0, 256, (n, channels, 4, 4)).astype(np.float64)
    fine = np.repeat(np.repeat(coarse, resolution // 4, 2), resolution // 4, 3)
    return np.clip(fine + g.normal(0, 20, fine.shape), 0, 255).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """One (c, r, r) uint8 image as an 8-bit "L" or "RGB" PNG."""
    buffer = io.BytesIO()
    Image.fromarray(image[0] if len(image) == 1 else image.transpose(1, 2, 0)).save(buffer, "png")
    return buffer.getvalue()


def write_prepared(path: Path, images: np.ndarray, labels=None, class_names=(), *,
                   members: dict[str, bytes | None] | None = None,
                   meta: dict | bytes | None = None) -> Path:
    """A zip in nanogan.prepare's format, written from the format's definition (not by prepare)."""
    n, c, r = len(images), images.shape[1], images.shape[-1]
    fields = {"format": "nanogan-dataset", "version": 1, "resolution": r, "channels": c,
              "class_names": list(class_names), "images": n,
              "labels": [0] * n if labels is None else [int(y) for y in labels], "skipped": [],
              "source": "test", "transform": "center-crop"}
    meta = meta if isinstance(meta, bytes) else json.dumps(fields | (meta or {}))
    files = {f"images/{i:08d}.png": png_bytes(images[i]) for i in range(n)} | (members or {})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, content in files.items():
            if content is not None:
                z.writestr(name, content)
        z.writestr("dataset.json", meta)
    return path


def png_pixels(archive: Path, member: str, channels: int) -> np.ndarray:
    """The independent oracle: the member read by zipfile and Pillow alone, as (c, r, r)."""
    with zipfile.ZipFile(archive) as z, Image.open(io.BytesIO(z.read(member))) as image:
        array = np.asarray(image)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("NANOGAN_CACHE_BUDGET", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def prepared(tmp_path):
    """12 RGB 8×8 images in a prepared zip, labelled by dataset.json (not by any folder)."""
    images = smooth_images(12, 3, 8, seed=1)
    labels = np.arange(12) % 3
    return write_prepared(tmp_path / "set.zip", images, labels, ["cat", "dog", "owl"]), images


def save(path: Path, array, mode=None, **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(array, np.uint8)) if mode is None else array
    image.save(path, **options)
    return path


def solid(color, size=(8, 8)):
    """An RGB array of one colour, (h, w, 3)."""
    return np.broadcast_to(np.array(color, np.uint8), (size[1], size[0], 3))


@pytest.fixture
def folder(tmp_path):
    """Two classes (one with a nested folder), mixed extensions and case, a hidden file, a text."""
    root = tmp_path / "shapes"
    save(root / "circle" / "a.png", solid((255, 0, 0)))
    save(root / "circle" / "deeper" / "b.JPG", solid((250, 0, 0)), quality=95)
    save(root / "square" / "c.bmp", solid((0, 255, 0)))
    save(root / "square" / "d.webp", solid((0, 0, 255)), lossless=True)
    save(root / "square" / ".hidden.png", solid((1, 2, 3)))
    (root / "square" / "notes.txt").write_text("not an image")
    return root


# ------------------------------------------------------------------------- folders and zips


def test_folder_labels_come_from_first_level_folders(folder, tmp_path):
    """Every image below a first-level folder gets that folder's label, names sorted."""
    dataset = open_dataset(folder, resolution=4, cache_dir=tmp_path / "cache")
    assert dataset.class_names == ("circle", "square") and dataset.num_classes == 2
    assert len(dataset) == 4 and dataset.channels == 3 and dataset.resolution == 4
    assert [dataset[i][1] for i in range(4)] == [0, 0, 1, 1]
    assert dataset[2][0].shape == (3, 4, 4) and dataset[2][0].dtype == torch.uint8
    assert dataset[2][0][:, 0, 0].tolist() == [0, 255, 0]
    assert dataset[1][0][0].float().mean() > 240  # the JPEG in circle/deeper/
    assert dataset.name.endswith("shapes@4px-3ch")
    save(folder / "loose.png", solid((9, 9, 9)))
    unlabeled = open_dataset(folder, resolution=4, cache_dir=tmp_path / "cache")
    assert unlabeled.num_classes == 0 and len(unlabeled) == 5
    assert {unlabeled[i][1] for i in range(5)} == {0}


def test_zip_matches_folder(folder, tmp_path):
    """A zip of a folder (wrapper folder included) reads like the folder itself."""
    archive = tmp_path / "shapes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(folder.rglob("*")):
            z.write(path, path.relative_to(tmp_path).as_posix())
    from_zip = open_dataset(archive, resolution=4, cache_dir=tmp_path / "cache")
    from_folder = open_dataset(folder, resolution=4, cache_dir=tmp_path / "cache")
    assert from_zip.class_names == from_folder.class_names and len(from_zip) == 4
    assert torch.equal(from_zip.images_uint8(range(4)), from_folder.images_uint8(range(4)))
    assert from_zip.labels().tolist() == from_folder.labels().tolist()
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("shapes/square/broken.png", b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match=r"shapes\.zip:shapes/square/broken\.png"):
        open_dataset(archive, resolution=4, cache_dir=tmp_path / "cache")
    (tmp_path / "not.zip").write_bytes(b"nope")
    with pytest.raises(DataError, match="not a readable zip"):
        open_dataset(tmp_path / "not.zip", cache_dir=tmp_path / "cache")


def test_folder_index_is_listed_once(tmp_path, cache, monkeypatch):
    """A second start lists no directory and stats no file; a new file is seen at the next."""
    root = tmp_path / "pics"
    for i, c in enumerate("ab" * 3):
        (root / c).mkdir(parents=True, exist_ok=True)
        Image.fromarray(smooth_images(1, 3, 8, seed=i)[0].transpose(1, 2, 0)).save(
            root / c / f"{i}.png")
    first = open_dataset(root, resolution=8, cache="stream", cache_dir=cache)
    stats = []
    real_stat = os.stat

    def counting_stat(path, *args, **kwargs):
        stats.append(Path(path))
        return real_stat(path, *args, **kwargs)

    def no_listing(*args):
        raise AssertionError("listed again")

    with monkeypatch.context() as m:
        m.setattr(os, "stat", counting_stat)
        m.setattr(os, "scandir", no_listing)
        m.setattr(os, "walk", no_listing)
        again = open_dataset(root, resolution=8, cache="stream", cache_dir=cache)
    assert len(again) == 6 and again.labels().tolist() == first.labels().tolist()
    assert not [p for p in stats if p.suffix == ".png"]  # one stat per directory, none per file
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "b" / "new.png")
    assert len(open_dataset(root, resolution=8, cache="stream", cache_dir=cache)) == 7


def test_the_names_caches_are_keyed_by_stay_fixed(tmp_path):
    """A dataset's name (feature caches) carries its resolved path, resolution, channels and
    mirroring; a slug (the head of cache file names) keeps a name's letters and digits. A change
    to either would orphan every cache users have."""
    folder = tmp_path / "my pics.v2"
    assert sources.slug(folder) == "my-pics-v2"
    assert sources.dataset_name(folder, 64, 3, False) == f"{folder.resolve()}@64px-3ch"
    assert sources.dataset_name(folder, 8, 1, True) == f"{folder.resolve()}@8px-1ch+xflip"
    file = tmp_path / "out.json"
    sources.write_atomic(file, b"old")
    sources.write_atomic(file, b"new")
    assert file.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_folders_without_images_say_what_was_ignored(tmp_path, cache):
    """An empty folder says it holds nothing; other files are counted by extension."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no images found .*holds no files.*\.png, \.jpg"):
        open_dataset(tmp_path / "empty", cache_dir=cache)
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    for name in ("a.txt", "sub/b.txt", "c.csv", ".DS_Store"):
        (docs / name).write_text("x")
    with pytest.raises(DataError) as err:
        open_dataset(docs, cache="stream", cache_dir=cache)
    message = str(err.value)
    assert "ignored 4 other files (.txt ×2" in message and ".csv ×1" in message
    assert "hidden ×1" in message and ".webp" in message and str(docs) in message


# --------------------------------------------------------------------------------- decoding


def reference_composite(rgba):
    """Alpha compositing on black, from its definition: c · α / 255."""
    rgba = np.asarray(rgba, np.float64)
    return np.round(rgba[..., :3] * rgba[..., 3:] / 255)


def reference_luma(rgb):
    """ITU-R 601-2 luma: 0.299 R + 0.587 G + 0.114 B."""
    return np.asarray(rgb, np.float64) @ np.array([0.299, 0.587, 0.114])


def test_modes_become_the_requested_channels(tmp_path):
    """Grey, RGB, RGBA (on black), palette and 16-bit images all become uint8 with c channels."""
    g = np.random.default_rng(0)
    rgba = g.integers(0, 256, (4, 4, 4)).astype(np.uint8)
    grey16 = g.integers(0, 65536, (4, 4)).astype(np.uint16)
    root = tmp_path / "modes"
    save(root / "0-grey.png", rgba[..., 0])
    save(root / "1-rgb.png", rgba[..., :3])
    save(root / "2-rgba.png", rgba)
    save(root / "3-palette.gif", Image.fromarray(rgba[..., :3]).quantize(16), mode="P")
    save(root / "4-grey16.png", Image.fromarray(grey16), mode="I;16")
    with Image.open(root / "3-palette.gif") as p:
        palette_rgb = np.asarray(p.convert("RGB"), np.float64)
    expected = [np.repeat(rgba[..., :1], 3, -1), rgba[..., :3], reference_composite(rgba),
                palette_rgb, np.repeat(np.round(grey16 / 257)[..., None], 3, -1)]
    colour = open_dataset(root, resolution=4, cache_dir=tmp_path / "c")
    grey = open_dataset(root, resolution=4, channels=1, cache_dir=tmp_path / "c")
    assert colour.num_classes == 0 and grey.channels == 1
    for i, want in enumerate(expected):
        rounding = 1 if i == 2 else 0  # Pillow's compositing rounds its own way
        got = colour[i][0].permute(1, 2, 0).numpy().astype(np.float64)
        np.testing.assert_allclose(got, want, atol=rounding)
        np.testing.assert_allclose(grey[i][0][0].numpy(), reference_luma(want),
                                   atol=rounding + 0.51)


def test_centre_crop_geometry(tmp_path):
    """Wide and tall images keep their centred square: red | green | blue thirds give green."""
    wide = np.concatenate([solid((255, 0, 0), (16, 16)), solid((0, 255, 0), (16, 16)),
                           solid((0, 0, 255), (16, 16))], axis=1)  # (16, 48, 3)
    save(tmp_path / "crop" / "wide.png", wide)
    save(tmp_path / "crop" / "tall.png", wide.transpose(1, 0, 2))
    save(tmp_path / "crop" / "wide_big.png", np.repeat(np.repeat(wide, 4, 0), 4, 1))
    for resolution in (4, 16):
        dataset = open_dataset(tmp_path / "crop", resolution=resolution, cache_dir=tmp_path / "c")
        for i in range(3):
            image = dataset[i][0]
            assert image.shape == (3, resolution, resolution)
            assert (image[1] == 255).all() and (image[0] == 0).all() and (image[2] == 0).all()
    marker = np.zeros((16, 32, 3), np.uint8)
    marker[5, 8 + 3] = 255  # row 5, column 3 of the centred 16×16 square
    save(tmp_path / "mark" / "m.png", marker)
    image = open_dataset(tmp_path / "mark", resolution=16, cache_dir=tmp_path / "c")[0][0]
    assert image[0].nonzero().tolist() == [[5, 3]]


# ----------------------------------------------------------------- bad members and archives


def test_damaged_bytes_fail_the_crc_check(prepared, cache):
    """Bytes changed inside a stored member are caught by its CRC-32, not decoded silently."""
    archive, _ = prepared
    raw = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as z:
        info = z.getinfo("images/00000002.png")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + info.compress_size - 9] ^= 0xFF  # inside the PNG's last chunk
    archive.write_bytes(bytes(raw))
    dataset = open_dataset(archive, cache="stream", cache_dir=cache)
    with pytest.raises(UnreadableImageError, match=r"images/00000002\.png: .*CRC-32"):
        dataset[2]


def test_truncated_zip_is_named_at_open(prepared, cache):
    archive, _ = prepared
    archive.write_bytes(archive.read_bytes()[:-100])
    for mode in ("stream", "ram"):
        with pytest.raises(DataError, match=rf"{archive}: not a readable zip archive"):
            open_dataset(archive, cache=mode, cache_dir=cache)


def test_an_lzma_member_is_refused_with_a_way_out(tmp_path, cache):
    """A member compressed with a method nanogan does not read names deflate and the folder."""
    path = tmp_path / "lzma.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_LZMA) as z:
        z.writestr("a.png", png_bytes(smooth_images(1, 3, 8)[0]))
    with pytest.raises(DataError, match=r"lzma\.zip:a\.png: .*re-zip it with deflate .*unzip it "
                                        "and prepare the folder"):
        open_dataset(path, cache="stream", cache_dir=cache)


# ----------------------------------------------------------------------------- dataset.json


@pytest.mark.parametrize("meta, message", [
    (b"{not json", "not valid JSON"),
    ({"format": "something-else"}, "format is 'something-else'"),
    ({"version": 2}, "a version 2 dataset, newer than this nanogan reads"),
    ({"labels": [0, 5, 0]}, r"'labels' must be a list of 3 class indices in \[0, 2\)"),
    ({"resolution": 48}, "'resolution' must be one of"),
    ({"images": 4, "labels": [0, 1, 0, 0]}, r"lists 4 images but images/00000003\.png is missing"),
])
def test_bad_dataset_json_is_named(tmp_path, cache, meta, message):
    images = smooth_images(3, 3, 8)
    archive = tmp_path / "meta.zip"
    write_prepared(archive, images, [0, 1, 0], ["a", "b"], meta=meta)
    for mode in ("stream", "ram"):
        with pytest.raises(DataError, match=message) as err:
            open_dataset(archive, cache=mode, cache_dir=cache)
        assert str(archive) in str(err.value)


def write_ada_zip(path: Path, images: np.ndarray, meta) -> tuple[Path, list[str]]:
    """A zip laid out like StyleGAN2-ADA's dataset_tool: 00000/img00000000.png …, a root
    dataset.json holding `meta` (written from ADA's documented format, not by its code)."""
    names = [f"{i // 2:05d}/img{i:08d}.png" for i in range(len(images))]  # 2 a folder: 2 folders
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, image in zip(names, images):
            z.writestr(name, png_bytes(image))
        z.writestr("dataset.json", json.dumps(meta))
    return path, names


def test_a_stylegan2_ada_zip_is_a_plain_zip_with_its_labels(tmp_path, cache):
    """ADA's root dataset.json is not nanogan's metadata: the zip reads as images, its labels
    mapped by member name (not by list order, not by its 00000/ folders), or none when null;
    the .json counts as an ignored file."""
    images = smooth_images(4, 3, 8, seed=7)
    labels = {"00000/img00000000.png": 2, "00000/img00000001.png": 0,
              "00001/img00000002.png": 1, "00001/img00000003.png": 2}
    archive, names = write_ada_zip(tmp_path / "ada.zip", images,
                                   {"labels": [[n, y] for n, y in reversed(labels.items())]})
    for mode in ("stream", "ram"):
        dataset = open_dataset(archive, cache=mode, cache_dir=cache)
        assert dataset.labels().tolist() == [2, 0, 1, 2]
        assert dataset.class_names == ("0", "1", "2") and len(dataset) == 4
        for i, name in enumerate(names):
            expected = torch.from_numpy(png_pixels(archive, name, 3).copy())
            assert torch.equal(dataset[i][0], expected)
    assert sources.ImageSource(archive, cache).ignored == {".json": 1}
    unlabeled, _ = write_ada_zip(tmp_path / "null.zip", images, {"labels": None})
    for mode in ("stream", "ram"):
        dataset = open_dataset(unlabeled, cache=mode, cache_dir=cache)
        assert dataset.labels().tolist() == [0] * 4 and dataset.class_names == ()
    bad, _ = write_ada_zip(tmp_path / "bad.zip", images, {"labels": [["00000/img00000000.png",
                                                                       0]]})
    with pytest.raises(DataError, match=r"bad\.zip:dataset\.json: \"labels\" must be null or a "
                                        r"list .*00000/img00000001\.png has none"):
        open_dataset(bad, cache="stream", cache_dir=cache)
