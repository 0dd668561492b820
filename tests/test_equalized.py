"""Equalized learning rate (ProGAN §4.1) against a reference written from the equation."""

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import generator, seeds
from test_upfirdn import reference_upfirdn

from nanogan.equalized import EqualConv2d, EqualLinear, equalize


def reference_linear(x, w, b, gain, lr_mul):
    """y_o = Σ_i x_i · w_oi · gain/√fan_in · λ + b_o · λ, as a float64 loop over outputs."""
    x, w = x.double(), w.double()
    c = gain / math.sqrt(w.shape[1]) * lr_mul
    cols = [(x * (w[o] * c)).sum(dim=1) + (0 if b is None else b[o].double() * lr_mul)
            for o in range(w.shape[0])]
    return torch.stack(cols, dim=1)


def reference_conv(x, w, b, gain, lr_mul, padding):
    """Convolution as an explicit sum over kernel taps (float64), weights scaled by c·λ."""
    x, w = x.double(), w.double()
    o, i, k, _ = w.shape
    c = gain / math.sqrt(i * k * k) * lr_mul
    xp = torch.nn.functional.pad(x, (padding,) * 4)
    h = xp.shape[2] - k + 1
    wd = xp.shape[3] - k + 1
    out = torch.zeros(x.shape[0], o, h, wd, dtype=torch.float64)
    for dy in range(k):
        for dx in range(k):
            patch = xp[:, :, dy : dy + h, dx : dx + wd]
            out += torch.einsum("bihw,oi->bohw", patch, w[:, :, dy, dx] * c)
    if b is not None:
        out += b.double().view(1, -1, 1, 1) * lr_mul
    return out


def _seeded(module, seed):
    g = generator(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return module


@given(seed=seeds, i=st.integers(1, 9), o=st.integers(1, 9), b=st.integers(1, 4),
       gain=st.sampled_from([1.0, math.sqrt(2)]), lr_mul=st.sampled_from([1.0, 0.01]),
       bias=st.booleans())
def test_linear_matches_reference(seed, i, o, b, gain, lr_mul, bias):
    layer = _seeded(EqualLinear(i, o, bias, gain=gain, lr_mul=lr_mul), seed)
    x = torch.randn(b, i, generator=generator(seed + 1))
    expected = reference_linear(x, layer.weight, layer.bias, gain, lr_mul)
    torch.testing.assert_close(layer(x).double(), expected, rtol=1e-5, atol=1e-5)


@given(seed=seeds, i=st.integers(1, 4), o=st.integers(1, 4), k=st.sampled_from([1, 3]),
       size=st.integers(3, 6), gain=st.sampled_from([1.0, math.sqrt(2)]), bias=st.booleans())
def test_conv_matches_reference(seed, i, o, k, size, gain, bias):
    layer = _seeded(EqualConv2d(i, o, k, bias, gain=gain), seed)
    x = torch.randn(2, i, size, size, generator=generator(seed + 1))
    expected = reference_conv(x, layer.weight, layer.bias, gain, 1.0, k // 2)
    torch.testing.assert_close(layer(x).double(), expected, rtol=1e-5, atol=1e-5)


@given(seed=seeds, fan_in=st.sampled_from([64, 256, 1024]), gain=st.sampled_from([1.0, 2.0]))
def test_init_preserves_signal_scale(seed, fan_in, gain):
    """With N(0, 1) inputs the output of a freshly initialized layer has standard deviation gain."""
    layer = _seeded(EqualLinear(fan_in, 256, bias=False, gain=gain), seed)
    x = torch.randn(512, fan_in, generator=generator(seed + 1))
    assert layer(x).std().item() == pytest.approx(gain, rel=0.1)


@given(lr=st.sampled_from([1e-3, 1e-2]), lr_mul=st.sampled_from([1.0, 0.01]),
       seed=seeds)
@example(lr=1e-3, lr_mul=1.0, seed=0)
def test_adam_moves_every_layer_by_the_same_fraction(lr, lr_mul, seed):
    """One Adam step changes every layer's effective weights by lr·λ relative to their He scale, whatever the fan-in."""
    relative_steps = []
    for fan_in in (4, 400):
        layer = _seeded(EqualLinear(fan_in, 8, bias=False, lr_mul=lr_mul), seed)
        opt = torch.optim.Adam(layer.parameters(), lr=lr, betas=(0.0, 0.99), eps=1e-12)
        before = equalize(layer.weight, 1.0, lr_mul).detach().clone()
        x = torch.randn(16, fan_in, generator=generator(seed + 1))
        layer(x).square().sum().backward()
        opt.step()
        after = equalize(layer.weight, 1.0, lr_mul).detach()
        he_std = 1.0 / math.sqrt(fan_in)
        relative_steps.append(((after - before).abs() / he_std).median().item())
    assert relative_steps == pytest.approx([lr * lr_mul] * 2, rel=1e-3)


def test_lr_multiplier_does_not_change_the_function_at_init():
    """A layer with multiplier λ computes the same function as λ = 1 when its stored weights are w/λ."""
    plain, slow = EqualLinear(5, 3, bias_init=0.5), EqualLinear(5, 3, bias_init=0.5, lr_mul=0.01)
    with torch.no_grad():
        slow.weight.copy_(plain.weight / 0.01)
    x = torch.randn(4, 5, generator=generator(1))
    torch.testing.assert_close(slow(x), plain(x), rtol=1e-5, atol=1e-5)


@given(seed=seeds, i=st.integers(1, 3), o=st.integers(1, 3), k=st.sampled_from([1, 3]),
       size=st.sampled_from([4, 6, 8]), bias=st.booleans())
@example(seed=0, i=2, o=3, k=3, size=8, bias=True)  # StyleGAN2 D's conv ↓
@example(seed=0, i=2, o=3, k=1, size=8, bias=False)  # StyleGAN2 D's skip ↓
def test_down_conv_blurs_then_convolves_with_stride_2(seed, i, o, k, size, bias):
    """down=2 is the FIR blur [1, 3, 3, 1] (padded so the output is h/2), then the equalized
    convolution at stride 2, then the bias."""
    layer = _seeded(EqualConv2d(i, o, k, bias, down=2), seed)
    x = torch.randn(2, i, size, size, generator=generator(seed + 1))
    f = torch.tensor([1.0, 3, 3, 1]) / 8
    pad = 1 + k // 2  # (K − down + 1)//2 + the conv's 'same' padding, both sides
    blurred = reference_upfirdn(x, torch.outer(f, f), 1, 1, (pad,) * 4, 1.0)
    expected = reference_conv(blurred, layer.weight, layer.bias, 1.0, 1.0, 0)[:, :, ::2, ::2]
    assert expected.shape[-1] == size // 2
    torch.testing.assert_close(layer(x).double(), expected, rtol=1e-5, atol=1e-5)


def test_down_refuses_a_stride():
    with pytest.raises(ValueError, match="stride 1 when down > 1"):
        EqualConv2d(2, 2, 3, stride=2, down=2)


def test_gradcheck():
    layer = EqualConv2d(2, 3, 3).double()
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, generator=generator(2), requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: torch.nn.functional.conv2d(
        x, equalize(w, 1.4), padding=1), (x, layer.weight))


@pytest.mark.parametrize("args", [(0, 3), (3, 0)])
def test_rejects_empty_layers(args):
    with pytest.raises(ValueError, match="positive sizes"):
        EqualLinear(*args)
