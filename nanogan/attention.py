"""Self-attention (SAGAN's non-local block): every position of a feature map attends to all others.

Paper: Zhang, Goodfellow, Metaxas, Odena (2019), "Self-Attention Generative Adversarial
Networks", arXiv:1805.08318, §3, Eq. 1–3, after the non-local block of Wang et al. (2018,
arXiv:1711.07971). BigGAN (arXiv:1809.11096, Appendix B, Tables 4–6) puts one "Non-Local Block"
in G and one in D, and spectrally normalizes its convolutions like every other layer.

    s_ij = φ(x_i)ᵀ θ(x_j),   β_{j,i} = exp(s_ij) / Σ_i exp(s_ij)             (Eq. 1)
    o_j = W_o ( Σ_i β_{j,i} g(x_i) )                                          (Eq. 2)
    y_j = γ o_j + x_j,   γ initialised to 0                                    (Eq. 3)

θ, φ, g and W_o are 1×1 convolutions; SAGAN calls them g, f, h and v. Position j is the query,
the positions i it looks at are the keys. As in SAGAN's and BigGAN's code (not in SAGAN's
equations, which use C/8 everywhere and no pooling), θ and φ have C/8 channels, g has C/2, and
φ(x) and g(x) are max-pooled 2×2, so each of the N queries attends over N/4 keys: a quarter of
the memory and time. γ = 0 makes the block the identity at initialisation; the network learns
how much non-local evidence to mix in.

Shapes: x (b, c, h, w) -> (b, c, h, w); β (b, h·w, h·w/4); h and w even, c a multiple of 8.
Lesson: lessons/21_self_attention.md
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nanogan.spectral_norm import SNConv2d


def self_attention(x: torch.Tensor, w_theta: torch.Tensor, w_phi: torch.Tensor,
                   w_g: torch.Tensor, w_o: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """y = x + γ·W_o(Σ_i softmax_i(φ(x_i)ᵀθ(x_j)) g(x_i)), with φ(x), g(x) max-pooled 2×2."""
    if x.shape[-1] % 2 or x.shape[-2] % 2:
        raise ValueError(f"self-attention pools keys 2×2: height and width must be even, got "
                         f"{tuple(x.shape[-2:])}")
    h, w = x.shape[-2:]
    theta = rearrange(F.conv2d(x, w_theta), "b k h w -> b (h w) k")  # queries j
    phi = rearrange(F.max_pool2d(F.conv2d(x, w_phi), 2), "b k h w -> b k (h w)")  # keys i
    g = rearrange(F.max_pool2d(F.conv2d(x, w_g), 2), "b c h w -> b (h w) c")  # values i
    beta = torch.softmax(theta @ phi, dim=-1)  # (b, j, i): each row sums to 1 over the keys
    attended = rearrange(beta @ g, "b (h w) c -> b c h w", h=h, w=w)
    return x + gamma * F.conv2d(attended, w_o)


class SelfAttention(nn.Module):
    """The non-local block of SAGAN/BigGAN: spectrally normalized 1×1 convs and a gate γ = 0."""

    def __init__(self, channels: int, eps: float = 1e-12):
        super().__init__()
        if channels < 8 or channels % 8:
            raise ValueError(f"self-attention needs channels divisible by 8 (θ and φ have C/8), "
                             f"got {channels}")
        self.theta = SNConv2d(channels, channels // 8, 1, bias=False, eps=eps)
        self.phi = SNConv2d(channels, channels // 8, 1, bias=False, eps=eps)
        self.g = SNConv2d(channels, channels // 2, 1, bias=False, eps=eps)
        self.o = SNConv2d(channels // 2, channels, 1, bias=False, eps=eps)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self_attention(x, self.theta.normalized_weight(), self.phi.normalized_weight(),
                              self.g.normalized_weight(), self.o.normalized_weight(), self.gamma)
