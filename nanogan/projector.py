"""Project an image into a StyleGAN2 generator: find w (or one w per layer) and noise maps that
re-create it; how well that works tells generated images from real ones.

Paper: Karras, Laine, Aittala, Hellsten, Lehtinen, Aila (2020), arXiv:1912.04958, §5, §5.1
(detection by the distance D[x, g(g̃⁻¹(x))]) and Appendix D. μ_w = E f(z) and
σ_w² = E‖f(z) − μ_w‖² come from 10,000 mapping samples; w starts at μ_w, noise maps at N(0, I);
Adam (default β) optimises both for 1000 steps, learning rate up from 0 over the first 5% of the
steps, λ_max = 0.1, cosine down to 0 over the last 25%; the loss sees w̃ = w + N(0, σ²),
σ = 0.05 σ_w (1 − t/0.75)² (0 after ¾ of the steps; a standard deviation, as in the authors'
code); every noise map is renormalised to zero mean and unit variance after each step, and
regularised on a pyramid (2×2 averages × 2, down to 8×8) by its wrapped one-pixel
autocorrelations, which are zero in expectation for white noise:

    L_total = D[x, g(w̃, n)] + α Σ_{i,j} L_{i,j},   α = 10⁵
    L_{i,j} = (1/r²_{i,j} Σ_{x,y} n_{i,j}(x, y) n_{i,j}(x − 1, y))² + (… n_{i,j}(x, y − 1))²

Deviation: the paper's D is LPIPS (VGG features with learned weights, not available offline).
The default here, `ClassifierDistance`, has the same form — unit-normalised features per layer,
squared differences averaged over positions, summed over layers, all layer weights 1 — on the
stages of nanogan's Fashion-MNIST classifier, plus pixel MSE. Its numbers are comparable only
with themselves. Any `distance(images, targets) -> (b,)` can be passed instead.

Shapes: targets (b, c, h, w) in [-1, 1] -> ws (b, n, d), noise {layer: (b, 1, r, r)},
distance (b,).
Lesson: lessons/41_projection.md
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import reduce
from torch import nn

SPACES = ("w", "w+")


def learning_rate(step: int, num_steps: int, lr_max: float = 0.1, rampup: float = 0.05,
                  rampdown: float = 0.25) -> float:
    """λ_max, ramped linearly up from 0 over the first `rampup` and cosine-down over the last `rampdown`."""
    t = step / num_steps
    down = 0.5 - 0.5 * math.cos(math.pi * min(1.0, (1.0 - t) / rampdown))
    return lr_max * min(1.0, t / rampup) * down


def w_noise_std(step: int, num_steps: int, sigma_w: float, strength: float = 0.05,
                ramp: float = 0.75) -> float:
    """σ of the noise added to w: strength · σ_w · (1 − t/ramp)², zero from t = ramp on."""
    return strength * sigma_w * max(0.0, 1.0 - step / num_steps / ramp) ** 2


@torch.no_grad()
def w_statistics(mapping: Callable[..., torch.Tensor], z_dim: int, num_samples: int = 10_000, *,
                 labels: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 batch_size: int = 1000, device: torch.device | str = "cpu"):
    """μ_w (d,) and σ_w = √(E‖f(z) − μ_w‖²) (a float) from `num_samples` latents z ~ N(0, I).

    With `labels` (b,), per image from the same z and its label: μ_w (b, d) and σ_w (b,).
    """
    if num_samples < 2:
        raise ValueError(f"need >= 2 mapping samples, got {num_samples}")
    z = torch.randn(num_samples, z_dim, generator=generator).to(device)

    def moments(label):
        w = torch.cat([mapping(c) if label is None else mapping(c, label.expand(len(c)))
                       for c in z.split(batch_size)]).double()
        mean = w.mean(0)
        return mean.float(), (w - mean).square().sum(1).mean().sqrt().float()

    if labels is None:
        mean, sigma = moments(None)
        return mean, sigma.item()
    classes, index = labels.unique(return_inverse=True)  # one pass per distinct label
    means, sigmas = zip(*(moments(y.to(device)) for y in classes))
    return torch.stack(means)[index.to(device)], torch.stack(sigmas)[index.to(device)]


def noise_pyramid(noise: torch.Tensor, min_resolution: int = 8) -> list[torch.Tensor]:
    """[n, n₁, n₂, …]: 2×2 averages times 2 (unit variance kept) while larger than min_resolution."""
    levels = [noise]
    while levels[-1].shape[-1] > min_resolution and levels[-1].shape[-1] % 2 == 0:
        levels.append(2 * reduce(levels[-1], "b c (h i) (w j) -> b c h w", "mean", i=2, j=2))
    return levels


def autocorrelation_penalty(noise: torch.Tensor) -> torch.Tensor:
    """L = (mean n(x, y)·n(x − 1, y))² + (mean n(x, y)·n(x, y − 1))², wrapped at the edges, (b,)."""
    across = (noise * noise.roll(1, dims=-1)).flatten(1).mean(1)
    down = (noise * noise.roll(1, dims=-2)).flatten(1).mean(1)
    return across.square() + down.square()


def noise_regularization(noise_maps: list[torch.Tensor], min_resolution: int = 8) -> torch.Tensor:
    """Σ_i Σ_j L_{i,j} over every map's pyramid, per image (b,)."""
    return sum(autocorrelation_penalty(level) for n in noise_maps
               for level in noise_pyramid(n, min_resolution))


