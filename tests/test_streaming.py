"""Streaming data: a prepared zip (or a folder, or a plain zip) decoded one image per item gives
exactly the decoded path's pixels; start-up reads only a directory; loaders with workers and
Accelerate's batch shards see the same data as one process; open_dataset's choice between the
paths; a bad image named or replaced by the next; under torchrun the decoded cache is built by
one of the processes. (The sources and the decoded cache: test_sources.py, test_decoded.py.)"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_sources import cache, png_pixels, prepared, smooth_images, write_prepared  # noqa: F401

from nanogan import data, decoded, sources, streaming
from nanogan.data import InfiniteSampler, open_dataset
from nanogan.decoded import ImageDataset
from nanogan.sources import DataError, UnreadableImageError
from nanogan.streaming import StreamingDataset


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

    for module in (streaming, decoded):
        monkeypatch.setattr(module, "decode_image", forbidden)
    monkeypatch.setattr(sources.ZipMembers, "read", forbidden)
    dataset = open_dataset(archive, cache="auto", cache_budget=0, cache_dir=cache)
    assert isinstance(dataset, StreamingDataset) and len(dataset) == 12
    assert dataset.resolution == 8 and dataset.class_names == ("cat", "dog", "owl")
    with pytest.raises(UnreadableImageError, match="an image was read"):
        dataset[0]


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
    with caplog.at_level(logging.WARNING, logger="nanogan.streaming"):
        assert lenient[1][1] == 2 and torch.equal(lenient[1][0], torch.from_numpy(images[2]))
        assert torch.equal(lenient[5][0], torch.from_numpy(images[2]).flip(-1))
    assert caplog.text.count("images/00000001.png") == 1  # one warning per bad image
    assert [w for w, _ in lenient.skipped] == [f"{archive}:images/00000001.png"]


def test_all_bad_with_skip_bad_says_so(tmp_path, cache):
    folder = tmp_path / "junk"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / name).write_bytes(b"not an image")
    dataset = open_dataset(folder, resolution=8, cache="stream", skip_bad=True, cache_dir=cache)
    with pytest.raises(DataError, match="none of its 2 images could be read"):
        dataset[0]


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
        "from nanogan import decoded\n"
        "decode_all = decoded._decode_all\n"
        "def counted(*args, **kwargs):\n"
        f"    with open({str(decodes)!r}, 'a') as f:\n"
        "        f.write(f'{os.getpid()}\\n')\n"
        "    time.sleep(1)  # a wide window for a second decode, were there no lock\n"
        "    return decode_all(*args, **kwargs)\n"
        "decoded._decode_all = counted\n"
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
