"""Datasets: where Fashion-MNIST is found, idx parsing and checksums, CIFAR-10, what
open_dataset accepts and refuses (bad images in a folder named or skipped alike on both paths),
the uint8 <-> float mapping and the data order. Sources, the decoded cache and streaming have
their own files (test_sources.py, test_decoded.py, test_streaming.py)."""

import gzip
import hashlib
import itertools
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds
from test_sources import folder  # noqa: F401 - a fixture

from nanogan import data
from nanogan.data import (DataError, DatasetNotFoundError, InfiniteSampler, find_fashion_mnist,
                          has_test_split, load_fashion_mnist, open_dataset, read_idx, to_float,
                          to_uint8)

FILES = list(data.FASHION_MNIST_FILES)
REAL = data.DEBIAN_FASHION_MNIST
needs_real = pytest.mark.skipif(not all((REAL / f).is_file() for f in FILES),
                                reason="dataset-fashion-mnist is not installed")


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx encoding written from its definition: 0, 0, 0x08 (ubyte), ndim, big-endian sizes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(s.to_bytes(4, "big") for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


def fake_fashion(n=6, seed=0):
    """A tiny Fashion-MNIST look-alike: {file name: decompressed idx bytes}."""
    g = np.random.default_rng(seed)
    images, labels = g.integers(0, 256, (n, 28, 28)), g.integers(0, 10, n)
    return {"train-images-idx3-ubyte.gz": idx_bytes(images),
            "train-labels-idx1-ubyte.gz": idx_bytes(labels),
            "t10k-images-idx3-ubyte.gz": idx_bytes(images[:2]),
            "t10k-labels-idx1-ubyte.gz": idx_bytes(labels[:2])}


def write_fashion(folder: Path, contents: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, raw in contents.items():
        (folder / name).write_bytes(gzip.compress(raw))
    return folder


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No $NANOGAN_DATA, an empty user cache, no Debian package, and no network."""
    monkeypatch.delenv("NANOGAN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "debian")

    def offline(url, dest):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(data, "fetch_url", offline)
    return tmp_path


def trust(monkeypatch, contents):
    """Make the checksum table describe the fake files."""
    table = {name: (hashlib.sha256(raw).hexdigest(), len(raw)) for name, raw in contents.items()}
    monkeypatch.setattr(data, "FASHION_MNIST_FILES", table)


# ----------------------------------------------------------------------------- Fashion-MNIST


def test_search_order(isolated, monkeypatch):
    """The given folder wins, then $NANOGAN_DATA (or its fashion-mnist/), the cache, Debian's."""
    places = {p: write_fashion(isolated / p, fake_fashion()) for p in
              ("given", "env/fashion-mnist", "cache/nanogan/fashion-mnist", "debian")}
    monkeypatch.setenv("NANOGAN_DATA", str(isolated / "env"))
    assert find_fashion_mnist(isolated / "given") == places["given"]
    assert find_fashion_mnist(isolated / "nothing-here") == places["env/fashion-mnist"]
    monkeypatch.setenv("NANOGAN_DATA", str(isolated / "env" / "fashion-mnist"))
    assert find_fashion_mnist() == places["env/fashion-mnist"]
    monkeypatch.delenv("NANOGAN_DATA")
    assert find_fashion_mnist() == places["cache/nanogan/fashion-mnist"]
    (places["cache/nanogan/fashion-mnist"] / FILES[0]).unlink()  # an incomplete folder is passed
    assert find_fashion_mnist() == places["debian"]


def test_download_is_verified_and_atomic(isolated, monkeypatch):
    """Downloaded files are checked before they get their names; a bad one leaves nothing behind."""
    contents = fake_fashion()
    trust(monkeypatch, contents)
    urls = []

    def fetch(url, dest):
        urls.append(url)
        name = url.rsplit("/", 1)[1]
        dest.write_bytes(gzip.compress(contents[name]))

    monkeypatch.setattr(data, "fetch_url", fetch)
    folder = find_fashion_mnist()
    assert folder == isolated / "cache" / "nanogan" / "fashion-mnist"
    assert sorted(urls) == sorted(data.FASHION_MNIST_URL + f for f in FILES)
    images, labels = load_fashion_mnist("train")
    expected = np.frombuffer(contents[FILES[0]], np.uint8, offset=16).reshape(-1, 28, 28)
    assert images.dtype == torch.uint8 and np.array_equal(images.numpy(), expected)
    assert labels.dtype == torch.int64 and len(labels) == len(images)
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)  # no temporary files left

    other = isolated / "other-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(other))
    contents[FILES[2]] = contents[FILES[2]][:-1] + b"\x01"  # one changed byte
    with pytest.raises(DataError, match="checksum mismatch") as err:
        find_fashion_mnist()
    assert data.FASHION_MNIST_URL + FILES[2] in str(err.value)
    assert not (other / "nanogan" / "fashion-mnist" / FILES[2]).exists()
    assert not [p for p in (other / "nanogan" / "fashion-mnist").iterdir() if p.name[0] == "."]


def test_local_corruption_names_the_file(isolated, monkeypatch):
    contents = fake_fashion()
    trust(monkeypatch, contents)
    folder = write_fashion(isolated / "given", contents)
    (folder / FILES[1]).write_bytes(gzip.compress(contents[FILES[1]][:-3]))
    with pytest.raises(DataError, match="checksum mismatch") as err:
        load_fashion_mnist("train", folder)
    assert str(folder / FILES[1]) in str(err.value)
    (folder / FILES[1]).write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="not a readable gzip file") as err:
        load_fashion_mnist("train", folder)
    assert str(folder / FILES[1]) in str(err.value)


