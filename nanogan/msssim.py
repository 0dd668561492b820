"""Structural similarity (SSIM), its multi-scale form (MS-SSIM), and MS-SSIM as a diversity score.

Paper: Wang, Simoncelli, Bovik (2003), "Multi-scale structural similarity for image quality
assessment", Asilomar Conference, Eq. 7 and its five calibrated weights β_j (c and s merged into
cs by C3 = C2/2), with the SSIM constants of Wang et al. (2004): 11×11 Gaussian window, σ = 1.5,
K1 = 0.01, K2 = 0.03. Diversity: Odena, Olah, Shlens (2017),
arXiv:1610.09585 (mean MS-SSIM of random pairs; lower = more diverse), used by ProGAN
(arXiv:1710.10196, §6.1, Table 1) on 10,000 pairs.

    l(x, y) = (2μ_xμ_y + C1) / (μ_x² + μ_y² + C1),   cs(x, y) = (2σ_xy + C2) / (σ_x² + σ_y² + C2)
    MS-SSIM = l_M^{β_M} · Π_{j=1..M} cs_j^{β_j},   C1 = (K1·L)²,  C2 = (K2·L)²,  L = data range

Each term is a local statistic under the Gaussian window, averaged over positions ('valid'
windows only) and channels; scale j+1 is scale j average-pooled 2×2.
Small images: the window is clipped to the image, size min(11, h, w), with σ scaled by the same
factor (the rule of the TensorFlow MS-SSIM that ProGAN's metric uses). A 32×32 image thus runs
scales 32, 16 (11×11), 8 (8×8), 4 (4×4), 2 (2×2, one window over the whole image).
Diversity pairs are drawn at random (two different images each) from the given set; ProGAN's code
pairs consecutive generated images, the same in expectation for i.i.d. samples, and random pairs
also work on a fixed real set, whose own score is the baseline to compare with.
Images are shifted from [−L/2, L/2] to [0, L] first: the luminance term assumes non-negative
intensities, and with the shift a [−1, 1] image scores as its uint8 version with L = 255 would.

Shapes: x, y (b, c, h, w) -> (b,); diversity: images (n, c, h, w) -> float.
Lesson: lessons/30_evaluation.md
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW, SIGMA, K1, K2 = 11, 1.5, 0.01, 0.03


def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """1-D normalised Gaussian taps centred on the window (between two pixels for even sizes)."""
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-t.square() / (2 * sigma**2))
    return g / g.sum()


def _local_mean(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    c, k = x.shape[1], taps.numel()
    x = F.conv2d(x, taps.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)  # separable, 'valid'
    return F.conv2d(x, taps.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def _ssim_and_cs(x: torch.Tensor, y: torch.Tensor, data_range: float):
    """Mean SSIM (l·cs) and mean cs of each image at one scale, window clipped to the image."""
    size = min(WINDOW, *x.shape[-2:])
    taps = gaussian_window(size, SIGMA * size / WINDOW).to(x.device)
    mu_x, mu_y = _local_mean(x, taps), _local_mean(y, taps)
    var_x = _local_mean(x * x, taps) - mu_x.square()
    var_y = _local_mean(y * y, taps) - mu_y.square()
    cov = _local_mean(x * y, taps) - mu_x * mu_y
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x.square() + mu_y.square() + c1)
    return (luminance * cs).mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))


def _prepare(x: torch.Tensor, y: torch.Tensor, data_range: float, min_size: int = 1):
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"need two image batches (b, c, h, w) of one shape, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < min_size or data_range <= 0:
        raise ValueError(f"need images of at least {min_size}px and data_range > 0, got "
                         f"{tuple(x.shape[-2:])} and {data_range}")
    # float64: variances are differences of means; shift [−L/2, L/2] to [0, L] (see docstring)
    return x.double() + data_range / 2, y.double() + data_range / 2


def ssim(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 2.0) -> torch.Tensor:
    """Single-scale SSIM of each image pair, (b,) in float64."""
    x, y = _prepare(x, y, data_range)
    return _ssim_and_cs(x, y, data_range)[0]


def ms_ssim(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 2.0,
            weights: tuple[float, ...] = WEIGHTS) -> torch.Tensor:
    """MS-SSIM of each image pair over len(weights) scales, (b,) in float64."""
    x, y = _prepare(x, y, data_range, min_size=2 ** (len(weights) - 1))
    result = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
    for j, weight in enumerate(weights):
        if j > 0:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        full, cs = _ssim_and_cs(x, y, data_range)
        term = full if j == len(weights) - 1 else cs  # luminance enters at the coarsest scale only
        # x^β is undefined for x < 0 (anti-correlated images); clip at 0 like ProGAN's metric
        result = result * term.clamp_min(0) ** weight
    return result


def ms_ssim_diversity(images: torch.Tensor, *, pairs: int = 10_000, batch_size: int = 256,
                      data_range: float = 2.0, generator: torch.Generator | None = None) -> float:
    """Mean MS-SSIM over random pairs of two different images of the set (lower = more diverse)."""
    n = images.shape[0]
    if n < 2 or pairs < 1 or batch_size < 1:
        raise ValueError(f"need >= 2 images, pairs >= 1 and batch_size >= 1, got {n}, {pairs}, "
                         f"{batch_size}")
    if generator is None:
        generator = torch.Generator().manual_seed(int(torch.randint(2**62, ()).item()))
    first = torch.randint(n, (pairs,), generator=generator)
    second = (first + 1 + torch.randint(n - 1, (pairs,), generator=generator)) % n  # never first
    scores = [ms_ssim(images[i.to(images.device)], images[j.to(images.device)],
                      data_range=data_range)
              for i, j in zip(first.split(batch_size), second.split(batch_size))]
    return torch.cat(scores).mean().item()
