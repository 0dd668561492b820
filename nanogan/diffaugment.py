"""DiffAugment: a fixed, differentiable augmentation of every image D sees (reals and fakes, in
D's and G's phases) — no controller, every image, always.

Paper: Zhao, Liu, Lin, Zhu, Han (2020), "Differentiable Augmentation for Data-Efficient GAN
Training", arXiv:2006.10738, §3: apply the same differentiable T to reals and fakes in both
players' losses, L_D = E f(−D(T(x))) + E f(D(T(G(z)))), L_G = E f(−D(T(G(z)))), with the
transformations and ranges §3 gives (the policy `color,translation,cutout`):

    color         x + b,  b ~ U(−0.5, 0.5)                          brightness
                  m_c + s (x − m_c),  s ~ U(0, 2),  m_c mean over channels    saturation
                  m + k (x − m),  k ~ U(0.5, 1.5),  m mean over the image     contrast
    translation   shift by (t_x, t_y) pixels, t ~ U{−r, …, r}, r = round(size/8), zero padding
    cutout        zero a square of half the image side, its centre uniform over the image
                  (positions 0 … size, so up to half of it may hang off the border)

on images in [−1, 1] (0 is mid-grey, so cutout and padding are grey). Grey images: saturation is
the identity (the channel mean is the pixel). Every operation is linear or affine in x, so
gradients flow to G and through them again for R1.

Randomness: parameters are drawn for the global batch (world · b images) and sliced for this
process, as in `augment.augment`: 2 processes × b/2 images equal 1 process × b.

Shapes: x (b, c, h, w); brightness, saturation, contrast (b,); translation, cutout (b, 2) as
(y, x) in pixels.
Lesson: lessons/18_ada_and_diffaugment.md
"""

from __future__ import annotations

import torch
from einops import rearrange, reduce

POLICY = ("color", "translation", "cutout")
TRANSLATION_RATIO, CUTOUT_RATIO = 1 / 8, 1 / 2


def policy_names(policy: str) -> tuple[str, ...]:
    """The parts of a comma-separated policy such as "color,translation,cutout"."""
    names = tuple(part.strip() for part in policy.split(",") if part.strip())
    unknown = [name for name in names if name not in POLICY]
    if unknown or not names:
        raise ValueError(f"DiffAugment policy must be a comma-separated subset of "
                         f"{','.join(POLICY)}; got {policy!r}")
    return names


def sizes(h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(translation range r, cutout side) per axis (y, x), rounded half up as the paper's code."""
    shift = (int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5))
    side = (int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5))
    return shift, side


def draw_params(n: int, h: int, w: int, generator: torch.Generator,
                policy: str = "color,translation,cutout") -> dict[str, torch.Tensor]:
    """Every random parameter for n images of h × w on the generator's device."""
    names, device = policy_names(policy), generator.device
    (ry, rx), (sy, sx) = sizes(h, w)
    params = {}
    if "color" in names:
        u = torch.rand(n, 3, generator=generator, device=device)
        params |= {"brightness": u[:, 0] - 0.5, "saturation": u[:, 1] * 2,
                   "contrast": u[:, 2] + 0.5}
    if "translation" in names:
        ty = torch.randint(-ry, ry + 1, (n,), generator=generator, device=device)
        tx = torch.randint(-rx, rx + 1, (n,), generator=generator, device=device)
        params["translation"] = torch.stack([ty, tx], 1)
    if "cutout" in names:  # an even side's centre has size + 1 positions, an odd side's size
        cy = torch.randint(0, h + 1 - sy % 2, (n,), generator=generator, device=device)
        cx = torch.randint(0, w + 1 - sx % 2, (n,), generator=generator, device=device)
        params["cutout"] = torch.stack([cy, cx], 1)
    return params


def _inside(start: torch.Tensor, length: int, size: int) -> torch.Tensor:
    """(b, size) mask of the positions start … start + length − 1 of an axis."""
    pos = torch.arange(size, device=start.device)
    return (pos >= start[:, None]) & (pos < start[:, None] + length)


def apply_params(x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """x with the given brightness, saturation, contrast, translation and cutout (in that order)."""
    if x.dim() != 4:
        raise ValueError(f"expected images (b, c, h, w), got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    params = {k: v.to(x.device) for k, v in params.items()}

    def scalar(name):
        return params[name].to(x.dtype).view(b, 1, 1, 1)

    if "brightness" in params:
        x = x + scalar("brightness")
    if "saturation" in params:
        mean = reduce(x, "b c h w -> b 1 h w", "mean")
        x = mean + scalar("saturation") * (x - mean)
    if "contrast" in params:
        mean = reduce(x, "b c h w -> b 1 1 1", "mean")
        x = mean + scalar("contrast") * (x - mean)
    if "translation" in params:  # out[i, j] = x[i − t_y, j − t_x], zero outside
        ty, tx = params["translation"].long().unbind(1)
        rows = torch.arange(h, device=x.device) - ty[:, None]  # (b, h)
        cols = torch.arange(w, device=x.device) - tx[:, None]  # (b, w)
        x = x.gather(2, rearrange(rows.clamp(0, h - 1), "b h -> b 1 h 1").expand(b, c, h, w))
        x = x.gather(3, rearrange(cols.clamp(0, w - 1), "b w -> b 1 1 w").expand(b, c, h, w))
        keep = (rearrange((rows >= 0) & (rows < h), "b h -> b 1 h 1")
                & rearrange((cols >= 0) & (cols < w), "b w -> b 1 1 w"))
        x = x * keep.to(x.dtype)
    if "cutout" in params:
        (_, _), (sy, sx) = sizes(h, w)
        cy, cx = params["cutout"].long().unbind(1)
        cut = (rearrange(_inside(cy - sy // 2, sy, h), "b h -> b 1 h 1")
               & rearrange(_inside(cx - sx // 2, sx, w), "b w -> b 1 1 w"))
        x = x * (~cut).to(x.dtype)
    return x


def diff_augment(x: torch.Tensor, generator: torch.Generator, *, rank: int = 0, world: int = 1,
                 policy: str = "color,translation,cutout") -> torch.Tensor:
    """DiffAugment this process's images x (b of the world · b global batch) with `policy`.

    Pass a fresh generator per call (e.g. `draws.generator("augment_D")`): the draws are its first
    numbers. For micro-batch i of `accumulate`, pass rank · accumulate + i and world · accumulate.
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, world) = [0, {world}), got {rank}")
    if x.dim() != 4:
        raise ValueError(f"expected images (b, c, h, w), got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    params = draw_params(b * world, h, w, generator, policy)
    return apply_params(x, {k: v[rank * b : (rank + 1) * b] for k, v in params.items()})
