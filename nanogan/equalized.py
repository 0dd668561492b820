"""Equalized learning rate: store weights as N(0, 1) and apply the He constant at run time.

Paper: Karras, Aila, Laine, Lehtinen (2018), "Progressive Growing of GANs for Improved Quality,
Stability, and Variation", arXiv:1710.10196, §4.1 (and Appendix A.1: all weights N(0, 1),
biases zero). The learning-rate multiplier λ is StyleGAN's mapping-network trick
(Karras et al. 2019, arXiv:1812.04948, Appendix C; λ = 0.01), kept in StyleGAN2 config F.

    ŵ = w · c · λ,   c = gain / √fan_in,   w ~ N(0, 1/λ²),   b̂ = b · λ

The paper writes ŵ_i = w_i / c with c the He initializer's normalizer; here c is the He
standard deviation itself, so the multiplication reads left to right. Adam divides each update
by the gradient's running RMS, so a step moves every stored w by about lr whatever its layer;
because the layer uses w·c, every layer's effective weights move by the same *fraction* of their
own scale. λ then slows a whole layer down by exactly λ.

`EqualConv2d(down=2)` is StyleGAN2's downsampling convolution (arXiv:1912.04958, Appendix B:
"bilinear filtering in all up/downsampling layers"): FIR blur [1, 3, 3, 1], then the
convolution with stride 2 (`upfirdn.resampled_conv2d`).

Shapes: EqualLinear (b, i) -> (b, o); EqualConv2d (b, i, h, w) -> (b, o, h, w) for stride 1,
(b, o, h/2, w/2) for down=2.
Lesson: lessons/02_equalized_lr.md
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nanogan.upfirdn import make_kernel, resampled_conv2d


def equalize(weight: torch.Tensor, gain: float = 1.0, lr_mul: float = 1.0) -> torch.Tensor:
    """Effective weight ŵ = w · gain/√fan_in · λ, with fan_in the size of one output's input."""
    fan_in = weight[0].numel()
    return weight * (gain / math.sqrt(fan_in) * lr_mul)


class EqualLinear(nn.Module):
    """Fully connected layer with equalized learning rate (and optional lr multiplier λ)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 gain: float = 1.0, lr_mul: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"EqualLinear needs positive sizes, got {in_features}->{out_features}")
        if lr_mul <= 0:
            raise ValueError(f"lr_mul must be > 0, got {lr_mul}")
        self.gain, self.lr_mul = gain, lr_mul
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), bias_init / lr_mul)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        return F.linear(x, equalize(self.weight, self.gain, self.lr_mul), bias)

    def extra_repr(self) -> str:
        o, i = self.weight.shape
        return f"{i}, {o}, bias={self.bias is not None}, gain={self.gain:g}, lr_mul={self.lr_mul:g}"


class EqualConv2d(nn.Module):
    """2-D convolution with equalized learning rate; padding defaults to 'same' (k // 2).
    `down` > 1 blurs with the FIR kernel, then convolves with stride `down` (StyleGAN2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True, *,
                 stride: int = 1, padding: int | None = None, gain: float = 1.0,
                 lr_mul: float = 1.0, down: int = 1):
        super().__init__()
        if in_channels < 1 or out_channels < 1 or kernel_size < 1:
            raise ValueError(
                f"EqualConv2d needs positive sizes, got {in_channels}->{out_channels}, "
                f"kernel {kernel_size}")
        if down < 1 or (down > 1 and stride != 1):
            raise ValueError(f"EqualConv2d: down must be an integer >= 1, and stride 1 when "
                             f"down > 1 (the blur then strides); got down={down}, stride={stride}")
        self.gain, self.lr_mul, self.stride, self.down = gain, lr_mul, stride, down
        if down > 1:
            self.register_buffer("kernel", make_kernel(), persistent=False)
        self.padding = kernel_size // 2 if padding is None else padding
        self.weight = nn.Parameter(
            torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        weight = equalize(self.weight, self.gain, self.lr_mul)
        if self.down == 1:
            return F.conv2d(x, weight, bias, stride=self.stride, padding=self.padding)
        y = resampled_conv2d(x, weight, 1, up=1, down=self.down, padding=self.padding,
                             kernel=self.kernel)
        # The bias after the strided conv, in y's dtype (under autocast y may be reduced).
        return y if bias is None else y + bias.view(1, -1, 1, 1).to(y.dtype)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return (f"{i}, {o}, kernel_size={k}, stride={self.stride}, padding={self.padding}, "
                f"gain={self.gain:g}, lr_mul={self.lr_mul:g}"
                + (f", down={self.down}" if self.down > 1 else ""))
