"""Extractor registry, batch-by-batch extraction and the protocol-keyed cache of real features."""

import dataclasses
import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.features import EXTRACTORS, Extractor, Protocol, extract, get_extractor, real_features


class Tiny(torch.nn.Module):
    """A random-weight stand-in: 3×3 conv responses and the mean -> 6 features, 3 logits."""

    def __init__(self, seed=0):
        super().__init__()
        g = generator(seed)
        self.conv = torch.nn.Parameter(torch.randn(3, 1, 3, 3, generator=g))
        self.fc = torch.nn.Parameter(torch.randn(3, 6, generator=g))

    def forward(self, x):
        grey = x.mean(1, keepdim=True)
        response = torch.nn.functional.conv2d(grey, self.conv).relu().mean((2, 3))
        features = torch.cat([response, x.mean((2, 3))[:, :1].expand(-1, 3)], 1)
        return features, features @ self.fc.T


def tiny_extractor():
    return Extractor(Tiny(), resize=None, resolution=8, fingerprint="tiny-v1")


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(EXTRACTORS, "tiny", tiny_extractor)
    return "tiny"


def reference(images):
    """Features of the whole set at once in float64; probabilities p_k = e^{l_k} / Σ_j e^{l_j}."""
    model = Tiny().double()
    with torch.no_grad():
        features, logits = model(images.double())
    probs = torch.stack([torch.tensor([math.exp(v) for v in row]) / sum(math.exp(v) for v in row)
                         for row in logits.tolist()])
    return features, probs.double()


def protocol(**changes):
    base = Protocol(extractor="tiny", num_images=5, split="test", resize=None, dataset="toy")
    return dataclasses.replace(base, **changes)


