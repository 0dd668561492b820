"""evaluate(): fakes and reals drawn once, features extracted once, each score with its protocol.

A tiny random-weight extractor stands in for the real networks; mock generators stand in for GANs.
"""

import pytest
import torch
from strategies import generator

from nanogan.data import to_float, to_uint8
from nanogan.evaluate import METRICS, MetricResult, evaluate, evaluate_images, pick_real_images
from nanogan.features import EXTRACTORS, Extractor, Protocol



class Tiny(torch.nn.Module):
    """Random fixed weights: 4 conv responses + 4 channel statistics -> 8 features, 5 logits."""

    def __init__(self):
        super().__init__()
        g = generator(0)
        self.conv = torch.nn.Parameter(torch.randn(4, 1, 3, 3, generator=g))
        self.fc = torch.nn.Parameter(torch.randn(5, 8, generator=g))

    def forward(self, x):
        grey = x.mean(1, keepdim=True)
        response = torch.nn.functional.conv2d(grey, self.conv).relu().mean((2, 3))
        stats = torch.cat([grey.mean((1, 2, 3))[:, None], grey.std((2, 3)),
                           grey.amax((2, 3)), grey.amin((2, 3))], 1)
        features = torch.cat([response, stats], 1)
        return features, features @ self.fc.T


