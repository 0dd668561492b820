"""Streaming data: a prepared zip (or a folder, or a plain zip) decoded one image per item gives
exactly the decoded path's pixels; start-up reads only a directory; loaders with workers and
Accelerate's batch shards see the same data as one process; the decoded cache is built by one
of several processes; bad input is named."""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
import pickle
import zipfile
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nanogan import data
from nanogan.data import (DataError, ImageDataset, InfiniteSampler, StreamingDataset,
                          UnreadableImageError, open_dataset)


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


# ------------------------------------------------------------------------------ exactness


@pytest.mark.parametrize("channels", [1, 3])
def test_prepared_zip_streams_its_pngs_exactly(tmp_path, cache, channels):
    """Streamed item i is member i's pixels; stream == decoded path at every index, mirrors too."""
    images = smooth_images(5, channels, 8, seed=channels)
    archive = write_prepared(tmp_path / "p.zip", images, [1, 0, 1, 1, 0], ["a", "b"])
    stream = open_dataset(archive, cache="stream", xflip=True, cache_dir=cache)
    ram = open_dataset(archive, cache="ram", xflip=True, cache_dir=cache)
    assert isinstance(stream, StreamingDataset) and isinstance(ram, ImageDataset)
    for dataset in (stream, ram):  # labels, names and geometry come from dataset.json
        assert (dataset.resolution, dataset.channels, dataset.class_names) == (8, channels,
                                                                              ("a", "b"))
        assert dataset.num_classes == 2 and len(dataset) == 10 and dataset.skipped == []
        assert dataset.labels().tolist() == [1, 0, 1, 1, 0] * 2
    assert stream.name == ram.name
    for i in range(5):
        expected = torch.from_numpy(png_pixels(archive, f"images/{i:08d}.png", channels).copy())
        assert torch.equal(stream[i][0], expected) and torch.equal(stream[i + 5][0],
                                                                  expected.flip(-1))
    for i in range(10):
        (a, y), (b, z) = stream[i], ram[i]
        assert a.dtype == torch.uint8 and a.shape == (channels, 8, 8)
        assert torch.equal(a, b) and y == z
    order = torch.tensor([9, 0, 3, 3, 7])
    assert torch.equal(stream.images_uint8(order), ram.images_uint8(order))


def test_folder_and_plain_zip_stream_like_the_decoded_path(tmp_path, cache):
    """Mixed sizes, non-square, grey and RGB, 16-bit: stream and decode give the same uint8."""
    g = np.random.default_rng(3)
    root = tmp_path / "mixed"
    (root / "x").mkdir(parents=True)
    (root / "y").mkdir()
    Image.fromarray(g.integers(0, 256, (20, 31, 3), dtype=np.uint8)).save(root / "x" / "wide.png")
    Image.fromarray(g.integers(0, 256, (40, 12), dtype=np.uint8)).save(root / "x" / "tall.png")
    Image.fromarray(g.integers(0, 65536, (9, 9), dtype=np.uint16)).save(root / "y" / "g16.png")
    Image.fromarray(g.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "y" / "q.jpg")
    archive = tmp_path / "mixed.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(root.rglob("*.*")):
            z.write(path, path.relative_to(root).as_posix())
    for source in (root, archive):
        for channels in (1, 3):
            kw = dict(resolution=8, channels=channels, xflip=True, cache_dir=cache)
            stream = open_dataset(source, cache="stream", **kw)
            ram = open_dataset(source, cache="ram", **kw)
            assert stream.class_names == ram.class_names == ("x", "y")
            assert torch.equal(stream.images_uint8(range(8)), ram.images_uint8(range(8)))
            assert stream.labels().tolist() == ram.labels().tolist()


def test_loader_with_workers_gives_the_same_batches(prepared, cache):
    """0 and 2 DataLoader workers give identical batches, even after the parent opened the zip."""
    archive, _ = prepared
    dataset = open_dataset(archive, cache="stream", xflip=True, cache_dir=cache)
    dataset[0]  # the parent now holds a descriptor; forked workers must not share it

    def batches(workers):
        loader = torch.utils.data.DataLoader(dataset, batch_size=5, num_workers=workers,
                                             sampler=InfiniteSampler(len(dataset), seed=4))
        return list(islice(loader, 6))  # 30 items: more than one epoch of 24

    plain, parallel = batches(0), batches(2)
    for (a, y), (b, z) in zip(plain, parallel, strict=True):
        assert type(a) is torch.Tensor and a.dtype == torch.uint8 and a.shape == (5, 3, 8, 8)
        assert torch.equal(a, b) and torch.equal(y, z)
    indices = list(islice(InfiniteSampler(len(dataset), seed=4), 30))
    assert torch.equal(torch.cat([a for a, _ in plain]), dataset.images_uint8(indices))


