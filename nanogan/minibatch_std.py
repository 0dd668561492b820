"""Minibatch standard deviation: show D how much the samples of a small group differ.

Paper: Karras, Aila, Laine, Lehtinen (2018), "Progressive Growing of GANs for Improved Quality,
Stability, and Variation", arXiv:1710.10196, §3 (inserted at 4×4 at the end of D, Appendix
A.1). The `num_channels` generalisation (one statistic per group of feature maps) comes from the
official StyleGAN2 code (Karras et al. 2020, arXiv:1912.04958; group 4, 1 channel there too).

For a group of G samples x_1..x_G and each feature map f (of a channel group) and pixel (h, w):

    σ_{f,h,w} = √( (1/G) Σ_i (x_{i,f,h,w} − μ_{f,h,w})² + ε ),   s = mean_{f,h,w} σ_{f,h,w}

s is replicated over the group's samples and pixels and appended as an extra feature map, so a
generator that produces too little variation is visible to D at a glance.

Groups are CONTIGUOUS: samples 0..G−1 form group 0, G..2G−1 group 1, and so on. The official
code reshapes to [G, M, ...], which groups samples i, i+M, i+2M, ... (strided). Contiguous groups
mean that a batch split into contiguous shards of whole groups (data-parallel training gives each
process such a shard) sees exactly the same groups, so the statistic does not depend on the
number of processes.

Shapes: (b, c, h, w) -> (b, c + num_channels, h, w); b = n·g, c = f·k with f = num_channels.
Lesson: lessons/04_minibatch_std.md
"""

from __future__ import annotations

import torch
from einops import rearrange, reduce, repeat
from torch import nn


def minibatch_std(x: torch.Tensor, group_size: int = 4, num_channels: int = 1,
                  eps: float = 1e-8) -> torch.Tensor:
    """Append each group's per-feature std, averaged over features and pixels, as new channels."""
    if x.dim() != 4:
        raise ValueError(f"minibatch_std expects (b, c, h, w), got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    if group_size < 1 or num_channels < 1:
        raise ValueError(f"group_size and num_channels must be >= 1, got {group_size}, "
                         f"{num_channels}")
    g = min(group_size, b)
    if b % g != 0:
        raise ValueError(f"batch size {b} is not divisible by group size {g}; use a batch "
                         f"that is a multiple of {g} or a group size that divides {b}")
    if c % num_channels != 0:
        raise ValueError(f"num_channels {num_channels} must divide the {c} channels")
    y = rearrange(x, "(n g) (f k) h w -> n g f k h w", g=g, f=num_channels)
    std = (y.var(dim=1, unbiased=False) + eps).sqrt()  # population variance, as in the paper
    s = reduce(std, "n f k h w -> n f", "mean")
    return torch.cat([x, repeat(s, "n f -> (n g) f h w", g=g, h=h, w=w)], dim=1)


class MinibatchStd(nn.Module):
    """Minibatch standard deviation layer (no parameters); see `minibatch_std`."""

    def __init__(self, group_size: int = 4, num_channels: int = 1):
        super().__init__()
        if group_size < 1 or num_channels < 1:
            raise ValueError(f"group_size and num_channels must be >= 1, got {group_size}, "
                             f"{num_channels}")
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return minibatch_std(x, self.group_size, self.num_channels)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
