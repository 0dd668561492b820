"""Conditional batch normalization (BigGAN §3, Fig. 15b) against a float64 hand-written BatchNorm
and torch's F.batch_norm."""

import functools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.conditional_bn import ConditionalBatchNorm2d, scale_and_shift
from nanogan.spectral_norm import SNLinear

shapes = st.tuples(st.integers(2, 4), st.integers(1, 5), st.integers(1, 3), st.integers(1, 3))
eps_values = st.sampled_from([1e-5, 1e-4])


def reference(x, cond, W_gain, W_bias, eps):
    """x̂ = (x − μ_B)/√(σ²_B + ε) per channel over (b, h, w), biased variance; y = x̂(1 + W_γc) + W_βc."""
    x, cond = x.double(), cond.double()
    y = torch.empty_like(x)
    for ch in range(x.shape[1]):
        values = x[:, ch]
        mean = values.sum() / values.numel()
        var = ((values - mean) ** 2).sum() / values.numel()
        x_hat = (values - mean) / torch.sqrt(var + eps)
        for n in range(x.shape[0]):
            gain = 1 + sum(W_gain.double()[ch, k] * cond[n, k] for k in range(cond.shape[1]))
            bias = sum(W_bias.double()[ch, k] * cond[n, k] for k in range(cond.shape[1]))
            y[n, ch] = x_hat[n] * gain + bias
    return y


def layer_and_inputs(seed, shape, k, eps, dtype=torch.float64):
    torch.manual_seed(seed % 2**31)
    layer = ConditionalBatchNorm2d(shape[1], k, eps=eps).to(dtype)
    g = generator(seed)
    x = torch.randn(shape, generator=g, dtype=dtype) * 3 + 1
    cond = torch.randn(shape[0], k, generator=g, dtype=dtype)
    return layer, x, cond


@given(seed=seeds, shape=shapes, k=st.integers(1, 4), eps=eps_values)
def test_matches_reference(seed, shape, k, eps):
    layer, x, cond = layer_and_inputs(seed, shape, k, eps)
    expected = reference(x, cond, layer.to_gain.weight, layer.to_bias.weight, eps)
    torch.testing.assert_close(layer(x, cond), expected)


@given(seed=seeds, shape=shapes, k=st.integers(1, 4), eps=eps_values)
def test_matches_torch_batch_norm(seed, shape, k, eps):
    """Training mode is F.batch_norm's normalization with per-sample gains and biases, and the running statistics follow nn.BatchNorm2d's."""
    layer, x, cond = layer_and_inputs(seed, shape, k, eps, torch.float32)
    x_hat = F.batch_norm(x, None, None, training=True, eps=eps)
    expected = x_hat * (1 + cond @ layer.to_gain.weight.T)[:, :, None, None] \
        + (cond @ layer.to_bias.weight.T)[:, :, None, None]
    torch.testing.assert_close(layer(x, cond), expected)
    plain = torch.nn.BatchNorm2d(shape[1], eps=eps, affine=False)
    plain(x)
    torch.testing.assert_close(layer.bn.running_mean, plain.running_mean)
    torch.testing.assert_close(layer.bn.running_var, plain.running_var)


@given(seed=seeds, shape=shapes, k=st.integers(1, 4), train=st.booleans())
def test_zero_projections_are_plain_batch_norm(seed, shape, k, train):
    """With both projections zero the layer is exactly nn.BatchNorm2d(affine=False), in training and in eval mode."""
    layer, x, cond = layer_and_inputs(seed, shape, k, 1e-4, torch.float32)
    with torch.no_grad():
        layer.to_gain.weight.zero_()
        layer.to_bias.weight.zero_()
    plain = torch.nn.BatchNorm2d(shape[1], eps=1e-4, affine=False)
    layer(x, cond), plain(x)  # one training step of running statistics each
    layer.train(train), plain.train(train)
    assert torch.equal(layer(x * 2, cond), plain(x * 2))


@given(seed=seeds, shape=shapes, k=st.integers(1, 4))
def test_gain_is_one_centred_and_bias_zero_centred(seed, shape, k):
    """A zero condition vector leaves the normalized features unchanged: gain 1 + W·0 = 1, bias W·0 = 0."""
    layer, x, _ = layer_and_inputs(seed, shape, k, 1e-4)
    torch.testing.assert_close(layer(x, torch.zeros(shape[0], k, dtype=x.dtype)),
                               F.batch_norm(x, None, None, training=True, eps=1e-4))


@given(seed=seeds, shape=shapes, k=st.integers(1, 4))
def test_eval_output_of_a_sample_depends_only_on_that_sample(seed, shape, k):
    """In eval mode the running statistics replace the batch's, so each sample is normalized on its own."""
    layer, x, cond = layer_and_inputs(seed, shape, k, 1e-4)
    layer(x, cond)
    layer.eval()
    whole = layer(x, cond)
    torch.testing.assert_close(layer(x[:1], cond[:1]), whole[:1])


def test_converts_to_sync_batchnorm():
    """convert_sync_batchnorm swaps only the inner BatchNorm; names, state and (single-process) outputs stay."""
    torch.manual_seed(0)
    sn_linear = functools.partial(SNLinear, eps=1e-4)
    model = torch.nn.ModuleList([ConditionalBatchNorm2d(3, 2, eps=1e-4, linear=sn_linear)])
    x, cond = torch.randn(4, 3, 2, 2, generator=generator(1)), torch.randn(4, 2, generator=generator(2))
    before = model[0](x, cond)
    keys = list(model.state_dict())
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert isinstance(synced[0], ConditionalBatchNorm2d)
    assert isinstance(synced[0].bn, torch.nn.SyncBatchNorm)
    assert list(synced.state_dict()) == keys
    synced.eval(), model.eval()
    torch.testing.assert_close(synced[0](x, cond), model[0](x, cond))
    assert before.shape == x.shape


def test_gradcheck():
    layer, x, cond = layer_and_inputs(3, (3, 2, 2, 2), 2, 1e-4)
    x.requires_grad_(), cond.requires_grad_()
    assert torch.autograd.gradcheck(layer, (x, cond))
    g = generator(4)
    gain, bias = (torch.rand(3, 2, generator=g, dtype=torch.float64).requires_grad_()
                  for _ in range(2))
    assert torch.autograd.gradcheck(scale_and_shift, (x, gain, bias))


def test_rejects_bad_condition():
    layer = ConditionalBatchNorm2d(3, 4)
    with pytest.raises(ValueError, match=r"cond of shape \(2, 4\)"):
        layer(torch.zeros(2, 3, 2, 2), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="gain and bias of shape"):
        scale_and_shift(torch.zeros(2, 3, 1, 1), torch.zeros(2, 4), torch.zeros(2, 3))
