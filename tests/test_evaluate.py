"""evaluate(): fakes and reals drawn once, features extracted once, each score with its protocol.

A tiny random-weight extractor stands in for the real networks; mock generators stand in for GANs.
"""

import threading

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import generator

from nanogan.data import to_float, to_uint8
from nanogan.evaluate import (METRICS, MIN_IMAGES, MetricResult, MetricSetupError, Shares,
                              as_saved, check_setup, evaluate, evaluate_images, pick_real_images)
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
    assert results["dc"].value["coverage"] == 1.0
    noisy = run(["fid", "kid"], generate=noise, dataset=data)
    assert noisy["fid"].value > 1e-2
    assert noisy["kid"].value["mean"] > results["kid"].value["mean"]


def test_density_and_coverage_of_the_extracted_features():
    """"dc" is density_coverage (k = 5) of the extractor's features of reals and fakes, and it
    records the extractor's protocol."""
    from nanogan.precision_recall import density_coverage

    data = Toy()
    fakes = to_float(to_uint8(noise(24, generator(9))))
    blurred = torch.nn.functional.avg_pool2d(pick_real_images(data, 24), 3, 1, 1)  # some overlap
    for images in (fakes, blurred):
        results = run(["dc"], generate=replay(images), dataset=data, split="train")
        with torch.no_grad():
            expected = density_coverage(Tiny()(pick_real_images(data, 24))[0],
                                        Tiny()(as_saved(images))[0], k=5)
        assert results["dc"].value == pytest.approx(expected, rel=1e-6)
        assert results["dc"].protocol == Protocol(extractor="tiny", num_images=24, split="train",
                                                  resize=None, dataset="toy")
    assert 0 < results["dc"].value["coverage"] < 1


def test_the_pixels_extractor_scores_the_saved_pixels():
    """With the "pixels" extractor, fid, pr and dc are computed on the images as saved, flattened,
    and the protocol records "pixels" without resizing."""
    from nanogan.fid import fid
    from nanogan.precision_recall import density_coverage, precision_recall

    data = Toy()
    raw = noise(24, generator(10)) * 1.5  # out of range: scored as the clamped 8-bit PNG
    results = run(["fid", "pr", "dc"], generate=replay(raw), dataset=data, extractor="pixels")
    real, fake = pick_real_images(data, 24).flatten(1), to_float(to_uint8(raw)).flatten(1)
    assert results["fid"].value == pytest.approx(fid(real, fake), rel=1e-5)
    assert results["pr"].value == precision_recall(real, fake, k=3)
    assert results["dc"].value == density_coverage(real, fake, k=5)
    for result in results.values():
        assert result.protocol == Protocol(extractor="pixels", num_images=24, split="test",
                                           resize=None, dataset="toy")
    same = evaluate_images(["dc"], raw, pick_real_images(data, 24), extractor="pixels")
    assert same["dc"].value == results["dc"].value


def test_the_inception_score_is_refused_for_the_pixels_extractor_before_drawing():
    """"is" with the class-less "pixels" extractor fails before the generator draws any image."""
    def must_not_draw(b, g):
        raise AssertionError("generate was called")

    message = "is needs class probabilities; the 'pixels' extractor has none"
    with pytest.raises(MetricSetupError, match=message):
        run(["fid", "is"], generate=must_not_draw, extractor="pixels")
    with pytest.raises(MetricSetupError, match=message):
        evaluate_images(["is"], noise(4, generator(0)), noise(4, generator(1)),
                        extractor="pixels")
    with pytest.raises(MetricSetupError, match=message):
        check_setup(["is"], **setup(extractor="pixels"))
    # any size and channel count is accepted for the feature metrics
    check_setup(["fid", "kid", "pr", "dc"], **setup(extractor="pixels", resolution=7, channels=4))


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


# --- check_setup: a setup that cannot work is refused before any image is drawn -------------

def setup(**changes):
    """check_setup's arguments for a setup that works: Toy-sized images, the tiny extractor."""
    return {"extractor": "tiny", "num_images": 24, "num_real": 24, "resolution": 16,
            "channels": 1, **changes}


def test_check_setup_accepts_a_setup_that_evaluate_scores():
    """Every metric at its smallest accepted count: check_setup passes and evaluate scores it."""
    for name, (least, _) in MIN_IMAGES.items():
        assert check_setup([name], **setup(num_images=least)) is None
        assert name in run([name], num_images=least, batch_size=3)
        with pytest.raises(MetricSetupError, match=f"{name} needs at least {least} images"):
            check_setup([name], **setup(num_images=least - 1))


