"""GAN losses against the papers' formulas written out in float64 (and torch's BCE as an oracle)."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.losses import (LOSSES, hinge_d_loss, hinge_g_loss, logistic_d_loss, logistic_g_loss,
                            lsgan_d_loss, lsgan_g_loss, wgan_d_loss, wgan_g_loss)


def mean(values):
    return sum(values) / len(values)


def sigmoid(t):
    return 1 / (1 + math.exp(-t))


# The papers' formulas, one logit at a time, in Python floats (double precision).
REFERENCE = {
    "wgan": (lambda r, f: mean(f) - mean(r) + 0.001 * mean([v * v for v in r]),
             lambda f: -mean(f)),
    "lsgan": (lambda r, f: 0.5 * mean([(v - 1) ** 2 for v in r]) + 0.5 * mean([v * v for v in f]),
              lambda f: 0.5 * mean([(v - 1) ** 2 for v in f])),
    "logistic": (lambda r, f: -mean([math.log(sigmoid(v)) for v in r])
                 - mean([math.log(1 - sigmoid(v)) for v in f]),
                 lambda f: -mean([math.log(sigmoid(v)) for v in f])),
    "hinge": (lambda r, f: mean([max(0.0, 1 - v) for v in r]) + mean([max(0.0, 1 + v) for v in f]),
              lambda f: -mean(f)),
}


def logits(seed, n, scale=3.0):
    return torch.randn(n, generator=generator(seed), dtype=torch.float64) * scale


@given(seed=seeds, n_real=st.integers(1, 8), n_fake=st.integers(1, 8),
       name=st.sampled_from(sorted(LOSSES)))
def test_matches_reference(seed, n_real, n_fake, name):
    real, fake = logits(seed, n_real), logits(seed + 1, n_fake)
    d_loss, g_loss = LOSSES[name]
    d_ref, g_ref = REFERENCE[name]
    expected_d = torch.tensor(d_ref(real.tolist(), fake.tolist()), dtype=torch.float64)
    expected_g = torch.tensor(g_ref(fake.tolist()), dtype=torch.float64)
    torch.testing.assert_close(d_loss(real, fake), expected_d)
    torch.testing.assert_close(g_loss(fake), expected_g)
    # Any logit shape gives the same scalar: (b,), (b, 1) and float32 inputs.
    torch.testing.assert_close(d_loss(real[:, None], fake[:, None]), expected_d)
    torch.testing.assert_close(d_loss(real.float(), fake.float()).double(), expected_d,
                               rtol=1e-5, atol=1e-5)


@given(seed=seeds, n=st.integers(1, 8))
def test_logistic_is_binary_cross_entropy(seed, n):
    """The logistic D loss is the cross-entropy of classifying reals as 1 and fakes as 0, and stays finite for huge logits."""
    real, fake = logits(seed, n, scale=50.0), logits(seed + 1, n, scale=50.0)
    bce = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
           + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    torch.testing.assert_close(logistic_d_loss(real, fake), bce)
    torch.testing.assert_close(logistic_g_loss(fake),
                               F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake)))
    assert torch.isfinite(logistic_d_loss(real * 1e3, fake * 1e3))


@given(seed=seeds, n=st.integers(1, 8))
def test_logistic_gradients_push_reals_up_and_fakes_down(seed, n):
    """Gradient descent on the logistic D loss raises every real logit and lowers every fake logit."""
    real, fake = logits(seed, n).requires_grad_(), logits(seed + 1, n).requires_grad_()
    logistic_d_loss(real, fake).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()


def test_non_saturating_g_loss_keeps_its_gradient_when_d_rejects_fakes():
    """When D confidently rejects the fakes, the non-saturating G loss still has gradient ≈ −1 per sample while log(1 − σ(D)) has ≈ 0."""
    fake = torch.full((4,), -20.0, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(logistic_g_loss(fake), fake)
    torch.testing.assert_close(grad, torch.full_like(fake, -1 / 4), rtol=1e-6, atol=0)
    (saturating,) = torch.autograd.grad(-F.softplus(fake).mean(), fake)  # E[log(1 − σ(D))]
    assert saturating.abs().max() < 1e-8


@given(seed=seeds, n=st.integers(1, 8))
def test_hinge_is_zero_once_margins_hold(seed, n):
    """The hinge D loss and its gradient vanish once every real logit is ≥ 1 and every fake logit ≤ −1."""
    real = (1 + logits(seed, n).abs()).requires_grad_()
    fake = (-1 - logits(seed + 1, n).abs()).requires_grad_()
    loss = hinge_d_loss(real, fake)
    loss.backward()
    assert loss.item() == 0.0
    assert not real.grad.any() and not fake.grad.any()
    inside = torch.full_like(real, 0.5)  # a logit inside the margin is penalised again
    assert hinge_d_loss(inside, fake).item() > 0 and hinge_d_loss(real, -inside).item() > 0


@given(seed=seeds, n=st.integers(1, 8), drift=st.sampled_from([0.0, 0.001, 0.5]))
def test_drift_term_is_drift_times_mean_square_of_real_logits(seed, n, drift):
    """The WGAN D loss minus its drift-free version is exactly ε_drift · E[D(real)²]."""
    real, fake = logits(seed, n), logits(seed + 1, n)
    extra = wgan_d_loss(real, fake, drift) - wgan_d_loss(real, fake, drift=0.0)
    expected = drift * mean([v * v for v in real.tolist()])
    torch.testing.assert_close(extra, torch.tensor(expected, dtype=torch.float64))


def test_lsgan_is_zero_at_its_targets():
    """LSGAN's D loss vanishes when D scores reals 1 and fakes 0; its G loss when fakes score 1."""
    ones, zeros = torch.ones(3), torch.zeros(3)
    assert lsgan_d_loss(ones, zeros).item() == 0.0 and lsgan_g_loss(ones).item() == 0.0
    assert lsgan_d_loss(zeros, ones).item() == 1.0


def test_registry_pairs_d_and_g_losses():
    assert LOSSES == {"wgan": (wgan_d_loss, wgan_g_loss), "lsgan": (lsgan_d_loss, lsgan_g_loss),
                      "logistic": (logistic_d_loss, logistic_g_loss),
                      "hinge": (hinge_d_loss, hinge_g_loss)}


def test_rejects_negative_drift():
    with pytest.raises(ValueError, match="drift must be >= 0"):
        wgan_d_loss(torch.zeros(2), torch.zeros(2), drift=-0.1)
