"""Latent paths for interpolation videos: slerp through Z, lerp through W, ProGAN's smoothed walk.

Paper: keyframe paths between latents — White (2016), "Sampling Generative Networks",
arXiv:1609.04468, §2.1 (slerp: a Gaussian z has almost all its mass near the sphere of radius
√dim, and a straight line between two such points dips inside it, where G saw no training data);
Karras, Laine, Aila (2019), arXiv:1812.04948, §4.1 (W is not Gaussian and is meant to be
linear, so paths in W are lerped — the same choice as perceptual path length, `ppl.py`).
The walk — Karras, Aila, Laine, Lehtinen (2018), arXiv:1710.10196, §6.3 and the video: draw one
latent per frame, blur the latents over time with a Gaussian (σ = 45 frames at 60 Hz), then
normalise each to the hypersphere:

    slerp(z₁, z₂; t) = sin((1−t)θ)/sin θ · z₁ + sin(tθ)/sin θ · z₂        (θ = ∠(z₁, z₂))
    lerp(w₁, w₂; t)  = w₁ + t (w₂ − w₁)
    z̃_f = Σ_k g(k) z_{(f+k) mod F},  g(k) ∝ exp(−k² / 2σ²);   ẑ_f = √dim · z̃_f / ‖z̃_f‖

The walk wraps around in time (a circular blur), so its video loops without a seam; the paper
does not say what happens at the ends. The radius √dim is the norm the generators' pixel norm
gives every z anyway, and the typical norm of a Gaussian z.

Shapes: keys (k, ...) -> path (f, ...) with f = (k − 1)·frames + 1, or k·frames when looping;
walk z (f, z) -> (f, z).
Lesson: lessons/42_interpolation.md
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from einops import rearrange

from nanogan.ppl import lerp, slerp

__all__ = ["key_path", "lerp", "slerp", "smooth_latents", "smoothed_walk", "time_kernel"]


def key_path(keys: torch.Tensor, frames: int, interpolate: Callable = slerp, *,
             loop: bool = False) -> torch.Tensor:
    """`frames` steps from each key to the next (and back to the first if `loop`), keys included."""
    if keys.ndim < 2 or len(keys) < 2 or frames < 1:
        raise ValueError(f"need keys (k >= 2, ...) and frames >= 1, got {tuple(keys.shape)} and "
                         f"{frames}")
    segments = len(keys) if loop else len(keys) - 1
    step = torch.arange(segments * frames + (0 if loop else 1))
    start = (step // frames).clamp_max(segments - 1)  # the final key ends the last segment
    t = (step - start * frames).double() / frames
    a, b = keys[start], keys[(start + 1) % len(keys)]
    return interpolate(a, b, t.to(keys.device))


def time_kernel(sigma: float, radius: int | None = None) -> torch.Tensor:
    """Gaussian weights g(k), k = −radius … radius (default radius ⌈4σ⌉), summing to 1 (float64)."""
    if not sigma > 0:
        raise ValueError(f"the walk's blur sigma must be > 0 frames, got {sigma}")
    radius = math.ceil(4 * sigma) if radius is None else radius
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-k.square() / (2 * sigma**2))
    return g / g.sum()


def smooth_latents(z: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur per-frame latents over time with a circular Gaussian, then put each on the sphere √dim."""
    if z.ndim != 2 or len(z) < 1:
        raise ValueError(f"expected per-frame latents (f, z), got {tuple(z.shape)}")
    f = len(z)
    g = time_kernel(sigma)
    radius = (len(g) - 1) // 2
    # the blur as an f × f circulant matrix: a kernel longer than the video wraps more than once
    frame = rearrange(torch.arange(f), "f -> f 1")
    offset = rearrange(torch.arange(-radius, radius + 1), "k -> 1 k")
    blur = torch.zeros(f, f, dtype=torch.float64)
    blur.index_put_((frame.expand_as(offset + frame), (frame + offset) % f),
                    g.expand(f, -1), accumulate=True)
    smooth = blur.to(z) @ z
    return smooth * (math.sqrt(z.shape[1]) / smooth.norm(dim=1, keepdim=True))


def smoothed_walk(num_frames: int, dim: int, sigma: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """ProGAN's video walk: one N(0, I) latent per frame, blurred over time, on the sphere √dim."""
    if num_frames < 1 or dim < 1:
        raise ValueError(f"need num_frames >= 1 and dim >= 1, got {num_frames}, {dim}")
    return smooth_latents(torch.randn(num_frames, dim, generator=generator), sigma)
