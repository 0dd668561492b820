"""The truncation trick: trade variety for fidelity at sampling time. Two papers, two definitions.

BigGAN — Brock, Donahue, Simonyan (2019), arXiv:1809.11096, §3.1: sample z from a truncated
normal, "values which fall outside a range are resampled to fall inside that range":

    z_i ~ N(0, 1) conditioned on |z_i| ≤ τ        (each component independently)

Resampling until every value is inside draws exactly this distribution, but a value needs
1/P(|z| ≤ τ) draws on average (about 300 for τ = 0.004), the whole tensor more. `truncated_normal`
draws the same distribution in one pass by inverting its CDF, F(t) = (Φ(t) − Φ(−τ)) / (2Φ(τ) − 1):

    z = √2 · erfinv(u · erf(τ/√2)),   u ~ U(−1, 1)

StyleGAN — Karras, Laine, Aila (2019), arXiv:1812.04948, Appendix B, "Truncation trick in W"
(ψ = 0.5 in StyleGAN2's Fig. 12, arXiv:1912.04958): pull each style towards the average w̄ of
the mapping network's outputs, optionally only in the first `cutoff` layers (coarse styles):

    w' = w̄ + ψ (w − w̄)                            (ψ = 1: identity, ψ = 0: the average image)

Shapes: BigGAN z (b, z); StyleGAN ws (b, n, d), w_avg (d,).
Lesson: lessons/16_truncation.md
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from einops import rearrange


def truncated_normal(shape: tuple[int, ...], threshold: float = math.inf, *,
                     generator: torch.Generator | None = None,
                     device: torch.device | str | None = None,
                     dtype: torch.dtype | None = None) -> torch.Tensor:
    """N(0, 1) values of `shape` conditioned on |z| ≤ threshold (BigGAN), by the inverse CDF."""
    if not threshold > 0:  # also rejects NaN
        raise ValueError(f"truncation threshold must be > 0 (math.inf: no truncation), "
                         f"got {threshold}")
    source = generator.device if generator is not None else device
    dtype = dtype or torch.get_default_dtype()
    if math.isinf(threshold):
        z = torch.randn(shape, generator=generator, device=source, dtype=dtype)
    else:
        # float64: u · erf(τ/√2) must resolve values near ±erf(τ/√2) for τ up to ~8.
        u = torch.rand(shape, generator=generator, device=source, dtype=torch.float64) * 2 - 1
        z = math.sqrt(2) * torch.special.erfinv(u * math.erf(threshold / math.sqrt(2)))
        # Rounding (to dtype, or u = −1 when erf(τ/√2) rounds to 1) must not step outside.
        z = z.to(dtype).clamp(-threshold, threshold)
    return z if device is None else z.to(device)


def truncate_w(ws: torch.Tensor, w_avg: torch.Tensor, psi: float,
               cutoff: int | None = None) -> torch.Tensor:
    """w̄ + ψ (w − w̄) in layers [0, cutoff) (all layers when cutoff is None); others unchanged."""
    if ws.ndim != 3 or w_avg.shape != ws.shape[-1:]:
        raise ValueError(f"expected ws (b, n, d) and w_avg (d,), got {tuple(ws.shape)} and "
                         f"{tuple(w_avg.shape)}")
    if not math.isfinite(psi):
        raise ValueError(f"truncation psi must be a finite number (1: none, 0: w̄), got {psi}")
    if cutoff is not None and cutoff < 0:
        raise ValueError(f"truncation cutoff must be >= 0 (a number of layers), got {cutoff}")
    truncated = torch.lerp(rearrange(w_avg, "d -> 1 1 d").to(ws), ws, psi)
    if cutoff is None or cutoff >= ws.shape[1]:
        return truncated
    layer = rearrange(torch.arange(ws.shape[1], device=ws.device), "n -> 1 n 1")
    return torch.where(layer < cutoff, truncated, ws)


@dataclass(frozen=True)
class TruncationRule:
    """What one model's truncation trick is, for the entry points: its symbol, which values it
    takes, the rows of a sweep grid and the denser points of a fidelity/variety curve.

    `in_z`: the trick acts on z (BigGAN's resampling, at latent-drawing time), so a latent path
    that is not drawn from seeds (a smooth walk) cannot be truncated; otherwise it acts in W
    (StyleGAN's ψ) on any latent."""

    symbol: str  # "ψ" or "threshold"
    grid: tuple[float, ...]
    curve: tuple[float, ...]
    valid: Callable[[float], bool]
    allowed: str  # the valid values in words, e.g. "threshold must be > 0 (…)"
    in_z: bool

    def check(self, value: float) -> None:
        """Raise ValueError naming the allowed values when `value` is not one of them."""
        if not self.valid(value):
            raise ValueError(f"truncation {value:g}: {self.allowed}")
