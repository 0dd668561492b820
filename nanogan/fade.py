"""Progressive growing: fade new layers in, blend the reals the same way, and the schedule.

Paper: Karras, Aila, Laine, Lehtinen (2018), "Progressive Growing of GANs for Improved Quality,
Stability, and Variation", arXiv:1710.10196, §2 and Fig. 2 (fade-in, blended reals),
Appendix A.1 (schedule: 800k images at 4×4, then per resolution 800k images of fade-in and 800k
of stabilization; 2× = nearest-neighbour element replication, 0.5× = 2×2 average pooling).

While a resolution doubles, the new layers act as a residual block whose weight α rises
linearly from 0 to 1; G's output at the new resolution is

    out = (1 − α) · 2×(toRGB_old(h_old)) + α · toRGB_new(h_new) = low + α · (high − low)

and D reads the reals, downscaled to the current resolution, blended in the same way between
their half-resolution (upscaled back) and full versions.

The schedule is a pure function of the number of real images shown to D, so that resuming a run
needs only that counter: with S = stabilize_images and F = fade_images,

    [0, S): start resolution, α = 1;  then per doubling k = 1..K: F images fading in (α from 0
    to 1), S images stable (α = 1);  after the last fade: the final resolution, α = 1 forever.

Shapes: fade_in (b, c, h, w) × 2 -> (b, c, h, w); upscale2x (b, c, h, w) -> (b, c, 2h, 2w);
downscale2x (b, c, 2h, 2w) -> (b, c, h, w); resize_reals (b, c, s, s) -> (b, c, r, r).
Lesson: lessons/05_progressive_growing.md
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from einops import reduce, repeat


def fade_in(alpha: float | torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """low + α·(high − low): α = 0 is the old (upscaled) path, α = 1 the new layers."""
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.to(low.dtype)
    elif not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    # torch.lerp computes low + α·(high − low) but returns high exactly at α = 1.
    return torch.lerp(low, high, alpha)


def upscale2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2× upsampling: every pixel becomes a 2×2 block of copies."""
    return repeat(x, "b c h w -> b c (h dy) (w dx)", dy=2, dx=2)


def downscale2x(x: torch.Tensor) -> torch.Tensor:
    """2×2 average pooling: every 2×2 block becomes its mean."""
    if x.shape[-2] % 2 or x.shape[-1] % 2:
        raise ValueError(f"downscale2x needs even height and width, got {tuple(x.shape[-2:])}")
    return reduce(x, "b c (h dy) (w dx) -> b c h w", "mean", dy=2, dx=2)


def _is_power_of_two(n: int) -> bool:
    return isinstance(n, int) and n >= 1 and n & (n - 1) == 0


def resize_reals(x: torch.Tensor, resolution: int, alpha: float = 1.0) -> torch.Tensor:
    """Downscale reals to `resolution` by repeated 2×2 pooling; while fading in (α < 1) blend
    with their half-resolution version upscaled back, exactly as G's output is blended."""
    size = x.shape[-1]
    if x.shape[-2] != size or not _is_power_of_two(size):
        raise ValueError(f"reals must be square with a power-of-two side, "
                         f"got {tuple(x.shape[-2:])}")
    allowed = [2**k for k in range(size.bit_length())]
    if resolution not in allowed or (alpha < 1 and resolution == 1):
        raise ValueError(f"resolution must be one of {allowed} (at least 2 while alpha < 1) for "
                         f"{size}×{size} reals, got {resolution}")
    while x.shape[-1] > resolution:
        x = downscale2x(x)
    if alpha == 1:
        return x
    return fade_in(alpha, upscale2x(downscale2x(x)), x)


class Stage(NamedTuple):
    """Where training stands: current resolution, fade-in weight α, and the resolution's index."""

    resolution: int
    alpha: float
    index: int


def _doublings(final_resolution: int, stabilize_images: int, fade_images: int,
               start_resolution: int) -> int:
    for name, value in [("final_resolution", final_resolution),
                        ("start_resolution", start_resolution)]:
        if not _is_power_of_two(value):
            raise ValueError(f"{name} must be a power of two (1, 2, 4, 8, ...), got {value}")
    if start_resolution > final_resolution:
        raise ValueError(f"start_resolution {start_resolution} must be <= final_resolution "
                         f"{final_resolution}")
    if stabilize_images < 0 or fade_images < 0:
        raise ValueError(f"stabilize_images and fade_images must be >= 0 (fade 0: jump), got "
                         f"{stabilize_images}, {fade_images}")
    return (final_resolution // start_resolution).bit_length() - 1


def growth_stage(images_seen: int, *, final_resolution: int, stabilize_images: int,
                 fade_images: int, start_resolution: int = 4) -> Stage:
    """The stage after `images_seen` real images: stabilize, then per doubling fade in, stabilize."""
    doublings = _doublings(final_resolution, stabilize_images, fade_images, start_resolution)
    if images_seen < 0:
        raise ValueError(f"images_seen must be >= 0, got {images_seen}")
    period = fade_images + stabilize_images
    if images_seen < stabilize_images or doublings == 0:
        return Stage(start_resolution, 1.0, 0)
    if period == 0 or images_seen >= stabilize_images + doublings * period:
        return Stage(final_resolution, 1.0, doublings)
    k, into = divmod(images_seen - stabilize_images, period)
    alpha = into / fade_images if into < fade_images else 1.0
    return Stage(start_resolution * 2 ** (k + 1), alpha, k + 1)


def images_until_final(*, final_resolution: int, stabilize_images: int, fade_images: int,
                       start_resolution: int = 4) -> int:
    """Real images shown until the last fade-in ends (α reaches 1 at the final resolution)."""
    doublings = _doublings(final_resolution, stabilize_images, fade_images, start_resolution)
    return doublings * (stabilize_images + fade_images)
