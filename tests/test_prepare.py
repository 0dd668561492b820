"""The preparation command: folders, zips, CIFAR-10 and Fashion-MNIST -> a zip of PNGs with the
labels inside; pixels checked against sources.decode_image, PIL's own resize and numpy references;
bad input named; interrupted runs leave nothing behind."""

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from nanogan import data, prepare as prep, sources
from nanogan.data import CIFAR10_CLASSES, FASHION_MNIST_CLASSES
from nanogan.sources import DataError, UnreadableImageError
from nanogan.prepare import prepare

ROOT = Path(__file__).resolve().parents[1]


def noise(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """uint8 (h, w, channels) or (h, w) random pixels from a seeded generator."""
    shape = (h, w) if channels == 1 else (h, w, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save(path: Path, pixels: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(path)
    return path


def read_prepared(out: Path) -> tuple[dict, list[np.ndarray]]:
    """dataset.json and the images as (c, r, r) arrays, checking the format's fixed layout."""
    with zipfile.ZipFile(out) as archive:
        infos = archive.infolist()
        assert infos[-1].filename == "dataset.json", "dataset.json is written last"
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        meta = json.loads(archive.read("dataset.json"))
        assert [i.filename for i in infos[:-1]] == [f"images/{k:08d}.png"
                                                    for k in range(meta["images"])]
        images = []
        for info in infos[:-1]:
            with Image.open(io.BytesIO(archive.read(info))) as image:
                assert image.format == "PNG"
                assert image.mode == {1: "L", 3: "RGB"}[meta["channels"]]
                assert image.size == (meta["resolution"],) * 2
                array = np.asarray(image)
            images.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
    assert meta["format"] == "nanogan-dataset" and meta["version"] == 1  # the README's format
    assert len(meta["labels"]) == meta["images"] == len(images)
    return meta, images


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Folder indexes (sources.ImageSource) go to a temporary cache, not the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def no_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- image folders


def test_a_labeled_folder_becomes_a_zip_of_decode_image_pixels(tmp_path):
    """Sub-folders are classes; each PNG holds exactly what decode_image makes of its file."""
    sizes = {"cat/a.png": (12, 20), "cat/b.jpg": (20, 12), "dog/c.png": (9, 9),
             "dog/d/e.png": (16, 16)}
    files = []
    for k, (name, (h, w)) in enumerate(sorted(sizes.items())):
        files.append(tmp_path / "src" / name)
        if name.endswith(".jpg"):
            files[-1].parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(noise(h, w, seed=k)).save(files[-1], quality=90)
        else:
            save(files[-1], noise(h, w, seed=k))
    (tmp_path / "src" / "notes.txt").write_text("not an image")
    seen = []
    summary = prepare(tmp_path / "src", tmp_path / "out.zip", resolution=8, workers=1,
                      progress=seen.append)
    meta, images = read_prepared(tmp_path / "out.zip")
    assert meta["class_names"] == ["cat", "dog"] and meta["labels"] == [0, 0, 1, 1]
    assert (meta["resolution"], meta["channels"], meta["transform"]) == (8, 3, "center-crop")
    assert meta["skipped"] == [] and meta["source"] == str(tmp_path / "src")
    for path, image in zip(files, images):
        np.testing.assert_array_equal(image, sources.decode_image(path.read_bytes(), 8, 3))
    assert (summary["images"], summary["skipped"], summary["ignored"]) == (4, 0, 1)
    assert summary["class_names"] == ["cat", "dog"] and summary["out"] == str(tmp_path / "out.zip")
    assert seen == sorted(seen) and seen[-1] == 4
    assert no_leftovers(tmp_path) == []

    # The reader (data.open_dataset) sees the same images, labels and class names.
    dataset = data.open_dataset(tmp_path / "out.zip")
    assert (dataset.resolution, dataset.channels) == (8, 3)
    assert list(dataset.class_names) == ["cat", "dog"] and dataset.labels().tolist() == [0, 0, 1, 1]
    np.testing.assert_array_equal(dataset.images_uint8(range(4)).numpy(), np.stack(images))

    # A prepared zip is a source too: re-prepared smaller, its labels and class names stay.
    prepare(tmp_path / "out.zip", tmp_path / "small.zip", resolution=4, workers=1)
    small, small_images = read_prepared(tmp_path / "small.zip")
    assert small["class_names"] == ["cat", "dog"] and small["labels"] == [0, 0, 1, 1]
    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        np.testing.assert_array_equal(
            small_images[2], sources.decode_image(archive.read("images/00000002.png"), 4, 3))


def test_a_grey_prepared_zip_stays_grey_when_prepared_again(tmp_path):
    """Without --channels, a prepared zip is re-prepared with its own channels (1 stays 1)."""
    for i in range(3):
        save(tmp_path / "src" / f"{i}.png", noise(12, 12, seed=i))
    prepare(tmp_path / "src", tmp_path / "grey.zip", resolution=8, channels=1, workers=1)
    summary = prepare(tmp_path / "grey.zip", tmp_path / "again.zip", workers=1)
    meta, images = read_prepared(tmp_path / "again.zip")
    assert (summary["channels"], meta["channels"], meta["resolution"]) == (1, 1, 8)
    np.testing.assert_array_equal(np.stack(images), np.stack(read_prepared(tmp_path /
                                                                           "grey.zip")[1]))


def test_a_stylegan2_ada_zip_is_prepared_with_its_labels(tmp_path):
    """A dataset_tool zip (root dataset.json `{"labels": [[member, class], …]}`) is a source: its
    labels are kept by member name, its .json counted as an ignored file."""
    names = ["00000/img00000000.png", "00000/img00000001.png", "00001/img00000002.png"]
    with zipfile.ZipFile(tmp_path / "ada.zip", "w") as archive:
        for k, name in enumerate(names):
            buffer = io.BytesIO()
            Image.fromarray(noise(8, 8, seed=k)).save(buffer, format="PNG")
            archive.writestr(name, buffer.getvalue())
        archive.writestr("dataset.json", json.dumps({"labels": [[names[2], 0], [names[0], 3],
                                                                [names[1], 1]]}))
    summary = prepare(tmp_path / "ada.zip", tmp_path / "out.zip", workers=1)
    meta, images = read_prepared(tmp_path / "out.zip")
    assert meta["labels"] == [3, 1, 0] and meta["class_names"] == ["0", "1", "2", "3"]
    assert (summary["ignored"], meta["resolution"]) == (1, 8)
    np.testing.assert_array_equal(images[1], noise(8, 8, seed=1).transpose(2, 0, 1))


@given(w=st.integers(4, 24), h=st.integers(4, 24), resolution=st.sampled_from([4, 8, 16]))
@example(w=20, h=12, resolution=8)
@example(w=8, h=8, resolution=8)
def test_resize_squashes_the_whole_image_like_pil(w, h, resolution):
    """--transform resize equals PIL's own Lanczos resize of the whole image to R×R."""
    with tempfile.TemporaryDirectory() as folder:
        path = save(Path(folder, "src", "x.png"), noise(h, w, seed=w * 100 + h))
        prepare(path.parent, Path(folder, "out.zip"), resolution=resolution, transform="resize",
                workers=1)
        _, [image] = read_prepared(Path(folder, "out.zip"))
        with Image.open(path) as original:
            expected = np.asarray(original.resize((resolution,) * 2, Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(image, expected.transpose(2, 0, 1))


def test_max_images_keeps_the_first_and_workers_do_not_change_a_byte(tmp_path, monkeypatch):
    """--max-images N keeps the first N of the sorted order; 1 or 2 worker processes (several
    chunks in flight) write byte-identical zips."""
    monkeypatch.setattr(prep, "CHUNK", {"files": 2, "arrays": 2})
    paths = [save(tmp_path / "src" / f"{i:02d}.png", noise(6 + i, 10, seed=i)) for i in range(7)]
    for workers in (1, 2):
        prepare(tmp_path / "src", tmp_path / f"first3-{workers}.zip", resolution=4,
                max_images=3, workers=workers)
        prepare(tmp_path / "src", tmp_path / f"all-{workers}.zip", resolution=4, workers=workers)
    meta, images = read_prepared(tmp_path / "first3-2.zip")
    assert meta["class_names"] == [] and meta["labels"] == [0, 0, 0]
    for path, image in zip(paths[:3], images):
        np.testing.assert_array_equal(image, sources.decode_image(path.read_bytes(), 4, 3))
    assert read_prepared(tmp_path / "all-2.zip")[0]["images"] == 7
    for name in ("first3", "all"):
        one, two = (tmp_path / f"{name}-{w}.zip" for w in (1, 2))
        assert one.read_bytes() == two.read_bytes()


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma in float64 (the grey of an RGB image)."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


@pytest.mark.parametrize("transform", ["center-crop", "resize"])
def test_modes_mixed_in_one_folder_become_the_same_channels(tmp_path, transform):
    """Grey, RGB, RGBA (on black), 16-bit grey (×255/65535) and palette images in one folder:
    every image comes out with the requested channels and the values a numpy reference gives."""
    grey8, rgb = noise(8, 8, 1, seed=1), noise(8, 8, 3, seed=2)
    rgba, grey16 = noise(8, 8, 4, seed=3), np.random.default_rng(4).integers(
        0, 65536, (8, 8)).astype(np.uint16)
    palette, index = noise(256, 1, 3, seed=5)[:, 0], noise(8, 8, 1, seed=6)
    src = tmp_path / "src"
    save(src / "a-grey.png", grey8)
    save(src / "b-rgb.png", rgb)
    save(src / "c-rgba.png", rgba)
    save(src / "d-16bit.png", grey16)
    with Image.open(src / "d-16bit.png") as image:
        assert image.mode.startswith("I")  # Pillow reads a 16-bit PNG as I;16 (or I)
    p = Image.fromarray(index, "L").convert("P")
    p.putpalette(palette.reshape(-1).tolist())
    p.save(src / "e-palette.png")
    composite = rgba[..., :3] * (rgba[..., 3:] / 255.0)
    rgb_refs = [np.repeat(grey8[..., None], 3, 2), rgb, composite,
                np.repeat(np.round(grey16 / 257.0)[..., None], 3, 2), palette[index]]
    grey_refs = [grey8, luma(rgb), luma(composite), np.round(grey16 / 257.0), luma(palette[index])]
    for channels, refs in ((3, rgb_refs), (1, grey_refs)):
        out = tmp_path / f"{channels}.zip"
        prepare(src, out, resolution=8, channels=channels, transform=transform, workers=1)
        meta, images = read_prepared(out)
        assert meta["channels"] == channels and len(images) == 5
        for name, image, ref in zip(sorted(os.listdir(src)), images, refs):
            ref = ref[None] if channels == 1 else ref.transpose(2, 0, 1)
            error = np.abs(image.astype(np.float64) - ref).max()
            assert error <= 1, f"{name} with {channels} channels: off by {error}"


# ------------------------------------------------------------------- CIFAR-10 and Fashion-MNIST


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx encoding from its definition: 0, 0, 0x08 (ubyte), ndim, big-endian int32 sizes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(s.to_bytes(4, "big") for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_cifar10_and_fashion_mnist_keep_their_labels_and_class_names(tmp_path, monkeypatch):
    """CIFAR-10's records and Fashion-MNIST's idx files (padded 28² -> 32² with zeros) come out
    pixel for pixel, in order, with their labels and the datasets' class names."""
    g = np.random.default_rng(0)
    cifar = tmp_path / "cifar" / "cifar-10-batches-bin"
    cifar.mkdir(parents=True)
    records = g.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    labels = [3, 9, 0, 5]
    (cifar / "data_batch_1.bin").write_bytes(b"".join(
        bytes([y]) + records[i].tobytes() for i, y in enumerate(labels[:3])))
    (cifar / "data_batch_2.bin").write_bytes(bytes([labels[3]]) + records[3].tobytes())
    summary = prepare(tmp_path / "cifar", tmp_path / "cifar.zip", workers=1)
    meta, images = read_prepared(tmp_path / "cifar.zip")
    assert (summary["resolution"], summary["channels"]) == (32, 3)
    assert meta["class_names"] == list(CIFAR10_CLASSES) and meta["labels"] == labels
    np.testing.assert_array_equal(np.stack(images), records)

    fashion = tmp_path / "fashion"
    fashion.mkdir()
    pixels, classes = g.integers(0, 256, (5, 28, 28)), g.integers(0, 10, 5)
    contents = {"train-images-idx3-ubyte.gz": idx_bytes(pixels),
                "train-labels-idx1-ubyte.gz": idx_bytes(classes),
                "t10k-images-idx3-ubyte.gz": idx_bytes(pixels[:2]),
                "t10k-labels-idx1-ubyte.gz": idx_bytes(classes[:2])}
    for name, raw in contents.items():
        (fashion / name).write_bytes(gzip.compress(raw))
    monkeypatch.setattr(data, "FASHION_MNIST_FILES", {  # the checksums of the fake files
        name: (hashlib.sha256(raw).hexdigest(), len(raw))
        for name, raw in contents.items()})
    prepare(fashion, tmp_path / "fashion.zip", workers=2)
    meta, images = read_prepared(tmp_path / "fashion.zip")
    assert (meta["resolution"], meta["channels"]) == (32, 1)
    assert meta["class_names"] == list(FASHION_MNIST_CLASSES)
    assert meta["labels"] == classes.tolist()
    np.testing.assert_array_equal(np.stack(images)[:, 0], np.pad(pixels, ((0, 0), (2, 2), (2, 2))))
    # At another size and as RGB: the pixels the in-memory path trains on.
    prepare(fashion, tmp_path / "fashion16.zip", resolution=16, channels=3, workers=1)
    _, images = read_prepared(tmp_path / "fashion16.zip")
    reference = data.open_dataset(fashion, resolution=16, channels=3)
    np.testing.assert_array_equal(np.stack(images), reference.images_uint8(range(5)).numpy())


# ------------------------------------------------------------------------------- bad input


def test_a_corrupt_image_is_named_or_skipped_and_counted(tmp_path):
    """Without skip_bad the bad file is named and nothing is written; with it the file is listed
    in dataset.json, and max_images counts readable images only."""
    src = tmp_path / "src"
    good = [save(src / f"{i}.png", noise(8, 8, seed=i)) for i in (0, 2, 3)]
    (src / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(UnreadableImageError, match=r"src/1\.png: cannot read this image"):
        prepare(src, tmp_path / "out.zip", resolution=8, workers=1)
    assert not (tmp_path / "out.zip").exists() and no_leftovers(tmp_path) == []
    summary = prepare(src, tmp_path / "out.zip", resolution=8, max_images=2, skip_bad=True,
                      workers=1)
    meta, images = read_prepared(tmp_path / "out.zip")
    assert summary["images"] == 2 and summary["skipped"] == 1
    assert [where for where, _ in meta["skipped"]] == [str(src / "1.png")]
    for path, image in zip(good[:2], images):
        np.testing.assert_array_equal(image, sources.decode_image(path.read_bytes(), 8, 3))
    for path in good:
        path.write_bytes(b"junk")
    with pytest.raises(DataError, match="none of its 4 images could be read"):
        prepare(src, tmp_path / "none.zip", resolution=8, skip_bad=True, workers=1)


def test_max_images_with_a_bad_image_in_a_late_chunk_is_exact_with_any_workers(tmp_path,
                                                                               monkeypatch):
    """A bad image in one of the last chunks, with several chunks in flight: skip_bad still
    writes exactly max_images images, and 1 or 2 workers write the same bytes."""
    monkeypatch.setattr(prep, "CHUNK", {"files": 2, "arrays": 2})
    src = tmp_path / "src"
    paths = [save(src / f"{i:02d}.png", noise(8, 8, seed=i)) for i in range(10)]
    paths[7].write_bytes(b"\x89PNG\r\n\x1a\n not really")
    for workers in (1, 2):
        summary = prepare(src, tmp_path / f"out-{workers}.zip", resolution=8, max_images=9,
                          skip_bad=True, workers=workers)
        assert (summary["images"], summary["skipped"]) == (9, 1)
    meta, images = read_prepared(tmp_path / "out-2.zip")
    good = paths[:7] + paths[8:]
    assert len(images) == 9 and [w for w, _ in meta["skipped"]] == [str(paths[7])]
    for path, image in zip(good, images):
        np.testing.assert_array_equal(image, sources.decode_image(path.read_bytes(), 8, 3))
    assert (tmp_path / "out-1.zip").read_bytes() == (tmp_path / "out-2.zip").read_bytes()


def test_a_corrupt_member_and_a_truncated_zip_are_named(tmp_path):
    """A member whose bytes were damaged is named as zip:member; a truncated zip is refused."""
    buffers = []
    for i in range(2):
        buffer = io.BytesIO()
        Image.fromarray(noise(8, 8, seed=i)).save(buffer, format="PNG")
        buffers.append(buffer.getvalue())
    source = tmp_path / "images.zip"
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("a.png", buffers[0])
        archive.writestr("b.png", buffers[1])
    raw = bytearray(source.read_bytes())
    start = raw.index(buffers[1])
    raw[start + 40] ^= 0xFF  # one flipped byte inside b.png: its CRC no longer matches
    source.write_bytes(bytes(raw))
    with pytest.raises(UnreadableImageError, match=rf"{source}:b\.png: cannot read"):
        prepare(source, tmp_path / "out.zip", resolution=8, workers=1)
    source.write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(DataError, match=rf"{source}: not a readable zip"):
        prepare(source, tmp_path / "out.zip", resolution=8, workers=1)


def test_empty_and_non_image_folders_are_named(tmp_path):
    """An empty folder and one holding no images are named, with the extensions looked for."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no images found.*\.png, \.jpg"):
        prepare(tmp_path / "empty", tmp_path / "out.zip")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("a")
    (tmp_path / "docs" / "b.csv").write_text("b")
    with pytest.raises(DataError, match=r"docs: no images found.*ignored 2 other files"):
        prepare(tmp_path / "docs", tmp_path / "out.zip")


def test_bad_arguments_are_refused_before_any_work(tmp_path):
    """Each bad argument gets a message naming it and, where there are any, the allowed values."""
    src = tmp_path / "src"
    save(src / "a.png", noise(8, 8))
    cases = [(dict(resolution=17), r"power of two in \[4, 1024\] \(4, 8, 16, .*1024\), got 17"),
             (dict(channels=2), "channels must be 1 or 3, got 2"),
             (dict(transform="squash"), r"transform must be one of \['center-crop', 'resize'\]"),
             (dict(max_images=0), "max_images must be at least 1"),
             (dict(workers=0), "workers must be at least 1")]
    for kwargs, message in cases:
        with pytest.raises(DataError, match=message):
            prepare(src, tmp_path / "out.zip", **kwargs)
    with pytest.raises(DataError, match=r"out\.tar: the output must be a \.zip"):
        prepare(src, tmp_path / "out.tar")
    with pytest.raises(DataError, match="missing: no such file or folder"):
        prepare(tmp_path / "missing", tmp_path / "out.zip")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="notes.txt: not a dataset"):
        prepare(tmp_path / "notes.txt", tmp_path / "out.zip")
    (tmp_path / "out.zip").write_bytes(b"precious")
    with pytest.raises(DataError, match=r"out\.zip: already exists"):
        prepare(src, tmp_path / "out.zip", resolution=4)
    assert (tmp_path / "out.zip").read_bytes() == b"precious"
    prepare(src, tmp_path / "out.zip", resolution=4, overwrite=True, workers=1)
    assert read_prepared(tmp_path / "out.zip")[0]["images"] == 1


@pytest.mark.parametrize("workers, error", [(1, KeyboardInterrupt), (2, RuntimeError)])
def test_an_interrupted_preparation_leaves_nothing_behind(tmp_path, monkeypatch, workers, error):
    """Stopped after a few images (Ctrl-C or a failure), no OUT and no temporary file remain, and
    an OUT being overwritten keeps its old bytes."""
    monkeypatch.setattr(prep, "CHUNK", {"files": 2, "arrays": 2})
    for i in range(8):
        save(tmp_path / "src" / f"{i}.png", noise(8, 8, seed=i))
    write, calls = prep._write_member, []

    def failing(archive, name, content):
        calls.append(name)
        if len(calls) == 3:
            raise error("stopped")
        write(archive, name, content)

    monkeypatch.setattr(prep, "_write_member", failing)
    with pytest.raises(error):
        prepare(tmp_path / "src", tmp_path / "out.zip", resolution=8, workers=workers)
    assert sorted(os.listdir(tmp_path)) == ["src"]
    (tmp_path / "old.zip").write_bytes(b"old")
    calls.clear()
    with pytest.raises(error):
        prepare(tmp_path / "src", tmp_path / "old.zip", resolution=8, workers=workers,
                overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["old.zip", "src"]
    assert (tmp_path / "old.zip").read_bytes() == b"old"


# ------------------------------------------------------------------------------ command line


def test_command_line(tmp_path, capsys):
    """`python -m nanogan.prepare` writes the zip and reports; a bad resolution exits with
    status 2 and one line on stderr naming the allowed values; --help lists the options."""
    for i, cls in enumerate(["a", "b"]):
        save(tmp_path / "src" / cls / "x.png", noise(10, 12, seed=i))
    with pytest.raises(SystemExit) as exit_:
        prep.main([str(tmp_path / "src"), str(tmp_path / "out.zip"), "--resolution", "8",
                   "--channels", "1", "--transform", "resize", "--workers", "1"])
    assert exit_.value.code == 0
    assert f"wrote {tmp_path / 'out.zip'}: 2 images 1×8×8, 2 classes" in capsys.readouterr().out
    meta, _ = read_prepared(tmp_path / "out.zip")
    assert (meta["channels"], meta["transform"], meta["labels"]) == (1, "resize", [0, 1])
    with pytest.raises(SystemExit) as exit_:
        prep.main(["--help"])
    assert exit_.value.code == 0 and "--skip-bad" in capsys.readouterr().out

    result = subprocess.run(
        [sys.executable, "-m", "nanogan.prepare", str(tmp_path / "src"),
         str(tmp_path / "other.zip"), "--resolution", "100"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2
    assert result.stderr.startswith("error: resolution must be a power of two in [4, 1024] (4, 8, 16")
    assert "got 100" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "other.zip").exists()


def test_a_file_system_error_is_one_line_and_leaves_nothing(tmp_path, capsys):
    """OUT under a file (the folder cannot be made): exit 2, one `error:` line naming the path,
    no traceback, no temporary file."""
    save(tmp_path / "src" / "a.png", noise(8, 8))
    (tmp_path / "file.txt").write_text("a file, not a folder")
    out = tmp_path / "file.txt" / "out.zip"
    with pytest.raises(SystemExit) as exit_:
        prep.main([str(tmp_path / "src"), str(out), "--resolution", "8", "--workers", "1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot prepare {out}: ") and str(tmp_path / "file.txt") in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "src"]