def test_batch_shards_split_every_batch_in_order(prepared, cache):
    """With split_batches, shard k reads the k-th half of each batch; the halves make the batch."""
    from accelerate.data_loader import BatchSamplerShard  # here: spawned children skip its import
    archive, _ = prepared
    dataset = open_dataset(archive, cache="stream", xflip=True, cache_dir=cache)
    whole = torch.utils.data.BatchSampler(InfiniteSampler(len(dataset), seed=2, start=7), 6,
                                          drop_last=True)
    shards = [BatchSamplerShard(whole, num_processes=2, process_index=k, split_batches=True)
              for k in range(2)]
    batches = list(islice(whole, 5))
    parts = [list(islice(shard, 5)) for shard in shards]
    for b, batch in enumerate(batches):
        assert parts[0][b] == batch[:3] and parts[1][b] == batch[3:]
        images = [dataset.images_uint8(part[b]) for part in parts]
        assert torch.equal(torch.cat(images), dataset.images_uint8(batch))


def test_pickled_copy_is_small_and_reopens(prepared, cache):
    """What a spawned worker receives: no open descriptor, no decoded pixels, the same data."""
    archive, _ = prepared
    dataset = open_dataset(archive, cache="stream", cache_dir=cache)
    first = dataset[3]
    blob = pickle.dumps(dataset)
    assert len(blob) < 4000
    clone = pickle.loads(blob)
    assert clone.source._members._fd is None
    assert torch.equal(clone[3][0], first[0]) and clone[3][1] == first[1]


# ---------------------------------------------------------------------------- start-up


def test_prepared_start_up_decodes_and_reads_no_image(prepared, cache, monkeypatch):
    """Opening a prepared zip reads its directory and dataset.json: no member, no decode."""
    archive, _ = prepared

    def forbidden(*args):
        raise AssertionError("an image was read at start-up")

    monkeypatch.setattr(data, "decode_image", forbidden)
    monkeypatch.setattr(data.ZipMembers, "read", forbidden)
    dataset = open_dataset(archive, cache="auto", cache_budget=0, cache_dir=cache)
    assert isinstance(dataset, StreamingDataset) and len(dataset) == 12
    assert dataset.resolution == 8 and dataset.class_names == ("cat", "dog", "owl")
    with pytest.raises(UnreadableImageError, match="an image was read"):
        dataset[0]


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


# ------------------------------------------------------------------ one decoded copy


def _open_in_child(folder, cache_dir, counter, barrier, queue):
    """Runs in a spawned process: count decodes in a file, open the folder with the others."""
    decode_all = data._decode_all

    def counted(*args):
        with open(counter, "a") as f:
            f.write(f"{os.getpid()}\n")
        import time
        time.sleep(0.5)  # hold the lock long enough for the other process to arrive
        return decode_all(*args)

    data._decode_all = counted
    barrier.wait()
    dataset = open_dataset(folder, resolution=8, cache="ram", cache_dir=Path(cache_dir))
    queue.put(dataset.images_uint8(range(len(dataset))).numpy())


def test_two_processes_decode_once(tmp_path):
    """Two processes opening one folder at once: one decodes, the other waits and maps it."""
    folder = tmp_path / "pics"
    folder.mkdir()
    for i, image in enumerate(smooth_images(4, 3, 8)):
        Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{i}.png")
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    counter = tmp_path / "decodes.txt"
    children = [ctx.Process(target=_open_in_child, args=(str(folder), str(tmp_path / "cache"),
                                                         str(counter), barrier, queue))
                for _ in range(2)]
    for child in children:
        child.start()
    results = [queue.get(timeout=120) for _ in children]
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    assert len(counter.read_text().split()) == 1
    assert np.array_equal(results[0], results[1]) and results[0].shape == (4, 3, 8, 8)
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len([f for f in files if f.endswith(".images.npy")]) == 1
    assert not [f for f in files if f.startswith(".")]  # no temporary file left


# ----------------------------------------------------------------------------- cache modes


