"""Modulated convolution with weight demodulation: StyleGAN2's replacement for AdaIN.

Paper: Karras, Laine, Aittala, Hellsten, Lehtinen, Aila (2020), "Analyzing and Improving the
Image Quality of StyleGAN", arXiv:1912.04958, §2.2, Eq. 1–3, and Appendix B (grouped
convolutions). The style s scales each input feature map; demodulation rescales each output
feature map by the L2 norm its weights would give an i.i.d. unit-variance input (Eq. 2):

    w'_ijk = s_i · w_ijk                               (1)
    w''_ijk = w'_ijk / √(Σ_{i,k} w'_ijk² + ε)          (3)

(i input channel, j output channel, k kernel tap). Two implementations, identical math:
- grouped: build each sample's weights w'' and run one convolution with the batch folded into
  the groups (Appendix B);
- activations: x·s → one shared-weight convolution → ·d with d_bj = 1/√(Σ_i s_bi² Σ_k w_ijk² + ε)
  computed from w and s alone (`demodulation`), never forming per-sample weights.
`grouped=None` picks by `prefer_grouped`, per device type. CPU, measured on 2 cores (forward +
backward): the grouped path wins (1.1–5×) only where the per-sample weights are small next to
the feature maps (o·i·k² ≤ 64·h·w: tRGB, narrow high-resolution layers); for wide layers at low
resolution the activation path wins by up to 15× even at batch 1, because grouped convolutions
are slow there. CUDA, not measured here: the rule of the official StyleGAN2-ADA PyTorch code
(grouped for inference only; when a gradient flows, cuDNN's grouped weight gradient and the
b·o·i·k² per-sample weights make the activation path the faster one); `benchmarks/bench.py
--suite modconv` times both paths per layer so the rule can be corrected from figures. Other
devices (XLA, MPS): the activation path (plain convolutions; TPUs handle large group counts
poorly). `NANOGAN_MODCONV=grouped|activations` (environment) forces one path everywhere.
up=2: transposed convolution (stride 2), then the FIR blur; down=2: FIR blur, then stride 2
(`upfirdn.resampled_conv2d`).

Shapes: x (b, i, h, w), weight (o, i, k, k), styles (b, i) -> (b, o, h·up/down, w·up/down).
Lesson: lessons/11_modulation.md
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import ContextManager

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nanogan.equalized import EqualLinear
from nanogan.upfirdn import make_kernel, resampled_conv2d


def full_precision(device_type: str) -> ContextManager:
    """fp32 math inside (autocast off) when autocast is on for `device_type`; else nothing, so
    that runs without autocast execute exactly the same operations."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def demodulation(weight: torch.Tensor, styles: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """d_bo = 1/√(Σ_{i,k} (w_oik·s_bi)² + ε) = 1/√(Σ_i s_bi² Σ_k w_oik² + ε), shape (b, o)."""
    return torch.rsqrt(styles.square() @ weight.square().sum((2, 3)).T + eps)


PATH_VARIABLE = "NANOGAN_MODCONV"
PATHS = ("auto", "grouped", "activations")


def prefer_grouped(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """The automatic choice of path for x's device (see the module docstring): CPU: per-sample
    weights only when few per pixel (o·i·k² ≤ 64·h·w); CUDA: grouped when no gradient flows;
    other devices: the activation path. $NANOGAN_MODCONV = grouped | activations overrides it."""
    forced = os.environ.get(PATH_VARIABLE, "auto")
    if forced != "auto":
        if forced not in PATHS:
            raise ValueError(f"${PATH_VARIABLE} must be one of {', '.join(PATHS)}, got "
                             f"{forced!r}")
        return forced == "grouped"
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    return grouped_rule(x.device.type, weight.numel(), x.shape[-2] * x.shape[-1], needs_grad)


def grouped_rule(device_type: str, weight_numel: int, pixels: int, needs_grad: bool) -> bool:
    """The per-device rule behind `prefer_grouped`, as a pure function of what it looks at."""
    if device_type == "cpu":
        return weight_numel <= 64 * pixels
    if device_type == "cuda":
        return not needs_grad
    return False


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *,
                     demodulate: bool = True, up: int = 1, down: int = 1,
                     padding: int | None = None, kernel: torch.Tensor | None = None,
                     grouped: bool | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Convolve x with weights modulated by styles (Eq. 1) and, optionally, demodulated (Eq. 3)."""
    if x.ndim != 4 or weight.ndim != 4 or styles.ndim != 2:
        raise ValueError(f"expected x (b, i, h, w), weight (o, i, k, k), styles (b, i); got "
                         f"{tuple(x.shape)}, {tuple(weight.shape)}, {tuple(styles.shape)}")
    if not (x.shape[0] == styles.shape[0] and x.shape[1] == weight.shape[1] == styles.shape[1]):
        raise ValueError(f"batch or input channels disagree: x {tuple(x.shape)}, weight "
                         f"{tuple(weight.shape)}, styles {tuple(styles.shape)}")
    if up < 1 or down < 1 or (up > 1 and down > 1):
        raise ValueError(f"up and down must be >= 1 and not both > 1, got up={up}, down={down}")
    padding = weight.shape[-1] // 2 if padding is None else padding
    if kernel is None and (up > 1 or down > 1):
        kernel = make_kernel().to(x.device)
    resample = dict(up=up, down=down, padding=padding, kernel=kernel)
    if prefer_grouped(x, weight) if grouped is None else grouped:
        b = x.shape[0]
        w = weight * rearrange(styles, "b i -> b 1 i 1 1")  # Eq. 1, (b, o, i, k, k)
        if demodulate:
            w = w * torch.rsqrt(w.square().sum((2, 3, 4), keepdim=True) + eps)  # Eq. 3
        x = rearrange(x, "b i h w -> 1 (b i) h w")  # b groups of i channels: a view, no copy
        y = resampled_conv2d(x, rearrange(w, "b o i kh kw -> (b o) i kh kw"), b, **resample)
        return rearrange(y, "1 (b o) h w -> b o h w", b=b)
    # .to(x.dtype)/.to(y.dtype): under autocast the activations stay in the conv's precision
    # (fp16 or bf16) instead of being promoted to fp32 by the fp32 styles; no-ops in fp32.
    y = resampled_conv2d(x * rearrange(styles, "b i -> b i 1 1").to(x.dtype), weight, 1,
                         **resample)
    if demodulate:
        with full_precision(y.device.type):  # Σ_i s² Σ_k w² in fp32, not as an fp16 matmul
            d = demodulation(weight, styles, eps)
        y = y * rearrange(d, "b o -> b o 1 1").to(y.dtype)
    return y


