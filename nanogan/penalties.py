"""Gradient penalties on D's input gradient: WGAN-GP on interpolates, R1 on reals.

Papers:
- WGAN-GP: Gulrajani, Ahmed, Arjovsky, Dumoulin, Courville (2017), "Improved Training of
  Wasserstein GANs", arXiv:1704.00028, §4 Eq. 3 and Algorithm 1 (λ = 10):
      GP = E_x̂[(‖∇_x̂ D(x̂)‖₂ − 1)²],   x̂ = x + t·(x̃ − x),   t ~ U(0, 1)
  with x real and x̃ = G(z) fake. ProGAN (Karras et al. 2018, arXiv:1710.10196, §6.5) replaces
  the target 1 by γ and weights the penalty by λ/γ² (γ = 750 for CIFAR-10); its code applies
  λ/γ² always, which is the same thing at γ = 1. Here `target` is γ and the caller multiplies
  λ (or λ/γ²).
- R1: Mescheder, Geiger, Nowozin (2018), "Which Training Methods for GANs do actually
  Converge?", arXiv:1801.04406, §4.1 Eq. 9:
      R1 = (γ/2) · E_{x ~ data}[‖∇_x D(x)‖²]
  this module returns E[‖∇_x D(x)‖²]; the caller multiplies γ/2 (StyleGAN2: γ = 10).

Both penalties are functions of a gradient, so they are computed with
`torch.autograd.grad(..., create_graph=True)` and D's weights receive a second derivative.

Shapes: real, fake, reals (b, c, h, w) (any (b, ...)); t (b,); logits (b,) or (b, 1); -> scalar.
Lesson: lessons/01_gan_objective.md (lessons/14_r1_and_lazy.md for R1 with lazy regularization)
"""

from __future__ import annotations

from typing import Callable

import torch


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor, t: torch.Tensor, *, target: float = 1.0) -> torch.Tensor:
    """Mean over the batch of (‖∇_x̂ D(x̂)‖₂ − target)² at x̂ = real + t·(fake − real)."""
    b = real.shape[0]
    if fake.shape != real.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    if t.shape != (b,):
        raise ValueError(f"t must have shape (batch,) = ({b},), got {tuple(t.shape)}")
    if target < 0:
        raise ValueError(f"target must be >= 0 (WGAN-GP: 1, ProGAN CIFAR-10: 750), got {target}")
    t = t.to(real.dtype).view(b, *[1] * (real.dim() - 1))
    # x̂ is a fresh leaf: the penalty trains D only, never G (fake) or whatever produced real.
    x_hat = torch.lerp(real.detach(), fake.detach(), t).requires_grad_(True)
    # Summed logits, as in r1_penalty: per-sample gradients up to minibatch-std cross terms.
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - target).square().mean()


def r1_penalty(real_logits: torch.Tensor, reals: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ‖∇_x D(x)‖² (summed over c, h, w); multiply by γ/2 for R1."""
    if not reals.requires_grad:
        raise ValueError("r1_penalty needs reals.requires_grad_(True) before D(reals) is computed, "
                         "so that the logits' gradient with respect to the images exists")
    # The gradient of the summed logits is each sample's own gradient when D treats samples
    # independently; a minibatch-std layer adds small cross-sample terms (so does the paper code).
    (grad,) = torch.autograd.grad(real_logits.sum(), reals, create_graph=True)
    return grad.square().flatten(1).sum(dim=1).mean()