def test_not_found_message_lists_every_place_and_the_remedies(isolated):
    with pytest.raises(DatasetNotFoundError) as err:
        find_fashion_mnist(isolated / "mine", download=False)
    message = str(err.value)
    for place in ("mine", "$NANOGAN_DATA is not set", str(isolated / "cache" / "nanogan"),
                  str(isolated / "debian"), "download=False"):
        assert place in message
    for remedy in ("apt-get install dataset-fashion-mnist", "NANOGAN_DATA", "root=", "download"):
        assert remedy in message
    assert isinstance(err.value, FileNotFoundError)
    with pytest.raises(DatasetNotFoundError, match="no network in tests"):
        find_fashion_mnist()


def test_idx_parser_validates_magic_and_size():
    array = np.arange(24).reshape(2, 3, 4)
    assert np.array_equal(read_idx(idx_bytes(array), 3), array)
    with pytest.raises(DataError, match="f.idx: not an idx file of 1-d"):
        read_idx(idx_bytes(array), 1, "f.idx")
    with pytest.raises(DataError, match="magic"):
        read_idx(b"\x00\x00\x0d\x03" + idx_bytes(array)[4:], 3)
    with pytest.raises(DataError, match="22 bytes follow"):
        read_idx(idx_bytes(array)[:-2], 3)


@needs_real
def test_real_test_split_and_padding():
    """The 28×28 image sits in the centre of the 32×32 one, framed by 2 black pixels."""
    images, labels = load_fashion_mnist("test", download=False)
    assert images.shape == (10000, 28, 28) and images.dtype == torch.uint8
    assert torch.bincount(labels).tolist() == [1000] * 10  # the test split is balanced
    dataset = open_dataset("fashion-mnist", split="test")
    assert (len(dataset), dataset.resolution, dataset.channels, dataset.num_classes) == (
        10000, 32, 1, 10)
    assert dataset.class_names[9] == "Ankle boot" and dataset.name == "fashion-mnist"
    for i in (0, 1234, 9999):
        image, label = dataset[i]
        assert image.shape == (1, 32, 32) and label == labels[i]
        assert torch.equal(image[0, 2:30, 2:30], images[i])
        frame = torch.ones(32, 32, dtype=torch.bool)
        frame[2:30, 2:30] = False
        assert image[0][frame].eq(0).all()
    rgb = open_dataset(REAL, split="test", channels=3, resolution=16)
    assert rgb[5][0].shape == (3, 16, 16) and torch.equal(rgb[5][0][0], rgb[5][0][2])
    assert rgb.name == "fashion-mnist@16px-3ch"


