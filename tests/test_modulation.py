"""Modulated convolution (StyleGAN2 §2.2, Eq. 1–3) against a per-sample float64 loop."""

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import generator, seeds
from test_upfirdn import reference_upfirdn

from nanogan.modulation import ModulatedConv2d, ToRGB, demodulation, modulated_conv2d
from nanogan.upfirdn import make_kernel


def reference_correlate(x, w, stride=1):
    """Valid cross-correlation (what conv2d computes) as an explicit loop over taps."""
    k = w.shape[-1]
    oh, ow = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    out = torch.zeros(w.shape[0], oh, ow, dtype=torch.float64)
    for dy in range(k):
        for dx in range(k):
            out += torch.einsum("ihw,oi->ohw", x[:, dy : dy + oh, dx : dx + ow], w[:, :, dy, dx])
    return out[:, ::stride, ::stride]


def reference_modulated_conv(x, weight, styles, demodulate, up, down, eps=1e-8):
    """Eq. 1 and 3 sample by sample; up: zero-stuff, full conv, blur; down: blur, stride-2 conv."""
    x, weight, styles = x.double(), weight.double(), styles.double()
    fir, k = make_kernel().double(), weight.shape[-1]
    K, p = len(fir), k // 2
    outs = []
    for b in range(x.shape[0]):
        w = weight * styles[b].view(1, -1, 1, 1)  # Eq. 1: w'_ijk = s_i w_ijk
        if demodulate:
            w = w / torch.sqrt((w**2).sum(dim=(1, 2, 3), keepdim=True) + eps)  # Eq. 3
        xb = x[b]
        if up == 2:
            h, wd = xb.shape[-2:]
            stuffed = torch.zeros(xb.shape[0], 2 * h - 1, 2 * wd - 1, dtype=torch.float64)
            stuffed[:, ::2, ::2] = xb
            y = reference_correlate(torch.nn.functional.pad(stuffed, (k - 1,) * 4), w)
            p0, p1 = (K + 1) // 2 + p - (k - 1), (K - 2) // 2 + p - (k - 2)
            y = reference_upfirdn(y[None], torch.outer(fir, fir), 1, 1, (p0, p1, p0, p1), 4.0)[0]
        elif down == 2:
            p0, p1 = (K - 1) // 2 + p, (K - 2) // 2 + p
            xb = reference_upfirdn(xb[None], torch.outer(fir, fir), 1, 1, (p0, p1, p0, p1), 1.0)
            y = reference_correlate(xb[0], w, stride=2)
        else:
            y = reference_correlate(torch.nn.functional.pad(xb, (p,) * 4), w)
        outs.append(y)
    return torch.stack(outs)


def draw(seed, b, i, o, k, size, dtype=torch.float32):
    g = generator(seed)
    x = torch.randn(b, i, size, size, generator=g, dtype=dtype)
    weight = torch.randn(o, i, k, k, generator=g, dtype=dtype)
    styles = torch.randn(b, i, generator=g, dtype=dtype) + 1
    return x, weight, styles


@given(seed=seeds, b=st.integers(1, 3), i=st.integers(1, 4), o=st.integers(1, 4),
       k=st.sampled_from([1, 3]), size=st.sampled_from([4, 6]),
       resample=st.sampled_from(["none", "up", "down"]), demodulate=st.booleans(),
       grouped=st.sampled_from([True, False, None]))