def normalize_noise(noise: torch.Tensor) -> torch.Tensor:
    """Each map shifted and scaled to zero mean and unit (population) variance."""
    centred = noise - noise.mean(dim=(-2, -1), keepdim=True)
    # a constant map has no variance to scale; the clamp only keeps it finite
    return centred * centred.square().mean(dim=(-2, -1), keepdim=True).clamp_min(1e-12).rsqrt()


def noise_shapes(G: nn.Module, ws: torch.Tensor) -> dict[int, tuple[int, ...]]:
    """{layer index: noise shape} that `G.synthesis(ws, noise=…)` asks for, from one dry pass."""
    shapes: dict[int, tuple[int, ...]] = {}

    def record(i, shape):
        shapes[i] = tuple(shape)
        return torch.zeros(shape, device=ws.device, dtype=ws.dtype)

    with torch.no_grad():
        G.synthesis(ws, "random", noise=record)
    return shapes


class ClassifierDistance(nn.Module):
    """LPIPS-form distance on the Fashion-MNIST classifier's stages (layer weights 1) + pixel MSE.

    d(x, y) = Σ_l mean_{h,w} ‖φ̂_l(x) − φ̂_l(y)‖² + pixel_weight · mean (x − y)², φ̂ unit-normalised
    over channels; images are resized to the classifier's 32×32 (the paper resizes to 256² for
    LPIPS) and seen in grey.
    """

    def __init__(self, classifier: nn.Module | None = None, pixel_weight: float = 1.0):
        super().__init__()
        if classifier is None:
            from nanogan.classifier import load_classifier
            classifier = load_classifier()
        self.classifier = classifier.eval().requires_grad_(False)
        self.pixel_weight = pixel_weight

    def layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-1] != 32:
            x = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True,
                              align_corners=False)
        if x.shape[1] == 3:
            x = reduce(x, "b c h w -> b 1 h w", "mean")
        taps = []
        for module in self.classifier.body:  # three conv stages, flatten, linear, ReLU
            x = module(x)
            if x.ndim == 4 or isinstance(module, nn.ReLU):  # each stage, and the features
                taps.append(x if x.ndim == 4 else x[:, :, None, None])
        return taps

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if images.shape != targets.shape:
            raise ValueError(f"images and targets must have one shape, got "
                             f"{tuple(images.shape)} and {tuple(targets.shape)}")
        total = self.pixel_weight * (images - targets).square().flatten(1).mean(1)
        for a, b in zip(self.layers(images), self.layers(targets)):
            a, b = F.normalize(a, dim=1, eps=1e-10), F.normalize(b, dim=1, eps=1e-10)
            total = total + (a - b).square().sum(1).flatten(1).mean(1)
        return total