@needs_real
def test_real_train_split():
    images, labels = load_fashion_mnist("train", download=False)
    assert images.shape == (60000, 28, 28)
    assert torch.bincount(labels).tolist() == [6000] * 10


# ------------------------------------------------------------------ pixels and data order


@given(seed=seeds)
def test_to_uint8_inverts_to_float(seed):
    """to_uint8(to_float(x)) == x for every uint8 image, and to_float maps 0 → −1, 255 → 1."""
    x = torch.randint(0, 256, (2, 3, 4, 4), generator=generator(seed), dtype=torch.uint8)
    assert torch.equal(to_uint8(to_float(x)), x)
    ends = to_float(torch.tensor([0, 255], dtype=torch.uint8))
    assert ends.dtype == torch.float32 and ends.tolist() == [-1.0, 1.0]
    assert to_uint8(torch.tensor([-3.0, 3.0])).tolist() == [0, 255]


@given(size=st.integers(1, 9), seed=seeds, start=st.integers(0, 40))
def test_sampler_resumes_exactly(size, seed, start):
    """Starting the stream at k gives the stream from 0 with its first k indices dropped."""
    full = list(itertools.islice(InfiniteSampler(size, seed=seed), start + 2 * size))
    resumed = list(itertools.islice(InfiniteSampler(size, seed=seed, start=start), 2 * size))
    assert resumed == full[start:]


@given(size=st.integers(1, 9), seed=seeds)
def test_sampler_epochs_are_permutations(size, seed):
    """Every epoch visits each index exactly once; the same seed gives the same stream."""
    stream = list(itertools.islice(InfiniteSampler(size, seed=seed), 4 * size))
    for e in range(4):
        assert sorted(stream[e * size : (e + 1) * size]) == list(range(size))
    assert stream == list(itertools.islice(InfiniteSampler(size, seed=seed), 4 * size))
    plain = list(itertools.islice(InfiniteSampler(size, shuffle=False, start=1), size))
    assert plain == [*range(1, size), 0]


def test_sampler_shuffles_differently_per_epoch_and_seed():
    a = list(itertools.islice(InfiniteSampler(50, seed=0), 100))
    b = list(itertools.islice(InfiniteSampler(50, seed=1), 50))
    assert a[:50] != a[50:] and a[:50] != b


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"power of two in \[4, 1024\] \(4, 8, 16"):
        open_dataset(resolution=48)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        open_dataset(channels=2)
    with pytest.raises(DatasetNotFoundError, match="no-such-folder"):
        open_dataset("no-such-folder")
    with pytest.raises(ValueError, match="size >= 1"):
        InfiniteSampler(0)


# ------------------------------------------------------------------- image folders and zips


