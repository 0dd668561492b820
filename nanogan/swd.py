"""Sliced Wasserstein distance between the local patches of two image sets, level by level of a
Laplacian pyramid.

Paper: Karras, Aila, Laine, Lehtinen (2018), "Progressive Growing of GANs", arXiv:1710.10196, §5
(metric), Table 1 (×10³ per level and the average). Pyramid: Burt & Adelson (1983, reprinted
1987 as ProGAN cites), "The Laplacian Pyramid as a Compact Image Code", with the 5-tap binomial
kernel [1, 4, 6, 4, 1]/16 (their a = 0.375) applied separably, mirror padding, REDUCE = blur
then keep every second pixel, EXPAND = zero-insert then blur ×4 (as OpenCV's pyrDown/pyrUp).
Sliced Wasserstein: Rabin et al. (2011).

    SWD(X, Y) = 1/|Θ| Σ_θ 1/N Σ_i |sort(⟨X, θ⟩)_i − sort(⟨Y, θ⟩)_i|,   θ uniform on the sphere

for X, Y the N descriptors of one level: 7×7×c neighbourhoods lying wholly inside the level, 128
per image at uniformly random positions, each set normalised per colour channel by its own mean
and standard deviation (as in ProGAN's code, so a global per-channel brightness/contrast change
is invisible to SWD). ProGAN draws 4 repeats × 128 directions and averages the repeats; a mean of
equal-size means is the mean over all 512, so here 512 directions are drawn once and projected
128 at a time. Departure: ProGAN draws patch positions independently for the two sets; here both
sets use the same positions (common random numbers: same estimator, less variance), which makes
SWD exactly 0 for identical sets and exactly symmetric. Both sets must have the same size.

Shapes: images (b, c, h, w) in [-1, 1] -> levels (b, c, h/2^l, w/2^l) -> descriptors
(b·p, c·7·7) per level -> distance ().
Lesson: lessons/30_evaluation.md
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

BINOMIAL_5 = (1.0, 4.0, 6.0, 4.0, 1.0)  # Burt & Adelson's generating kernel for a = 0.375, /16


def _generator(generator: torch.Generator | None) -> torch.Generator:
    """The given generator, or a fresh one seeded from torch's global RNG."""
    if generator is not None:
        return generator
    return torch.Generator().manual_seed(int(torch.randint(2**62, ()).item()))