def test_the_fewest_images_are_what_the_metric_functions_need():
    """One image fewer than MIN_IMAGES makes fid, kid, pr, dc and msssim fail in the metric
    function itself (is and swd could score one image; 2 is a floor for every metric)."""
    from nanogan.fid import fid, kid
    from nanogan.msssim import ms_ssim_diversity
    from nanogan.precision_recall import density_coverage, precision_recall

    calls = {"fid": lambda f, x: fid(f, f), "kid": lambda f, x: kid(f, f),
             "pr": lambda f, x: precision_recall(f, f, k=3),
             "dc": lambda f, x: density_coverage(f, f, k=5),
             "msssim": lambda f, x: ms_ssim_diversity(x, pairs=4)}
    g = generator(8)
    for name, call in calls.items():
        n = MIN_IMAGES[name][0]
        call(torch.randn(n, 4, generator=g), torch.rand(n, 1, 16, 16, generator=g))
        with pytest.raises(ValueError):
            call(torch.randn(n - 1, 4, generator=g), torch.rand(n - 1, 1, 16, 16, generator=g))
    assert min(least for least, _ in MIN_IMAGES.values()) == 2


@pytest.mark.parametrize("metrics, changes, message", [
    (["fid", "lpips"], {},
     r"unknown metrics \['lpips'\]; choose from swd, fid, kid, pr, dc, msssim, is"),
    ([], {}, "unknown metrics none given"),
    (["fid"], {"extractor": "incepton"},
     r"unknown extractor 'incepton'; choose from .*fashion, inception.*did you mean 'inception'"),
    (["fid"], {"num_images": 40}, "reference split has only 24 real images; use at most 24"),
    (["swd"], {"resolution": 8}, "swd needs images of at least 16×16 pixels, got 8×8"),
    (["msssim"], {"resolution": 8}, "msssim needs images of at least 16×16 pixels"),
    (["swd"], {"resolution": 33}, "halves 33×33 images 1 times.*divisible by 2"),
    (["fid"], {"extractor": "fashion", "resolution": 64},
     "extractor 'fashion' takes 32×32 images, these are 64×64.*resizes.*'inception'"),
    (["kid"], {"extractor": "fashion", "resolution": 32, "channels": 4},
     "extractor 'fashion' takes images with 1 or 3 channels, got 4"),
    (["fid"], {"resolution": 0}, "need resolution >= 1"),
    (["fid", "is"], {"extractor": "pixels"},
     "is needs class probabilities; the 'pixels' extractor has none: .*'fashion' or 'inception'"),
])
def test_check_setup_names_the_problem_and_the_remedy(metrics, changes, message):
    with pytest.raises(MetricSetupError, match=message):
        check_setup(metrics, **setup(**changes))


def test_check_setup_is_a_value_error_and_pixel_metrics_ignore_the_extractor():
    assert issubclass(MetricSetupError, ValueError)
    check_setup(["swd", "msssim"], **setup(extractor="no such thing"))  # not used: no error
    check_setup(["fid"], **setup(extractor="fashion", resolution=32, channels=3))


def test_check_setup_says_where_inception_weights_are_looked_for(tmp_path, monkeypatch):
    """Missing weights name the path searched and how to provide them; a wrong file is named too."""
    missing = tmp_path / "weights.pth"
    monkeypatch.setenv("NANOGAN_INCEPTION", str(missing))
    inception = setup(extractor="inception", resolution=64, channels=3)
    with pytest.raises(MetricSetupError, match=f"no FID Inception weights at {missing}.*"
                       r"NANOGAN_INCEPTION.*or choose another extractor: .*fashion"):
        check_setup(["fid"], **inception)
    missing.write_bytes(b"not a checkpoint")
    with pytest.raises(MetricSetupError, match="is not the FID Inception weights"):
        check_setup(["is"], **inception)
    check_setup(["swd"], **inception)  # pixels only: the weights are not needed


