"""Spectral normalization (Miyato et al. 2018, Algorithm 1) against a float64 reference, both of
torch's implementations, and the exact spectral norm."""

import importlib

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.spectral_norm import (SNConv2d, SNEmbedding, SNLinear, power_iteration,
                                   reset_power_iterations_, spectral_normalize, spectral_norms)

torch_old_spectral_norm = importlib.import_module("torch.nn.utils.spectral_norm").spectral_norm
dims = st.integers(1, 7)


def reference_step(W, u, eps=1e-12):
    """Algorithm 1, one iteration, in float64: ṽ = Wᵀũ/‖Wᵀũ‖, ũ = Wṽ/‖Wṽ‖, σ = ũᵀWṽ."""
    W, u = W.double().flatten(1), u.double()
    Wt_u = torch.einsum("on,o->n", W, u)
    v = Wt_u / max(Wt_u.norm().item(), eps)
    W_v = torch.einsum("on,n->o", W, v)
    u = W_v / max(W_v.norm().item(), eps)
    sigma = torch.einsum("o,on,n->", u, W, v)
    return u, v, sigma


def with_spectrum(o, n, seed, gap=1.5):
    """A float64 (o, n) matrix with singular values σ₀ = gap·σ₁ > σ₁ > …, so power iteration converges fast."""
    g = generator(seed)
    k = min(o, n)
    U, _ = torch.linalg.qr(torch.randn(o, k, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))
    s = torch.rand(k, generator=g, dtype=torch.float64).sort(descending=True).values * 0.5 + 0.5
    s[0] = gap * s[1] if k > 1 else s[0]
    return U @ torch.diag(s) @ V.T


def make(kind, o, n, seed, **kwargs):
    """A float64 SN layer whose W and starting u come from the generator seeded by `seed`."""
    with torch.random.fork_rng(devices=[]):  # construction's own draws are overwritten below
        if kind == "conv":
            layer = SNConv2d(n, o, 3, padding=1, **kwargs)
        elif kind == "linear":
            layer = SNLinear(n, o, **kwargs)
        else:
            layer = SNEmbedding(o, n, **kwargs)
    layer = layer.double()
    g = generator(seed)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g, dtype=torch.float64))
        layer.u.copy_(F.normalize(torch.randn(o, generator=g, dtype=torch.float64), dim=0))
        if getattr(layer, "bias", None) is not None:
            layer.bias.copy_(torch.randn(o, generator=g, dtype=torch.float64))
    return layer


@given(seed=seeds, o=dims, n=dims, kind=st.sampled_from(["conv", "linear", "embedding"]))
@example(seed=0, o=1, n=1, kind="linear")
def test_matches_reference(seed, o, n, kind):
    layer = make(kind, o, n, seed)
    u0 = layer.u.clone()
    u, v, sigma = reference_step(layer.weight, u0)
    W_sn = layer.normalized_weight()
    torch.testing.assert_close(layer.u, u)
    torch.testing.assert_close(layer.v, v)
    torch.testing.assert_close(W_sn, layer.weight / sigma)
    torch.testing.assert_close(layer.sigma, sigma)


@given(seed=seeds, o=dims, n=dims, kind=st.sampled_from(["conv", "linear"]))
def test_matches_torch_spectral_norm_with_the_same_u(seed, o, n, kind):
    """With the same starting u, every training and eval forward equals torch.nn.utils.spectral_norm's."""
    ours = make(kind, o, n, seed)
    theirs = torch.nn.Conv2d(n, o, 3, padding=1) if kind == "conv" else torch.nn.Linear(n, o)
    theirs = torch_old_spectral_norm(theirs.double())
    with torch.no_grad():
        theirs.weight_orig.copy_(ours.weight)
        theirs.bias.copy_(ours.bias)
        theirs.weight_u.copy_(ours.u)
    x = torch.randn(2, n, 4, 4, generator=generator(seed + 1), dtype=torch.float64)
    x = x if kind == "conv" else x[:, :, 0, 0]
    for _ in range(3):
        torch.testing.assert_close(ours(x), theirs(x))
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours(x), theirs(x))
    torch.testing.assert_close(ours.u, theirs.weight_u)


@given(seed=seeds, o=dims, n=dims)
def test_is_torch_parametrization_applied_to_the_transpose(seed, o, n):
    """torch's parametrization iterates u ← n(Wv) first; run on Wᵀ from our u it normalizes exactly as we do."""
    ours = make("linear", o, n, seed)
    theirs = torch.nn.Linear(o, n, bias=False).double()
    with torch.no_grad():
        theirs.weight.copy_(ours.weight.T)
    theirs = torch.nn.utils.parametrizations.spectral_norm(theirs)
    sn = theirs.parametrizations.weight[0]
    with torch.no_grad():
        sn._v.copy_(ours.u)  # its v lives in our output space
        sn._u.copy_(ours.v)
    for _ in range(3):
        torch.testing.assert_close(ours.normalized_weight(), theirs.weight.T)
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours.normalized_weight(), theirs.weight.T)


