"""Path length regularization: a fixed-size step in W should change the image by a fixed amount.

Paper: Karras et al. (2020), "Analyzing and Improving the Image Quality of StyleGAN",
arXiv:1912.04958, §3.2, Eq. 4–5, Appendix B and C. With y a random image and a the running
mean of the lengths,

    E_{w, y ~ N(0, I)} (‖J_wᵀ y‖₂ − a)²          (4)      γ_pl = ln 2 / (r² (ln r − ln 2))   (5)

J_wᵀ y = ∇_w (g(w) · y) costs one backward pass (no Jacobian is formed). Appendix B computes
the length "as the average over all individual layers" of the synthesis network, so that style
mixing does not change it: with per-layer gradients g_n = ∂(g(w)·y)/∂w_n,

    length = √( mean_n Σ_d g_nd² ),   y ~ N(0, I) / √(H·W)

Why the official weight is the constant 2 (`PL_WEIGHT`): Eq. 5 is written for y with unit-
variance pixels and the norm over all num_ws·d coordinates. Dividing y by √(H·W) = r divides
every length (and a) by r; averaging over the num_ws layers instead of summing divides the
squared length by num_ws. The penalty therefore shrinks by r²·num_ws, and the same effective
weight on our lengths is, with num_ws = 2·log2 r − 2 for a 4×4-to-r generator,

    γ_pl · r² · num_ws = ln 2 · 2 (log2 r − 1) / (ln r − ln 2) = 2 (log2 r − 1) / (log2 r − 1) = 2

for every r. The training recipe multiplies by the lazy interval k (§3.1) and shrinks the batch.

Shapes: images (b, c, h, w), ws (b, n, d), y (b, c, h, w) -> lengths (b,).
Lesson: lessons/15_path_length.md
"""

from __future__ import annotations

import math

import torch
from torch import nn

PL_WEIGHT = 2.0


def path_lengths(images: torch.Tensor, ws: torch.Tensor, y: torch.Tensor, *,
                 create_graph: bool = True) -> torch.Tensor:
    """‖J_wᵀ y‖ per sample, averaged over layers: √(mean_n Σ_d (∂(g·y)/∂w_nd)²).

    create_graph=False: the lengths' values only (e.g. for the running mean), no second-order
    graph."""
    if images.shape != y.shape:
        raise ValueError(f"y must have the images' shape {tuple(images.shape)}, "
                         f"got {tuple(y.shape)}")
    # create_graph: the penalty is differentiated again, with respect to G's weights.
    (grad,) = torch.autograd.grad((images * y).sum(), ws, create_graph=create_graph)
    return grad.square().sum(-1).reshape(ws.shape[0], -1).mean(1).sqrt()


def path_length_noise(images_shape, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """y ~ N(0, I) / √(H·W): pixel-normal noise whose size does not grow with the resolution."""
    h, w = images_shape[-2:]
    source = device if generator is None else generator.device
    y = torch.randn(tuple(images_shape), generator=generator, device=source)
    return (y / math.sqrt(h * w)).to(device)


def path_length_weight(resolution: int) -> float:
    """Eq. 5, γ_pl = ln 2 / (r² (ln r − ln 2)), for unit-variance y and the full-norm lengths."""
    if resolution <= 2:
        raise ValueError(f"resolution must be > 2, got {resolution}")
    return math.log(2) / (resolution**2 * (math.log(resolution) - math.log(2)))


class PathLengthPenalty(nn.Module):
    """Holds a, the running mean of the lengths, and returns mean((lengths − a)²).

    `forward` updates a with this batch's mean length, then returns the penalty. Data-parallel
    or accumulated training calls `update` once with the mean over the whole batch (every
    process, every micro-batch) and `penalty` per micro-batch, so that a stays the same
    everywhere and equals what one process with the whole batch computes.
    """

    def __init__(self, decay: float = 0.01):
        super().__init__()
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        self.decay = decay
        self.register_buffer("mean", torch.zeros(()))

    def forward(self, lengths: torch.Tensor) -> torch.Tensor:
        self.update(lengths.mean())
        return self.penalty(lengths)

    @torch.no_grad()  # a is a target, not a path for gradients
    def update(self, batch_mean: torch.Tensor) -> None:
        """a ← a + decay · (batch_mean − a)."""
        self.mean.lerp_(batch_mean.to(self.mean.dtype), self.decay)

    def penalty(self, lengths: torch.Tensor) -> torch.Tensor:
        """mean((lengths − a)²) with the current a."""
        return (lengths - self.mean).square().mean()
