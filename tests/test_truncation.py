"""The truncation trick: BigGAN's truncated normal against the paper's resampling definition and
the closed-form truncated-normal moments; StyleGAN's w̄ + ψ(w − w̄) against a float64 loop."""

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.truncation import truncate_w, truncated_normal


def reference_truncate(ws, w_avg, psi, cutoff):
    """w'[b, n] = w̄ + ψ (w[b, n] − w̄) for layers n < cutoff (all when None), in float64."""
    ws, w_avg = ws.double(), w_avg.double()
    out = ws.clone()
    for b in range(ws.shape[0]):
        for n in range(ws.shape[1]):
            if cutoff is None or n < cutoff:
                out[b, n] = w_avg + psi * (ws[b, n] - w_avg)
    return out


def reference_resampling(n, threshold, g):
    """BigGAN §3.1 word for word: draw N(0, 1), redraw every value outside ±threshold, repeat."""
    z = torch.randn(n, generator=g, dtype=torch.float64)
    while (outside := z.abs() > threshold).any():
        z[outside] = torch.randn(int(outside.sum()), generator=g, dtype=torch.float64)
    return z


def Phi(t):
    return 0.5 * (1 + math.erf(t / math.sqrt(2)))


def phi(t):
    return math.exp(-t * t / 2) / math.sqrt(2 * math.pi)


def truncated_cdf(t, tau):
    """F(t) = (Φ(t) − Φ(−τ)) / (2Φ(τ) − 1) for |t| ≤ τ: the CDF of N(0, 1) given |z| ≤ τ."""
    return (Phi(t) - Phi(-tau)) / (2 * Phi(tau) - 1)


def truncated_moments(tau):
    """E z² = 1 − 2τφ(τ)/Z and E z⁴ = 3 E z² − 2τ³φ(τ)/Z, Z = 2Φ(τ) − 1 (integration by parts)."""
    Z = 2 * Phi(tau) - 1
    m2 = 1 - 2 * tau * phi(tau) / Z
    return m2, 3 * m2 - 2 * tau**3 * phi(tau) / Z


def draw_ws(seed, b, n, d, dtype=torch.float32):
    g = generator(seed)
    return torch.randn(b, n, d, generator=g, dtype=dtype), torch.randn(d, generator=g, dtype=dtype)


# -- StyleGAN: truncation in W -------------------------------------------------------------------

@given(seed=seeds, b=st.integers(1, 4), n=st.integers(1, 8), d=st.integers(1, 5),
       psi=st.floats(-1.5, 1.5), cutoff=st.one_of(st.none(), st.integers(0, 10)))
@example(seed=0, b=2, n=6, d=3, psi=0.5, cutoff=3)
def test_matches_reference(seed, b, n, d, psi, cutoff):
    ws, w_avg = draw_ws(seed, b, n, d, torch.float64)
    torch.testing.assert_close(truncate_w(ws, w_avg, psi, cutoff),
                               reference_truncate(ws, w_avg, psi, cutoff))


@given(seed=seeds, b=st.integers(1, 4), n=st.integers(1, 8), d=st.integers(1, 5),
       cutoff=st.one_of(st.none(), st.integers(0, 10)))
def test_psi_one_is_the_identity_and_psi_zero_the_average(seed, b, n, d, cutoff):
    """ψ = 1 returns ws unchanged; ψ = 0 puts w̄ in every truncated layer, whatever the sample."""
    ws, w_avg = draw_ws(seed, b, n, d)
    assert torch.equal(truncate_w(ws, w_avg, 1.0, cutoff), ws)
    out = truncate_w(ws, w_avg, 0.0, cutoff)
    k = n if cutoff is None else min(cutoff, n)
    assert torch.equal(out[:, :k], w_avg.expand(b, k, d))
    assert torch.equal(out[:, k:], ws[:, k:])


@given(seed=seeds, n=st.integers(2, 10), cutoff=st.integers(0, 12), psi=st.floats(-1, 1))
def test_cutoff_leaves_later_layers_untouched(seed, n, cutoff, psi):
    """Layers at and after the cutoff keep their w exactly; layers before it move along the line to w̄."""
    ws, w_avg = draw_ws(seed, 3, n, 4, torch.float64)
    out = truncate_w(ws, w_avg, psi, cutoff)
    assert torch.equal(out[:, cutoff:], ws[:, cutoff:])
    # Before the cutoff, w' − w̄ = ψ (w − w̄): the same direction, scaled by ψ.
    torch.testing.assert_close(out[:, :cutoff] - w_avg, psi * (ws[:, :cutoff] - w_avg))


