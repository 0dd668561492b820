"""The mapping network (StyleGAN §2, Fig. 1b) against a float64 reference from the equation."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.equalized import equalize
from nanogan.mapping import MappingNetwork, track_average


def reference_mapping(net, z, labels=None, eps=1e-8):
    """z/√(mean z² + ε) (‖ normalised embedding), then per layer √2·lrelu_0.2(x·(W·c·λ)ᵀ + b·λ)."""
    def norm(v):
        return v / torch.sqrt((v**2).mean(dim=1, keepdim=True) + eps)

    x = norm(z.double())
    if labels is not None:
        E = net.embed.weight.double() / math.sqrt(net.num_classes)  # one-hot fan-in = num_classes
        x = torch.cat([x, norm(E[:, labels].T + net.embed.bias.double())], dim=1)
    for layer in net.layers:
        lam = layer.lr_mul
        W = layer.weight.double() / math.sqrt(layer.weight.shape[1]) * lam
        h = x @ W.T + layer.bias.double() * lam
        x = torch.where(h >= 0, h, 0.2 * h) * math.sqrt(2)
    return x


def seeded(net, seed):
    """Stored weights N(0, 1/λ²) (as at init) and N(0, 1) biases, from a seeded generator."""
    g = generator(seed)
    with torch.no_grad():
        for layer in [net.embed, *net.layers] if net.embed is not None else net.layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) / layer.lr_mul)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g))
    return net


@given(seed=seeds, z_dim=st.integers(1, 6), w_dim=st.integers(1, 6), layers=st.integers(1, 3),
       classes=st.sampled_from([0, 3]), lr_mul=st.sampled_from([1.0, 0.01]))
def test_matches_reference(seed, z_dim, w_dim, layers, classes, lr_mul):
    net = seeded(MappingNetwork(z_dim, w_dim, layers, num_classes=classes, lr_mul=lr_mul), seed)
    g = generator(seed + 1)
    z = torch.randn(4, z_dim, generator=g)
    labels = torch.randint(0, classes, (4,), generator=g) if classes else None
    torch.testing.assert_close(net(z, labels).double(), reference_mapping(net, z, labels),
                               rtol=1e-4, atol=1e-5)


@given(seed=seeds, scale=st.floats(0.1, 1e3))
def test_output_ignores_the_scale_of_z(seed, scale):
    """Pixel norm makes w depend only on z's direction: f(c·z) = f(z) for c > 0."""
    net = seeded(MappingNetwork(8, 8, 2), seed)
    z = torch.randn(3, 8, generator=generator(seed + 1), dtype=torch.float64)
    net = net.double()
    torch.testing.assert_close(net(scale * z), net(z), rtol=1e-5, atol=1e-6)  # up to ε


@given(seed=seeds, beta=st.sampled_from([0.5, 0.9, 0.995]), steps=st.integers(1, 40))
def test_w_avg_converges_to_the_mean_of_w(seed, beta, steps):
    """With a fixed batch, t updates from w̄ = 0 give w̄ = (1 − β^t)·mean(w); mapping alone never moves w̄."""
    net = seeded(MappingNetwork(8, 6, 2, w_avg_beta=beta), seed).double()
    z = torch.randn(5, 8, generator=generator(seed + 1), dtype=torch.float64)
    for _ in range(3):
        w = net(z)  # the forward pass only reads w̄'s buffer: it stays at 0
    assert torch.equal(net.w_avg, torch.zeros(6, dtype=torch.float64))
    for _ in range(steps):  # what Recipe.track_w_avg does once per step
        net.w_avg.copy_(track_average(net.w_avg, net(z), net.w_avg_beta))
    torch.testing.assert_close(net.w_avg, (1 - beta**steps) * w.mean(0))


@given(seed=seeds)
def test_lr_multiplier_slows_the_effective_weights(seed):
    """One Adam step moves the effective weights of a λ = 0.01 mapping network 100 times less than λ = 1."""
    steps = []
    for lr_mul in (1.0, 0.01):
        net = MappingNetwork(8, 8, 2, lr_mul=lr_mul).double()  # w/λ ~ 100 needs float64 steps
        g = generator(seed)
        with torch.no_grad():  # the same function for both λ: stored weights w/λ, biases 0
            for layer in net.layers:
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) / lr_mul)
                layer.bias.zero_()
        first = net.layers[0]
        before = equalize(first.weight, 1.0, lr_mul).detach().clone()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.0, 0.99), eps=1e-12)
        net(torch.randn(16, 8, generator=g, dtype=torch.float64)).square().sum().backward()
        opt.step()
        steps.append((equalize(first.weight, 1.0, lr_mul).detach() - before).abs().median())
    assert (steps[1] / steps[0]).item() == pytest.approx(0.01, rel=1e-3)


def test_labels_condition_the_output():
    net = MappingNetwork(4, 4, 2, num_classes=3)
    z = torch.randn(1, 4, generator=generator(0)).expand(3, 4)
    w = net(z, torch.tensor([0, 1, 2]))
    assert torch.cdist(w, w).triu(1)[0, 1:].min() > 0  # same z, different classes, different w
    with pytest.raises(ValueError, match="labels"):
        net(z)


def test_gradcheck():
    net = seeded(MappingNetwork(3, 3, 2, num_classes=2), 1).double()
    z = torch.randn(2, 3, dtype=torch.float64, generator=generator(2), requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: net(z, torch.tensor([0, 1])), (z,))


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_layers"):
        MappingNetwork(8, 8, 0)
    with pytest.raises(ValueError, match="w_avg_beta"):
        MappingNetwork(8, 8, 2, w_avg_beta=1.0)
