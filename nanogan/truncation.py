"""The truncation trick: trade variety for fidelity at sampling time. Two papers, two definitions.

BigGAN — Brock, Donahue, Simonyan (2019), arXiv:1809.11096, §3.1: sample z from a truncated
normal, "values which fall outside a range are resampled to fall inside that range":

    z_i ~ N(0, 1) conditioned on |z_i| ≤ τ        (each component independently)

StyleGAN — Karras, Laine, Aila (2019), arXiv:1812.04948, Appendix B (used with ψ = 0.5 for
StyleGAN2's Fig. 12, arXiv:1912.04958): pull each style towards the average w̄ of the mapping
network's outputs, optionally only in the first `cutoff` layers (coarse styles):

    w' = w̄ + ψ (w − w̄)                            (ψ = 1: identity, ψ = 0: the average image)

Shapes: BigGAN z (b, z); StyleGAN ws (b, n, d), w_avg (d,).
Lesson: lessons/16_truncation.md
"""

from __future__ import annotations

import math

import torch
from einops import rearrange


def truncated_normal(shape: tuple[int, ...], threshold: float = math.inf, *,
                     generator: torch.Generator | None = None, max_rounds: int = 1000,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """N(0, 1) draws of `shape`, each beyond ±threshold redrawn until it falls inside (BigGAN)."""
    if not threshold > 0:
        raise ValueError(f"truncation threshold must be > 0, got {threshold}")
    device = device if device is not None else (generator.device if generator else None)
    z = torch.randn(shape, generator=generator, device=device)
    for _ in range(max_rounds):  # each round keeps P(|z| ≤ τ) of the rest; 1000 rounds suffice
        outside = z.abs() > threshold  # down to τ ≈ 0.003 for a billion values
        if not outside.any():
            return z
        z = torch.where(outside, torch.randn(shape, generator=generator, device=device), z)
    raise ValueError(f"threshold {threshold} is too small: values still outside after "
                     f"{max_rounds} rounds of resampling")


def truncate_w(ws: torch.Tensor, w_avg: torch.Tensor, psi: float,
               cutoff: int | None = None) -> torch.Tensor:
    """w̄ + ψ (w − w̄) in layers [0, cutoff) (all layers when cutoff is None); others unchanged."""
    if ws.ndim != 3 or w_avg.shape != ws.shape[-1:]:
        raise ValueError(f"expected ws (b, n, d) and w_avg (d,), got {tuple(ws.shape)} and "
                         f"{tuple(w_avg.shape)}")
    if cutoff is not None and cutoff < 0:
        raise ValueError(f"truncation cutoff must be >= 0 (a number of layers), got {cutoff}")
    truncated = torch.lerp(rearrange(w_avg, "d -> 1 1 d").to(ws), ws, psi)
    if cutoff is None or cutoff >= ws.shape[1]:
        return truncated
    layer = rearrange(torch.arange(ws.shape[1], device=ws.device), "n -> 1 n 1")
    return torch.where(layer < cutoff, truncated, ws)
