"""Self-attention (SAGAN Eq. 1–3, BigGAN's non-local block) against a per-position float64 loop."""

import math

import pytest
import torch
from einops import rearrange
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.attention import SelfAttention, self_attention

even = st.sampled_from([2, 4, 6])


def reference(x, w_theta, w_phi, w_g, w_o, gamma):
    """Eq. 1–3 one query position j at a time, keys and values max-pooled over 2×2 windows, float64."""
    x = x.double()
    b, c, h, w = x.shape
    W_t, W_p, W_g, W_o = (m.double()[:, :, 0, 0] for m in (w_theta, w_phi, w_g, w_o))
    y = torch.empty_like(x)
    for n in range(b):
        keys, values = [], []
        for p in range(0, h, 2):
            for q in range(0, w, 2):
                window = x[n, :, p : p + 2, q : q + 2].reshape(c, 4)
                keys.append((W_p @ window).max(dim=1).values)  # pool after the 1×1 conv
                values.append((W_g @ window).max(dim=1).values)
        for r in range(h):
            for s in range(w):
                query = W_t @ x[n, :, r, s]
                scores = [math.exp((k @ query).item()) for k in keys]  # s_ij = φ(x_i)ᵀθ(x_j)
                total = sum(scores)
                mixed = sum(score / total * v for score, v in zip(scores, values))
                y[n, :, r, s] = gamma * (W_o @ mixed) + x[n, :, r, s]
    return y


def weights(c, seed, dtype=torch.float64):
    g = generator(seed)
    shapes = [(c // 8, c), (c // 8, c), (c // 2, c), (c, c // 2)]
    return [torch.randn(*s, 1, 1, generator=g, dtype=dtype) / math.sqrt(s[1]) for s in shapes]


@given(seed=seeds, b=st.integers(1, 2), c=st.sampled_from([8, 16]), h=even, w=even,
       gamma=st.floats(-2, 2))
def test_matches_reference(seed, b, c, h, w, gamma):
    x = torch.randn(b, c, h, w, generator=generator(seed + 1), dtype=torch.float64)
    params = weights(c, seed)
    torch.testing.assert_close(self_attention(x, *params, torch.tensor(gamma, dtype=x.dtype)),
                               reference(x, *params, gamma))


@given(seed=seeds, c=st.sampled_from([8, 16]), h=even, w=even)
def test_module_is_the_function_with_normalized_weights(seed, c, h, w):
    """SelfAttention applies Eq. 1–3 to the spectrally normalized θ, φ, g and W_o."""
    with torch.random.fork_rng(devices=[]):
        block = SelfAttention(c).double().eval()
    with torch.no_grad():  # every weight from the generator
        for conv, weight in zip((block.theta, block.phi, block.g, block.o), weights(c, seed + 1)):
            conv.weight.copy_(weight)
            conv.reset_power_iteration()
        block.gamma.fill_(0.7)
    x = torch.randn(2, c, h, w, generator=generator(seed), dtype=torch.float64)
    params = [m.normalized_weight() for m in (block.theta, block.phi, block.g, block.o)]
    torch.testing.assert_close(block(x), reference(x, *params, 0.7))


@given(seed=seeds, c=st.sampled_from([8, 16, 32]), h=even, w=even)
def test_identity_at_initialisation(seed, c, h, w):
    """With γ initialised to 0 the block returns its input exactly."""
    with torch.random.fork_rng(devices=[]):
        block = SelfAttention(c)  # whatever its initial weights, γ = 0
    assert block.gamma.item() == 0.0
    x = torch.randn(2, c, h, w, generator=generator(seed))
    assert torch.equal(block(x), x)


@given(seed=seeds, c=st.sampled_from([8, 16]))
def test_equivariant_to_permuting_pooling_windows(seed, c):
    """Attention has no notion of position: shuffling the 2×2 windows of the input shuffles the output's alike."""
    x = torch.randn(1, c, 4, 6, generator=generator(seed), dtype=torch.float64)
    params = weights(c, seed + 1)
    gamma = torch.tensor(1.3, dtype=torch.float64)
    perm = torch.randperm(6, generator=generator(seed + 2))

    def shuffle(t):
        blocks = rearrange(t, "b c (h p) (w q) -> b c (h w) p q", p=2, q=2)[:, :, perm]
        return rearrange(blocks, "b c (h w) p q -> b c (h p) (w q)", h=2)

    torch.testing.assert_close(self_attention(shuffle(x), *params, gamma),
                               shuffle(self_attention(x, *params, gamma)))


def test_every_output_sees_every_input():
    """Unlike a convolution, each output position depends on every 2×2 window of the input, however far."""
    x = torch.randn(1, 8, 8, 8, generator=generator(3), dtype=torch.float64, requires_grad=True)
    params = weights(8, 4)
    y = self_attention(x, *params, torch.tensor(1.0, dtype=torch.float64))
    (grad,) = torch.autograd.grad(y[0, :, 0, 0].sum(), x)
    per_window = rearrange(grad.abs(), "1 c (h p) (w q) -> h w (c p q)", p=2, q=2).sum(-1)
    assert bool((per_window > 0).all())  # max pooling passes gradient to one pixel per window


def test_gradcheck():
    x = torch.randn(1, 8, 2, 4, generator=generator(5), dtype=torch.float64, requires_grad=True)
    params = [p.requires_grad_() for p in weights(8, 6)]
    gamma = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(self_attention, (x, *params, gamma), fast_mode=True)
    w_theta, w_phi, w_g, w_o = (p.detach() for p in params)
    assert torch.autograd.gradgradcheck(  # D is differentiated twice only through its input
        lambda x: self_attention(x, w_theta, w_phi, w_g, w_o, gamma.detach()), (x,))


@pytest.mark.parametrize("make, match", [
    (lambda: SelfAttention(12), "divisible by 8"),
    (lambda: self_attention(torch.zeros(1, 8, 3, 4), *weights(8, 0, torch.float32),
                            torch.zeros(())), "must be even"),
])
def test_rejects_bad_shapes(make, match):
    with pytest.raises(ValueError, match=match):
        make()