def test_truncate_w_rejects_bad_arguments():
    ws, w_avg = draw_ws(0, 2, 3, 4)
    with pytest.raises(ValueError, match=r"ws \(b, n, d\) and w_avg \(d,\)"):
        truncate_w(ws[0], w_avg, 0.5)
    with pytest.raises(ValueError, match=r"ws \(b, n, d\) and w_avg \(d,\)"):
        truncate_w(ws, w_avg[:3], 0.5)
    with pytest.raises(ValueError, match="cutoff must be >= 0"):
        truncate_w(ws, w_avg, 0.5, cutoff=-1)
    with pytest.raises(ValueError, match="finite"):
        truncate_w(ws, w_avg, math.nan)


# -- BigGAN: the truncated normal ----------------------------------------------------------------

@given(seed=seeds, threshold=st.floats(1e-3, 10.0), n=st.integers(1, 2000))
@example(seed=0, threshold=1e-3, n=2000)
@example(seed=0, threshold=50.0, n=2000)
def test_every_value_is_within_the_threshold(seed, threshold, n):
    """Every value lies in [−τ, τ], even for a tiny τ or one far in the tails."""
    z = truncated_normal((n,), threshold, generator=generator(seed))
    assert z.shape == (n,) and z.dtype == torch.float32
    assert bool((z.abs() <= threshold).all())


@pytest.mark.parametrize("tau", [0.25, 1.0, 2.0, 3.0])
def test_distribution_is_the_truncated_normal(tau):
    """The empirical CDF, variance and fourth moment match N(0, 1) given |z| ≤ τ in closed form."""
    n = 200_000
    z = truncated_normal((n,), tau, generator=generator(int(tau * 100)), dtype=torch.float64)
    # Kolmogorov–Smirnov: P(sup |F_n − F| > √(ln(2/α) / 2n)) ≤ α, here α = 1e-6.
    grid = torch.linspace(-tau, tau, 201, dtype=torch.float64)
    empirical = (z[:, None] <= grid).double().mean(0)
    exact = torch.tensor([truncated_cdf(t, tau) for t in grid.tolist()], dtype=torch.float64)
    assert (empirical - exact).abs().max().item() < math.sqrt(math.log(2e6) / (2 * n))
    m2, m4 = truncated_moments(tau)
    # The sample mean of z² has standard error √((E z⁴ − (E z²)²) / n); allow 5 of them.
    assert abs(z.square().mean().item() - m2) < 5 * math.sqrt((m4 - m2**2) / n)
    assert abs(z.pow(4).mean().item() - m4) < 5 * math.sqrt(105 / n)  # E z⁸ ≤ 105
    assert abs(z.mean().item()) < 5 * math.sqrt(m2 / n)


@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_inverse_cdf_draws_what_resampling_draws(tau):
    """The one-pass inverse CDF and the paper's redraw-until-inside loop give the same distribution."""
    n = 50_000
    ours = truncated_normal((n,), tau, generator=generator(1), dtype=torch.float64)
    theirs = reference_resampling(n, tau, generator(2))
    grid = torch.linspace(-tau, tau, 101, dtype=torch.float64)
    gap = ((ours[:, None] <= grid).double().mean(0) - (theirs[:, None] <= grid).double().mean(0))
    # Two-sample KS at α = 1e-6: √(ln(2/α) · (1/n + 1/n) / 2).
    assert gap.abs().max().item() < math.sqrt(math.log(2e6) / n)


@given(seed=seeds, threshold=st.one_of(st.floats(0.1, 4.0), st.just(math.inf)))
def test_determined_by_the_generator(seed, threshold):
    """The same generator seed gives the same draws; another seed gives other draws."""
    a = truncated_normal((4, 8), threshold, generator=generator(seed))
    b = truncated_normal((4, 8), threshold, generator=generator(seed))
    c = truncated_normal((4, 8), threshold, generator=generator(seed + 1))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_no_threshold_is_the_standard_normal():
    """threshold = ∞ (the default) is exactly torch.randn from the same generator."""
    z = truncated_normal((3, 5), generator=generator(7))
    assert torch.equal(z, torch.randn(3, 5, generator=generator(7)))


def test_truncated_normal_rejects_bad_thresholds():
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="threshold must be > 0"):
            truncated_normal((2,), bad)