@pytest.fixture(autouse=True)
def tiny(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # never the user's cache
    monkeypatch.setitem(EXTRACTORS, "tiny", lambda: Extractor(Tiny(), resize=None,
                                                               fingerprint="tiny"))


class Toy(torch.utils.data.Dataset):
    """Blobs of varying size and brightness, as (uint8 image, label) pairs; counts reads."""

    name = "toy"

    def __init__(self, n=24, size=16, seed=0):
        g = generator(seed)
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        centre = torch.rand(n, 2, generator=g) * size
        radius = 2 + torch.rand(n, 1, 1, generator=g) * size / 3
        inside = (yy - centre[:, :1, None]) ** 2 + (xx - centre[:, 1:, None]) ** 2 < radius**2
        brightness = torch.rand(n, 1, 1, generator=g).clamp(min=0.3)
        self.images = (inside * 255 * brightness).to(torch.uint8).unsqueeze(1)
        self.reads = 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        self.reads += 1
        return self.images[i], 0


def noise(b, g):
    return torch.rand(b, 1, 16, 16, generator=g) * 2 - 1


def replay(images):
    """A mock generator that returns the given images in order, batch after batch."""
    position = [0]

    def generate(b, g):
        out = images[position[0]: position[0] + b]
        position[0] += b
        return out
    return generate


def run(metrics, generate=noise, dataset=None, **kw):
    kw = {"num_images": 24, "extractor": "tiny", "batch_size": 7, **kw}
    return evaluate(metrics, generate=generate, dataset=dataset or Toy(), **kw)


def test_generated_images_are_scored_as_their_saved_pngs():
    """Out-of-range values count as the clamped pixels a PNG holds, and 8-bit rounding is the
    PNG's, so a generator's raw output and its saved-and-reloaded images score the same."""
    raw = noise(24, generator(4)) * 2.5  # a generator without tanh overshoots [-1, 1]
    reloaded = to_float(to_uint8(raw))
    assert reloaded.abs().max() <= 1 and (reloaded != raw).any()
    metrics = ["fid", "swd", "msssim"]
    assert ({k: r.value for k, r in run(metrics, generate=replay(raw)).items()}
            == {k: r.value for k, r in run(metrics, generate=replay(reloaded)).items()})
    reals = pick_real_images(Toy(), 24)
    assert ({k: r.value for k, r in evaluate_images(metrics, raw, reals, extractor="tiny").items()}
            == {k: r.value for k, r in evaluate_images(metrics, reloaded, reals,
                                                        extractor="tiny").items()})


def test_matches_reference():
    """Each score equals its metric function applied to features extracted separately."""
    from nanogan.fid import fid, kid
    from nanogan.randomness import derive_seed
    from nanogan.swd import swd

    reals = pick_real_images(Toy(), 24)
    fakes = to_float(to_uint8(noise(24, generator(5))))  # 8-bit already: scored as given
    results = evaluate_images(["fid", "kid", "swd"], fakes, reals, extractor="tiny", seed=3)
    with torch.no_grad():
        real_features, fake_features = Tiny()(reals)[0], Tiny()(fakes)[0]
    stream = lambda name: generator(derive_seed(3, "metric", name))  # noqa: E731
    mean, std = kid(real_features, fake_features, generator=stream("kid"))
    assert results["fid"].value == pytest.approx(fid(real_features, fake_features), rel=1e-5)
    assert results["kid"].value == pytest.approx({"mean": mean, "std": std}, rel=1e-5)
    assert results["swd"].value == swd(reals, fakes, generator=stream("swd"))


def test_inception_score_uses_the_probabilities_of_the_fakes():
    from nanogan.inception_score import inception_score

    fakes = to_float(to_uint8(noise(24, generator(6))))
    results = evaluate_images(["is"], fakes, pick_real_images(Toy(), 24), extractor="tiny")
    with torch.no_grad():
        probs = Tiny()(fakes)[1].double().softmax(1)
    mean, std = inception_score(probs, splits=10)
    assert results["is"].value == pytest.approx({"mean": mean, "std": std}, rel=1e-5)


def test_same_seed_same_numbers_and_another_seed_other_numbers(tmp_path):
    """Scores are a function of the seed: the same seed repeats them, another changes them."""
    first = run(list(METRICS), seed=1, cache_dir=tmp_path)
    again = run(list(METRICS), seed=1, cache_dir=tmp_path)
    other = run(list(METRICS), seed=2, cache_dir=tmp_path)
    assert {k: r.value for k, r in first.items()} == {k: r.value for k, r in again.items()}
    assert first["fid"].value != other["fid"].value


def test_identical_sets_score_as_identical():
    """A generator that replays the real images gets FID ≈ 0, SWD 0, precision and recall 1."""
    data = Toy()
    reals = pick_real_images(data, len(data))
    results = run(list(METRICS), generate=replay(reals), dataset=data)
    assert results["fid"].value == pytest.approx(0, abs=1e-6)
    assert results["swd"].value["swd_avg"] == pytest.approx(0, abs=1e-9)
    assert results["pr"].value == {"precision": 1.0, "recall": 1.0}
    noisy = run(["fid", "kid"], generate=noise, dataset=data)
    assert noisy["fid"].value > 1e-2
    assert noisy["kid"].value["mean"] > results["kid"].value["mean"]


def test_protocol_is_recorded_with_every_number():
    results = run(["fid", "swd"], split="train")
    assert results["fid"] == MetricResult("fid", results["fid"].value, Protocol(
        extractor="tiny", num_images=24, split="train", resize=None, dataset="toy"))
    assert results["swd"].protocol.extractor == "pixels"
    assert results["fid"].to_dict()["num_images"] == 24


def test_real_features_come_from_the_cache_the_second_time(tmp_path):
    data = Toy()
    run(["fid"], dataset=data, num_images=12, cache_dir=tmp_path)
    reads = data.reads
    run(["fid"], dataset=data, num_images=12, cache_dir=tmp_path, seed=9)
    assert reads == 12 and data.reads == 12 and len(list(tmp_path.iterdir())) == 1


def test_pixel_metrics_do_not_load_an_extractor(monkeypatch):
    monkeypatch.setitem(EXTRACTORS, "broken", lambda: 1 / 0)
    results = run(["swd", "msssim"], extractor="broken")
    assert 0 < results["msssim"].value < 1


def test_evaluate_images_floor_and_ceiling():
    """Two halves of one distribution score a lower FID than real images against uniform noise."""
    data = Toy(n=48)
    floor = evaluate_images(["fid"], data.images[:24], data.images[24:], extractor="tiny")
    ceiling = evaluate_images(["fid"], noise(24, generator(1)), data.images[24:], extractor="tiny")
    assert floor["fid"].value < ceiling["fid"].value


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="unknown metrics.*'lpips'"):
        run(["lpips"])
    with pytest.raises(ValueError, match="asked for 30 real images, the dataset has 24"):
        run(["fid"], num_images=30)
    with pytest.raises(ValueError, match="generate must return"):
        run(["fid"], generate=lambda b, g: torch.zeros(b, 16, 16))
    with pytest.raises(ValueError, match="same size"):
        evaluate_images(["fid"], torch.zeros(3, 1, 8, 8), torch.zeros(4, 1, 8, 8))


def test_class_accuracy_matches_a_per_image_count():
    """Per class, the accuracy is the share of its images whose most probable class is that class."""
    g = generator(7)
    probs = torch.rand(60, 4, generator=g).softmax(1)
    labels = torch.randint(4, (60,), generator=g)
    from nanogan.evaluate import class_accuracy
    result = class_accuracy(probs, labels, 4)
    for k in range(4):
        mine = [i for i in range(60) if labels[i] == k]
        hits = sum(int(max(range(4), key=lambda c: probs[i, c].item()) == k) for i in mine)
        assert result[f"acc_{k}"] == pytest.approx(hits / len(mine))
    assert result["acc_mean"] == pytest.approx(sum(result[f"acc_{k}"] for k in range(4)) / 4)
    perfect = class_accuracy(torch.eye(4)[labels], labels, 4)
    assert perfect["acc_mean"] == 1.0
