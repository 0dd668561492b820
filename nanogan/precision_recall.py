"""Improved precision and recall: how much of the generated set lies on the real manifold, and how
much of the real set lies on the generated one, each manifold a union of k-NN balls; density and
coverage: the same balls, but only the real set's.

Paper: Kynkäänniemi, Karras, Laine, Lehtinen, Aila (2019), "Improved Precision and Recall Metric
for Assessing Generative Models", arXiv:1904.06991, §2 (k = 3; VGG-16 features there, any
extractor here). StyleGAN2 (arXiv:1912.04958) reports them in Table 1. Naeem, Oh, Uh, Choi, Yoo
(2020), "Reliable Fidelity and Diversity Metrics for Generative Models", arXiv:2002.09797, §3
(density and coverage, k = 5).

    f(φ, Φ) = 1 if ‖φ − φ'‖₂ ≤ ‖φ' − NN_k(φ', Φ)‖₂ for at least one φ' ∈ Φ, else 0
    precision = 1/|Φ_g| Σ_{φ_g ∈ Φ_g} f(φ_g, Φ_r),   recall = 1/|Φ_r| Σ_{φ_r ∈ Φ_r} f(φ_r, Φ_g)
    density  = 1/(kM) Σ_j Σ_i 1[Y_j ∈ B(X_i, NND_k(X_i))]
    coverage = 1/N Σ_i 1[∃ j: Y_j ∈ B(X_i, NND_k(X_i))]     (X_1..X_N real, Y_1..Y_M fake)

NN_k(φ', Φ) is the k-th nearest neighbour of φ' in Φ other than φ' itself, NND_k its distance.
Recall counts reals inside the *fake* balls, so one fake outlier, whose ball is huge, can cover
many reals; coverage asks instead whether a real's own ball holds a fake, and density counts how
many real balls hold each fake (1 on average when fakes are distributed like the reals).
Pairwise distances are computed `batch_size` rows at a time, so memory is batch_size × n,
never n × n.

Shapes: features (n, d) -> radii (n,); real (n, d), fake (m, d) -> {"precision", "recall"} or
{"density", "coverage"}, or per real (`per_real`) {"recall", "coverage"} of bool (n,).
Lesson: lessons/30_evaluation.md
"""

from __future__ import annotations

import torch


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # ‖a‖² + ‖b‖² − 2aᵀb: one matrix product instead of an (n, m, d) difference tensor
    d2 = a.square().sum(1, keepdim=True) + b.square().sum(1) - 2 * a @ b.T
    return d2.clamp_min(0)  # cancellation can leave tiny negatives


def _as_features(features: torch.Tensor, k: int, what: str = "features") -> torch.Tensor:
    if features.dim() != 2 or features.shape[0] <= k or k < 1:
        raise ValueError(f"need {what} (n, d) with n > k >= 1, got {tuple(features.shape)} "
                         f"and k = {k}")
    return features if features.dtype == torch.float64 else features.float()


def _as_pair(real: torch.Tensor, fake: torch.Tensor, batch_size: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    if real.shape[1] != fake.shape[1] or batch_size < 1:
        raise ValueError(f"need one feature size and batch_size >= 1, got {real.shape[1]}, "
                         f"{fake.shape[1]} and {batch_size}")
    return real, fake.to(real.dtype)


def _squared_radii(features: torch.Tensor, k: int, batch_size: int) -> torch.Tensor:
    # the (k+1)-th smallest distance of a row counts the row itself (distance 0) first
    return torch.cat([_squared_distances(rows, features).kthvalue(k + 1, dim=1).values
                      for rows in features.split(batch_size)])


def manifold_radii(features: torch.Tensor, k: int = 3, *, batch_size: int = 1024) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row: the radius of its ball."""
    return _squared_radii(_as_features(features, k), k, batch_size).sqrt()


def _inside(points: torch.Tensor, centres: torch.Tensor, squared_radii: torch.Tensor,
            batch_size: int) -> torch.Tensor:
    return torch.cat([(_squared_distances(rows, centres) <= squared_radii).any(dim=1)
                      for rows in points.split(batch_size)])


def _covered(real: torch.Tensor, fake: torch.Tensor, real_squared_radii: torch.Tensor,
             batch_size: int) -> torch.Tensor:
    # a real ball holds some fake iff the nearest fake lies within its radius
    nearest = torch.cat([_squared_distances(rows, fake).amin(dim=1)
                         for rows in real.split(batch_size)])
    return nearest <= real_squared_radii


def precision_recall(real_features: torch.Tensor, fake_features: torch.Tensor, *, k: int = 3,
                     batch_size: int = 1024) -> dict[str, float]:
    """Fakes inside the real k-NN manifold ("precision"), reals inside the fake one ("recall")."""
    real, fake = _as_pair(_as_features(real_features, k), _as_features(fake_features, k),
                          batch_size)
    real_radii = _squared_radii(real, k, batch_size)
    fake_radii = _squared_radii(fake, k, batch_size)
    return {"precision": _inside(fake, real, real_radii, batch_size).double().mean().item(),
            "recall": _inside(real, fake, fake_radii, batch_size).double().mean().item()}


def density_coverage(real_features: torch.Tensor, fake_features: torch.Tensor, *, k: int = 5,
                     batch_size: int = 1024) -> dict[str, float]:
    """Real k-NN balls per fake, over k ("density"); reals whose ball holds a fake ("coverage")."""
    real = _as_features(real_features, k)
    if fake_features.dim() != 2 or len(fake_features) < 1:  # fakes need no neighbours here
        raise ValueError(f"need fake features (m, d) with m >= 1, got "
                         f"{tuple(fake_features.shape)}")
    real, fake = _as_pair(real, fake_features, batch_size)
    real_radii = _squared_radii(real, k, batch_size)
    # density: for each fake, how many real balls hold it
    held = sum((_squared_distances(rows, real) <= real_radii).sum().item()
               for rows in fake.split(batch_size))
    return {"density": held / (k * len(fake)),
            "coverage": _covered(real, fake, real_radii, batch_size).double().mean().item()}


def per_real(real_features: torch.Tensor, fake_features: torch.Tensor, *, recall_k: int = 3,
             coverage_k: int = 5, batch_size: int = 1024) -> dict[str, torch.Tensor]:
    """For each real, bool (n,): inside the fake k-NN manifold ("recall", whose mean is recall)
    and its own k-NN ball holding a fake ("coverage", whose mean is coverage). Grouped by the
    reals' labels they say which classes a generator misses (benchmarks/variety.py)."""
    real = _as_features(real_features, coverage_k, "real features (k: coverage_k)")
    fake = _as_features(fake_features, recall_k, "fake features (k: recall_k)")
    real, fake = _as_pair(real, fake, batch_size)
    return {"recall": _inside(real, fake, _squared_radii(fake, recall_k, batch_size), batch_size),
            "coverage": _covered(real, fake, _squared_radii(real, coverage_k, batch_size),
                                 batch_size)}