@dataclass
class Projection:
    """The result for b targets: latents, noise maps, the re-synthesised images, distances."""

    ws: torch.Tensor  # (b, num_ws, d); in W every layer holds the same w
    noise: dict[int, torch.Tensor]  # layer index -> (b, 1, r, r)
    images: torch.Tensor  # g(ws, noise), (b, c, h, w)
    distance: torch.Tensor  # D[x, g(ws, noise)], (b,)
    space: str
    frames: list[torch.Tensor] = field(default_factory=list)  # snapshots for a progress video
    losses: list[float] = field(default_factory=list)  # L_total per step, summed over the batch


def project(G: nn.Module, targets: torch.Tensor, *, steps: int = 1000, space: str = "w",
            distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
            labels: torch.Tensor | None = None, lr_max: float = 0.1, noise_weight: float = 1e5,
            w_noise: float = 0.05, w_samples: int = 10_000,
            generator: torch.Generator | None = None, snapshot_every: int = 0) -> Projection:
    """Appendix D for a batch of targets; each image has its own w and noise maps and its own
    terms in the (summed) loss, so the images do not interact.

    `G` needs `mapping(z, labels)`, `synthesis(ws, noise_mode, noise)` with `noise(i, shape)`
    callables, `cfg.z_dim` and `cfg.num_ws` (nanogan's StyleGAN2 generator).
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    if targets.ndim != 4 or steps < 1:
        raise ValueError(f"need targets (b, c, h, w) and steps >= 1, got "
                         f"{tuple(targets.shape)} and {steps}")
    device = next(G.parameters()).device
    distance = distance if distance is not None else ClassifierDistance().to(device)
    targets = targets.to(device, torch.float32)
    b, num_ws = len(targets), G.cfg.num_ws
    mean, sigma = w_statistics(G.mapping, G.cfg.z_dim, w_samples, labels=labels,
                               generator=generator, device=device)
    mean = mean.to(device).expand(b, -1)[:, None]  # (b, 1, d)
    sigma = torch.as_tensor(sigma, dtype=torch.float32).to(device).reshape(-1, 1, 1)
    w = mean.repeat(1, 1 if space == "w" else num_ws, 1).clone().requires_grad_(True)
    shapes = noise_shapes(G, w.detach().expand(-1, num_ws, -1))
    noise = {i: torch.randn(s, generator=generator).to(device).requires_grad_(True)
             for i, s in shapes.items()}
    opt = torch.optim.Adam([w, *noise.values()], lr=0.0)
    frames, losses = [], []

    def render(latent):
        return G.synthesis(latent.expand(-1, num_ws, -1), "random", noise=lambda i, _: noise[i])

    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, steps, lr_max)
        scale = w_noise_std(step, steps, 1.0, w_noise)  # × σ_w per image below
        jitter = torch.randn(w.shape, generator=generator).to(device) * (scale * sigma)
        images = render(w + jitter)
        loss = (distance(images, targets)
                + noise_weight * noise_regularization(list(noise.values()))).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for n in noise.values():
                n.copy_(normalize_noise(n))
        losses.append(loss.item())
        if snapshot_every and step % snapshot_every == 0:
            frames.append(images.detach().cpu())
    with torch.no_grad():
        images = render(w)
        final = distance(images, targets).cpu()
    frames += [images.cpu()] if snapshot_every else []
    return Projection(w.detach().expand(-1, num_ws, -1).contiguous(),
                      {i: n.detach() for i, n in noise.items()}, images.cpu(), final, space,
                      frames, losses)


def separating_threshold(generated: torch.Tensor, real: torch.Tensor) -> float:
    """The distance cut that misclassifies the fewest of two labelled sets (errors of either
    kind weighted by their set's size, so both sets count equally), placed halfway on a log scale
    between the neighbouring distances; "generated" means distance <= threshold."""
    if generated.numel() == 0 or real.numel() == 0:
        raise ValueError("need at least one generated and one real distance to calibrate")
    values = torch.cat([generated, real]).double().sort().values
    candidates = torch.cat([values[:1] / 2, (values[:-1] * values[1:]).clamp_min(0).sqrt(),
                            values[-1:] * 2])
    gen, rl = generated.double()[:, None], real.double()[:, None]
    errors = (gen > candidates).double().mean(0) + (rl <= candidates).double().mean(0)
    return candidates[errors.argmin()].item()
