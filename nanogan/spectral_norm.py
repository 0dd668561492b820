"""Spectral normalization: divide each weight by a running estimate of its largest singular value.

Paper: Miyato, Kataoka, Koyama, Yoshida (2018), "Spectral Normalization for Generative
Adversarial Networks", arXiv:1802.05957, §2.1 (Eq. 8) and Algorithm 1. BigGAN (Brock et al.
2019, arXiv:1809.11096) applies it in G and D (Appendix C, with ε raised to 1e-4) and, in §4,
watches σ₀ of every layer's unnormalized W to see collapse coming.

    W̄_SN = W / σ(W),   σ(W) ≈ ũᵀ W ṽ   after   ṽ ← Wᵀũ / ‖Wᵀũ‖₂,   ũ ← W ṽ / ‖W ṽ‖₂

One power iteration per training forward: ũ persists between steps and W changes little per
step, so a single iteration keeps tracking the top singular vectors. ũ and ṽ are constants for
autograd, so the gradient through σ is ∂σ/∂W = ũṽᵀ, the paper's Eq. 12. In eval mode nothing is
updated and σ = ũᵀWṽ with the stored vectors. A conv kernel (o, i, kh, kw) is normalized as the
matrix (o, i·kh·kw), as in the paper; an embedding table (k, d) as it is (a map from d to k).

torch.nn.utils.parametrizations.spectral_norm runs the same iteration with the roles of u and v
swapped (u ← n(Wv) first): it is this module applied to Wᵀ. The tests hold both to that.

Shapes: weight (o, ...) viewed as W (o, n); u (o,), v (n,); σ a scalar.
Lesson: lessons/20_spectral_norm.md
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def power_iteration(matrix: torch.Tensor, u: torch.Tensor, iterations: int = 1,
                    eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1's update `iterations` times: v ← Wᵀu/‖Wᵀu‖, u ← Wv/‖Wv‖; returns (u, v)."""
    if iterations < 1:
        raise ValueError(f"need at least one power iteration, got {iterations}")
    for _ in range(iterations):
        v = F.normalize(matrix.t() @ u, dim=0, eps=eps)  # eps: max(‖·‖, ε) below, as torch does
        u = F.normalize(matrix @ v, dim=0, eps=eps)
    return u, v


def spectral_normalize(weight: torch.Tensor, u: torch.Tensor,
                       v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(W / σ, σ) with σ = uᵀ W v; u and v are constants, so σ's gradient is u vᵀ (Eq. 12)."""
    sigma = torch.dot(u, weight.flatten(1) @ v)
    return weight / sigma, sigma


class SpectralNormMixin:
    """What SNConv2d, SNLinear and SNEmbedding share: buffers u and v, the normalized weight, σ."""

    weight: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor

    def _init_spectral_norm(self, eps: float, iterations: int) -> None:
        if eps <= 0 or iterations < 1:
            raise ValueError(f"spectral norm needs eps > 0 and iterations >= 1, got eps={eps}, "
                             f"iterations={iterations}")
        self.sn_eps, self.sn_iterations = eps, iterations
        o, n = self.weight.flatten(1).shape
        self.register_buffer("u", F.normalize(torch.randn(o), dim=0, eps=eps).to(self.weight))
        self.register_buffer("v", torch.zeros(n).to(self.weight))
        self.reset_power_iteration()

    @torch.no_grad()
    def reset_power_iteration(self, iterations: int = 15) -> None:
        """Re-estimate u and v from the current W (after re-initializing it), as torch does."""
        u, v = power_iteration(self.weight.flatten(1), self.u, iterations, self.sn_eps)
        self.u.copy_(u)
        self.v.copy_(v)

    def normalized_weight(self) -> torch.Tensor:
        """W / σ; in training mode one power iteration first updates u and v in place."""
        # In the weight's precision even under autocast: a bf16 σ would be off by up to 0.4%.
        with torch.autocast(self.weight.device.type, enabled=False):
            if self.training:
                u, v = power_iteration(self.weight.flatten(1), self.u, self.sn_iterations,
                                       self.sn_eps)
                self.u.copy_(u)
                self.v.copy_(v)
            # Clones: a second forward before backward (D on reals, then fakes) rewrites u, v.
            return spectral_normalize(self.weight, self.u.clone(), self.v.clone())[0]

    @property
    def sigma(self) -> torch.Tensor:
        """σ = uᵀ W v for the current W: what an eval-mode forward divides by (≤ ‖W‖₂)."""
        with torch.no_grad():
            return spectral_normalize(self.weight, self.u, self.v)[1]


class SNConv2d(SpectralNormMixin, nn.Conv2d):
    """nn.Conv2d whose kernel, as an (o, i·kh·kw) matrix, is divided by its spectral norm."""

    def __init__(self, *args, eps: float = 1e-12, iterations: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_spectral_norm(eps, iterations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.normalized_weight(), self.bias)


class SNLinear(SpectralNormMixin, nn.Linear):
    """nn.Linear whose (o, i) weight is divided by its spectral norm."""

    def __init__(self, *args, eps: float = 1e-12, iterations: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_spectral_norm(eps, iterations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.normalized_weight(), self.bias)


class SNEmbedding(SpectralNormMixin, nn.Embedding):
    """nn.Embedding whose (k, d) table is divided by its spectral norm (projection D's class vectors)."""

    def __init__(self, *args, eps: float = 1e-12, iterations: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_spectral_norm(eps, iterations)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return F.embedding(labels, self.normalized_weight(), self.padding_idx, self.max_norm,
                           self.norm_type, self.scale_grad_by_freq, self.sparse)


def spectral_layers(module: nn.Module) -> dict[str, SpectralNormMixin]:
    return {name: m for name, m in module.named_modules() if isinstance(m, SpectralNormMixin)}


def spectral_norms(module: nn.Module) -> dict[str, float]:
    """σ of every spectrally normalized layer's unnormalized W, by module name (BigGAN §4)."""
    layers = spectral_layers(module)
    if not layers:
        return {}
    values = torch.stack([m.sigma.float() for m in layers.values()]).tolist()  # one sync
    return dict(zip(layers, values))


def reset_power_iterations_(module: nn.Module, iterations: int = 15) -> nn.Module:
    """Call reset_power_iteration on every SN layer (after orthogonal_init_ replaced the weights)."""
    for m in spectral_layers(module).values():
        m.reset_power_iteration(iterations)
    return module