def test_corrupt_images_are_named_or_skipped(folder, tmp_path, caplog):
    """A truncated or garbage file raises DataError naming it; skip_bad records it, and its index
    gives the next readable image with that image's label (modulo n), as the stream does."""
    good = (folder / "circle" / "a.png").read_bytes()
    (folder / "circle" / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "square" / "garbage.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(DataError) as err:
        open_dataset(folder, resolution=4, cache_dir=tmp_path / "cache")
    assert str(folder / "circle" / "truncated.png") in str(err.value)
    with caplog.at_level("WARNING", logger="nanogan.decoded"):
        dataset = open_dataset(folder, resolution=4, skip_bad=True, cache_dir=tmp_path / "cache")
    assert len(dataset) == 6 and "skipped 2 unreadable images" in caplog.text
    assert [p for p, _ in dataset.skipped] == [str(folder / "circle" / "truncated.png"),
                                               str(folder / "square" / "garbage.jpg")]
    # sorted: circle/a, circle/deeper/b, circle/truncated (bad), square/c, square/d, garbage (bad)
    assert [dataset[i][1] for i in range(6)] == [0, 0, 1, 1, 1, 0]
    assert torch.equal(dataset[2][0], dataset[3][0]) and torch.equal(dataset[5][0], dataset[0][0])
    assert dataset[3][0][:, 0, 0].tolist() == [0, 255, 0]  # square/c.bmp, read in place of 2
    stream = open_dataset(folder, resolution=4, skip_bad=True, cache="stream", xflip=True,
                          cache_dir=tmp_path / "cache")
    ram = open_dataset(folder, resolution=4, skip_bad=True, cache="ram", xflip=True,
                       cache_dir=tmp_path / "cache")
    assert len(stream) == len(ram) == 12
    for i in range(12):  # the decoded path and the stream agree element for element
        (a, y), (b, z) = stream[i], ram[i]
        assert torch.equal(a, b) and y == z, i
    with pytest.raises(DataError, match="garbage.jpg|truncated.png"):  # from the cache, too
        open_dataset(folder, resolution=4, cache_dir=tmp_path / "cache")


def test_empty_sources_are_named(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"empty: no images found"):
        open_dataset(tmp_path / "empty", cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="only one split"):
        open_dataset(tmp_path / "empty", split="test")


def test_loader_batches(folder, tmp_path):
    dataset = open_dataset(folder, resolution=8, xflip=True, cache_dir=tmp_path / "cache")
    loader = torch.utils.data.DataLoader(dataset, batch_size=3,
                                         sampler=InfiniteSampler(len(dataset), seed=1))
    images, labels = next(iter(loader))
    assert images.shape == (3, 3, 8, 8) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and to_float(images).abs().max() <= 1


# ---------------------------------------------------------------------------------- CIFAR-10


def cifar_records(labels, seed):
    """CIFAR-10's binary layout written from its definition: a label byte, then R, G, B planes."""
    g = np.random.default_rng(seed)
    images = g.integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8)
    raw = b"".join(bytes([y]) + images[i].tobytes() for i, y in enumerate(labels))
    return raw, images


def test_cifar10_binary_round_trips(tmp_path):
    """Records written in CIFAR-10's layout read back as the same images and labels."""
    folder = tmp_path / "cifar" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    raw1, images1 = cifar_records([3, 9, 0], seed=1)
    raw2, images2 = cifar_records([5], seed=2)
    raw_test, images_test = cifar_records([7, 1], seed=3)
    (folder / "data_batch_1.bin").write_bytes(raw1)
    (folder / "data_batch_2.bin").write_bytes(raw2)
    (folder / "test_batch.bin").write_bytes(raw_test)
    train = open_dataset(tmp_path / "cifar")
    assert (len(train), train.channels, train.resolution, train.num_classes) == (4, 3, 32, 10)
    assert train.class_names[3] == "cat" and train.name == "cifar-10"
    assert torch.equal(train.images_uint8(range(4)),
                       torch.from_numpy(np.concatenate([images1, images2])))
    assert train.labels().tolist() == [3, 9, 0, 5]
    test = open_dataset(folder, split="test")
    assert test.labels().tolist() == [7, 1]
    assert has_test_split(tmp_path / "cifar") and has_test_split(folder)
    assert not has_test_split(tmp_path) and not has_test_split(tmp_path / "missing.zip")
    assert has_test_split(None) and has_test_split("Fashion-MNIST")
    assert torch.equal(test[1][0], torch.from_numpy(images_test[1]))
    grey = open_dataset(folder, channels=1, resolution=16)
    assert grey[0][0].shape == (1, 16, 16)
    (folder / "data_batch_3.bin").write_bytes(raw1[:-5])
    with pytest.raises(DataError, match="data_batch_3.bin: .* not a whole number"):
        open_dataset(folder)