@given(seed=seeds, o=st.integers(1, 12), n=st.integers(1, 12))
def test_sigma_converges_to_the_top_singular_value(seed, o, n):
    """After enough training forwards σ equals ‖W‖₂ = torch.linalg.matrix_norm(W, 2), and W/σ has spectral norm 1."""
    layer = make("linear", o, n, seed)
    with torch.no_grad():
        layer.weight.copy_(with_spectrum(o, n, seed))
    for _ in range(60):  # error shrinks like (σ₁/σ₀)^(2t) = 1.5^(-120)
        W_sn = layer.normalized_weight()
    exact = torch.linalg.matrix_norm(layer.weight, 2)
    torch.testing.assert_close(layer.sigma, exact, rtol=1e-9, atol=0)
    torch.testing.assert_close(torch.linalg.matrix_norm(W_sn.detach(), 2),
                               torch.ones((), dtype=torch.float64), rtol=1e-9, atol=0)


@given(seed=seeds, o=dims, n=dims)
def test_sigma_never_exceeds_the_spectral_norm(seed, o, n):
    """Each estimate uᵀWv with unit u, v is a lower bound of ‖W‖₂, so W/σ never shrinks W's top direction below 1."""
    layer = make("conv", o, n, seed)
    for _ in range(3):
        layer.normalized_weight()
        assert layer.sigma <= torch.linalg.matrix_norm(layer.weight.flatten(1), 2) * (1 + 1e-12)


@given(seed=seeds, o=dims, n=dims, kind=st.sampled_from(["conv", "linear", "embedding"]))
def test_u_updates_only_in_training_mode(seed, o, n, kind):
    """Eval-mode forwards leave u and v untouched and divide by the stored σ; a training forward moves u."""
    layer = make(kind, o, n, seed)
    with torch.no_grad():
        layer.weight.add_(torch.randn(layer.weight.shape, generator=generator(seed + 2),
                                      dtype=torch.float64))  # u is now stale
    layer.eval()
    u, v = layer.u.clone(), layer.v.clone()
    first, second = layer.normalized_weight(), layer.normalized_weight()
    assert torch.equal(layer.u, u) and torch.equal(layer.v, v)
    assert torch.equal(first, second)
    torch.testing.assert_close(first, layer.weight / torch.dot(u, layer.weight.flatten(1) @ v))
    layer.train()
    layer.normalized_weight()
    assert not torch.equal(layer.u, u) or o == 1


def test_two_forwards_before_one_backward():
    """A layer can run twice before backward (D on reals, then on fakes) although u changes in between."""
    torch.manual_seed(0)
    layer = SNConv2d(2, 3, 3, padding=1)
    x = torch.randn(2, 2, 4, 4, generator=generator(1))
    (layer(x).sum() - layer(x + 1).sum()).backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


def test_gradcheck():
    g = generator(4)
    W = torch.randn(3, 2, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    u, v = power_iteration(W.detach().flatten(1), torch.randn(3, generator=g, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda w: spectral_normalize(w, u, v)[0], (W,))
    torch.manual_seed(0)
    layer = SNConv2d(2, 3, 3, padding=1).double().eval()
    x = torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    assert torch.autograd.gradgradcheck(layer, (x,))  # D's layers meet R1-style double backward


def test_sigma_gradient_is_u_v_transposed():
    """With u, v fixed, ∂σ/∂W = u vᵀ (the gradient term of the paper's Eq. 12)."""
    g = generator(5)
    W = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    u, v = power_iteration(W.detach(), torch.randn(4, generator=g, dtype=torch.float64))
    spectral_normalize(W, u, v)[1].backward()
    torch.testing.assert_close(W.grad, torch.outer(u, v))


def test_spectral_norms_names_every_layer():
    """spectral_norms reports each SN layer of a model by its module name, with that layer's σ."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(SNLinear(3, 4), torch.nn.ReLU(),
                                torch.nn.Sequential(SNConv2d(4, 2, 1)), torch.nn.Linear(2, 2))
    sigmas = spectral_norms(model)
    assert list(sigmas) == ["0", "2.0"]
    assert sigmas["2.0"] == pytest.approx(model[2][0].sigma.item())


def test_reset_after_reinitialization():
    """After the weights are replaced, reset_power_iterations_ brings σ back to ‖W‖₂ for eval-mode use."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(SNLinear(5, 4), SNEmbedding(3, 6)).double()
    with torch.no_grad():
        for i, m in enumerate(model):
            m.weight.copy_(with_spectrum(*m.weight.shape, seed=i))
    reset_power_iterations_(model, iterations=60)
    for m in model:
        exact = torch.linalg.matrix_norm(m.weight, 2)
        torch.testing.assert_close(m.sigma, exact, rtol=1e-9, atol=0)


@pytest.mark.parametrize("kwargs", [dict(eps=0.0), dict(iterations=0)])
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="eps > 0 and iterations >= 1"):
        SNLinear(2, 2, **kwargs)


def test_power_iteration_stays_in_fp32_under_autocast():
    """Under bf16 autocast u, v and σ are computed exactly as without it, in the weight's fp32."""
    torch.manual_seed(0)
    plain = SNConv2d(3, 4, 3, padding=1)
    mixed = SNConv2d(3, 4, 3, padding=1)
    mixed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 4, 4, generator=generator(6))
    plain(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = mixed(x)
    assert y.dtype == torch.bfloat16 and mixed.u.dtype == torch.float32
    assert torch.equal(mixed.u, plain.u) and torch.equal(mixed.v, plain.v)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = mixed.normalized_weight()
    assert under_autocast.dtype == torch.float32
    assert torch.equal(under_autocast, plain.normalized_weight())  # plain: no autocast at all