@example(seed=0, b=2, i=3, o=2, k=3, size=4, resample="up", demodulate=True, grouped=True)
@example(seed=0, b=2, i=3, o=2, k=3, size=4, resample="down", demodulate=True, grouped=False)
def test_matches_reference(seed, b, i, o, k, size, resample, demodulate, grouped):
    x, weight, styles = draw(seed, b, i, o, k, size)
    up, down = int(resample == "up") + 1, int(resample == "down") + 1
    expected = reference_modulated_conv(x, weight, styles, demodulate, up, down)
    actual = modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up, down=down,
                              grouped=grouped)
    assert actual.shape == (b, o, size * up // down, size * up // down)
    torch.testing.assert_close(actual.double(), expected, rtol=1e-4, atol=1e-4)


@given(seed=seeds, b=st.integers(1, 4), i=st.integers(1, 6), o=st.integers(1, 6),
       k=st.sampled_from([1, 3]))
def test_demodulated_filters_have_unit_norm(seed, b, i, o, k):
    """Every sample's demodulated filter w''_j = d_j · s ⊙ w_j has unit L2 norm (Eq. 3)."""
    _, weight, styles = draw(seed, b, i, o, k, 1, torch.float64)
    per_sample = weight[None] * styles[:, None, :, None, None]  # (b, o, i, k, k)
    demodulated = per_sample * demodulation(weight, styles, eps=0)[:, :, None, None, None]
    norms = demodulated.square().sum((2, 3, 4)).sqrt()
    torch.testing.assert_close(norms, torch.ones(b, o, dtype=torch.float64))


@given(seed=seeds, scale=st.floats(0.01, 100), grouped=st.booleans(),
       resample=st.sampled_from(["none", "up", "down"]))
def test_output_ignores_the_scale_of_the_style(seed, scale, grouped, resample):
    """With demodulation, multiplying one sample's style by c > 0 leaves its output unchanged."""
    x, weight, styles = draw(seed, 2, 3, 4, 3, 4, torch.float64)
    up, down = int(resample == "up") + 1, int(resample == "down") + 1
    scaled = styles.clone()
    scaled[0] *= scale
    # ε = 0: exact invariance. With ε it holds up to ε / Σ(s·w)², which a drawn style near 0
    # scaled by 0.01 makes as large as 1e-4.
    run = lambda s: modulated_conv2d(x, weight, s, up=up, down=down, grouped=grouped,  # noqa: E731
                                     eps=0.0)
    torch.testing.assert_close(run(scaled), run(styles), rtol=1e-9, atol=1e-12)


@given(seed=seeds, a=st.floats(-3, 3), grouped=st.booleans())
def test_without_demodulation_output_is_linear_in_the_style(seed, a, grouped):
    """Without demodulation (tRGB) the output is linear in the style: f(s + a·t) = f(s) + a·f(t)."""
    x, weight, s = draw(seed, 2, 5, 3, 1, 4, torch.float64)
    t = torch.randn(s.shape, generator=generator(seed + 1), dtype=torch.float64)
    run = lambda s: modulated_conv2d(x, weight, s, demodulate=False, grouped=grouped)  # noqa: E731
    torch.testing.assert_close(run(s + a * t), run(s) + a * run(t))


@given(seed=seeds)
def test_demodulation_restores_unit_variance(seed):
    """For i.i.d. unit-variance inputs the demodulated output has unit standard deviation (Eq. 2)."""
    g = generator(seed)
    x = torch.randn(4, 64, 16, 16, generator=g)
    weight = torch.randn(32, 64, 3, 3, generator=g)
    styles = torch.rand(4, 64, generator=g) * 5  # wildly different per-channel scales
    y = modulated_conv2d(x, weight, styles, padding=0)
    assert y.std().item() == pytest.approx(1.0, rel=0.05)


def test_modules_match_the_function():
    conv = ModulatedConv2d(3, 5, 3, 8, up=2)
    rgb = ToRGB(5, 2, 8)
    with torch.no_grad():
        rgb.bias.normal_(generator=generator(0))
    x = torch.randn(2, 3, 4, 4, generator=generator(1))
    w = torch.randn(2, 8, generator=generator(2))
    y = conv(x, w)
    assert y.shape == (2, 5, 8, 8)
    s = conv.affine(w) / 27**0.5  # equalized weight w / √(i·k·k), moved onto the styles
    torch.testing.assert_close(y, modulated_conv2d(x, conv.weight, s, up=2), rtol=1e-5, atol=1e-5)
    s = rgb.conv.affine(w) / 5**0.5
    expected = modulated_conv2d(y, rgb.conv.weight, s, demodulate=False)
    expected = expected + rgb.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(rgb(y, w), expected)
    assert torch.equal(conv.affine(torch.zeros(1, 8)), torch.ones(1, 3))  # bias_init = 1


@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize("up, down", [(1, 1), (2, 1), (1, 2)])
def test_gradcheck(grouped, up, down):
    x, weight, styles = draw(4, 2, 2, 2, 3, 4, torch.float64)
    inputs = tuple(t.requires_grad_() for t in (x, weight, styles))
    assert torch.autograd.gradcheck(
        lambda x, w, s: modulated_conv2d(x, w, s, up=up, down=down, grouped=grouped), inputs)


@pytest.mark.parametrize("grouped", [True, False])
def test_gradgradcheck(grouped):
    """Path length regularization differentiates G twice, so the layer must be twice differentiable."""
    x, weight, styles = draw(5, 2, 2, 2, 3, 3, torch.float64)
    inputs = tuple(t.requires_grad_() for t in (x, weight, styles))
    assert torch.autograd.gradgradcheck(
        lambda x, w, s: modulated_conv2d(x, w, s, up=2, grouped=grouped), inputs)


def test_rejects_bad_arguments():
    x, weight, styles = draw(0, 2, 3, 4, 3, 4)
    with pytest.raises(ValueError, match="disagree"):
        modulated_conv2d(x, weight, styles[:1])
    with pytest.raises(ValueError, match="not both"):
        modulated_conv2d(x, weight, styles, up=2, down=2)
    with pytest.raises(ValueError, match="positive sizes"):
        ModulatedConv2d(0, 3, 3, 8)


def test_the_path_rule_per_device_type():
    """CPU: grouped only for few weights per pixel; CUDA: grouped only without a gradient
    (StyleGAN2-ADA's rule); any other device (XLA, MPS): the activation path."""
    from nanogan.modulation import grouped_rule
    assert grouped_rule("cpu", 64 * 16, 16, needs_grad=True)
    assert not grouped_rule("cpu", 64 * 16 + 1, 16, needs_grad=False)
    assert grouped_rule("cuda", 10**7, 16, needs_grad=False)
    assert not grouped_rule("cuda", 1, 10**6, needs_grad=True)
    assert not grouped_rule("xla", 1, 10**6, needs_grad=False)
    assert not grouped_rule("mps", 1, 10**6, needs_grad=False)


def test_prefer_grouped_follows_the_rule_and_the_environment(monkeypatch):
    """On CPU tensors the CPU rule decides; $NANOGAN_MODCONV forces a path on any device and a
    wrong value is refused by name."""
    from nanogan.modulation import prefer_grouped
    monkeypatch.delenv("NANOGAN_MODCONV", raising=False)
    narrow, wide = torch.zeros(4, 4, 3, 3), torch.zeros(512, 512, 3, 3)
    x = torch.zeros(2, 4, 32, 32)
    assert prefer_grouped(x, narrow) and not prefer_grouped(x, wide)
    monkeypatch.setenv("NANOGAN_MODCONV", "grouped")
    assert prefer_grouped(x, wide) and prefer_grouped(x.to("meta"), wide.to("meta"))
    monkeypatch.setenv("NANOGAN_MODCONV", "activations")
    assert not prefer_grouped(x, narrow)
    monkeypatch.setenv("NANOGAN_MODCONV", "fused")
    with pytest.raises(ValueError, match="NANOGAN_MODCONV must be one of auto, grouped"):
        prefer_grouped(x, narrow)
