"""Exponential moving average of the generator's weights, the network we sample from.

Papers: Karras, Aila, Laine, Lehtinen (2018), "Progressive Growing of GANs", arXiv:1710.10196,
Appendix A.1 (an EMA of G with decay 0.999 per step, for visualisation); Yazıcı et al. (2019),
"The Unusual Effectiveness of Averaging in GAN Training", arXiv:1806.04498 (why it helps);
StyleGAN2 (Karras et al. 2020, arXiv:1912.04958, Appendix B: an EMA of G) states the decay
as a half-life of 10 kimg in its code, and StyleGAN2-ADA's code adds a ramp-up (0.05).

    θ_ema ← β · θ_ema + (1 − β) · θ,       β = 0.5^(batch / half_life_images)

so that after half_life_images images, whatever the batch size, an old snapshot's weight in
θ_ema has halved. With the ramp-up r the half-life is capped at r · images_seen, which lets
the average forget the random initialization quickly early in training.

Buffers are COPIED, not averaged: BatchNorm running statistics, StyleGAN's tracked w̄ and the
power-iteration vector u of spectral norm are already running estimates (or, like
num_batches_tracked, counters) of the current model, and averaging them again would lag them.

Shapes: none (works on any nn.Module; parameters and buffers matched by name).
Lesson: lessons/06_ema.md
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema(model: nn.Module) -> nn.Module:
    """A deep copy of `model` for averaging: eval mode, no parameter requires grad."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def _matched(ema_items: dict, model_items: dict, kind: str) -> None:
    if ema_items.keys() != model_items.keys():
        missing = sorted(model_items.keys() - ema_items.keys())
        extra = sorted(ema_items.keys() - model_items.keys())
        raise ValueError(f"EMA and model {kind} names differ: missing from the EMA {missing}, "
                         f"only in the EMA {extra}; build the EMA with make_ema(model)")


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """θ_ema ← β·θ_ema + (1 − β)·θ for every parameter (by name); buffers are copied."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1] (0: copy, 1: freeze), got {beta}")
    ema_params, params = dict(ema.named_parameters()), dict(model.named_parameters())
    ema_buffers, buffers = dict(ema.named_buffers()), dict(model.named_buffers())
    _matched(ema_params, params, "parameter")
    _matched(ema_buffers, buffers, "buffer")
    # One fused update over all parameters (torch._foreach_lerp_: a few kernel launches on a
    # GPU instead of one per tensor; on a CPU the same per-tensor lerp_ as a loop).
    targets = [ema_params[name] for name in params]
    sources = [p.to(e) for p, e in zip(params.values(), targets)]
    if targets:
        torch._foreach_lerp_(targets, sources, 1.0 - beta)  # e + (1 − β)(p − e)
    for name, b in buffers.items():
        ema_buffers[name].copy_(b)


def ema_beta(batch_size: int, half_life_kimg: float, *, images_seen: int = 0,
             rampup: float | None = None) -> float:
    """β = 0.5^(batch / half-life in images); with a ramp-up the half-life is ≤ images_seen·rampup."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if half_life_kimg < 0 or images_seen < 0:
        raise ValueError(f"half_life_kimg and images_seen must be >= 0, got {half_life_kimg}, "
                         f"{images_seen}")
    if rampup is not None and rampup <= 0:
        raise ValueError(f"rampup must be > 0 or None (StyleGAN2-ADA: 0.05), got {rampup}")
    half_life_images = half_life_kimg * 1000
    if rampup is not None:
        half_life_images = min(half_life_images, images_seen * rampup)
    if half_life_images == 0:
        return 0.0  # a zero half-life forgets at once: the EMA is a copy
    return 0.5 ** (batch_size / half_life_images)
