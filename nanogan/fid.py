"""Fréchet distance between Gaussians fitted to two feature sets (FID), and the kernel inception
distance (KID), an unbiased alternative.

Paper: Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter (2017), "GANs Trained by a Two
Time-Scale Update Rule Converge to a Local Nash Equilibrium", arXiv:1706.08500 (the Fréchet
distance of the two fitted Gaussians, the paper's FID definition); Bińkowski, Sutherland, Arbel,
Gretton (2018), "Demystifying MMD GANs", arXiv:1801.01401 (KID: the unbiased MMD² estimator with
the cubic polynomial kernel, averaged over subsets; 100 subsets of 1000 in their code).

    d² = ‖μ_1 − μ_2‖² + Tr(Σ_1 + Σ_2 − 2(Σ_1Σ_2)^½)
    KID = Σ_{i≠j} k(x_i, x_j)/(m(m−1)) + Σ_{i≠j} k(y_i, y_j)/(m(m−1)) − 2 Σ_{i,j} k(x_i, y_j)/m²,
    k(x, y) = (xᵀy / d + 1)³

Tr((Σ_1Σ_2)^½) is the sum of the square roots of the eigenvalues of Σ_1Σ_2. That product is not
symmetric (a general matrix square root of it, as scipy's sqrtm takes, can return complex parts
and needs ε·I added when n < d), but it is similar to the symmetric positive semi-definite
M = Σ_1^½ Σ_2 Σ_1^½ (Σ_1Σ_2 = Σ_1^½ M Σ_1^−½), so eigvalsh(M) gives the same eigenvalues,
real and ≥ 0 up to round-off, in float64.

Shapes: features (n, d) -> mu (d,), sigma (d, d) float64 -> distance float.
Lesson: lessons/30_evaluation.md
"""

from __future__ import annotations

import torch


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (d,) and unbiased covariance (d, d) of the rows, in float64."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"need features (n, d) with n >= 2, got {tuple(features.shape)}")
    x = features.double()
    mu = x.mean(0)
    centred = x - mu
    return mu, centred.T @ centred / (x.shape[0] - 1)


def _sqrt_psd(sigma: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(sigma)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T  # round-off can make λ slightly < 0


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor,
                     sigma2: torch.Tensor) -> float:
    """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½), in float64."""
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != 2 * mu1.shape:
        raise ValueError(f"need mu (d,) and sigma (d, d) of one d, got {tuple(mu1.shape)}, "
                         f"{tuple(sigma1.shape)}, {tuple(mu2.shape)}, {tuple(sigma2.shape)}")
    mu1, sigma1, mu2, sigma2 = (t.double() for t in (mu1, sigma1, mu2, sigma2))
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    middle = (middle + middle.T) / 2  # symmetric in exact arithmetic; make it so in floats
    trace_sqrt = torch.linalg.eigvalsh(middle).clamp_min(0).sqrt().sum()
    distance = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt
    return distance.item()


def fid(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets."""
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


def _mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, degree: int) -> torch.Tensor:
    m, d = x.shape
    k_xx = (x @ x.T / d + 1) ** degree
    k_yy = (y @ y.T / d + 1) ** degree
    k_xy = (x @ y.T / d + 1) ** degree
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum())
    return within / (m * (m - 1)) - 2 * k_xy.sum() / m**2


def kid(features_a: torch.Tensor, features_b: torch.Tensor, *, subsets: int = 100,
        subset_size: int = 1000, degree: int = 3,
        generator: torch.Generator | None = None) -> tuple[float, float]:
    """Mean and standard deviation over random subsets of the unbiased polynomial-kernel MMD²."""
    if features_a.dim() != 2 or features_b.dim() != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"need features (n, d) of one d, got {tuple(features_a.shape)} and "
                         f"{tuple(features_b.shape)}")
    m = min(subset_size, features_a.shape[0], features_b.shape[0])
    if m < 2 or subsets < 1 or degree < 1:
        raise ValueError(f"need subsets of >= 2 rows, subsets >= 1 and degree >= 1, got "
                         f"{m}, {subsets}, {degree}")
    if generator is None:
        generator = torch.Generator().manual_seed(int(torch.randint(2**62, ()).item()))
    a, b = features_a.double(), features_b.double()
    values = []
    for _ in range(subsets):  # each subset: m rows of each set, drawn without replacement
        rows_a = torch.randperm(a.shape[0], generator=generator)[:m].to(a.device)
        rows_b = torch.randperm(b.shape[0], generator=generator)[:m].to(b.device)
        values.append(_mmd2_unbiased(a[rows_a], b[rows_b], degree))
    values = torch.stack(values)
    return values.mean().item(), values.std(unbiased=False).item()
