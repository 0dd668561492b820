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

with r_i = ‖w_i‖². `add_orthogonal_gradient_` adds that gradient to `.grad` after backward, with
no graph, as the authors' BigGAN-PyTorch does (which adds 2(WWᵀ ⊙ (1 − I))W, i.e. uses β/2; we
keep Eq. 3's exact gradient); `orthogonal_penalty` returns R_β for adding to the loss.

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


def off_diagonal_gram_gradient(W: torch.Tensor) -> torch.Tensor:
    """∂/∂W of off_diagonal_gram: 4 (WWᵀ ⊙ (1 − I)) W, in W's own shape."""
    M = W.flatten(1)
    if M.shape[0] <= M.shape[1]:
        gram = M @ M.t()
        grad = (gram - torch.diag(torch.diagonal(gram))) @ M
    else:
        grad = M @ (M.t() @ M) - M.square().sum(1, keepdim=True) * M
    return (4 * grad).view_as(W)


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


@torch.no_grad()
def add_orthogonal_gradient_(module: nn.Module, beta: float = 1e-4,
                             exclude: tuple[str, ...] = ("shared",)) -> None:
    """p.grad += ∂R_β/∂p for every regularized weight: the penalty's gradient without a graph."""
    for p in regularized(module, exclude).values():
        grad = beta * off_diagonal_gram_gradient(p)
        p.grad = grad if p.grad is None else p.grad.add_(grad)
