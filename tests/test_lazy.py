"""Lazy regularization (StyleGAN2 §3.1, Appendix B) checked with torch's own Adam."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nanogan.lazy import is_due, lazy_adam_hyperparameters

intervals = st.integers(1, 32)
betas = st.tuples(st.floats(0.0, 0.99), st.floats(0.5, 0.999))


def reference_hyperparameters(lr, betas, k):
    """Appendix B: c = k / (k + 1), λ' = c·λ, β' = β^c, written with exp/log."""
    c = k / (k + 1)
    return lr * c, tuple(0.0 if b == 0 else math.exp(c * math.log(b)) for b in betas)


def adam_moments_after(grads, lr, betas):
    """Adam's (exp_avg, exp_avg_sq) for one scalar parameter after the given gradients."""
    p = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([p], lr=lr, betas=betas)
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    state = opt.state[p]
    return state["exp_avg"].item(), state["exp_avg_sq"].item(), p.item()


@given(lr=st.floats(1e-4, 1e-1), betas=betas, k=intervals)
def test_matches_reference(lr, betas, k):
    lr2, betas2 = lazy_adam_hyperparameters(lr, betas, k)
    ref_lr, ref_betas = reference_hyperparameters(lr, betas, k)
    assert lr2 == pytest.approx(ref_lr)
    assert betas2 == pytest.approx(ref_betas)


@given(betas=betas, k=intervals)
def test_moments_decay_over_k_plus_one_steps_as_over_k(betas, k):
    """In Adam with the lazy betas a gradient's weight in both moments after k + 1 more steps equals its weight after k steps with the original betas."""
    _, lazy_betas = lazy_adam_hyperparameters(1e-3, betas, k)
    m0, v0, _ = adam_moments_after([1.0], 1e-3, lazy_betas)
    m1, v1, _ = adam_moments_after([1.0] + [0.0] * (k + 1), 1e-3, lazy_betas)
    n0, w0, _ = adam_moments_after([1.0], 1e-3, betas)
    n1, w1, _ = adam_moments_after([1.0] + [0.0] * k, 1e-3, betas)
    assert v1 / v0 == pytest.approx(w1 / w0, rel=1e-9)
    if betas[0] > 0:
        assert m1 / m0 == pytest.approx(n1 / n0, rel=1e-9)


@given(lr=st.floats(1e-4, 1e-1), betas=betas, k=intervals, sign=st.sampled_from([-1.0, 1.0]))
def test_k_plus_one_lazy_steps_travel_as_far_as_k_steps(lr, betas, k, sign):
    """Under a constant gradient, k + 1 Adam steps with λ' = cλ move the parameter exactly as far as k steps with λ."""
    lazy_lr, lazy_betas = lazy_adam_hyperparameters(lr, betas, k)
    *_, lazy = adam_moments_after([sign] * (k + 1), lazy_lr, lazy_betas)
    *_, eager = adam_moments_after([sign] * k, lr, betas)
    assert lazy == pytest.approx(eager, rel=1e-6)
    assert abs(eager) == pytest.approx(k * lr, rel=1e-6)


def test_not_lazy_and_large_intervals_keep_the_hyperparameters():
    """Interval 0 or None returns λ and β unchanged, and as k → ∞ the lazy values tend to them."""
    for interval in (0, None):
        assert lazy_adam_hyperparameters(2e-3, (0.0, 0.99), interval) == (2e-3, (0.0, 0.99))
    lr, (b1, b2) = lazy_adam_hyperparameters(2e-3, (0.5, 0.99), 10**7)
    assert (lr, b1, b2) == pytest.approx((2e-3, 0.5, 0.99), rel=1e-6)


@pytest.mark.parametrize("k", [2, 4, 8])
def test_regularizer_times_k_follows_the_eager_trajectory(k):
    """On a quadratic, a k-times regularizer step every k SGD steps follows the every-step trajectory up to O(η²)."""
    H = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    target = torch.tensor([1.0, -2.0], dtype=torch.float64)

    def run(lr, scale, steps=4 * k):
        eager = lazy = torch.tensor([1.0, 1.0], dtype=torch.float64)
        for step in range(steps):
            eager = eager - lr * ((eager - target) + H @ eager)  # main loss + regularizer
            lazy = lazy - lr * (lazy - target)  # main loss only
            if is_due(step, k):
                lazy = lazy - lr * scale * (H @ lazy)  # the lazy regularizer step
        return (eager - lazy).norm().item()

    ratio = run(1e-3, k) / run(5e-4, k)
    assert 3.5 < ratio < 4.5  # halving η quarters the gap: second order
    assert run(1e-3, 1) > 10 * run(1e-3, k)  # without the factor k the gap is first order


def test_is_due_counts_from_zero():
    assert [is_due(s, 4) for s in range(6)] == [True, False, False, False, True, False]
    assert not any(is_due(s, 0) for s in range(5)) and not is_due(0, None)
    with pytest.raises(ValueError, match="interval"):
        lazy_adam_hyperparameters(1e-3, (0.0, 0.99), -1)