def _blur(x: torch.Tensor) -> torch.Tensor:
    kernel = x.new_tensor(BINOMIAL_5) / 16
    c = x.shape[1]
    x = F.pad(x, (2, 2, 2, 2), mode="reflect")  # scipy/OpenCV "mirror": edge pixel not repeated
    x = F.conv2d(x, kernel.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    return F.conv2d(x, kernel.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)


def pyramid_down(x: torch.Tensor) -> torch.Tensor:
    """Burt & Adelson's REDUCE: Gaussian blur, then every second row and column."""
    return _blur(x)[..., ::2, ::2]


def pyramid_up(x: torch.Tensor) -> torch.Tensor:
    """Burt & Adelson's EXPAND: zeros between the samples, then the same blur with gain 4."""
    up = x.new_zeros(*x.shape[:2], 2 * x.shape[2], 2 * x.shape[3])
    up[..., ::2, ::2] = x
    return 4 * _blur(up)


def laplacian_pyramid(images: torch.Tensor, num_levels: int) -> list[torch.Tensor]:
    """[L_0, …, L_{n−2}, G_{n−1}]: band-pass levels, finest first, then the low-pass residual."""
    if images.dim() != 4 or num_levels < 1:
        raise ValueError(f"need images (b, c, h, w) and num_levels >= 1, got "
                         f"{tuple(images.shape)} and {num_levels}")
    if min(images.shape[-2:]) % 2 ** (num_levels - 1):
        raise ValueError(f"image size {tuple(images.shape[-2:])} does not halve "
                         f"{num_levels - 1} times")
    levels = [images]
    for _ in range(num_levels - 1):
        low = pyramid_down(levels[-1])
        levels[-1] = levels[-1] - pyramid_up(low)
        levels.append(low)
    return levels


def collapse_pyramid(levels: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of `laplacian_pyramid`: expand the residual and add back each band."""
    image = levels[-1]
    for band in reversed(levels[:-1]):
        image = band + pyramid_up(image)
    return image


def resolutions(size: int, min_resolution: int = 16) -> list[int]:
    """Pyramid levels of a size×size image: size, size/2, …, down to min_resolution."""
    if size < min_resolution:
        raise ValueError(f"images must be at least {min_resolution}px, got {size}")
    return [size >> i for i in range(int(math.log2(size // min_resolution)) + 1)]


def descriptors(images: torch.Tensor, *, per_image: int = 128, patch: int = 7,
                min_resolution: int = 16,
                generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Raw (unnormalised) patch descriptors (b·per_image, c·patch²) of each pyramid level.

    Positions come from `generator` image by image (all levels of image 0, then image 1, …), so
    descriptors of a batch split in two, drawn from one generator, concatenate to those of the
    whole batch; normalise with `normalize_descriptors` once the set is complete.
    """
    b, c, h, w = images.shape
    if h != w or per_image < 1 or patch < 1:
        raise ValueError(f"need square images, per_image >= 1 and patch >= 1, got "
                         f"{(h, w)}, {per_image}, {patch}")
    levels = laplacian_pyramid(images, len(resolutions(h, min_resolution)))
    if levels[-1].shape[-1] < patch:
        raise ValueError(f"patch {patch} is larger than the coarsest level {levels[-1].shape[-1]}")
    corners = torch.rand(b, len(levels), per_image, 2, generator=_generator(generator),
                         dtype=torch.float64).to(images.device)
    offsets = torch.arange(patch, device=images.device)
    image_index = torch.arange(b, device=images.device).view(b, 1, 1, 1)
    out = []
    for level, u in zip(levels, corners.unbind(1)):
        span = level.shape[-1] - patch + 1  # top-left corners that keep the patch inside
        yx = (u * span).long().clamp_max(span - 1)
        rows = (yx[..., 0, None] + offsets)[..., :, None]  # (b, p, patch, 1)
        cols = (yx[..., 1, None] + offsets)[..., None, :]  # (b, p, 1, patch)
        patches = level[image_index, :, rows, cols]  # advanced indexing: (b, p, y, x, c)
        out.append(rearrange(patches, "b p y x c -> (b p) (c y x)"))
    return out


def normalize_descriptors(desc: torch.Tensor, channels: int) -> torch.Tensor:
    """Subtract each colour channel's mean and divide by its std, over all descriptors and taps."""
    per_channel = rearrange(desc, "n (c k) -> c (n k)", c=channels)
    mean = per_channel.mean(1).repeat_interleave(desc.shape[1] // channels)
    std = per_channel.std(1, unbiased=False).repeat_interleave(desc.shape[1] // channels)
    return (desc - mean) / std.clamp_min(1e-12)  # a flat channel (std 0) maps to 0, not NaN


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, *, directions: int = 512,
                       generator: torch.Generator | None = None,
                       chunk: int = 128) -> torch.Tensor:
    """Mean over random unit directions θ of the 1-D Wasserstein-1 distance of ⟨a, θ⟩ and ⟨b, θ⟩."""
    if a.dim() != 2 or a.shape != b.shape or directions < 1:
        raise ValueError(f"need two (n, d) sets of equal shape and directions >= 1, got "
                         f"{tuple(a.shape)}, {tuple(b.shape)}, {directions}")
    theta = torch.randn(a.shape[1], directions, generator=_generator(generator),
                        dtype=torch.float64)
    theta = (theta / theta.norm(dim=0, keepdim=True)).to(a.device, a.dtype)
    total = a.new_zeros((), dtype=torch.float64)
    for dirs in theta.split(chunk, dim=1):  # 128 projections at a time bound the memory
        # (θ, n) rows: sorting contiguous rows is far faster than sorting columns
        proj_a, proj_b = (dirs.T @ a.T).sort(dim=1).values, (dirs.T @ b.T).sort(dim=1).values
        total = total + (proj_a - proj_b).abs().double().sum()
    return total / (a.shape[0] * directions)


def swd(real_images: torch.Tensor, fake_images: torch.Tensor, *, per_image: int = 128,
        directions: int = 512, generator: torch.Generator | None = None) -> dict[str, float]:
    """SWD ×10³ per pyramid level ("swd_32", "swd_16", …) and their mean ("swd_avg").

    Both sets get the same random patch positions (image i of each set, same places), so
    identical sets score exactly 0 and swapping the sets changes nothing.
    """
    if real_images.shape != fake_images.shape:
        raise ValueError(f"real and fake sets must have the same shape, got "
                         f"{tuple(real_images.shape)} and {tuple(fake_images.shape)}")
    generator = _generator(generator)
    state = generator.get_state()
    real = descriptors(real_images, per_image=per_image, generator=generator)
    generator.set_state(state)  # common random numbers: the fake set reuses the positions
    fake = descriptors(fake_images, per_image=per_image, generator=generator)
    c = real_images.shape[1]
    result = {}
    for res, a, b in zip(resolutions(real_images.shape[-1]), real, fake):
        distance = sliced_wasserstein(normalize_descriptors(a, c), normalize_descriptors(b, c),
                                      directions=directions, generator=generator)
        result[f"swd_{res}"] = 1e3 * distance.item()
    result["swd_avg"] = sum(result.values()) / len(result)
    return result
