"""Path length regularization (StyleGAN2 §3.2, Eq. 4–5) against explicit Jacobians."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.path_length import (PL_WEIGHT, PathLengthPenalty, path_length_noise,
                                 path_length_weight, path_lengths)


def toy_generator(ws, A, B, shape, nonlinear):
    """A tiny 'synthesis network': images = tanh(A·vec(w)) + B·vec(w)², or just A·vec(w)."""
    flat = ws.reshape(ws.shape[0], -1)
    out = flat @ A
    if nonlinear:
        out = torch.tanh(out) + flat.square() @ B
    return out.reshape(ws.shape[0], *shape)


def reference_lengths(fn, ws, y):
    """√(mean_n Σ_d (J_wᵀ y)²_nd) per sample, with J from torch.autograd.functional.jacobian."""
    out = []
    for b in range(ws.shape[0]):
        J = torch.autograd.functional.jacobian(lambda w: fn(w[None])[0], ws[b])  # (c,h,w,n,d)
        jty = torch.einsum("chw,chwnd->nd", y[b], J)
        out.append(jty.square().sum(-1).mean().sqrt())
    return torch.stack(out)


def draw(seed, b, n, d, shape):
    g = generator(seed)
    m = math.prod(shape)
    ws = torch.randn(b, n, d, generator=g, dtype=torch.float64, requires_grad=True)
    A = torch.randn(n * d, m, generator=g, dtype=torch.float64) / math.sqrt(n * d)
    B = torch.randn(n * d, m, generator=g, dtype=torch.float64) / (n * d)
    y = path_length_noise((b, *shape), generator=g).double()
    return ws, A, B, y


@given(seed=seeds, b=st.integers(1, 3), n=st.integers(1, 4), d=st.integers(1, 4),
       shape=st.sampled_from([(1, 2, 2), (3, 2, 3)]), nonlinear=st.booleans())
def test_matches_reference(seed, b, n, d, shape, nonlinear):
    ws, A, B, y = draw(seed, b, n, d, shape)
    fn = lambda w: toy_generator(w, A, B, shape, nonlinear)  # noqa: E731
    torch.testing.assert_close(path_lengths(fn(ws), ws, y), reference_lengths(fn, ws, y))


@given(seed=seeds, scale=st.floats(0.1, 10))
def test_orthogonal_jacobian_gives_lengths_c_times_norm_y(seed, scale):
    """If J = c·Q with Q orthogonal, each length is c‖y‖/√n, concentrating at c·√(channels/n) for y ~ N(0, I)/√(HW)."""
    g = generator(seed)
    b, n, d, shape = 64, 4, 64, (1, 16, 16)  # n·d = c·h·w = 256
    Q, _ = torch.linalg.qr(torch.randn(n * d, n * d, generator=g, dtype=torch.float64))
    ws = torch.randn(b, n, d, generator=g, dtype=torch.float64, requires_grad=True)
    y = path_length_noise((b, *shape), generator=g).double()
    lengths = path_lengths(toy_generator(ws, scale * Q, None, shape, False), ws, y)
    torch.testing.assert_close(lengths, scale * y.flatten(1).norm(dim=1) / math.sqrt(n))
    assert lengths.mean().item() == pytest.approx(scale * math.sqrt(shape[0] / n), rel=0.02)


@given(values=st.lists(st.floats(0, 10), min_size=1, max_size=20),
       decay=st.sampled_from([0.01, 0.1, 1.0]))
def test_running_mean_is_an_exponential_average(values, decay):
    """After feeding batches with means m_t, a = Σ_t decay·(1 − decay)^(T−t) m_t, and the penalty uses the updated a."""
    penalty = PathLengthPenalty(decay).double()
    for m in values:
        lengths = torch.tensor([m - 0.5, m + 0.5], dtype=torch.float64)
        out = penalty(lengths)
    T = len(values)
    expected = sum(decay * (1 - decay) ** (T - 1 - t) * m for t, m in enumerate(values))
    assert penalty.mean.item() == pytest.approx(expected, abs=1e-9)
    assert out.item() == pytest.approx(((lengths - expected) ** 2).mean().item(), abs=1e-9)


@given(seed=seeds, parts=st.integers(1, 4), decay=st.sampled_from([0.01, 0.5, 1.0]))
def test_one_update_with_the_whole_batch_mean_matches_forward(seed, parts, decay):
    """update(mean of all parts) then penalty(part) per part gives forward's a and the whole batch's penalty."""
    lengths = torch.rand(4 * parts, generator=generator(seed), dtype=torch.float64) + 0.5
    a = decay * lengths.mean()  # Eq. 4's running mean after one update from a = 0
    split = PathLengthPenalty(decay).double()
    chunks = lengths.chunk(parts)
    split.update(torch.stack([c.mean() for c in chunks]).mean())
    penalty = torch.stack([split.penalty(c) for c in chunks]).mean()
    torch.testing.assert_close(split.mean, a)
    torch.testing.assert_close(penalty, ((lengths - a) ** 2).mean())
    torch.testing.assert_close(PathLengthPenalty(decay).double()(lengths), penalty)


@pytest.mark.parametrize("resolution", [8, 16, 32, 64, 128, 256, 512, 1024])
def test_paper_weight_equals_two_in_our_normalisation(resolution):
    """Eq. 5's γ_pl times r² (y/√(HW)) times num_ws = 2·log2 r − 2 (mean over layers) is the constant 2."""
    num_ws = 2 * int(math.log2(resolution)) - 2
    assert path_length_weight(resolution) * resolution**2 * num_ws == pytest.approx(PL_WEIGHT)


@pytest.mark.parametrize("resolution", [8, 16])
def test_weighted_penalty_agrees_with_the_papers_normalisation(resolution):
    """γ_pl times the penalty of full-norm, unit-variance-y lengths equals 2 times our penalty."""
    num_ws, d, shape = 2 * int(math.log2(resolution)) - 2, 2, (1, resolution, resolution)
    ws, A, B, y = draw(5, 3, num_ws, d, shape)
    fn = lambda w: toy_generator(w, A, B, shape, True)  # noqa: E731
    y_unit = y * resolution  # undo the 1/√(HW)
    full = reference_lengths(fn, ws, y_unit) * math.sqrt(num_ws)  # norm over all layers
    ours = path_lengths(fn(ws), ws, y)
    a = 0.8 * full.mean()  # the running mean scales with the lengths
    paper = path_length_weight(resolution) * (full - a).square().mean()
    scaled_a = a / (resolution * math.sqrt(num_ws))
    torch.testing.assert_close(paper, PL_WEIGHT * (ours - scaled_a).square().mean())


def test_gradgradcheck():
    ws, A, B, y = draw(7, 2, 2, 2, (1, 2, 2))
    A.requires_grad_(True)

    def penalty(A):
        lengths = path_lengths(toy_generator(ws, A, B, (1, 2, 2), True), ws, y)
        return (lengths - 0.3).square().mean()

    assert torch.autograd.gradcheck(penalty, (A,))
    assert torch.autograd.gradgradcheck(penalty, (A,))


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="resolution"):
        path_length_weight(2)
    with pytest.raises(ValueError, match="decay"):
        PathLengthPenalty(0.0)
    ws = torch.zeros(1, 2, 3, requires_grad=True)
    with pytest.raises(ValueError, match="images' shape"):
        path_lengths(ws.sum() * torch.ones(1, 1, 2, 2), ws, torch.ones(1, 1, 3, 3))
