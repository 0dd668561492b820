"""The mapping network f: Z → W, an MLP that unwarps the latent space before synthesis.

Paper: Karras, Laine, Aila (2019), "A Style-Based Generator Architecture for Generative
Adversarial Networks", arXiv:1812.04948, §2 and Fig. 1b (8 fully connected layers, 512-d z and
w, leaky ReLU 0.2), §4 (disentanglement), Appendix C (learning rate ×0.01 in the mapping
network); kept unchanged by StyleGAN2 (arXiv:1912.04958, Appendix B). Class conditioning
follows StyleGAN2-ADA (Karras et al. 2020, arXiv:2006.06676): a label embedding, normalised
like z, is concatenated with z.

    w = f(z) = φ_L(… φ_1(z / √(mean z² + ε))),   φ(h) = √2 · lrelu_0.2(ŵ h + b̂)

√2 is the leaky ReLU's gain: it keeps unit-variance inputs at unit variance layer after layer.
w̄, the running mean of w (β = 0.995 per update), is the centre that truncation pulls towards
(w' = w̄ + ψ (w − w̄)) and the projector starts from. The network only holds it: training
updates it with `track_average` once per step (StyleGAN2's `Recipe.track_w_avg`, from the
batch mean over every process), and sampling never does.

Shapes: z (b, z), labels (b,) int -> w (b, d); w_avg (d,).
Lesson: lessons/10_mapping_network.md
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nanogan.equalized import EqualLinear
from nanogan.pixelnorm import pixel_norm

SQRT2 = math.sqrt(2)


def track_average(average: torch.Tensor, w: torch.Tensor, beta: float) -> torch.Tensor:
    """One step of w̄ ← lerp(w̄, mean_b w, 1 − β), the moving average of the batch means."""
    return average.lerp(w.detach().mean(0).to(average.dtype), 1 - beta)


class MappingNetwork(nn.Module):
    """z (and an optional class label) → w through num_layers equalized FC layers, λ = lr_mul."""

    def __init__(self, z_dim: int = 512, w_dim: int = 512, num_layers: int = 8, *,
                 num_classes: int = 0, lr_mul: float = 0.01, w_avg_beta: float = 0.995):
        super().__init__()
        if min(z_dim, w_dim, num_layers) < 1 or num_classes < 0:
            raise ValueError(f"MappingNetwork needs z_dim, w_dim, num_layers >= 1 and "
                             f"num_classes >= 0, got {z_dim}, {w_dim}, {num_layers}, {num_classes}")
        if not 0.0 <= w_avg_beta < 1.0:
            raise ValueError(f"w_avg_beta must be in [0, 1), got {w_avg_beta}")
        self.num_classes, self.w_avg_beta = num_classes, w_avg_beta
        self.embed = EqualLinear(num_classes, w_dim) if num_classes else None
        dims = [z_dim + (w_dim if num_classes else 0)] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            EqualLinear(i, o, lr_mul=lr_mul) for i, o in zip(dims[:-1], dims[1:]))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = pixel_norm(z)
        if self.embed is not None:
            if labels is None or labels.shape != z.shape[:1]:
                got = None if labels is None else tuple(labels.shape)
                raise ValueError(f"a conditional mapping network needs integer labels of shape "
                                 f"({z.shape[0]},), got {got}")
            y = self.embed(F.one_hot(labels, self.num_classes).to(z.dtype))
            x = torch.cat([x, pixel_norm(y)], dim=1)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2) * SQRT2
        return x
