"""Fréchet distance and KID against float64 references written from their definitions."""

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.fid import feature_statistics, fid, frechet_distance, kid


def reference_sqrtm(a, iterations=60):
    """Denman–Beavers: Y ← (Y + Z⁻¹)/2, Z ← (Z + Y⁻¹)/2 from Y = A, Z = I converges to A^½."""
    y, z = a.clone(), torch.eye(a.shape[0], dtype=a.dtype)
    for _ in range(iterations):
        y, z = (y + torch.linalg.inv(z)) / 2, (z + torch.linalg.inv(y)) / 2
    return y


def reference_fid(a, b):
    """‖μa − μb‖² + Tr(Σa + Σb − 2(ΣaΣb)^½), the square root taken of the (non-symmetric) product."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a = sum(torch.outer(r - mu_a, r - mu_a) for r in a) / (len(a) - 1)
    cov_b = sum(torch.outer(r - mu_b, r - mu_b) for r in b) / (len(b) - 1)
    root = reference_sqrtm(cov_a @ cov_b)
    return ((mu_a - mu_b).square().sum() + torch.trace(cov_a + cov_b - 2 * root)).item()


def reference_mmd2(x, y):
    """Unbiased MMD² with k(x, y) = (xᵀy/d + 1)³, one kernel evaluation per pair."""
    m, d = x.shape
    k = lambda u, v: (torch.dot(u, v) / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return (xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / m**2).item()


def features(seed, n, d, shift=0.0, dtype=torch.float64):
    """n draws of one correlated Gaussian per d (the mixing matrix does not depend on the seed)."""
    mix = torch.randn(d, d, generator=generator(d), dtype=dtype) / d**0.5
    return torch.randn(n, d, generator=generator(seed), dtype=dtype) @ (torch.eye(d) + mix) + shift


@given(seed=seeds, d=st.integers(1, 6), n=st.integers(10, 30))
def test_fid_matches_reference(seed, d, n):
    a, b = features(seed, n, d), features(seed + 1, n + 3, d, shift=0.3)
    assert fid(a, b) == pytest.approx(reference_fid(a, b), rel=1e-7, abs=1e-9)


def test_statistics_match_torch_cov():
    x = features(0, 50, 7, dtype=torch.float32)
    mu, sigma = feature_statistics(x)
    assert mu.dtype == sigma.dtype == torch.float64
    torch.testing.assert_close(sigma, torch.cov(x.double().T))
    torch.testing.assert_close(mu, x.double().mean(0))


@given(seed=seeds, d=st.integers(1, 8))
def test_zero_for_identical_sets_and_symmetric(seed, d):
    """FID(a, a) = 0 and FID(a, b) = FID(b, a), even when n < d makes the covariances singular."""
    # zero eigenvalues of a singular Σ come out as ±1e-16·λ_max, their square roots as 1e-8·λ_max
    for n, rel in ((d + 20, 1e-11), (max(2, d // 2), 1e-7)):
        a, b = features(seed, n, d), features(seed + 1, n, d, shift=1.0)
        tol = rel * (a.var(0).sum() + b.var(0).sum()).item()
        assert fid(a, a) == pytest.approx(0.0, abs=tol)
        assert fid(a, b) == pytest.approx(fid(b, a), abs=tol)


@given(seed=seeds, d=st.integers(1, 8), delta=st.floats(-3, 3))
def test_translation_adds_the_squared_shift(seed, d, delta):
    """Translating one set by δ changes only the mean term: FID(a, a + δ) = ‖δ‖²."""
    a = features(seed, 40, d)
    shift = torch.full((d,), delta, dtype=torch.float64) * torch.linspace(0.5, 1.5, d)
    assert fid(a, a + shift) == pytest.approx(shift.square().sum().item(), rel=1e-9, abs=1e-9)


def test_frechet_of_known_gaussians():
    """Commuting covariances: the trace term is Σ (√λ1 − √λ2)², here 1 for variances 4 and 1."""
    mu = torch.zeros(2, dtype=torch.float64)
    value = frechet_distance(mu, torch.diag(torch.tensor([4.0, 1.0])).double(),
                             mu + 1, torch.eye(2, dtype=torch.float64))
    assert value == pytest.approx(2 + 1)


@given(seed=seeds, m=st.integers(2, 6), d=st.integers(1, 4))
def test_kid_matches_reference(seed, m, d):
    x, y = features(seed, m, d), features(seed + 1, m, d, shift=0.2)
    mean, std = kid(x, y, subsets=1, subset_size=m, generator=generator(seed))
    assert mean == pytest.approx(reference_mmd2(x, y), rel=1e-9, abs=1e-12)
    assert std == 0.0


def test_kid_is_near_zero_for_one_distribution_and_positive_for_shifted():
    """For two samples of one distribution |KID| is small against its spread; a shifted sample scores far above it."""
    a, b = features(1, 1500, 16), features(2, 1500, 16)
    mean, std = kid(a, b, subsets=50, subset_size=300, generator=generator(0))
    assert abs(mean) < std
    shifted_mean, shifted_std = kid(a, b + 0.5, subsets=50, subset_size=300, generator=generator(0))
    assert shifted_mean > 5 * shifted_std and shifted_mean > 10 * std


@given(seed=seeds)
def test_kid_ignores_the_order_of_the_rows(seed):
    """With subsets as large as the sets, every subset is all rows, so neither row order nor the number of subsets matters."""
    a, b = features(seed, 12, 3), features(seed + 1, 12, 3, shift=0.5)
    perm = torch.randperm(12, generator=generator(seed))
    mean, spread = kid(a, b, subsets=3, subset_size=10_000, generator=generator(seed))
    assert spread == pytest.approx(0.0, abs=1e-12)
    permuted, _ = kid(a[perm], b.flip(0), subsets=1, subset_size=12, generator=generator(seed + 1))
    assert permuted == pytest.approx(mean, rel=1e-12, abs=1e-14)


def test_kid_is_deterministic_for_a_seed():
    a, b = features(3, 60, 4), features(4, 50, 4)
    assert kid(a, b, subsets=5, subset_size=20, generator=generator(1)) == kid(
        a, b, subsets=5, subset_size=20, generator=generator(1))
    assert kid(a, b, subsets=5, subset_size=20, generator=generator(1)) != kid(
        a, b, subsets=5, subset_size=20, generator=generator(2))


@pytest.mark.parametrize("a, b", [((1, 3), (5, 3)), ((5, 3), (5, 4))])
def test_rejects_bad_feature_sets(a, b):
    with pytest.raises(ValueError, match="n >= 2|one d"):
        fid(torch.zeros(a), torch.zeros(b))