@given(seed=seeds, n=st.integers(1, 7), batch_size=st.integers(1, 8))
def test_extract_matches_reference(seed, n, batch_size):
    """Features and probabilities do not depend on how the images are split into batches."""
    EXTRACTORS["tiny"] = tiny_extractor  # hypothesis runs cannot use function-scoped fixtures
    try:
        images = torch.rand(n, 3, 8, 8, generator=generator(seed)) * 2 - 1
        features, probs = extract("tiny", images, batch_size=batch_size)
    finally:
        del EXTRACTORS["tiny"]
    expected_features, expected_probs = reference(images)
    torch.testing.assert_close(features.double(), expected_features, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(probs.double(), expected_probs, rtol=1e-5, atol=1e-6)


def test_extract_takes_an_iterable_of_batches(tiny):
    images = torch.rand(6, 1, 8, 8, generator=generator(1))
    from_tensor = extract(tiny, images, batch_size=4)
    from_batches = extract(tiny, iter([images[:1], images[1:]]))
    for a, b in zip(from_tensor, from_batches):
        torch.testing.assert_close(a, b)


def test_wrong_inputs_are_named(tiny):
    with pytest.raises(ValueError, match="unknown extractor 'nope'.*'fashion'"):
        get_extractor("nope")
    with pytest.raises(ValueError, match="needs 8×8 images"):
        extract(tiny, torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match="no images"):
        extract(tiny, [])


def test_every_protocol_field_changes_the_cache_key():
    """Two protocols share a cache file only if every field (and the extractor's weights) agree."""
    base = protocol()
    changed = [protocol(extractor="fashion"), protocol(num_images=6), protocol(split="train"),
               protocol(resize="bilinear to 299"), protocol(dataset="other")]
    keys = {base.key("w")} | {p.key("w") for p in changed} | {base.key("other weights")}
    assert len(keys) == 7 and base.key("w") == protocol().key("w")
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.num_images = 3


def test_real_features_are_cached_by_protocol(tiny, tmp_path):
    """The second request with the same protocol reads the file and never touches the images."""
    images = torch.rand(5, 1, 8, 8, generator=generator(2)) * 2 - 1
    first = real_features(images, protocol(), cache_dir=tmp_path, batch_size=2)
    files = list(tmp_path.iterdir())
    assert [f.name for f in files] == [f"{protocol().key('tiny-v1')}.safetensors"]

    def must_not_run():
        raise AssertionError("cache miss")

    second = real_features(must_not_run, protocol(), cache_dir=tmp_path)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    other = real_features(lambda: images[:4], protocol(num_images=4), cache_dir=tmp_path)
    torch.testing.assert_close(other[0], first[0][:4])
    assert len(list(tmp_path.iterdir())) == 2  # no temporary files left behind


def test_real_features_checks_the_number_of_images(tiny, tmp_path):
    with pytest.raises(ValueError, match="asks for 5 real images, got 3"):
        real_features(torch.zeros(3, 1, 8, 8), protocol(), cache_dir=tmp_path)


def test_fashion_extractor_uses_the_shipped_classifier():
    extractor = get_extractor("fashion")
    x = torch.rand(3, 3, 32, 32, generator=generator(3)) * 2 - 1
    features, probs = extractor(x)
    assert features.shape == (3, 128) and probs.shape == (3, 10)
    torch.testing.assert_close(probs.sum(1), torch.ones(3))
    assert extractor.resize is None and extractor.fingerprint.startswith("fashion_classifier:")


def test_inception_extractor_loads_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOGAN_INCEPTION", str(tmp_path / "missing.pth"))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        get_extractor("inception")


def test_a_cache_file_with_another_protocol_is_recomputed(tiny, tmp_path):
    from safetensors.torch import save_file

    images = torch.rand(5, 1, 8, 8, generator=generator(4)) * 2 - 1
    path = tmp_path / f"{protocol().key('tiny-v1')}.safetensors"
    save_file({"features": torch.zeros(5, 6), "probs": torch.zeros(5, 3)}, str(path),
              metadata={"dataset": '"something else"'})
    features, _ = real_features(images, protocol(), cache_dir=tmp_path)
    torch.testing.assert_close(features, extract(tiny, images)[0])
    assert real_features(lambda: 1 / 0, protocol(), cache_dir=tmp_path)[0].equal(features)


def test_outputs_stay_on_the_extractors_device():
    """Features come back where the network runs (no forced copy to the CPU); "meta" stands in
    for an accelerator here: shapes and devices without any data."""
    extractor = tiny_extractor().to("meta")
    assert extractor.device.type == "meta"
    features, probs = extractor(torch.rand(2, 1, 8, 8, generator=generator(5)))
    assert features.device.type == probs.device.type == "meta"
    assert features.shape == (2, 6) and probs.shape == (2, 3)
    assert features.dtype == probs.dtype == torch.float32


def test_cache_round_trip_and_protocol_check(tmp_path):
    """What store_cached writes, load_cached returns for that protocol and weights only."""
    from nanogan.features import cache_path, load_cached, store_cached

    features, probs = torch.randn(5, 6, generator=generator(6)), torch.rand(5, 3)
    path = store_cached(features, probs, protocol(), "w1", tmp_path)
    assert path == cache_path(protocol(), "w1", tmp_path) and path.is_file()
    loaded = load_cached(protocol(), "w1", tmp_path)
    assert torch.equal(loaded[0], features) and torch.equal(loaded[1], probs)
    assert load_cached(protocol(), "w2", tmp_path) is None  # other weights: another file
    assert load_cached(protocol(split="train"), "w1", tmp_path) is None
    with pytest.raises(ValueError, match="asks for 5 real images, got 4"):
        store_cached(features[:4], probs[:4], protocol(), "w1", tmp_path)


@given(seed=seeds, b=st.integers(1, 4), c=st.integers(1, 4), h=st.integers(1, 9),
       w=st.integers(1, 9), batch_size=st.integers(1, 5))
@example(seed=0, b=2, c=3, h=32, w=32, batch_size=1)  # RGB 32×32, one image per batch
def test_pixels_features_are_the_flattened_images(seed, b, c, h, w, batch_size):
    """The "pixels" extractor's features are the images themselves, pixel (c, y, x) of image i at
    column (c·h + y)·w + x of row i, for any size and channel count, and it has no classes."""
    images = torch.rand(b, c, h, w, generator=generator(seed), dtype=torch.float64) * 2 - 1
    features, probs = extract("pixels", images, batch_size=batch_size)
    expected = torch.tensor([[images[i, ci, y, x].item() for ci in range(c) for y in range(h)
                              for x in range(w)] for i in range(b)], dtype=torch.float32)
    assert features.dtype == torch.float32 and torch.equal(features, expected)
    assert probs.shape == (b, 0)


def test_pixels_extractor_protocol_device_and_cache(tmp_path):
    """No network, yet a device to follow; no classes, so no Inception score; features cached."""
    from nanogan.inception_score import inception_score

    extractor = get_extractor("pixels")
    assert (extractor.resize, extractor.resolution, extractor.channels, extractor.classes,
            extractor.fingerprint) == (None, None, None, False, "pixels")
    assert extractor.device.type == "cpu" and extractor.to("meta").device.type == "meta"
    features, probs = extractor.to("meta")(torch.zeros(2, 1, 4, 4))
    assert features.device.type == probs.device.type == "meta"
    images = torch.rand(5, 2, 3, 3, generator=generator(7)) * 2 - 1
    pixels = protocol(extractor="pixels")
    first = real_features(images, pixels, cache_dir=tmp_path)
    again = real_features(lambda: 1 / 0, pixels, cache_dir=tmp_path)  # from the file
    assert torch.equal(again[0], images.flatten(1)) and again[1].shape == (5, 0)
    assert torch.equal(first[0], again[0])
    with pytest.raises(ValueError, match="k >= 1"):  # evaluate refuses "is" before this
        inception_score(again[1], splits=1)
