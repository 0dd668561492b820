"""FIR resampling: upsample by zero-stuffing, pad, filter with a FIR kernel, downsample.

Paper: Karras et al. (2020), "Analyzing and Improving the Image Quality of StyleGAN",
arXiv:1912.04958, §4.1 and Appendix B ("bilinear filtering in all up/downsampling layers"),
after Zhang (2019), "Making Convolutional Networks Shift-Invariant Again", arXiv:1904.11486.
StyleGAN's "bilinear" filter is the separable FIR kernel f = [1, 3, 3, 1] / 8 (2-D: f fᵀ):

    y[n] = Σ_t v[n·down + t] · f[K − 1 − t],   v = pad(zero_stuff(x, up), p0, p1)

zero_stuff keeps x[m] at m·up and puts up − 1 zeros after each sample; the sum is a true
convolution (the kernel is flipped), done per channel (depthwise). `gain` scales the output:
up-sampling by u needs gain u² so that a constant image stays constant. `resampled_conv2d` fuses
resampling with a convolution, as StyleGAN2's layers do: ↑ transposed conv (stride 2) then blur,
↓ blur then conv with stride 2 (used by `ModulatedConv2d` and `EqualConv2d(down=2)`).

Shapes: x (b, c, h, w), kernel (k,) separable or (k, k) -> (b, c, h', w') with
h' = (h·up + y0 + y1 − k) // down + 1.
Lesson: lessons/13_fir_resampling.md
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

Pad = tuple[int, int, int, int]


def make_kernel(taps=(1, 3, 3, 1)) -> torch.Tensor:
    """The 1-D FIR kernel normalised to sum 1; the 2-D filter is its outer product."""
    kernel = torch.as_tensor(taps, dtype=torch.float32)
    if kernel.ndim != 1 or kernel.numel() == 0 or kernel.sum() == 0:
        raise ValueError(f"kernel taps must be a non-empty 1-D sequence with a non-zero sum, "
                         f"got {taps!r}")
    return kernel / kernel.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: Pad | int = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Zero-stuff by `up`, pad (x0, x1, y0, y1) (negative crops), filter, keep every `down`-th."""
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects x of shape (b, c, h, w), got {tuple(x.shape)}")
    if kernel.ndim not in (1, 2):
        raise ValueError(f"kernel must be 1-D (separable) or 2-D, got shape {tuple(kernel.shape)}")
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be integers >= 1, got up={up}, down={down}")
    x0, x1, y0, y1 = (pad,) * 4 if isinstance(pad, int) else pad
    f = torch.outer(kernel, kernel) if kernel.ndim == 1 else kernel
    kh, kw = f.shape
    if (x.shape[2] * up + y0 + y1 - kh) < 0 or (x.shape[3] * up + x0 + x1 - kw) < 0:
        raise ValueError(f"padded image {tuple(x.shape[2:])}·{up} + pad {(x0, x1, y0, y1)} is "
                         f"smaller than the kernel {(kh, kw)}")
    c = x.shape[1]
    # One 2-D depthwise pass: measured faster on CPU than two 1-D passes (one read of x, not two).
    f = (f * gain).to(x)[None, None].expand(c, 1, kh, kw)
    # Transposed convolution = zero-stuffing + true convolution, without the zeros; it covers
    # the usual pads (q ≥ 0 and the end fixed by output_padding < up).
    qy, qx, oy, ox = kh - 1 - y0, kw - 1 - x0, y1 - y0 + up - 1, x1 - x0 + up - 1
    if up > 1 and down == 1 and min(qy, qx, oy, ox) >= 0 and max(oy, ox) < up:
        return F.conv_transpose2d(x, f, stride=up, padding=(qy, qx),
                                  output_padding=(oy, ox), groups=c)
    if up > 1:
        x = zero_stuff(x, up)
    f = f.flip([2, 3])  # conv2d correlates; flipping makes it a true convolution
    if x0 == x1 >= 0 and y0 == y1 >= 0:  # symmetric: let the convolution pad, no copy
        return F.conv2d(x, f, stride=down, padding=(y0, x0), groups=c)
    return F.conv2d(F.pad(x, (x0, x1, y0, y1)), f, stride=down, groups=c)


def zero_stuff(x: torch.Tensor, up: int) -> torch.Tensor:
    """Place x[m] at m·up along h and w and fill the up − 1 positions after each with zeros."""
    b, c, h, w = x.shape
    out = x.new_zeros(b, c, h, up, w, up)
    out[:, :, :, 0, :, 0] = x
    return out.view(b, c, h * up, w * up)


def upsample2d(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Upsample by `factor` (output h·factor × w·factor); gain factor² keeps constants constant."""
    k = kernel.shape[-1]
    p0, p1 = (k + factor - 1) // 2, (k - factor) // 2
    return upfirdn2d(x, kernel, up=factor, pad=(p0, p1, p0, p1), gain=factor**2)


def downsample2d(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Filter and keep every `factor`-th pixel (output h/factor × w/factor for divisible sizes)."""
    k = kernel.shape[-1]
    p0, p1 = (k - factor + 1) // 2, (k - factor) // 2
    return upfirdn2d(x, kernel, down=factor, pad=(p0, p1, p0, p1))


def blur(x: torch.Tensor, kernel: torch.Tensor, pad: Pad | int) -> torch.Tensor:
    """Filter without resampling; pad is (x0, x1, y0, y1) or one int for all four sides."""
    return upfirdn2d(x, kernel, pad=pad)


def resampled_conv2d(x: torch.Tensor, weight: torch.Tensor, groups: int, *, up: int, down: int,
                     padding: int, kernel: torch.Tensor | None) -> torch.Tensor:
    """conv2d with 'same'-style padding, or ↑: transposed conv then blur, or ↓: blur then stride."""
    k = weight.shape[-1]
    if up > 1:
        # Transposed conv wants (in, out/groups, k, k); the flip makes it zero-stuffing
        # followed by conv2d with `weight`, so both directions use the same orientation.
        w = rearrange(weight, "(g o) i kh kw -> (g i) o kh kw", g=groups).flip([2, 3])
        y = F.conv_transpose2d(x, w, stride=up, groups=groups)
        p0 = (kernel.shape[-1] + up - 1) // 2 + padding - (k - 1)
        p1 = (kernel.shape[-1] - up) // 2 + padding - (k - up)
        return upfirdn2d(y, kernel, pad=(p0, p1, p0, p1), gain=up**2)
    if down > 1:
        K = kernel.shape[-1]
        p0, p1 = (K - down + 1) // 2 + padding, (K - down) // 2 + padding
        x = upfirdn2d(x, kernel, pad=(p0, p1, p0, p1))
        return F.conv2d(x, weight, stride=down, groups=groups)
    return F.conv2d(x, weight, padding=padding, groups=groups)
