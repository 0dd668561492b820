"""Lazy regularization: evaluate a regularizer every k minibatches instead of every one.

Paper: Karras et al. (2020), "Analyzing and Improving the Image Quality of StyleGAN",
arXiv:1912.04958, §3.1 and Appendix B. The regularizer (R1 on D with k = 16, path length on
G with k = 8) runs as its own optimizer step once every k iterations, multiplied by k so that its
gradient keeps its overall size. The main loss and the regularizer share one Adam state, so
Adam now takes k + 1 steps where it took k; with c = k / (k + 1) its hyperparameters become

    λ' = c · λ,   β₁' = β₁^c,   β₂' = β₂^c

so that k + 1 steps move as far as k did (k + 1)·cλ = kλ, and a gradient's weight in the
moments decays over k + 1 steps exactly as it did over k: (β^c)^(k+1) = β^k.

Shapes: none (scalars only).
Lesson: lessons/14_r1_and_lazy.md
"""

from __future__ import annotations


def lazy_adam_hyperparameters(lr: float, betas: tuple[float, float],
                              interval: int | None) -> tuple[float, tuple[float, float]]:
    """Adam's (λ', (β₁', β₂')) for a regularizer run every `interval` steps (0, None: as given)."""
    if interval is None or interval == 0:
        return lr, (betas[0], betas[1])
    if interval < 0:
        raise ValueError(f"interval must be >= 0 (0 or None: not lazy), got {interval}")
    c = interval / (interval + 1)
    return lr * c, (betas[0] ** c, betas[1] ** c)


def is_due(step: int, interval: int | None) -> bool:
    """Whether the regularizer runs at `step` (counted from 0): every `interval`-th step, from 0."""
    return bool(interval) and interval > 0 and step % interval == 0