def test_check_setup_accepts_inception_weights_that_load(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from nanogan.inception import FIDInceptionV3

    path = tmp_path / "inception.safetensors"
    state = FIDInceptionV3().half().state_dict()  # half: a smaller file, loaded as float32
    save_file({k: v for k, v in state.items() if "num_batches" not in k}, str(path))
    monkeypatch.setenv("NANOGAN_INCEPTION", str(path))
    check_setup(["fid", "is"], **setup(extractor="inception", resolution=64, channels=3))


# --- many processes: each its share, gathered; the numbers do not depend on the split ---------

def thread_gathers(world):
    """`world` all-gathers over threads: each waits for all tensors, concatenates in rank order."""
    slots, barrier = [None] * world, threading.Barrier(world)

    def gather_for(rank):
        def gather(tensor):
            slots[rank] = tensor
            barrier.wait()  # everyone has put theirs
            out = torch.cat(slots)
            barrier.wait()  # everyone has read before anyone puts the next one
            return out
        return gather
    return [gather_for(r) for r in range(world)]


def run_on_threads(world, metrics, cache_dirs=None, generates=None, errors=False, **kw):
    """evaluate on `world` ranks at once (threads): every rank's results (or, with errors=True,
    the exception it raised)."""
    gathers, results = thread_gathers(world), [None] * world

    def rank_main(rank):
        try:
            results[rank] = run(metrics, rank=rank, world=world, gather=gathers[rank],
                                cache_dir=(cache_dirs or [None] * world)[rank],
                                generate=(generates or [noise] * world)[rank], **kw)
        except Exception as err:
            results[rank] = err
            if not errors:
                raise
    threads = [threading.Thread(target=rank_main, args=(r,), daemon=True) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a rank is stuck in a gather"
    assert all(r is not None for r in results), "a rank failed (see the thread's traceback)"
    return results


def values(results):
    """{"fid": 6.6, "kid/mean": 9.0, …}: the numbers of all results, one level deep."""
    flat = {}
    for name, result in results.items():
        items = result.value.items() if isinstance(result.value, dict) else [("", result.value)]
        flat |= {f"{name}/{key}".rstrip("/"): value for key, value in items}
    return flat


@given(n=st.integers(1, 12), batch_size=st.integers(1, 5), world=st.integers(1, 6))
@example(n=7, batch_size=3, world=5)  # more processes than batches: two get none
def test_shares_cover_every_batch_once_in_order(n, batch_size, world):
    """The processes' runs of batches tile 0..B-1 in rank order, counts differing by <= 1 batch."""
    shares = Shares(n, batch_size, world)
    runs = [shares.batches(r) for r in range(world)]
    assert [j for r in runs for j in r] == list(range(-(-n // batch_size)))
    assert sum(shares.sizes) == n and all(1 <= s <= batch_size for s in shares.sizes)
    assert max(map(len, runs)) - min(map(len, runs)) <= 1


@pytest.mark.parametrize("world, metrics", [
    (3, list(METRICS)),  # shares of 7, 7 and 10 images
    (5, ["fid", "swd"]),  # more processes than the 4 batches: rank 0 has none
])
def test_any_number_of_processes_gives_the_one_process_numbers(world, metrics, tmp_path):
    """Each process's share, gathered, scores as one process scoring all 24 images."""
    one = values(run(metrics, seed=4, cache_dir=tmp_path / "one"))
    for results in run_on_threads(world, metrics, seed=4,
                                  cache_dirs=[tmp_path / "many"] * world):
        assert values(results) == pytest.approx(one, rel=1e-6)


def test_ranks_use_the_cache_only_when_all_find_it(tmp_path):
    """Rank 0 writes the cache; a rank that misses it makes every rank recompute (no rank waits
    alone in a gather), and the numbers stay the same."""
    filled, empty = tmp_path / "filled", tmp_path / "empty"
    first = run_on_threads(2, ["fid"], cache_dirs=[filled, empty])
    assert len(list(filled.iterdir())) == 1 and not empty.exists()  # only rank 0 writes
    data = Toy()
    mixed = run_on_threads(2, ["fid"], cache_dirs=[filled, empty], dataset=data)
    assert data.reads == 24 and values(mixed[1]) == values(first[0])
    both = run_on_threads(2, ["fid"], cache_dirs=[filled, filled], dataset=data)
    assert data.reads == 24 and values(both[0]) == values(first[0])  # no image decoded


def test_distributed_arguments_are_checked():
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\), got rank 2"):
        run(["fid"], rank=2, world=2, gather=lambda t: t)
    with pytest.raises(ValueError, match="world = 2 processes need a gather function"):
        run(["fid"], world=2)
    with pytest.raises(ValueError, match="gather must concatenate the 2 processes' tensors"):
        run(["fid"], world=2, gather=lambda t: t)


class BadImage(Toy):
    """Image 20 cannot be read (in the share of rank 1 of 2)."""

    def __getitem__(self, i):
        if i == 20:
            raise OSError("image 20 is truncated")
        return super().__getitem__(i)


def broken(b, g):
    raise RuntimeError("out of memory")


@pytest.mark.parametrize("metrics", [["fid"], ["swd"]])
@pytest.mark.parametrize("where, failure", [
    ({"generates": [noise, broken]}, "out of memory"),
    ({"dataset": BadImage()}, "image 20 is truncated"),
])
def test_a_failure_on_one_process_raises_on_every_process(metrics, where, failure):
    """A process whose share fails (its generator, or a bad image in its share of the data)
    makes every process raise, instead of leaving the others waiting in the next gather."""
    results = run_on_threads(2, metrics, errors=True, **where)
    assert failure in str(results[1])
    assert isinstance(results[0], RuntimeError)
    assert "evaluation failed on process [1]" in str(results[0])


def test_a_failing_generator_raises_on_every_process_with_pixel_metrics_only():
    """The same where the metrics need neither features nor real images (MS-SSIM alone): the
    failing process's error is shared at once, not left to break the next gather."""
    results = run_on_threads(2, ["msssim"], errors=True, generates=[noise, broken])
    assert "out of memory" in str(results[1])
    assert "evaluation failed on process [1]" in str(results[0])
