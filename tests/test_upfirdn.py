"""FIR resampling (StyleGAN2 §4.1, Appendix B) against a zero-stuff, pad, convolve loop."""

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.upfirdn import blur, downsample2d, make_kernel, upfirdn2d, upsample2d


def reference_upfirdn(x, kernel2d, up, down, pad, gain):
    """Zero-stuff, pad (negative crops), true 2-D convolution as a loop over taps, subsample."""
    x, f = x.double(), kernel2d.double() * gain
    b, c, h, w = x.shape
    stuffed = torch.zeros(b, c, h * up, w * up, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            stuffed[:, :, i * up, j * up] = x[:, :, i, j]
    x0, x1, y0, y1 = pad
    v = torch.nn.functional.pad(stuffed, (x0, x1, y0, y1))
    kh, kw = f.shape
    oh, ow = v.shape[2] - kh + 1, v.shape[3] - kw + 1
    out = torch.zeros(b, c, oh, ow, dtype=torch.float64)
    for ty in range(kh):
        for tx in range(kw):  # true convolution: tap t meets f[k - 1 - t]
            out += v[:, :, ty : ty + oh, tx : tx + ow] * f[kh - 1 - ty, kw - 1 - tx]
    return out[:, :, ::down, ::down]


taps = st.sampled_from([(1, 3, 3, 1), (1, 2, 1), (1,), (1, 1), (2, 5, 1)])
pads = st.integers(-1, 3)


@given(seed=seeds, taps=taps, up=st.integers(1, 3), down=st.integers(1, 3),
       pad=st.tuples(pads, pads, pads, pads), size=st.integers(3, 6),
       gain=st.sampled_from([1.0, 4.0]), separable=st.booleans())
@example(seed=0, taps=(1, 3, 3, 1), up=2, down=1, pad=(2, 1, 2, 1), size=4, gain=4.0,
         separable=True)  # upsample2d: the transposed-convolution path
@example(seed=0, taps=(1, 3, 3, 1), up=1, down=2, pad=(1, 1, 1, 1), size=4, gain=1.0,
         separable=True)  # downsample2d
@example(seed=1, taps=(2, 5, 1), up=2, down=1, pad=(2, 1, 1, 0), size=3, gain=1.0,
         separable=False)  # transposed convolution with an asymmetric kernel
def test_matches_reference(seed, taps, up, down, pad, size, gain, separable):
    g = generator(seed)
    x = torch.randn(2, 3, size, size + 1, generator=g)
    kernel = make_kernel(taps)
    if not separable:  # an arbitrary, asymmetric 2-D kernel catches a missing flip
        kernel = torch.rand(len(taps), len(taps), generator=g)
    x0, x1, y0, y1 = pad
    if size * up + y0 + y1 < len(taps) or (size + 1) * up + x0 + x1 < len(taps):
        return
    f2d = torch.outer(kernel, kernel) if separable else kernel
    expected = reference_upfirdn(x, f2d, up, down, pad, gain)
    actual = upfirdn2d(x, kernel, up=up, down=down, pad=pad, gain=gain)
    torch.testing.assert_close(actual.double(), expected, rtol=1e-5, atol=1e-5)


@given(seed=seeds, taps=st.sampled_from([(1, 3, 3, 1), (1, 2, 1), (1, 3, 3, 1, 2)]),
       up=st.integers(1, 2), down=st.integers(1, 2), pad=st.tuples(*[st.integers(0, 3)] * 4))
def test_separable_equals_two_dimensional(seed, taps, up, down, pad):
    """A 1-D kernel filters exactly as the 2-D filter given by its outer product."""
    x = torch.randn(1, 2, 5, 5, generator=generator(seed), dtype=torch.float64)
    kernel = make_kernel(taps).double() * torch.linspace(0.5, 1.5, len(taps)).double()
    separable = upfirdn2d(x, kernel, up=up, down=down, pad=pad)
    full = upfirdn2d(x, torch.outer(kernel, kernel), up=up, down=down, pad=pad)
    torch.testing.assert_close(separable, full)
    # Filtering rows then columns with the 1-D kernel gives the same again.
    rows = upfirdn2d(x, kernel[None, :], up=1, pad=(pad[0], pad[1], 0, 0))
    both = upfirdn2d(rows, kernel[:, None], pad=(0, 0, pad[2], pad[3]))
    torch.testing.assert_close(both, upfirdn2d(x, kernel, pad=pad))


@given(value=st.floats(-3, 3), taps=st.sampled_from([(1, 3, 3, 1), (1, 2, 1), (1, 1)]),
       factor=st.sampled_from([2, 4]))
def test_constant_image_stays_constant(value, taps, factor):
    """Upsampling by 2 and downsampling map a constant image to the same constant away from the borders."""
    kernel = make_kernel(taps).double()
    x = torch.full((1, 2, 16, 16), value, dtype=torch.float64)
    # Up by 2 only: these kernels split into 2 phases of equal sum, not into 4.
    up, down = upsample2d(x, kernel, 2), downsample2d(x, kernel, factor)
    assert up.shape[-2:] == (32, 32)
    assert down.shape[-2:] == (16 // factor, 16 // factor)
    margin = len(taps)  # outputs that the zero padding can reach
    inner = up[..., margin:-margin, margin:-margin]
    torch.testing.assert_close(inner, torch.full_like(inner, value))
    m = (margin + factor - 1) // factor
    inner = down[..., m : down.shape[-2] - m, m : down.shape[-1] - m]
    assert inner.numel() > 0
    torch.testing.assert_close(inner, torch.full_like(inner, value))


@given(seed=seeds)
def test_blur_preserves_the_sum(seed):
    """With a full padding of k − 1 on each side a normalised blur keeps every channel's total."""
    kernel = make_kernel()
    x = torch.randn(2, 3, 5, 6, generator=generator(seed), dtype=torch.float64)
    y = blur(x, kernel.double(), 3)
    assert y.shape[-2:] == (8, 9)
    torch.testing.assert_close(y.sum((2, 3)), x.sum((2, 3)))


@pytest.mark.parametrize("up, down, pad", [(1, 1, (1, 2, 2, 1)), (2, 1, (2, 1, 2, 1)),
                                           (3, 1, (0, 0, 0, 0)), (1, 2, (1, 1, -1, 2))])
def test_gradcheck(up, down, pad):
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, generator=generator(3), requires_grad=True)
    kernel = make_kernel((1, 3, 3, 1)).double()
    assert torch.autograd.gradcheck(lambda x: upfirdn2d(x, kernel, up, down, pad, 2.0), (x,))


def test_rejects_bad_arguments():
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="up and down"):
        upfirdn2d(x, make_kernel(), up=0)
    with pytest.raises(ValueError, match=r"\(b, c, h, w\)"):
        upfirdn2d(x[0], make_kernel())
    with pytest.raises(ValueError, match="smaller than the kernel"):
        upfirdn2d(x, make_kernel(), pad=-1)
    with pytest.raises(ValueError, match="non-zero sum"):
        make_kernel((1, -1))
