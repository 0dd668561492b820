"""Orthogonal initialization and BigGAN's modified orthogonal regularization.

Papers: Saxe, McClelland, Ganguli (2014), arXiv:1312.6120 (orthogonal initialization, used for
G and D in BigGAN Appendix C); Brock, Lim, Ritchie, Weston (2017), arXiv:1609.07093 (orthogonal
regularization, BigGAN Eq. 2); Brock, Donahue, Simonyan (2019), arXiv:1809.11096, §3.1, Eq. 3:

    R_β(W) = β ‖WᵀW ⊙ (1 − I)‖²_F,       β = 10⁻⁴, summed over G's weights

The paper's W holds one filter per column (TensorFlow's layout); PyTorch stores one output unit
per row, so with W reshaped to (o, i·kh·kw) the penalty is β Σ_{i≠j} (w_i · w_j)² over pairs of
rows. Removing the diagonal frees the filters' norms: only their pairwise overlaps are pushed
to zero, which keeps G smooth enough for truncated z (§3.1). Weights with fewer than 2 dims
(biases, BatchNorm, attention's γ) are not regularized, nor, by name, the shared class embedding.

The o×o Gram matrix WWᵀ is large for G's first layer (o = 4·4·16·ch = 24576 at ch = 96, n =
20). As ‖WWᵀ‖_F = ‖WᵀW‖_F, the n×n Gram serves when n < o:

    ‖WWᵀ ⊙ (1 − I)‖²_F = ‖WᵀW‖²_F − Σ_i ‖w_i‖⁴,    ∂/∂W = 4 (WWᵀ ⊙ (1 − I)) W = 4 (W WᵀW − r ⊙ W)

with r_i = ‖w_i‖². The authors' BigGAN-PyTorch adds such a gradient to `.grad` after backward,
with no graph (2(WWᵀ ⊙ (1 − I))W, i.e. β/2). We keep Eq. 3 exactly: `orthogonal_penalty` returns
R_β, the recipe adds it to G's loss and autograd takes the gradient above (under fp16 loss
scaling `.grad` holds a scaled gradient, to which an unscaled one could not be added).

Shapes: a weight (o, ...) viewed as W (o, n).
Lesson: lessons/24_orthogonal_reg.md
"""

from __future__ import annotations

import torch
from torch import nn

INITIALIZED = (nn.Conv2d, nn.Linear, nn.Embedding)


@torch.no_grad()
def orthogonal_init_(module: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Orthogonal weights (orthonormal rows, or columns when taller than wide), zero biases."""
    for m in module.modules():
        if isinstance(m, INITIALIZED):
            nn.init.orthogonal_(m.weight, generator=generator)
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
    return module


def off_diagonal_gram(W: torch.Tensor) -> torch.Tensor:
    """‖WWᵀ ⊙ (1 − I)‖²_F = Σ_{i≠j} (w_i·w_j)², w_i the rows of W (o, n), via the smaller Gram."""
    W = W.flatten(1)
    row_norms = W.square().sum(1)
    gram = W @ W.t() if W.shape[0] <= W.shape[1] else W.t() @ W
    return gram.square().sum() - row_norms.square().sum()


def regularized(module: nn.Module,
                exclude: tuple[str, ...] = ("shared",)) -> dict[str, nn.Parameter]:
    """The parameters R_β covers: ≥ 2 dims, no dotted part of the name in `exclude`."""
    return {name: p for name, p in module.named_parameters()
            if p.ndim >= 2 and not set(name.split(".")) & set(exclude)}


def orthogonal_penalty(module: nn.Module, beta: float = 1e-4,
                       exclude: tuple[str, ...] = ("shared",)) -> torch.Tensor:
    """R_β summed over the module's regularized weights (differentiable, for adding to a loss)."""
    terms = [off_diagonal_gram(p) for p in regularized(module, exclude).values()]
    return beta * torch.stack(terms).sum() if terms else torch.zeros(())
