"""Style mixing regularization: some images take their styles from two latents.

Paper: Karras, Laine, Aila (2019), "A Style-Based Generator Architecture for Generative
Adversarial Networks", arXiv:1812.04948, §3.1; StyleGAN2 keeps it with probability 0.9
(arXiv:1912.04958, Appendix B). For a fraction p of the images, two latents give w₁ and w₂
and a crossover point m is drawn uniformly; the layers before m take w₁, the rest w₂:

    ws[n] = w₁ if n < m else w₂,   m ~ U{1, …, N − 1} with probability p, else m = N

so neighbouring layers cannot assume that their styles are correlated. The crossover is drawn
per image, as the paper describes ("a given percentage of images"); the official code draws one
crossover per minibatch.

Shapes: w₁, w₂ (b, d) or (b, n, d), crossover (b,) -> ws (b, n, d).
Lesson: lessons/12_noise_and_mixing.md
"""

from __future__ import annotations

import torch
from einops import rearrange


def draw_crossover(batch: int, num_ws: int, prob: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Per sample, with probability `prob`, a crossover uniform on {1, …, num_ws − 1}; else num_ws."""
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"mixing probability must be in [0, 1], got {prob}")
    if batch < 0 or num_ws < 1 or (num_ws < 2 and prob > 0):
        raise ValueError(f"need batch >= 0 and num_ws >= 2 to mix (num_ws >= 1 without), "
                         f"got batch={batch}, num_ws={num_ws}")
    device = None if generator is None else generator.device
    mixed = torch.rand(batch, generator=generator, device=device) < prob
    point = torch.randint(1, max(num_ws, 2), (batch,), generator=generator, device=device)
    return torch.where(mixed, point, num_ws)


def mix_styles(w1: torch.Tensor, w2: torch.Tensor, crossover: torch.Tensor,
               num_ws: int) -> torch.Tensor:
    """Layers [0, crossover) take w1, layers [crossover, num_ws) take w2."""
    w1, w2 = (w if w.ndim == 3 else rearrange(w, "b d -> b 1 d") for w in (w1, w2))
    if crossover.shape != (w1.shape[0],) or w1.shape[1] not in (1, num_ws) \
            or w2.shape[1] not in (1, num_ws):
        raise ValueError(f"expected w1, w2 (b, d) or (b, {num_ws}, d) and crossover (b,); got "
                         f"{tuple(w1.shape)}, {tuple(w2.shape)}, {tuple(crossover.shape)}")
    layer = torch.arange(num_ws, device=crossover.device)
    take_first = rearrange(layer, "n -> 1 n 1") < rearrange(crossover, "b -> b 1 1")
    return torch.where(take_first, w1, w2)