def test_cache_modes_and_budget(prepared, cache, monkeypatch):
    """auto decodes what fits the budget (argument, else $NANOGAN_CACHE_BUDGET), else streams."""
    archive, _ = prepared  # 12 × 3 × 8 × 8 = 2304 bytes decoded
    with pytest.raises(ValueError, match="cache must be one of auto, ram, stream, got 'disk'"):
        open_dataset(archive, cache="disk")
    assert open_dataset(archive, cache_budget=2304, cache_dir=cache).cache == "ram"
    assert open_dataset(archive, cache_budget=2303, cache_dir=cache).cache == "stream"
    assert open_dataset(archive, resolution=4, cache_budget=576, cache_dir=cache).cache == "ram"
    monkeypatch.setenv("NANOGAN_CACHE_BUDGET", "2K")
    assert open_dataset(archive, cache_dir=cache).cache == "stream"
    monkeypatch.setenv("NANOGAN_CACHE_BUDGET", "0.01G")
    assert open_dataset(archive, cache_dir=cache).cache == "ram"
    for text in ("lots", "-1M", "inf", "nan", "1e400"):  # garbage, negative, not finite
        monkeypatch.setenv("NANOGAN_CACHE_BUDGET", text)
        with pytest.raises(DataError, match=rf"NANOGAN_CACHE_BUDGET must be a finite number of "
                                            rf"bytes .*K, M or G suffix .*got '{text}'"):
            open_dataset(archive, cache_dir=cache)
    assert data.cache_budget_bytes(5) == 5 and 0 < data.CACHE_BUDGET <= 4 << 30


def test_cifar_is_held_in_memory_whatever_the_cache(tmp_path):
    """Streaming CIFAR-10 would only slow it down: "stream" gives the in-memory dataset."""
    folder = tmp_path / "cifar"
    folder.mkdir()
    (folder / "data_batch_1.bin").write_bytes(bytes(2 * (1 + 3 * 32 * 32)))
    assert isinstance(open_dataset(folder, cache="stream"), ImageDataset)


def test_prepared_at_another_resolution_is_resized_and_said(prepared, cache, caplog):
    archive, _ = prepared
    with caplog.at_level(logging.WARNING, logger="nanogan.data"):
        stream = open_dataset(archive, resolution=4, cache="stream", cache_dir=cache)
    assert "prepared at 8 px, resized to 4 px" in caplog.text and str(archive) in caplog.text
    ram = open_dataset(archive, resolution=4, cache="ram", cache_dir=cache)
    assert stream[0][0].shape == (3, 4, 4)
    assert torch.equal(stream.images_uint8(range(12)), ram.images_uint8(range(12)))


# ------------------------------------------------------------------------------- bad input


def test_corrupt_member_is_named_or_replaced_by_the_next(tmp_path, cache, caplog):
    """A bad member raises naming zip:member; skip_bad reads the next image (and label) instead."""
    images = smooth_images(4, 3, 8)
    archive = write_prepared(tmp_path / "bad.zip", images, [0, 1, 2, 3], list("abcd"),
                             members={"images/00000001.png": b"\x89PNG\r\n\x1a\n not really"})
    dataset = open_dataset(archive, cache="stream", xflip=True, cache_dir=cache)
    assert torch.equal(dataset[0][0], torch.from_numpy(images[0]))
    with pytest.raises(UnreadableImageError, match=r"bad\.zip:images/00000001\.png: cannot read"):
        dataset[1]
    lenient = open_dataset(archive, cache="stream", xflip=True, skip_bad=True, cache_dir=cache)
    with caplog.at_level(logging.WARNING, logger="nanogan.data"):
        assert lenient[1][1] == 2 and torch.equal(lenient[1][0], torch.from_numpy(images[2]))
        assert torch.equal(lenient[5][0], torch.from_numpy(images[2]).flip(-1))
    assert caplog.text.count("images/00000001.png") == 1  # one warning per bad image
    assert [w for w, _ in lenient.skipped] == [f"{archive}:images/00000001.png"]


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


def test_all_bad_with_skip_bad_says_so(tmp_path, cache):
    folder = tmp_path / "junk"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / name).write_bytes(b"not an image")
    dataset = open_dataset(folder, resolution=8, cache="stream", skip_bad=True, cache_dir=cache)
    with pytest.raises(DataError, match="none of its 2 images could be read"):
        dataset[0]


def test_truncated_zip_is_named_at_open(prepared, cache):
    archive, _ = prepared
    archive.write_bytes(archive.read_bytes()[:-100])
    for mode in ("stream", "ram"):
        with pytest.raises(DataError, match=rf"{archive}: not a readable zip archive"):
            open_dataset(archive, cache=mode, cache_dir=cache)


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
    assert data.ImageSource(archive, cache).ignored == {".json": 1}
    unlabeled, _ = write_ada_zip(tmp_path / "null.zip", images, {"labels": None})
    for mode in ("stream", "ram"):
        dataset = open_dataset(unlabeled, cache=mode, cache_dir=cache)
        assert dataset.labels().tolist() == [0] * 4 and dataset.class_names == ()
    bad, _ = write_ada_zip(tmp_path / "bad.zip", images, {"labels": [["00000/img00000000.png",
                                                                       0]]})
    with pytest.raises(DataError, match=r"bad\.zip:dataset\.json: \"labels\" must be null or a "
                                        r"list .*00000/img00000001\.png has none"):
        open_dataset(bad, cache="stream", cache_dir=cache)


