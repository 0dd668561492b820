"""Perceptual path length (StyleGAN §4.1) on generators whose path length is known in closed form."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.ppl import lerp, mean_squared_distance, perceptual_path_length, slerp


def gaussian_latents(dim):
    return lambda n, g: torch.randn(n, dim, generator=g, dtype=torch.float64)


def linear_generator(seed, dim, pixels):
    """G(w) = wA reshaped to a one-channel image: its path length has a closed form."""
    a = torch.randn(dim, pixels, generator=generator(seed), dtype=torch.float64)
    return a, lambda w: (w @ a).view(len(w), 1, 1, pixels)


def reference_trimmed_mean(values):
    """Drop values outside [sorted[⌊0.01(n−1)⌋], sorted[⌈0.99(n−1)⌉]], then average."""
    ordered = sorted(values)
    n = len(ordered)
    low, high = ordered[math.floor(0.01 * (n - 1))], ordered[math.ceil(0.99 * (n - 1))]
    kept = [v for v in values if low <= v <= high]
    return sum(kept) / len(kept)


def ppl(generate, *, dim=4, interpolate=lerp, distance=mean_squared_distance, seed=0, **kwargs):
    kwargs = {"num_samples": 50, **kwargs}
    return perceptual_path_length(gaussian_latents(dim), interpolate, generate, distance,
                                  generator=generator(seed), **kwargs)


@given(seed=seeds, dim=st.integers(1, 6), pixels=st.integers(1, 8),
       sampling=st.sampled_from(["full", "end"]), n=st.integers(1, 300))
def test_linear_generator_matches_the_closed_form(seed, dim, pixels, sampling, n):
    """For G(w) = wA with lerp and mean squared distance, each sample's value is exactly ‖(w₂ − w₁)A‖²/D."""
    a, generate = linear_generator(seed, dim, pixels)
    result = ppl(generate, dim=dim, seed=seed, sampling=sampling, num_samples=n, epsilon=1e-3)
    latents = gaussian_latents(dim)(2 * n, generator(seed))
    expected = ((latents[1::2] - latents[0::2]) @ a).square().mean(1)
    torch.testing.assert_close(result["distances"], expected, rtol=1e-6, atol=1e-9)
    assert result["ppl"] == pytest.approx(reference_trimmed_mean(expected.tolist()), rel=1e-6)


def test_linear_generator_expectation():
    """With w ~ N(0, I) the untrimmed expectation is 2‖A‖²_F / D; trimming 1% at each end barely moves it."""
    a, generate = linear_generator(1, 64, 16)
    result = ppl(generate, dim=64, num_samples=4000, batch_size=1000)
    assert result["ppl"] == pytest.approx(2 * a.square().sum().item() / 16, rel=0.03)
    assert result["kept"] >= 0.97 * 4000


def test_batch_size_does_not_matter_and_a_seed_fixes_the_result():
    """Every draw happens before batching, so any batch size gives the same distances for one seed."""
    generate = lambda w: torch.tanh(w.view(len(w), 1, 2, 2) * 3)  # noqa: E731
    runs = [ppl(generate, sampling="full", num_samples=37, batch_size=bs, epsilon=1e-2)
            for bs in (1, 5, 64)]
    for run in runs[1:]:
        torch.testing.assert_close(run["distances"], runs[0]["distances"], rtol=1e-12, atol=0)
    other = ppl(generate, sampling="full", num_samples=37, epsilon=1e-2, seed=1)
    assert other["ppl"] != runs[0]["ppl"]


def test_epsilon_scaling():
    """A quadratic distance over ε² is independent of ε on a linear path; a linear distance (L1) scales as 1/ε."""
    _, generate = linear_generator(2, 4, 6)
    quadratic = [ppl(generate, epsilon=eps)["ppl"] for eps in (1e-1, 1e-2, 1e-3)]
    assert quadratic == pytest.approx([quadratic[0]] * 3, rel=1e-6)
    l1 = lambda x, y: (x - y).abs().flatten(1).mean(1)  # noqa: E731
    linear = [ppl(generate, distance=l1, epsilon=eps)["ppl"] * eps for eps in (1e-1, 1e-2)]
    assert linear[0] == pytest.approx(linear[1], rel=1e-6)
    # a smooth nonlinear G: d/ε² converges as ε → 0, the error shrinking tenfold with ε
    curved = lambda w: torch.tanh(w).view(len(w), 1, 1, -1)  # noqa: E731
    values = [ppl(curved, sampling="full", epsilon=eps)["ppl"] for eps in (1e-2, 1e-3, 1e-4)]
    assert abs(values[1] - values[2]) < 0.2 * abs(values[0] - values[1])  # error O(ε)


def test_end_sampling_measures_at_the_first_endpoint():
    """Sampling "end" evaluates every pair at t = 0: d(G(w₁), G(lerp(w₁, w₂; ε)))/ε²."""
    generate = lambda w: torch.sin(w).view(len(w), 1, 1, -1)  # noqa: E731
    result = ppl(generate, sampling="end", num_samples=9, epsilon=1e-3)
    latents = gaussian_latents(4)(18, generator(0))
    a, b = latents[0::2], latents[1::2]
    expected = mean_squared_distance(generate(a), generate(a + 1e-3 * (b - a))) / 1e-6
    torch.testing.assert_close(result["distances"], expected)


@given(seed=seeds, dim=st.integers(2, 8), t=st.floats(0, 1))
def test_slerp_keeps_unit_norm_and_hits_the_endpoints(seed, dim, t):
    """Slerp of unit vectors stays on the unit sphere, moves at constant angular speed, and starts and ends exactly at a and b."""
    a, b = torch.randn(2, 3, dim, generator=generator(seed), dtype=torch.float64)
    a, b = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    ts = torch.full((3,), t, dtype=torch.float64)
    mid = slerp(a, b, ts)
    torch.testing.assert_close(mid.norm(dim=1), torch.ones(3, dtype=torch.float64))
    angle = lambda u, v: torch.acos((u * v).sum(1).clamp(-1, 1))  # noqa: E731
    torch.testing.assert_close(angle(a, mid), t * angle(a, b), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(slerp(a, b, torch.zeros(3)), a)
    torch.testing.assert_close(slerp(a, b, torch.ones(3)), b)


def test_slerp_of_parallel_vectors_and_lerp():
    a = torch.tensor([[1.0, 2.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(slerp(a, 2 * a, torch.tensor([0.5])), 1.5 * a)
    torch.testing.assert_close(lerp(a, 3 * a, torch.tensor([0.25])), 1.5 * a)
    w = torch.randn(2, 3, 4, generator=generator(0))  # W+ latents (n, num_ws, d) broadcast t too
    torch.testing.assert_close(lerp(w, w + 1, torch.tensor([0.0, 1.0])),
                               w + torch.tensor([0.0, 1.0]).view(2, 1, 1))


def test_gradcheck_slerp():
    a, b = torch.randn(2, 2, 3, generator=generator(3), dtype=torch.float64)
    a.requires_grad_()
    t = torch.tensor([0.3, 0.8], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: slerp(a, b, t), (a,))


@pytest.mark.parametrize("kwargs", [{"sampling": "middle"}, {"num_samples": 0},
                                    {"epsilon": 0.0}])
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="sampling|num_samples"):
        ppl(lambda w: w.view(len(w), 1, 1, -1), **kwargs)
