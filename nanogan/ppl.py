"""Perceptual path length: how much the image changes per unit step along a latent interpolation.

Paper: Karras, Laine, Aila (2019), "A Style-Based Generator Architecture for Generative
Adversarial Networks", arXiv:1812.04948, §4.1, Eqs. 2–3 (ε = 1e-4, 100,000 samples, LPIPS
distance, outliers outside the 1st–99th percentiles discarded in the authors' code); StyleGAN2
(arXiv:1912.04958, Table 1) reports it in W at the path endpoints.

    l_Z = E[ d(G(slerp(z_1, z_2; t)), G(slerp(z_1, z_2; t + ε))) / ε² ],   l_W: lerp of w = f(z)

t ~ U(0, 1) for sampling "full"; t = 0 for "end" (the authors' code draws t from U(0, 0)).
Model-agnostic: the caller passes how to draw latents (z, or w = mapping(z)), how to interpolate
(`slerp` for Z, `lerp` for W), how to render (`generate`, which must be deterministic: fix any
noise inputs, or noise dominates the distance), and the distance. LPIPS (VGG-16 features) is not
available offline; `mean_squared_distance` is a pixel-space stand-in for the slot, so its
numbers are comparable between nanogan models but not with published PPL values.

Shapes: latents (n, ...) -> images (n, c, h, w) -> distances (n,) -> {"ppl", ...}.
Lesson: lessons/30_evaluation.md
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _expand(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *[1] * (like.dim() - 1)).to(like.dtype)


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Linear interpolation a + t·(b − a), one t per row."""
    return a + _expand(t, a) * (b - a)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation over the last dimension (Shoemake 1985), one t per row.

    sin((1−t)θ)/sin θ · a + sin(tθ)/sin θ · b, θ the angle between a and b: a great-circle arc
    for vectors of equal norm; (anti)parallel rows, where sin θ ≈ 0, fall back to lerp.
    """
    t = _expand(t, a)
    a_unit = a / a.norm(dim=-1, keepdim=True)
    b_unit = b / b.norm(dim=-1, keepdim=True)
    # 2·atan2(‖â − b̂‖, ‖â + b̂‖) is accurate for tiny angles, where acos(â·b̂) is not
    theta = 2 * torch.atan2((a_unit - b_unit).norm(dim=-1, keepdim=True),
                            (a_unit + b_unit).norm(dim=-1, keepdim=True))
    sin_theta = theta.sin()
    safe = sin_theta.clamp_min(1e-6)
    arc = (torch.sin((1 - t) * theta) * a + torch.sin(t * theta) * b) / safe
    return torch.where(sin_theta > 1e-6, arc, a + t * (b - a))


def mean_squared_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pixel-space stand-in for LPIPS: mean squared difference of each image pair, (n,)."""
    return (x - y).square().flatten(1).mean(1)


def perceptual_path_length(sample_latents: Callable[[int, torch.Generator], torch.Tensor],
                           interpolate: Callable[[torch.Tensor, torch.Tensor, torch.Tensor],
                                                 torch.Tensor],
                           generate: Callable[[torch.Tensor], torch.Tensor],
                           distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *,
                           num_samples: int, epsilon: float = 1e-4, sampling: str = "end",
                           batch_size: int = 64, generator: torch.Generator) -> dict:
    """PPL: mean of d(G(x_t), G(x_{t+ε}))/ε² over pairs, 1st–99th percentile outliers dropped.

    Returns {"ppl": the trimmed mean, "distances": every d/ε² (float64, (num_samples,)),
    "kept": how many were averaged, "sampling", "epsilon"}.
    """
    if sampling not in ("full", "end"):
        raise ValueError(f"sampling must be 'full' or 'end', got {sampling!r}")
    if num_samples < 1 or batch_size < 1 or epsilon <= 0:
        raise ValueError(f"need num_samples >= 1, batch_size >= 1 and epsilon > 0, got "
                         f"{num_samples}, {batch_size}, {epsilon}")
    # every draw happens up front, so batch_size only bounds memory and never changes the result
    latents = sample_latents(2 * num_samples, generator)
    starts, ends = latents[0::2], latents[1::2]
    if sampling == "full":
        t = torch.rand(num_samples, generator=generator, dtype=torch.float64)
    else:
        t = torch.zeros(num_samples, dtype=torch.float64)
    distances = []
    with torch.no_grad():
        for first in range(0, num_samples, batch_size):
            a, b = starts[first : first + batch_size], ends[first : first + batch_size]
            tt = t[first : first + batch_size].to(a.device)
            images = generate(torch.cat([interpolate(a, b, tt), interpolate(a, b, tt + epsilon)]))
            near, far = images[: len(a)], images[len(a) :]
            distances.append(distance(near, far).double().cpu() / epsilon**2)
    d = torch.cat(distances)
    low = torch.quantile(d, 0.01, interpolation="lower")
    high = torch.quantile(d, 0.99, interpolation="higher")
    kept = d[(d >= low) & (d <= high)]
    return {"ppl": kept.mean().item(), "distances": d, "kept": kept.numel(),
            "sampling": sampling, "epsilon": epsilon}
