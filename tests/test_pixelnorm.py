"""Pixelwise feature vector normalization (ProGAN §4.2) against a reference from the equation."""

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.pixelnorm import PixelNorm, pixel_norm

shapes = st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 4), st.integers(1, 4))


def reference(a, eps=1e-8):
    """b_xy = a_xy / √((1/N) Σ_j (a^j_xy)² + ε), one pixel at a time, in float64."""
    a = a.double()
    b = torch.empty_like(a)
    n_maps = a.shape[1]
    for i in range(a.shape[0]):
        for y in range(a.shape[2]):
            for x in range(a.shape[3]):
                v = a[i, :, y, x]
                b[i, :, y, x] = v / math.sqrt(sum(v_j.item() ** 2 for v_j in v) / n_maps + eps)
    return b


def away_from_zero(shape, seed, dtype=torch.float64):
    """Features with |a| >= 0.1, so that ε = 1e-8 is negligible next to every mean square."""
    g = generator(seed)
    magnitude = torch.rand(shape, generator=g, dtype=dtype) * 3 + 0.1
    sign = torch.randint(0, 2, shape, generator=g).to(dtype) * 2 - 1
    return magnitude * sign


@given(seed=seeds, shape=shapes, scale=st.sampled_from([1e-3, 1.0, 1e3]))
@example(seed=0, shape=(1, 1, 1, 1), scale=1e-3)
def test_matches_reference(seed, shape, scale):
    x = torch.randn(shape, generator=generator(seed)) * scale
    torch.testing.assert_close(pixel_norm(x).double(), reference(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(PixelNorm()(x), pixel_norm(x))


@given(seed=seeds, b=st.integers(1, 4), z=st.integers(1, 16))
def test_latent_vectors_match_reference(seed, b, z):
    """On (b, z) latents, as in the mapping network, each row is normalized on its own."""
    x = torch.randn(b, z, generator=generator(seed), dtype=torch.float64)
    expected = reference(x[:, :, None, None])[:, :, 0, 0]
    torch.testing.assert_close(pixel_norm(x), expected)


@given(seed=seeds, shape=shapes)
def test_unit_rms(seed, shape):
    """Every pixel's normalized feature vector has root mean square 1."""
    rms = pixel_norm(away_from_zero(shape, seed)).square().mean(dim=1).sqrt()
    torch.testing.assert_close(rms, torch.ones_like(rms), rtol=1e-6, atol=0)


@given(seed=seeds, shape=shapes)
def test_invariant_to_positive_rescaling_of_a_pixel(seed, shape):
    """Multiplying a pixel's feature vector by any positive factor leaves its normalized vector unchanged (ε aside)."""
    a = away_from_zero(shape, seed)
    b, _, h, w = shape
    s = torch.rand(b, 1, h, w, generator=generator(seed + 1), dtype=torch.float64) * 10 + 0.1
    torch.testing.assert_close(pixel_norm(s * a), pixel_norm(a), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(pixel_norm(s * a, eps=0.0), pixel_norm(a, eps=0.0))


@given(seed=seeds, shape=shapes)
def test_idempotent(seed, shape):
    """Normalizing twice is the same as normalizing once."""
    once = pixel_norm(away_from_zero(shape, seed))
    # ε shrinks each RMS by a factor 1 − ε/(2·mean a²) ≥ 1 − 5e-7 for |a| ≥ 0.1: that is the rtol.
    torch.testing.assert_close(pixel_norm(once), once, rtol=1e-6, atol=0)
    torch.testing.assert_close(pixel_norm(pixel_norm(once, eps=0.0), eps=0.0),
                               pixel_norm(once, eps=0.0), rtol=1e-12, atol=0)


def test_zero_vector_stays_zero():
    """ε keeps an all-zero pixel finite: it maps to zero, not to NaN."""
    x = torch.zeros(1, 3, 2, 2)
    assert torch.equal(pixel_norm(x), x)


def test_gradcheck():
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64, generator=generator(3), requires_grad=True)
    assert torch.autograd.gradcheck(pixel_norm, (x,))
    assert torch.autograd.gradgradcheck(pixel_norm, (x,))


@pytest.mark.parametrize("make", [lambda: pixel_norm(torch.ones(1, 2), eps=-1.0),
                                  lambda: PixelNorm(eps=-1e-8)])
def test_rejects_negative_eps(make):
    with pytest.raises(ValueError, match="eps must be >= 0"):
        make()
