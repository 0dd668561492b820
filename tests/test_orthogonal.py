"""Orthogonal regularization (BigGAN §3.1 Eq. 3) against a sum over pairs of rows, and
autograd's gradient of it against the closed form 4 (WWᵀ ⊙ (1 − I)) W."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.orthogonal import off_diagonal_gram, orthogonal_init_, orthogonal_penalty, regularized
from nanogan.spectral_norm import SNConv2d, SNLinear

shapes = st.one_of(st.tuples(st.integers(1, 8), st.integers(1, 8)),
                   st.tuples(st.integers(1, 5), st.integers(1, 3), st.integers(1, 3),
                             st.integers(1, 3)))


def reference(W):
    """Σ_{i≠j} (w_i · w_j)² over pairs of distinct rows (output units), in float64."""
    W = W.detach().double().flatten(1)
    total = 0.0
    for i in range(W.shape[0]):
        for j in range(W.shape[0]):
            if i != j:
                total += float(torch.dot(W[i], W[j])) ** 2
    return torch.tensor(total, dtype=torch.float64)


@given(seed=seeds, shape=shapes)
def test_matches_reference(seed, shape):
    W = torch.randn(shape, generator=generator(seed), dtype=torch.float64)
    torch.testing.assert_close(off_diagonal_gram(W), reference(W), rtol=1e-9, atol=1e-9)


def closed_form_gradient(W):
    """4 (WWᵀ ⊙ (1 − I)) W from the o×o Gram of the rows, in W's shape."""
    M = W.detach().flatten(1)
    gram = M @ M.T
    return (4 * (gram * (1 - torch.eye(len(M), dtype=M.dtype))) @ M).view_as(W)


def gradient(W):
    W = W.detach().requires_grad_()
    return torch.autograd.grad(off_diagonal_gram(W), W)[0]


@given(seed=seeds, shape=shapes)
def test_gradient_is_the_closed_form(seed, shape):
    """Autograd's gradient of the penalty is the closed form 4 (WWᵀ ⊙ (1 − I)) W, for wide and tall W."""
    W = torch.randn(shape, generator=generator(seed), dtype=torch.float64)
    torch.testing.assert_close(gradient(W), closed_form_gradient(W))


@given(seed=seeds, o=st.integers(1, 6), extra=st.integers(0, 4))
def test_orthogonal_rows_cost_nothing_whatever_their_norms(seed, o, extra):
    """Rows that are pairwise orthogonal have zero penalty, however long each row is (the diagonal is free)."""
    g = generator(seed)
    Q, _ = torch.linalg.qr(torch.randn(o + extra, o, generator=g, dtype=torch.float64))
    norms = torch.rand(o, 1, generator=g, dtype=torch.float64) * 5 + 0.1
    W = norms * Q.T  # o orthogonal rows of length o + extra, scaled
    torch.testing.assert_close(off_diagonal_gram(W), torch.zeros((), dtype=torch.float64),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(gradient(W), torch.zeros_like(W), rtol=0, atol=1e-12)


@given(seed=seeds, o=st.integers(1, 6), n=st.integers(1, 6), k=st.sampled_from([1, 3]))
def test_orthogonal_init(seed, o, n, k):
    """orthogonal_init_ makes rows orthonormal (columns when there are more rows), and biases zero."""
    layer = orthogonal_init_(torch.nn.Conv2d(n, o, k), generator=generator(seed))
    W = layer.weight.flatten(1).double()
    gram = W @ W.T if W.shape[0] <= W.shape[1] else W.T @ W
    torch.testing.assert_close(gram, torch.eye(gram.shape[0], dtype=torch.float64),
                               rtol=0, atol=1e-5)
    assert torch.equal(layer.bias, torch.zeros(o))


def model():
    torch.manual_seed(0)
    net = torch.nn.Module()
    net.shared = torch.nn.Embedding(5, 4)
    net.conv = SNConv2d(4, 6, 3, eps=1e-4)
    net.body = torch.nn.Sequential(SNLinear(3, 7), torch.nn.BatchNorm2d(3))
    return net.double()


def test_exclusion_and_dimensions():
    """The shared embedding (by name) and weights with fewer than 2 dims are neither penalized nor touched."""
    net = model()
    assert sorted(regularized(net)) == ["body.0.weight", "conv.weight"]
    expected = 1e-4 * (reference(net.conv.weight) + reference(net.body[0].weight))
    torch.testing.assert_close(orthogonal_penalty(net), expected)
    orthogonal_penalty(net).backward()
    assert net.shared.weight.grad is None and net.body[0].bias.grad is None
    assert net.body[1].weight.grad is None
    assert sorted(regularized(net, exclude=())) == ["body.0.weight", "conv.weight", "shared.weight"]


def test_no_regularized_weights_gives_zero():
    assert orthogonal_penalty(torch.nn.BatchNorm2d(3)).item() == 0.0


@pytest.mark.parametrize("shape", [(3, 5), (5, 3)])
def test_gradcheck(shape):
    W = torch.randn(shape, generator=generator(2), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(off_diagonal_gram, (W,))
