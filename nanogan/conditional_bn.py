"""Conditional batch normalization: BatchNorm whose per-channel gain and bias are linear
functions of a condition vector, here the shared class embedding joined to a chunk of z.

Papers: Ioffe & Szegedy (2015), arXiv:1502.03167, Algorithm 1 (batch normalization); de Vries
et al. (2017), arXiv:1707.00683, and Dumoulin, Shlens, Kudlur (2017), arXiv:1610.07629
(class-conditional gains and biases); BigGAN, Brock et al. (2019), arXiv:1809.11096, §3 and
Appendix B, Fig. 15(b): one shared class embedding, linearly projected to each layer's gains and
biases, "the bias projections are zero-centered, while the gain projections are one-centered",
and with hierarchical latents a chunk of z concatenated to it.

    x̂ = (x − μ_B) / √(σ²_B + ε)                  (μ_B, σ²_B over b, h, w; ε = 1e-4 in BigGAN)
    y = x̂ ⊙ (1 + W_γ c) + W_β c,       c = [e(class) ‖ z_ℓ]

The normalization is an inner `nn.BatchNorm2d(affine=False)` submodule, so that
`sync_batchnorm` can swap it for a cross-process one (BigGAN's "cross-replica BatchNorm",
Appendix C: statistics of the global batch, not of each device's share) while this module and
its projections stay as they are: `CrossReplicaBatchNorm2d` all-reduces Σx and Σx², with a
differentiable all-reduce so that the backward pass sums over processes too, on every device
(torch's `nn.SyncBatchNorm` takes GPU tensors only and syncs the host in every forward). The
projections are bias-free: W c alone is "zero-centred" in c. BigGAN passes spectrally
normalized linears (`linear=`); any (in, out, bias=False) constructor works.

Shapes: x (b, c, h, w), cond (b, k) -> (b, c, h, w).
Lesson: lessons/22_conditional_bn.md
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist
from einops import rearrange
from torch import nn
from torch.distributed.nn.functional import all_reduce as differentiable_all_reduce


def scale_and_shift(x_hat: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x̂ ⊙ gain + bias with one gain and one bias per sample and channel: (b, c) each."""
    if gain.shape != x_hat.shape[:2] or bias.shape != x_hat.shape[:2]:
        raise ValueError(f"expected gain and bias of shape {tuple(x_hat.shape[:2])} for features "
                         f"{tuple(x_hat.shape)}, got {tuple(gain.shape)} and {tuple(bias.shape)}")
    return x_hat * rearrange(gain, "b c -> b c 1 1") + rearrange(bias, "b c -> b c 1 1")


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without its own affine; gain 1 + W_γ·cond and bias W_β·cond per sample."""

    def __init__(self, channels: int, cond_dim: int, eps: float = 1e-5, momentum: float = 0.1,
                 linear: Callable[..., nn.Module] = nn.Linear):
        super().__init__()
        if channels < 1 or cond_dim < 1:
            raise ValueError(f"need channels >= 1 and cond_dim >= 1, got {channels}, {cond_dim}")
        self.cond_dim = cond_dim
        self.bn = nn.BatchNorm2d(channels, eps=eps, momentum=momentum, affine=False)
        self.to_gain = linear(cond_dim, channels, bias=False)
        self.to_bias = linear(cond_dim, channels, bias=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if cond.ndim != 2 or cond.shape != (x.shape[0], self.cond_dim):
            raise ValueError(f"expected cond of shape ({x.shape[0]}, {self.cond_dim}), got "
                             f"{tuple(cond.shape)}")
        return scale_and_shift(self.bn(x), 1 + self.to_gain(cond), self.to_bias(cond))


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class CrossReplicaBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d normalizing with the statistics of the batch over all processes (any backend)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _distributed()):
            return super().forward(x)
        # Sums of (x − K) and (x − K)² about K = the running mean (equal on every rank) keep the
        # one-pass variance E[(x − K)²] − E[x − K]² well conditioned; the sums are in fp32.
        tracked = self.running_mean is not None
        shift = self.running_mean.view(1, -1, 1, 1) if tracked else torch.zeros(())
        xs = x.float() - shift
        count = xs.new_full((1,), xs.numel() / xs.shape[1])
        local = torch.cat([xs.sum((0, 2, 3)), xs.square().sum((0, 2, 3)), count])
        sums = differentiable_all_reduce(local)  # its backward all-reduces the gradients
        c, n = x.shape[1], sums[-1]
        mean = sums[:c] / n  # of x − K
        var = (sums[c : 2 * c] / n - mean.square()).clamp_min(0)
        if tracked:
            with torch.no_grad():
                self.num_batches_tracked += 1
                unbiased = var * n / (n - 1).clamp_min(1)
                if self.momentum is None:  # a cumulative average, as in BatchNorm2d; a tensor
                    # factor, not .item(): no wait for the device, one XLA graph for every step
                    factor = 1 / self.num_batches_tracked.to(var.dtype)
                    self.running_var.lerp_(unbiased, factor)
                    self.running_mean.add_(mean * factor)
                else:
                    self.running_var.lerp_(unbiased, self.momentum)
                    self.running_mean.add_(mean, alpha=self.momentum)  # K + m·(mean − K)
        y = (xs - mean.view(1, -1, 1, 1)) * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y.to(x.dtype)


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm2d of `module` swapped for CrossReplicaBatchNorm2d, on every device. Not
    nn.SyncBatchNorm: it takes GPU tensors only (not CPUs with gloo, XLA or MPS), and on CUDA
    it drops empty ranks with a boolean mask, a host sync in every forward of every BatchNorm
    (BigGAN's G has two per block). Names, parameters and buffers are kept."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = CrossReplicaBatchNorm2d(child.num_features, child.eps, child.momentum,
                                             child.affine, child.track_running_stats)
            synced.load_state_dict(child.state_dict())
            synced.train(child.training)
            setattr(module, name, synced.to(next(child.parameters(), child.running_mean).device))
        else:
            sync_batchnorm(child)
    return module