def test_an_lzma_member_is_refused_with_a_way_out(tmp_path, cache):
    """A member compressed with a method nanogan does not read names deflate and the folder."""
    path = tmp_path / "lzma.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_LZMA) as z:
        z.writestr("a.png", png_bytes(smooth_images(1, 3, 8)[0]))
    with pytest.raises(DataError, match=r"lzma\.zip:a\.png: .*re-zip it with deflate .*unzip it "
                                        "and prepare the folder"):
        open_dataset(path, cache="stream", cache_dir=cache)


# ------------------------------------------------------------------- train.py end to end


@pytest.fixture(scope="module")
def prepared_64(tmp_path_factory) -> Path:
    """64 RGB 8×8 images in two classes, as a prepared zip (train.py's tiny runs need 64)."""
    labels = np.arange(64) // 32
    return write_prepared(tmp_path_factory.mktemp("zip") / "shapes.zip",
                          smooth_images(64, 3, 8, seed=5), labels, ["a", "b"])


@pytest.mark.slow  # three tiny training runs, ~20 s on 2 cores
def test_resume_on_the_stream_ends_where_a_straight_run_ends(prepared_64, tmp_path):
    """Streamed with 2 loader workers, stopped and resumed: bitwise the straight run's state."""
    from test_train import assert_same_state, run_args, train
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "OMP_NUM_THREADS": "1",
           "COLUMNS": "200"}
    stream = ("--cache", "stream")
    train(run_args("stylegan2", prepared_64, tmp_path / "straight", 0.048, *stream), env)
    train(run_args("stylegan2", prepared_64, tmp_path / "split", 0.024, *stream,
                   "--workers", "2"), env)
    train(["--resume", str(tmp_path / "split"), "--kimg", "0.048", "--log-every", "2", *stream,
           "--workers", "2"], env)
    assert_same_state(tmp_path / "straight" / "checkpoint.safetensors",
                      tmp_path / "split" / "checkpoint.safetensors")
    assert not (tmp_path / "xdg" / "nanogan" / "datasets").exists() or not list(
        (tmp_path / "xdg" / "nanogan" / "datasets").glob("*.images.npy"))  # nothing decoded


@pytest.mark.slow  # two processes through torchrun, ~15 s on 2 cores
@pytest.mark.skipif(not __import__("shutil").which("torchrun"), reason="torchrun is not on PATH")
def test_torchrun_on_a_prepared_zip_leaves_one_decoded_copy(prepared_64, tmp_path):
    """2 processes, cache auto with a budget that decodes: the source is decoded by exactly one
    process (the other waits on the lock), leaving one decoded copy on disk."""
    import subprocess
    from test_distributed import free_port
    from test_train import ROOT, run_args
    cache = tmp_path / "xdg" / "nanogan" / "datasets"
    decodes = tmp_path / "decodes.txt"
    wrapper = tmp_path / "counting_train.py"  # train.py, each whole-source decode logged
    wrapper.write_text(
        "import os, runpy, sys, time\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from nanogan import data\n"
        "decode_all = data._decode_all\n"
        "def counted(*args, **kwargs):\n"
        f"    with open({str(decodes)!r}, 'a') as f:\n"
        "        f.write(f'{os.getpid()}\\n')\n"
        "    time.sleep(1)  # a wide window for a second decode, were there no lock\n"
        "    return decode_all(*args, **kwargs)\n"
        "data._decode_all = counted\n"
        f"sys.argv[0] = {str(ROOT / 'train.py')!r}\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "OMP_NUM_THREADS": "1",
           "NANOGAN_CACHE_BUDGET": "1M"}  # 64 × 3 × 8² = 12 KiB: the decoded path
    cmd = ["torchrun", "--nproc_per_node", "2", "--master_port", str(free_port()), str(wrapper),
           *run_args("progan", prepared_64, tmp_path / "run", 0.032, "--cache", "auto")]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(decodes.read_text().splitlines()) == 1, "decoded by more than one process"
    assert len(list(cache.glob("*.images.npy"))) == 1
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]
