"""The Fashion-MNIST feature classifier: input conventions, augmentation, deterministic training,
and the weights shipped in nanogan/weights/ (checked on the real test split when installed)."""

import gzip
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.classifier import (WEIGHTS, FashionClassifier, augment_batch, evaluate_accuracy,
                                load_classifier, pad_to_32, random_shift, save_classifier,
                                train_classifier)

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def fashion_test_split():
    """uint8 (10000, 28, 28) test images and labels, or skip when the dataset is not installed."""
    try:
        from nanogan.data import load_fashion_mnist
        return load_fashion_mnist("test", download=False)
    except (ImportError, FileNotFoundError, OSError, TypeError):
        pass
    if not (DEBIAN / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST is not installed")
    with gzip.open(DEBIAN / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(DEBIAN / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def reference_pad(images):
    """Black (-1) 2-pixel border around x/127.5 - 1, pixel by pixel."""
    b, h, w = images.shape
    out = -torch.ones(b, 1, h + 4, w + 4, dtype=torch.float64)
    for y, x in itertools.product(range(h), range(w)):
        out[:, 0, y + 2, x + 2] = images[:, y, x].double() / 127.5 - 1
    return out


def two_class_problem(n, seed):
    """Class 0: bright top half, class 1: bright bottom half, plus noise (flips keep the class)."""
    g = generator(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    x = torch.rand(n, 1, 32, 32, generator=g) * 0.5 - 1
    x[labels == 0, :, :16] += 1
    x[labels == 1, :, 16:] += 1
    return x, labels


@given(seed=seeds, b=st.integers(1, 3))
def test_pad_matches_reference(seed, b):
    images = torch.randint(0, 256, (b, 28, 28), generator=generator(seed), dtype=torch.uint8)
    torch.testing.assert_close(pad_to_32(images).double(), reference_pad(images))


@given(seed=seeds)
def test_augmentation_is_a_flip_and_a_small_shift(seed):
    """Every augmented image is its input, possibly mirrored, shifted by at most 2 pixels."""
    x = torch.rand(4, 1, 32, 32, generator=generator(seed)) * 2 - 1
    out = augment_batch(x, generator(seed + 1), shift=2)
    padded = torch.nn.functional.pad(x, (2,) * 4, value=-1.0)
    mirrored = torch.nn.functional.pad(x.flip(3), (2,) * 4, value=-1.0)
    for i in range(len(x)):
        candidates = [p[i, :, dy:dy + 32, dx:dx + 32] for p in (padded, mirrored)
                      for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], c) for c in candidates)


def test_random_shift_is_a_crop_of_the_padded_image_at_offsets_drawn_dy_then_dx():
    """Image i is the (h, w) window of the image padded by `most` (fill -1) at (dy_i, dx_i) —
    drawn as randint(0, 2·most + 1, (2, b, 1)), rows first — the same for every channel."""
    x = torch.rand(30, 3, 9, 11, generator=generator(0)) * 2 - 1  # not square: rows ≠ columns
    assert torch.equal(random_shift(x, 0, generator(1)), x)
    out = random_shift(x, 2, generator(1))
    dy, dx = torch.randint(0, 5, (2, 30, 1), generator=generator(1))
    padded = torch.nn.functional.pad(x, (2,) * 4, value=-1.0)
    for i in range(30):
        assert torch.equal(out[i], padded[i, :, dy[i]:dy[i] + 9, dx[i]:dx[i] + 11])
    assert set(dy.flatten().tolist()) == set(dx.flatten().tolist()) == {0, 1, 2, 3, 4}
    assert out.is_contiguous()


def test_features_and_logits_shapes_and_grey_input():
    """RGB input is seen as the mean of its channels; features are 128-d, logits 10-way."""
    model = FashionClassifier().eval()
    rgb = torch.rand(3, 3, 32, 32, generator=generator(1)) * 2 - 1
    with torch.no_grad():
        assert model.features(rgb).shape == (3, 128) and model(rgb).shape == (3, 10)
        torch.testing.assert_close(model(rgb), model(rgb.mean(1, keepdim=True)))
    with pytest.raises(ValueError, match="32, 32"):
        model(torch.zeros(1, 1, 28, 28))


def test_eval_forward_is_deterministic_and_batch_size_invariant():
    """In eval mode an image's logits do not depend on the call or on the rest of the batch."""
    model = FashionClassifier().eval()
    x = torch.rand(6, 1, 32, 32, generator=generator(2)) * 2 - 1
    with torch.no_grad():
        together = model(x)
        torch.testing.assert_close(torch.cat([model(x[:1]), model(x[1:])]), together,
                                   rtol=1e-5, atol=1e-5)
        assert torch.equal(model(x), together)


def test_training_is_deterministic_for_a_seed():
    """The same seed gives bit-identical weights; the global RNG is left as it was."""
    x, y = two_class_problem(16, seed=3)
    before = torch.random.get_rng_state()
    runs = [train_classifier(x, y, epochs=1, batch_size=8, seed=s, width=4, feature_dim=8)
            for s in (7, 7, 8)]
    assert torch.equal(torch.random.get_rng_state(), before)
    same = [torch.equal(a, b) for a, b in zip(runs[0].state_dict().values(),
                                              runs[1].state_dict().values())]
    assert all(same)
    assert not torch.equal(runs[0].head.weight, runs[2].head.weight)


def test_training_learns_an_easy_problem():
    """A few epochs separate two classes that differ in which half of the image is bright."""
    x, y = two_class_problem(256, seed=4)
    model = train_classifier(x, y, epochs=3, batch_size=32, lr=1e-2, seed=0, width=8,
                             feature_dim=16)
    test_x, test_y = two_class_problem(128, seed=5)
    assert evaluate_accuracy(model, test_x, test_y) > 0.9


def test_save_load_roundtrip_and_wrong_file(tmp_path):
    model = FashionClassifier(width=4, feature_dim=8).eval()
    save_classifier(model, tmp_path / "c.safetensors", {"seed": 1})
    loaded = load_classifier(tmp_path / "c.safetensors")
    assert loaded.metadata["seed"] == "1" and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 loaded.state_dict().values()))
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temporary left over
    from safetensors.torch import save_file
    save_file({"head.weight": torch.zeros(10, 8)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="not a FashionClassifier"):
        load_classifier(tmp_path / "bad.safetensors")


def test_shipped_weights_load_with_their_record():
    assert WEIGHTS.stat().st_size < 2_000_000
    model = load_classifier()
    for key in ("test_accuracy", "epochs", "seed", "date", "torch_version"):
        assert key in model.metadata
    assert float(model.metadata["test_accuracy"]) >= 0.91


def test_shipped_weights_classify_real_test_images():
    """The shipped classifier recognises at least 85% of 500 real test images."""
    images, labels = fashion_test_split()
    x = pad_to_32(images[:500])
    assert evaluate_accuracy(load_classifier(), x, labels[:500]) >= 0.85


@pytest.mark.slow
def test_shipped_accuracy_is_what_its_metadata_says():
    images, labels = fashion_test_split()
    model = load_classifier()
    accuracy = evaluate_accuracy(model, pad_to_32(images), labels)
    assert accuracy == pytest.approx(float(model.metadata["test_accuracy"]), abs=2e-4)
