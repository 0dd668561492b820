"""Conditional batch normalization: BatchNorm whose per-channel gain and bias are linear
functions of a condition vector, here the shared class embedding joined to a chunk of z.

Papers: Ioffe & Szegedy (2015), arXiv:1502.03167, Algorithm 1 (batch normalization); de Vries
et al. (2017), arXiv:1707.00683, and Dumoulin, Shlens, Kudlur (2017), arXiv:1610.07629
(class-conditional gains and biases); BigGAN, Brock et al. (2019), arXiv:1809.11096, §3 and
Appendix B, Fig. 15(b): one shared class embedding, linearly projected to each layer's gains and
biases, "the bias projections are zero-centered, while the gain projections are one-centered",
and with hierarchical latents a chunk of z concatenated to it.

    x̂ = (x − μ_B) / √(σ²_B + ε)                         (μ_B, σ²_B over b, h, w; ε = 1e-4 in BigGAN)
    y = x̂ ⊙ (1 + W_γ c) + W_β c,       c = [e(class) ‖ z_ℓ]

The normalization is an inner `nn.BatchNorm2d(affine=False)` submodule, so that
`nn.SyncBatchNorm.convert_sync_batchnorm` swaps it for a cross-process one (BigGAN's
"cross-replica BatchNorm", Appendix C) while this module and its projections stay as they are.
The projections are bias-free: W c alone is "zero-centred" in c. BigGAN passes spectrally
normalized linears (`linear=`); any (in, out, bias=False) constructor works.

Shapes: x (b, c, h, w), cond (b, k) -> (b, c, h, w).
Lesson: lessons/22_conditional_bn.md
"""

from __future__ import annotations

from typing import Callable

import torch
from einops import rearrange
from torch import nn


def scale_and_shift(x_hat: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x̂ ⊙ gain + bias with one gain and one bias per sample and channel: (b, c) each."""
    if gain.shape != x_hat.shape[:2] or bias.shape != x_hat.shape[:2]:
        raise ValueError(f"expected gain and bias of shape {tuple(x_hat.shape[:2])} for features "
                         f"{tuple(x_hat.shape)}, got {tuple(gain.shape)} and {tuple(bias.shape)}")
    return x_hat * rearrange(gain, "b c -> b c 1 1") + rearrange(bias, "b c -> b c 1 1")


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without its own affine; gain 1 + W_γ·cond and bias W_β·cond per sample."""

    def __init__(self, channels: int, cond_dim: int, eps: float = 1e-5, momentum: float = 0.1,
                 linear: Callable[..., nn.Module] = nn.Linear):
        super().__init__()
        if channels < 1 or cond_dim < 1:
            raise ValueError(f"need channels >= 1 and cond_dim >= 1, got {channels}, {cond_dim}")
        self.cond_dim = cond_dim
        self.bn = nn.BatchNorm2d(channels, eps=eps, momentum=momentum, affine=False)
        self.to_gain = linear(cond_dim, channels, bias=False)
        self.to_bias = linear(cond_dim, channels, bias=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if cond.ndim != 2 or cond.shape != (x.shape[0], self.cond_dim):
            raise ValueError(f"expected cond of shape ({x.shape[0]}, {self.cond_dim}), got "
                             f"{tuple(cond.shape)}")
        return scale_and_shift(self.bn(x), 1 + self.to_gain(cond), self.to_bias(cond))
