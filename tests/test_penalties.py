"""WGAN-GP and R1 penalties against analytic gradients and per-sample Jacobians (float64)."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.penalties import gradient_penalty, r1_penalty

images = st.tuples(st.integers(1, 4), st.integers(1, 2), st.integers(1, 3))  # (b, c, size)


def randn(*shape, seed):
    return torch.randn(*shape, generator=generator(seed), dtype=torch.float64)


def mlp_critic(w1, w2):
    """A tiny nonlinear critic D(x) = softplus(vec(x) W₁) w₂ that treats samples independently."""
    return lambda x: torch.nn.functional.softplus(x.flatten(1) @ w1) @ w2


def per_sample_gradients(critic, x):
    """∇_x D(x) one sample at a time with torch.autograd.functional.jacobian (the reference)."""
    return torch.stack([torch.autograd.functional.jacobian(lambda xi: critic(xi[None])[0], xi)
                        for xi in x])


@given(seed=seeds, shape=images, target=st.sampled_from([0.0, 1.0, 750.0]))
def test_gradient_penalty_matches_reference(seed, shape, target):
    b, c, size = shape
    real, fake = randn(b, c, size, size, seed=seed), randn(b, c, size, size, seed=seed + 1)
    t = torch.rand(b, generator=generator(seed + 2), dtype=torch.float64)
    n = c * size * size
    critic = mlp_critic(randn(n, 5, seed=seed + 3), randn(5, seed=seed + 4))
    x_hat = torch.stack([(1 - t[i]) * real[i] + t[i] * fake[i] for i in range(b)])
    norms = per_sample_gradients(critic, x_hat).flatten(1).norm(dim=1)
    expected = ((norms - target) ** 2).mean()
    torch.testing.assert_close(gradient_penalty(critic, real, fake, t, target=target), expected)


@given(seed=seeds, shape=images, target=st.sampled_from([0.5, 1.0, 3.0]))
def test_gradient_penalty_of_a_linear_critic(seed, shape, target):
    """For a linear critic D(x) = ⟨a, x⟩ the penalty is (‖a‖ − target)² wherever the interpolates lie."""
    b, c, size = shape
    a = randn(c, size, size, seed=seed)
    real, fake = randn(b, c, size, size, seed=seed + 1), randn(b, c, size, size, seed=seed + 2)
    t = torch.rand(b, generator=generator(seed + 3), dtype=torch.float64)
    penalty = gradient_penalty(lambda x: (x * a).sum((1, 2, 3)), real, fake, t, target=target)
    torch.testing.assert_close(penalty, (a.norm() - target) ** 2)


@given(seed=seeds, shape=images)
def test_gradient_penalty_at_reals_with_target_zero_is_r1(seed, shape):
    """With t = 0 and target 0 the gradient penalty evaluates ‖∇D‖² at the reals, which is R1."""
    b, c, size = shape
    critic = mlp_critic(randn(c * size * size, 4, seed=seed), randn(4, seed=seed + 1))
    real = randn(b, c, size, size, seed=seed + 2)
    gp = gradient_penalty(critic, real, randn(b, c, size, size, seed=seed + 3),
                          torch.zeros(b, dtype=torch.float64), target=0.0)
    reals = real.clone().requires_grad_(True)
    torch.testing.assert_close(gp, r1_penalty(critic(reals), reals))


def test_gradient_penalty_trains_d_only():
    """The penalty sends gradients to D's weights and none to the generator that made the fakes."""
    w_g = randn(3, 8, seed=1).requires_grad_(True)
    w1, w2 = randn(8, 4, seed=2).requires_grad_(True), randn(4, seed=3).requires_grad_(True)
    fake = (randn(2, 3, seed=4) @ w_g).view(2, 2, 2, 2)
    penalty = gradient_penalty(mlp_critic(w1, w2), randn(2, 2, 2, 2, seed=5), fake,
                               torch.full((2,), 0.5, dtype=torch.float64))
    g_grad, d_grad = torch.autograd.grad(penalty, [w_g, w1], allow_unused=True)
    assert g_grad is None and d_grad is not None and d_grad.abs().sum() > 0


@given(seed=seeds, shape=images)
def test_r1_of_a_quadratic_critic(seed, shape):
    """For D(x) = ½ xᵀAx + bᵀx the penalty is the batch mean of ‖½(A + Aᵀ)x + b‖²."""
    batch, c, size = shape
    n = c * size * size
    A, b = randn(n, n, seed=seed), randn(n, seed=seed + 1)
    x = randn(batch, c, size, size, seed=seed + 2).requires_grad_(True)
    flat = x.flatten(1)
    logits = 0.5 * torch.einsum("bi,ij,bj->b", flat, A, flat) + flat @ b
    analytic = flat.detach() @ (0.5 * (A + A.T)).T + b
    torch.testing.assert_close(r1_penalty(logits, x), analytic.square().sum(1).mean())


@given(seed=seeds, shape=images)
def test_r1_matches_reference(seed, shape):
    b, c, size = shape
    critic = mlp_critic(randn(c * size * size, 5, seed=seed), randn(5, seed=seed + 1))
    reals = randn(b, c, size, size, seed=seed + 2).requires_grad_(True)
    grads = per_sample_gradients(critic, reals.detach())
    expected = grads.square().flatten(1).sum(1).mean()
    torch.testing.assert_close(r1_penalty(critic(reals), reals), expected)
    # torch.func as a second oracle: vmap over samples of the gradient of one sample's logit.
    func_grads = torch.func.vmap(torch.func.grad(lambda xi: critic(xi[None])[0]))(reals.detach())
    torch.testing.assert_close(func_grads, grads)


def test_gradcheck_and_gradgradcheck():
    """The optimizer differentiates both penalties once more: check first and second derivatives."""
    real, fake = randn(2, 1, 2, 2, seed=1), randn(2, 1, 2, 2, seed=2)
    t = torch.tensor([0.3, 0.8], dtype=torch.float64)
    w1, w2 = randn(4, 3, seed=3).requires_grad_(True), randn(3, seed=4).requires_grad_(True)

    def gp(w1, w2):
        return gradient_penalty(mlp_critic(w1, w2), real, fake, t)

    def r1(w1, w2, reals):
        return r1_penalty(mlp_critic(w1, w2)(reals), reals)

    reals = real.clone().requires_grad_(True)
    for fn, args in [(gp, (w1, w2)), (r1, (w1, w2, reals))]:
        assert torch.autograd.gradcheck(fn, args)
        assert torch.autograd.gradgradcheck(fn, args)


def test_r1_requires_reals_with_grad():
    reals = torch.zeros(2, 1, 2, 2)
    with pytest.raises(ValueError, match="requires_grad_"):
        r1_penalty(reals.sum((1, 2, 3)), reals)


@pytest.mark.parametrize("fake_shape, t_shape, target, message", [
    ((2, 1, 2, 2), (2, 1), 1.0, r"t must have shape \(batch,\) = \(2,\)"),
    ((3, 1, 2, 2), (2,), 1.0, "real and fake must have the same shape"),
    ((2, 1, 2, 2), (2,), -1.0, "target must be >= 0"),
])
def test_gradient_penalty_rejects_bad_arguments(fake_shape, t_shape, target, message):
    with pytest.raises(ValueError, match=message):
        gradient_penalty(lambda x: x.sum((1, 2, 3)), torch.zeros(2, 1, 2, 2),
                         torch.zeros(fake_shape), torch.zeros(t_shape), target=target)