class ModulatedConv2d(nn.Module):
    """Weights N(0, 1) with the equalized-lr constant 1/√(i·k·k); the affine A maps w to s."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, w_dim: int, *,
                 demodulate: bool = True, up: int = 1, kernel=(1, 3, 3, 1)):
        super().__init__()
        if min(in_channels, out_channels, kernel_size, w_dim, up) < 1:
            raise ValueError(f"ModulatedConv2d needs positive sizes, got {in_channels}->"
                             f"{out_channels}, kernel {kernel_size}, w_dim {w_dim}, up {up}")
        self.demodulate, self.up = demodulate, up
        self.weight = nn.Parameter(
            torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.register_buffer("kernel", make_kernel(kernel), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # (w·c)·s = w·(c·s): the He constant scales the b·i styles, not the o·i·k·k weights.
        with full_precision(w.device.type):  # styles in fp32 under autocast too (cheap: b × i)
            styles = self.affine(w) * self.weight_gain
        return modulated_conv2d(x, self.weight, styles, demodulate=self.demodulate, up=self.up,
                                kernel=self.kernel)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, demodulate={self.demodulate}, up={self.up}"


class ToRGB(nn.Module):
    """tRGB: a 1×1 modulated convolution without demodulation, plus a bias."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        y = self.conv(x, w)
        return y + rearrange(self.bias, "o -> 1 o 1 1").to(y.dtype)
