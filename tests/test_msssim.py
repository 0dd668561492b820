"""SSIM and MS-SSIM (Wang et al. 2003) against a reference written from the SSIM equations."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.msssim import WEIGHTS, ms_ssim, ms_ssim_diversity, ssim


def reference_terms(x, y, data_range):
    """Mean over channels and window positions of l·cs and of cs, each statistic written out."""
    b, c, h, w = x.shape
    size = min(11, h, w)
    sigma = 1.5 * size / 11
    coords = [i - (size - 1) / 2 for i in range(size)]
    window = torch.tensor([[math.exp(-(u * u + v * v) / (2 * sigma**2)) for v in coords]
                           for u in coords], dtype=torch.float64)
    window /= window.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    full, cs = [], []
    for i in range(h - size + 1):
        for j in range(w - size + 1):
            px, py = x[..., i : i + size, j : j + size], y[..., i : i + size, j : j + size]
            mx, my = (window * px).sum((-2, -1)), (window * py).sum((-2, -1))
            dx, dy = px - mx[..., None, None], py - my[..., None, None]
            vx, vy = (window * dx * dx).sum((-2, -1)), (window * dy * dy).sum((-2, -1))
            cxy = (window * dx * dy).sum((-2, -1))
            contrast_structure = (2 * cxy + c2) / (vx + vy + c2)
            luminance = (2 * mx * my + c1) / (mx * mx + my * my + c1)
            full.append(luminance * contrast_structure)
            cs.append(contrast_structure)
    return torch.stack(full, -1).mean((1, 2)), torch.stack(cs, -1).mean((1, 2))


def reference_ms_ssim(x, y, data_range, weights=WEIGHTS):
    """Π_j cs_j^β_j with l·cs at the last scale; each scale the 2×2 block means of the previous."""
    result = torch.ones(x.shape[0], dtype=torch.float64)
    for j, weight in enumerate(weights):
        full, cs = reference_terms(x, y, data_range)
        result = result * (full if j == len(weights) - 1 else cs).clamp_min(0) ** weight
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        x, y = [(t[..., 0:h:2, 0:w:2] + t[..., 1:h:2, 0:w:2] + t[..., 0:h:2, 1:w:2]
                 + t[..., 1:h:2, 1:w:2]) / 4 for t in (x, y)]
    return result


def uint8_scale(x):
    """[−1, 1] -> [0, 255]: the reference sees images as ProGAN's metric did, with L = 255."""
    return (x.double() + 1) * 127.5


def pair(seed, b=2, c=3, size=16, noise=0.3):
    x = torch.rand(b, c, size, size, generator=generator(seed)) * 2 - 1
    y = (x + noise * torch.randn(x.shape, generator=generator(seed + 1))).clamp(-1, 1)
    return x, y


@given(seed=seeds, size=st.integers(4, 20), c=st.sampled_from([1, 3]))
def test_ssim_matches_reference(seed, size, c):
    x, y = pair(seed, c=c, size=size)
    expected = reference_terms(uint8_scale(x), uint8_scale(y), 255.0)[0]
    torch.testing.assert_close(ssim(x, y), expected)


@settings(max_examples=4)
@given(seed=seeds, size=st.sampled_from([16, 21, 32]), noise=st.sampled_from([0.1, 0.5, 2.0]))
def test_ms_ssim_matches_reference(seed, size, noise):
    x, y = pair(seed, size=size, noise=noise)
    expected = reference_ms_ssim(uint8_scale(x), uint8_scale(y), 255.0)
    torch.testing.assert_close(ms_ssim(x, y), expected)


def test_small_images_clip_the_window_to_the_image():
    """At the 2×2 scale of a 32×32 image the clipped window is one equal-weight window over the whole image."""
    x, y = pair(3, size=32)
    only_last = ms_ssim(x, y, weights=(0.0, 0.0, 0.0, 0.0, 1.0))
    small_x, small_y = [uint8_scale(t).reshape(2, 3, 2, 16, 2, 16).mean((3, 5)) for t in (x, y)]
    mx, my = small_x.mean((-2, -1)), small_y.mean((-2, -1))
    vx, vy = small_x.var((-2, -1), unbiased=False), small_y.var((-2, -1), unbiased=False)
    cxy = ((small_x - mx[..., None, None]) * (small_y - my[..., None, None])).mean((-2, -1))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    by_hand = ((2 * mx * my + c1) / (mx**2 + my**2 + c1) * (2 * cxy + c2) / (vx + vy + c2))
    torch.testing.assert_close(only_last, by_hand.mean(1))


@given(seed=seeds)
def test_one_for_identical_images(seed):
    """An image compared with itself scores exactly 1, at one scale and at five."""
    x, _ = pair(seed, size=32)
    assert torch.equal(ms_ssim(x, x.clone()), torch.ones(2, dtype=torch.float64))
    assert torch.equal(ssim(x, x.clone()), torch.ones(2, dtype=torch.float64))


@given(seed=seeds, noise=st.floats(0.0, 3.0))
def test_symmetric_and_at_most_one(seed, noise):
    """MS-SSIM(x, y) = MS-SSIM(y, x), and no pair scores above 1."""
    x, y = pair(seed, size=32, noise=noise)
    torch.testing.assert_close(ms_ssim(x, y), ms_ssim(y, x), rtol=1e-12, atol=1e-12)
    assert (ms_ssim(x, y) <= 1 + 1e-12).all() and (ssim(x, y) <= 1 + 1e-12).all()


@given(seed=seeds)
def test_decreases_with_added_noise(seed):
    """More additive noise on a copy of an image gives a lower MS-SSIM."""
    x, _ = pair(seed, size=32)
    noise = torch.randn(x.shape, generator=generator(seed + 7))
    scores = torch.stack([ms_ssim(x, x + s * noise) for s in (0.0, 0.05, 0.1, 0.2, 0.4)])
    assert (scores[1:] < scores[:-1]).all()


def test_diversity_pairs_are_two_different_images():
    """With two images every random pair is those two, so the diversity score is their MS-SSIM."""
    x, y = pair(5, b=1, size=32)
    images = torch.cat([x, y])
    score = ms_ssim_diversity(images, pairs=7, generator=generator(0))
    assert score == pytest.approx(ms_ssim(x, y).item(), rel=1e-12)
    assert ms_ssim_diversity(torch.cat([x, x, x]), pairs=5, generator=generator(0)) == 1.0


def test_diversity_is_batch_size_invariant_and_deterministic():
    """Scoring the random pairs in batches of any size gives the same mean, for a given seed."""
    images = torch.rand(6, 3, 16, 16, generator=generator(1)) * 2 - 1
    scores = [ms_ssim_diversity(images, pairs=20, batch_size=bs, generator=generator(2))
              for bs in (1, 3, 20, 64)]
    assert scores == pytest.approx([scores[0]] * 4, rel=1e-12)
    assert scores[0] != ms_ssim_diversity(images, pairs=20, generator=generator(3))


def test_gradcheck():
    x, y = pair(9, b=1, c=1, size=16, noise=0.05)
    x = x.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: ms_ssim(x, y), (x,))


@pytest.mark.parametrize("shapes", [((1, 3, 16, 16), (1, 3, 16, 8)), ((1, 3, 8, 8),) * 2])
def test_rejects_bad_images(shapes):
    with pytest.raises(ValueError, match="one shape|at least"):
        ms_ssim(torch.zeros(shapes[0]), torch.zeros(shapes[1]))
