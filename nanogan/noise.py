"""Per-pixel noise inputs with one learned strength per layer.

Paper: Karras, Laine, Aila (2019), "A Style-Based Generator Architecture for Generative
Adversarial Networks", arXiv:1812.04948, §2 and §3.2 ("stochastic variation"): each
synthesis layer gets a single-channel image of uncorrelated Gaussian noise, broadcast to all
feature maps with a learned scaling factor. StyleGAN2 (arXiv:1912.04958, §2, Fig. 2c) keeps
one learned scalar per layer and adds the noise outside the style block, before the bias:

    x ← x + strength · n,   n ~ N(0, I) of shape (1, h, w) per sample

`strength` starts at 0 (the layer is deterministic at init). Modes: "random" draws fresh
noise (or takes the caller's, so training can pre-draw it from a seeded generator), "const"
uses a fixed image drawn at construction (reproducible samples, Fig. 5), "none" adds nothing.

Shapes: x (b, c, h, w), noise (b, 1, h, w) or (1, 1, h, w) -> (b, c, h, w).
Lesson: lessons/12_noise_and_mixing.md
"""

from __future__ import annotations

import torch
from torch import nn

MODES = ("random", "const", "none")


def add_noise(x: torch.Tensor, noise: torch.Tensor, strength: torch.Tensor | float) -> torch.Tensor:
    """x + strength · noise, one noise value per pixel shared by every channel."""
    if noise.ndim != 4 or noise.shape[1] != 1 or noise.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"noise must have shape (b, 1, h, w) = (b, 1, {x.shape[-2]}, "
                         f"{x.shape[-1]}), got {tuple(noise.shape)}")
    # Scale the 1-channel image first: c× fewer multiplies. Cast to x's dtype: under autocast
    # an fp16 activation stays fp16 (a no-op in fp32).
    return x + (noise * strength).to(x.dtype)


class NoiseInput(nn.Module):
    """A learned noise strength (init 0) and a fixed noise image for the "const" mode."""

    def __init__(self, resolution: int):
        super().__init__()
        if resolution < 1:
            raise ValueError(f"resolution must be positive, got {resolution}")
        self.strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("const", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None,
                mode: str = "random") -> torch.Tensor:
        if mode not in MODES:
            raise ValueError(f"noise mode must be one of {MODES}, got {mode!r}")
        if mode == "none":
            return x
        if mode == "const":
            noise = self.const
        elif noise is None:
            b, _, h, w = x.shape
            noise = torch.randn(b, 1, h, w, device=x.device, dtype=x.dtype)
        return add_noise(x, noise, self.strength)
