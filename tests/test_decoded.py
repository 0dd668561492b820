"""The decoded path: ImageDataset's mirrored copies; the cache of a folder or zip, reused until a
folder changes, reopened (not copied) when pickled, and decoded by one of several processes."""

from __future__ import annotations

import multiprocessing
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_sources import folder, save, smooth_images, solid  # noqa: F401 - folder: a fixture

from nanogan import decoded
from nanogan.data import open_dataset
from nanogan.decoded import ImageDataset
from nanogan.sources import DataError


def test_xflip_doubles_the_dataset_with_mirrors():
    """Index n + i is image i mirrored left to right, with the same label."""
    images = torch.arange(3 * 4 * 4, dtype=torch.uint8).reshape(3, 1, 4, 4)
    dataset = ImageDataset(images, [0, 1, 2], name="t", class_names="abc", xflip=True)
    assert len(dataset) == 6
    for i in range(3):
        assert torch.equal(dataset[i + 3][0], dataset[i][0].flip(-1)) and dataset[i + 3][1] == i
    batch = dataset.images_uint8(torch.tensor([4, 0, 4]))
    assert torch.equal(batch, torch.stack([dataset[4][0], dataset[0][0], dataset[4][0]]))
    with pytest.raises(IndexError):
        dataset[6]


# -------------------------------------------------------------------------------- the cache


def test_cache_is_reused_and_invalidated(folder, tmp_path, monkeypatch):
    """A second open reads the cache without decoding; touching the folder decodes again.

    Editing a file in place changes no directory's mtime and is not seen (documented: touch
    the folder), which is what makes a start cost one stat per directory instead of per file.
    """
    first = open_dataset(folder, resolution=4, cache="ram", cache_dir=tmp_path / "cache")
    calls = []

    def broken(*args):
        calls.append(args)
        raise AssertionError("decoded again")

    monkeypatch.setattr(decoded, "decode_image", broken)
    second = open_dataset(folder, resolution=4, cache="ram", cache_dir=tmp_path / "cache")
    assert not calls and torch.equal(second.images_uint8(range(4)), first.images_uint8(range(4)))
    save(folder / "square" / "c.bmp", solid((0, 254, 0)))
    open_dataset(folder, resolution=4, cache="ram", cache_dir=tmp_path / "cache")
    assert not calls  # an in-place edit: the cache is kept
    os.utime(folder, ns=(10**18, 10**18))  # `touch shapes/`
    with pytest.raises(DataError, match="decoded again"):
        open_dataset(folder, resolution=4, cache="ram", cache_dir=tmp_path / "cache")
    monkeypatch.undo()
    open_dataset(folder, resolution=4, cache="ram", cache_dir=tmp_path / "cache")
    monkeypatch.setattr(decoded, "decode_image", broken)
    save(folder / "circle" / "deeper" / "new.png", solid((1, 1, 1)))  # a second-level folder
    with pytest.raises(DataError, match="decoded again"):
        open_dataset(folder, resolution=4, cache="ram", cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="decoded again"):  # another resolution, another cache
        open_dataset(tmp_path / "shapes", resolution=8, cache_dir=tmp_path / "cache")
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]


def test_native_resolution_and_pickling(tmp_path):
    """Without a resolution, the largest power of two that fits the first image is used."""
    save(tmp_path / "big" / "a.png", np.zeros((40, 70, 3), np.uint8))
    dataset = open_dataset(tmp_path / "big", xflip=True, cache_dir=tmp_path / "cache")
    assert dataset.resolution == 32 and len(dataset) == 2
    clone = pickle.loads(pickle.dumps(dataset))
    assert len(pickle.dumps(dataset)) < 2000  # the memmap is reopened, not copied
    assert torch.equal(clone.images_uint8([0, 1]), dataset.images_uint8([0, 1]))


# ------------------------------------------------------------------------- one decoded copy


def _open_in_child(folder, cache_dir, counter, barrier, queue):
    """Runs in a spawned process: count decodes in a file, open the folder with the others."""
    decode_all = decoded._decode_all

    def counted(*args):
        with open(counter, "a") as f:
            f.write(f"{os.getpid()}\n")
        import time
        time.sleep(0.5)  # hold the lock long enough for the other process to arrive
        return decode_all(*args)

    decoded._decode_all = counted
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
