"""Pixelwise feature vector normalization: scale every pixel's feature vector to unit RMS.

Paper: Karras, Aila, Laine, Lehtinen (2018), "Progressive Growing of GANs for Improved Quality,
Stability, and Variation", arXiv:1710.10196, §4.2 (used after every 3×3 convolution of the
generator, Appendix A.1). StyleGAN's mapping network applies it to z (arXiv:1812.04948).

    b_{x,y} = a_{x,y} / √( (1/N) Σ_{j=0}^{N-1} (a^j_{x,y})² + ε ),   ε = 10⁻⁸

with N the number of feature maps and a_{x,y}, b_{x,y} the original and normalized feature
vectors of pixel (x, y). It is a variant of local response normalization with no learned
parameters: it does not standardize activations the way batch norm does, it only stops their
magnitude from escalating in the competition between G and D.

Shapes: (b, c, h, w) -> (b, c, h, w), normalized over c (dim=1); also (b, z) -> (b, z).
Lesson: lessons/03_pixel_norm.md
"""

from __future__ import annotations

import torch
from torch import nn


def pixel_norm(x: torch.Tensor, eps: float = 1e-8, dim: int = 1) -> torch.Tensor:
    """Divide x by the root mean square of its entries along `dim` (ε inside the square root)."""
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    return x * torch.rsqrt(x.square().mean(dim=dim, keepdim=True) + eps)


class PixelNorm(nn.Module):
    """Pixelwise feature vector normalization over the channel dimension (no parameters)."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_norm(x, self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps:g}"
