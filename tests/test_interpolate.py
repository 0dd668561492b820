"""Latent paths (slerp in Z, lerp in W, ProGAN's smoothed walk) against their formulas."""

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.interpolate import key_path, lerp, slerp, smooth_latents, smoothed_walk, time_kernel


def reference_slerp(a, b, t):
    """Shoemake's formula with θ = arccos(â·b̂), one pair of vectors, float64."""
    a, b = a.double(), b.double()
    cos = torch.dot(a, b) / (a.norm() * b.norm())
    theta = torch.arccos(cos.clamp(-1, 1))
    return (torch.sin((1 - t) * theta) * a + torch.sin(t * theta) * b) / torch.sin(theta)


def reference_path(keys, frames, interpolate, loop):
    """Frame j of segment s is interpolate(key s, key s+1, j / frames); the last key closes it."""
    out = []
    segments = len(keys) if loop else len(keys) - 1
    for s in range(segments):
        for j in range(frames):
            out.append(interpolate(keys[s], keys[(s + 1) % len(keys)], j / frames))
    if not loop:
        out.append(keys[-1].double())
    return torch.stack(out)


def reference_walk(z, sigma):
    """ẑ_f = √dim · z̃_f/‖z̃_f‖, z̃_f = Σ_k g(k) z_{(f+k) mod F}, g ∝ exp(−k²/2σ²) on |k| ≤ ⌈4σ⌉."""
    f, dim = z.shape
    radius = math.ceil(4 * sigma)
    g = {k: math.exp(-k * k / (2 * sigma * sigma)) for k in range(-radius, radius + 1)}
    total = sum(g.values())
    out = torch.zeros(f, dim, dtype=torch.float64)
    for frame in range(f):
        for k, weight in g.items():
            out[frame] += weight / total * z[(frame + k) % f].double()
    return out * math.sqrt(dim) / out.norm(dim=1, keepdim=True)


@given(seed=seeds, k=st.integers(2, 4), frames=st.integers(1, 6), dim=st.integers(2, 8),
       loop=st.booleans())
def test_matches_reference(seed, k, frames, dim, loop):
    keys = torch.randn(k, dim, generator=generator(seed), dtype=torch.float64)
    torch.testing.assert_close(key_path(keys, frames, slerp, loop=loop),
                               reference_path(keys, frames, reference_slerp, loop))
    w_ref = reference_path(keys, frames, lambda a, b, t: a + t * (b - a), loop)
    torch.testing.assert_close(key_path(keys, frames, lerp, loop=loop), w_ref)


@given(seed=seeds, frames=st.integers(1, 40), sigma=st.floats(0.5, 12.0), dim=st.integers(1, 6))
@example(seed=0, frames=3, sigma=10.0, dim=2)  # a kernel many times longer than the video
def test_walk_matches_reference(seed, frames, sigma, dim):
    z = torch.randn(frames, dim, generator=generator(seed), dtype=torch.float64)
    torch.testing.assert_close(smooth_latents(z, sigma), reference_walk(z, sigma))


@given(seed=seeds, k=st.integers(2, 5), frames=st.integers(1, 12), dim=st.integers(2, 64),
       radius=st.floats(0.1, 30.0))
def test_slerp_keeps_the_norm_and_hits_the_keys(seed, k, frames, dim, radius):
    """Between keys of equal norm every slerp frame has that norm, and frame s·frames is key s exactly up to round-off."""
    keys = torch.randn(k, dim, generator=generator(seed), dtype=torch.float64)
    keys = keys * (radius / keys.norm(dim=1, keepdim=True))
    path = key_path(keys, frames, slerp)
    torch.testing.assert_close(path.norm(dim=1), torch.full((len(path),), radius, dtype=torch.float64))
    torch.testing.assert_close(path[::frames], keys)


@given(seed=seeds, frames=st.integers(2, 10), n=st.integers(1, 4), d=st.integers(1, 6))
def test_lerp_in_w_moves_in_equal_straight_steps(seed, frames, n, d):
    """In W every frame lies on the segment between its keys, and consecutive frames are one equal step (w₂ − w₁)/frames apart."""
    keys = torch.randn(3, n, d, generator=generator(seed), dtype=torch.float64)  # ws per layer
    path = key_path(keys, frames, lerp)
    for s in range(2):
        segment = path[s * frames : (s + 1) * frames + 1]
        step = (keys[s + 1] - keys[s]) / frames
        torch.testing.assert_close(segment.diff(dim=0), step.expand(frames, n, d))
    torch.testing.assert_close(path[::frames], keys)


@given(seed=seeds, frames=st.integers(1, 50), dim=st.integers(1, 600), sigma=st.floats(0.3, 50.0))
def test_walk_lies_on_the_hypersphere(seed, frames, dim, sigma):
    """Every frame of the walk has norm √dim, the radius pixel norm gives every latent."""
    walk = smoothed_walk(frames, dim, sigma, generator(seed))
    torch.testing.assert_close(walk.norm(dim=1), torch.full((frames,), math.sqrt(dim)))


@pytest.mark.parametrize("sigma", [2.0, 5.0, 22.5])
def test_walk_is_smooth(sigma):
    """Frames Δ apart have cosine ≈ exp(−Δ²/4σ²), the autocorrelation of Gaussian-blurred white noise, where unblurred frames are uncorrelated."""
    frames, dim = 400, 2048
    walk = smoothed_walk(frames, dim, sigma, generator(0))
    for delta in (1, round(sigma), round(2 * sigma)):
        cos = torch.cosine_similarity(walk, walk.roll(-delta, 0), dim=1)
        assert cos.mean().item() == pytest.approx(math.exp(-delta**2 / (4 * sigma**2)), abs=0.02)
    raw = torch.randn(frames, dim, generator=generator(0))
    assert torch.cosine_similarity(raw, raw.roll(-1, 0), dim=1).abs().mean().item() < 0.05


def test_walk_loops_without_a_seam():
    """The blur wraps around in time: the last frame is as close to the first as to its other neighbour."""
    walk = smoothed_walk(200, 1024, 6.0, generator(3))
    seam = torch.cosine_similarity(walk[-1], walk[0], dim=0).item()
    inside = torch.cosine_similarity(walk[1:], walk[:-1], dim=1)
    assert seam == pytest.approx(inside.mean().item(), abs=4 * inside.std().item())


@given(seed=seeds)
def test_walk_is_deterministic_by_seed(seed):
    """The same seed gives the same walk, bit for bit; another seed gives another walk."""
    a = smoothed_walk(30, 16, 4.0, generator(seed))
    assert torch.equal(a, smoothed_walk(30, 16, 4.0, generator(seed)))
    assert not torch.allclose(a, smoothed_walk(30, 16, 4.0, generator(seed + 1)))


def test_time_kernel_is_a_normalised_gaussian():
    g = time_kernel(2.0)
    assert len(g) == 2 * 8 + 1
    torch.testing.assert_close(g.sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(g[8 + 2] / g[8], torch.tensor(math.exp(-0.5), dtype=torch.float64))


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="k >= 2"):
        key_path(torch.zeros(1, 4), 5)
    with pytest.raises(ValueError, match="frames >= 1"):
        key_path(torch.zeros(2, 4), 0)
    with pytest.raises(ValueError, match="sigma"):
        smoothed_walk(10, 4, 0.0)
    with pytest.raises(ValueError, match=r"\(f, z\)"):
        smooth_latents(torch.zeros(3, 2, 2), 1.0)
