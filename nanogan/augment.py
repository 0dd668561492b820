"""ADA's augmentation pipeline `bgc`: every image D sees is flipped, rotated, translated, scaled
and recoloured, each operation with probability p, differentiably, so D cannot memorise reals.

Paper: Karras, Aittala, Hellsten, Laine, Lehtinen, Aila (2020), "Training Generative Adversarial
Networks with Limited Data", arXiv:2006.06676, §2.3 and Appendix B. The pipeline, in the paper's
order (Appendix B), each operation applied to each image independently with
probability p (the arbitrary rotation twice, each with p_rot = 1 − √(1 − p), so that an image is
rotated at least once with probability p):

    pixel blitting   x-flip        i ~ U{0, 1}                   mirrored left-right if i = 1
                     rotate 90°    i ~ U{0, 1, 2, 3}             by i · 90°, as torch.rot90
                     translate     t ~ U(−0.125, 0.125)²         by round(t · size) pixels
    geometric        scale         s ~ lognormal(0, (0.2 ln 2)²) both axes
                     pre-rotate    θ ~ U(−π, π)                  (probability p_rot)
                     anisotropic   s ~ lognormal(0, (0.2 ln 2)²) x by s, y by 1/s
                     post-rotate   θ ~ U(−π, π)                  (probability p_rot)
                     translate     t ~ N(0, 0.125²)²             by t · size (fractional)
    colour           brightness    b ~ N(0, 0.2²)                x + b
                     contrast      c ~ lognormal(0, (0.5 ln 2)²) c · x
                     luma flip     i ~ U{0, 1}                   (I − 2vvᵀ) x when i = 1
                     hue rotation  θ ~ U(−π, π)                  rotate about v by θ
                     saturation    s ~ lognormal(0, (ln 2)²)     vvᵀx + s (I − vvᵀ) x

with v = (1, 1, 1)/√3 the luma axis, colours in [−1, 1] (0 is mid-grey). lognormal(0, (σ ln 2)²)
is 2^N(0, σ²): σ octaves. The geometric operations compose into one 3×3 matrix per image (mapping
output pixel centres to input positions) and are resampled once; the colour operations compose
into one 4×4 matrix on homogeneous RGB. Grey images (1 channel) have only the luma axis: hue
rotation and saturation are the identity there, brightness, contrast and luma flip (x → −x) apply.

Deviations from the paper, both for brevity: (1) resampling is one bilinear `F.grid_sample`
instead of the paper's 2× upsampling with a wavelet filter, warp and downsampling, so rotated and
scaled images are slightly blurred (equally for reals and fakes); pixel blitting stays exact
(bit for bit at power-of-two sizes), because its matrix maps pixel centres onto pixel centres.
(2) The paper pads by reflection; here the reflection is about the image border, the edge pixel
repeated (`grid_sample`'s "reflection" with align_corners=False).

Randomness: `augment` draws every number for the global batch (world · b images) from the given
generator and uses this process's slice, so 2 processes × b/2 images equal 1 process × b.

Shapes: x (b, c, h, w), c ∈ {1, 3}, values in [−1, 1]; every parameter (b,) or (b, 2) (x, y);
geometric matrices (b, 3, 3), colour matrices (b, c+1, c+1).
Lesson: lessons/18_ada_and_diffaugment.md
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange

GROUPS = {"b": ("xflip", "rotate90", "xint"),
          "g": ("scale", "rotate_pre", "aniso", "rotate_post", "xfrac"),
          "c": ("brightness", "contrast", "lumaflip", "hue", "saturation")}
ORDER = GROUPS["b"] + GROUPS["g"] + GROUPS["c"]  # the paper's order (Appendix B)
IDENTITY = {"scale": 1.0, "aniso": 1.0, "contrast": 1.0, "saturation": 1.0}  # all others: 0

# Each parameter from two uniforms u ∈ [0, 1)² and two normals z (Appendix B's distributions).
DRAW = {
    "xflip": lambda u, z: torch.floor(u[:, 0] * 2),
    "rotate90": lambda u, z: torch.floor(u[:, 0] * 4),
    "xint": lambda u, z: (u * 2 - 1) * 0.125,
    "scale": lambda u, z: torch.exp2(z[:, 0] * 0.2),
    "rotate_pre": lambda u, z: (u[:, 0] * 2 - 1) * math.pi,
    "aniso": lambda u, z: torch.exp2(z[:, 0] * 0.2),
    "rotate_post": lambda u, z: (u[:, 0] * 2 - 1) * math.pi,
    "xfrac": lambda u, z: z * 0.125,
    "brightness": lambda u, z: z[:, 0] * 0.2,
    "contrast": lambda u, z: torch.exp2(z[:, 0] * 0.5),
    "lumaflip": lambda u, z: torch.floor(u[:, 0] * 2),
    "hue": lambda u, z: (u[:, 0] * 2 - 1) * math.pi,
    "saturation": lambda u, z: torch.exp2(z[:, 0]),
}


def op_names(ops: str | Sequence[str]) -> tuple[str, ...]:
    """The operations of `ops` in pipeline order: group letters ("bgc", "bg", "c") or op names."""
    if isinstance(ops, str):
        if not ops or set(ops) - set(GROUPS):
            raise ValueError(f"ops must combine 'b' (pixel blitting), 'g' (general geometric) and "
                             f"'c' (colour), e.g. 'bgc' (the paper's default); got {ops!r}")
        return tuple(name for name in ORDER if any(name in GROUPS[g] for g in ops))
    unknown = set(ops) - set(ORDER)
    if unknown or not ops:
        raise ValueError(f"unknown augmentation ops {sorted(unknown)}; allowed: {', '.join(ORDER)}")
    return tuple(name for name in ORDER if name in ops)


def draw_params(n: int, p: float | torch.Tensor, generator: torch.Generator,
                ops: str | Sequence[str] = "bgc") -> dict[str, torch.Tensor]:
    """Every random parameter for n images, drawn on the generator's device; identity where not
    applied. A tensor p stays where it is (the draws move to it): reading the controller's p on
    the host would wait for the device (on XLA, whose draws are made on the CPU)."""
    names = op_names(ops)
    device = generator.device
    gate = torch.rand(n, len(names), generator=generator, device=device)
    u = torch.rand(n, len(names), 2, generator=generator, device=device)
    z = torch.randn(n, len(names), 2, generator=generator, device=device)
    if torch.is_tensor(p) and p.device != device:
        gate, u, z = (t.to(p.device) for t in (gate, u, z))
    p_rot = 1 - (1 - p) ** 0.5  # two rotations: P(at least one) = 1 − (1 − p_rot)² = p
    params = {}
    for k, name in enumerate(names):
        value = DRAW[name](u[:, k], z[:, k])
        applied = gate[:, k] < (p_rot if name.startswith("rotate_") else p)
        applied = applied.view(n, *[1] * (value.dim() - 1))
        params[name] = torch.where(applied, value, torch.full_like(value, IDENTITY.get(name, 0.0)))
    return params


# Small matrices are built and multiplied elementwise: no host-to-device copies of constants
# (each would wait for the GPU), and no TF32 matmul rounding coordinates and colours on Ampere+.
def _matrices(entries: list[list], n: int, like: torch.Tensor) -> torch.Tensor:
    """(n, k, k) matrices from a k×k nested list of numbers and (n,) tensors."""
    rows = [torch.stack([e if torch.is_tensor(e) else like.new_full((n,), float(e))
                         for e in row], -1) for row in entries]
    return torch.stack(rows, -2)


def _matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b for (…, k, k) matrices, as an exact-fp32 sum of products."""
    return (a[..., :, :, None] * b[..., None, :, :]).sum(-2)


def geometric_matrix(params: dict[str, torch.Tensor], n: int, h: int, w: int,
                     like: torch.Tensor) -> torch.Tensor:
    """Inverse map of the composed transform, output → input, in pixels from the image centre."""
    def linear(a, b, c, d):
        return _matrices([[a, b, 0], [c, d, 0], [0, 0, 1]], n, like)

    def shift(tx, ty):
        return _matrices([[1, 0, tx], [0, 1, ty], [0, 0, 1]], n, like)

    def unrotate(theta):  # inverse of a counter-clockwise θ (on screen, y down, as torch.rot90)
        c, s = torch.cos(theta), torch.sin(theta)
        return linear(c, -s, s, c)

    def get(name):
        return params[name].to(like)

    m = torch.eye(3, dtype=like.dtype, device=like.device).expand(n, 3, 3)
    # Output = T_last(…T_first(x)), so the inverse map is T_first⁻¹ ∘ … ∘ T_last⁻¹.
    if "xflip" in params:
        m = _matmul(m, linear(1 - 2 * get("xflip"), 0, 0, 1))
    if "rotate90" in params:  # unrotate(i · π/2) with exact cos and sin, as torch.rot90(x, i)
        i = get("rotate90").round().remainder(4)
        c, s = (i == 0).to(like) - (i == 2).to(like), (i == 1).to(like) - (i == 3).to(like)
        m = _matmul(m, linear(c, -s, s, c))
    if "xint" in params:
        t = get("xint")
        m = _matmul(m, shift(-torch.round(t[:, 0] * w), -torch.round(t[:, 1] * h)))
    if "scale" in params:
        m = _matmul(m, linear(1 / get("scale"), 0, 0, 1 / get("scale")))
    if "rotate_pre" in params:
        m = _matmul(m, unrotate(get("rotate_pre")))
    if "aniso" in params:
        m = _matmul(m, linear(1 / get("aniso"), 0, 0, get("aniso")))
    if "rotate_post" in params:
        m = _matmul(m, unrotate(get("rotate_post")))
    if "xfrac" in params:
        t = get("xfrac")
        m = _matmul(m, shift(-t[:, 0] * w, -t[:, 1] * h))
    return m


def warp(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Sample x at matrix @ (output pixel centre): bilinear, reflected about the border."""
    b, _, h, w = x.shape
    xs = torch.arange(w, dtype=x.dtype, device=x.device) - (w - 1) / 2
    ys = torch.arange(h, dtype=x.dtype, device=x.device) - (h - 1) / 2
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")  # (h, w) each
    m = rearrange(matrix, "b i j -> b 1 1 i j")
    sx = m[..., 0, 0] * gx + m[..., 0, 1] * gy + m[..., 0, 2]  # (b, h, w)
    sy = m[..., 1, 0] * gx + m[..., 1, 1] * gy + m[..., 1, 2]
    # Pixels from the centre → grid_sample's [−1, 1] (align_corners=False: ±1 are the borders).
    grid = torch.stack([sx * (2 / w), sy * (2 / h)], -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def color_matrix(params: dict[str, torch.Tensor], n: int, channels: int,
                 like: torch.Tensor) -> torch.Tensor:
    """The colour operations as one (c+1)×(c+1) matrix on homogeneous colours, brightness first."""
    c, k = channels, channels + 1
    eye = torch.eye(k, dtype=like.dtype, device=like.device)
    bias = torch.zeros_like(eye)
    bias[:c, c] = 1
    gain = eye.clone()
    gain[c, c] = 0
    luma = torch.zeros_like(eye)
    luma[:c, :c] = 1 / c  # vvᵀ with v = (1, …, 1)/√c

    def scalar(name):
        return params[name].to(like).view(n, 1, 1)

    m = eye.expand(n, k, k)
    if "brightness" in params:
        m = _matmul(eye + scalar("brightness") * bias, m)
    if "contrast" in params:
        m = _matmul(eye + (scalar("contrast") - 1) * gain, m)
    if "lumaflip" in params:
        m = _matmul(eye - 2 * scalar("lumaflip") * luma, m)
    if "hue" in params and c == 3:  # Rodrigues: R = I + sin θ K + (1 − cos θ) K², K = [v]×
        skew = torch.zeros_like(eye)  # K y = v × y: column j is v × e_j
        skew[:3, :3] = torch.linalg.cross(luma[:3, :1].expand(3, 3) * math.sqrt(3), eye[:3, :3],
                                          dim=0)
        theta = scalar("hue")
        rotation = eye + torch.sin(theta) * skew + (1 - torch.cos(theta)) * _matmul(skew, skew)
        m = _matmul(rotation, m)
    if "saturation" in params:
        m = _matmul(eye + (scalar("saturation") - 1) * (gain - luma), m)
    return m


def recolor(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply a (c+1)×(c+1) colour matrix to every pixel of each image."""
    c = x.shape[1]
    mix = rearrange(matrix[:, :c, :c], "b i j -> b i j 1 1")
    return ((mix * rearrange(x, "b j h w -> b 1 j h w")).sum(2)
            + rearrange(matrix[:, :c, c], "b c -> b c 1 1"))


def apply_params(x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """x augmented by given parameters (missing ops: identity); unchanged images exactly x."""
    unknown = set(params) - set(ORDER)
    if unknown:
        raise ValueError(f"unknown augmentation ops {sorted(unknown)}; allowed: {', '.join(ORDER)}")
    _check_images(x, tuple(params))
    b, c, h, w = x.shape
    work = torch.promote_types(x.dtype, torch.float32)  # resample and mix colours in ≥ fp32
    like = torch.empty((), dtype=work, device=x.device)
    out, changed = x.to(work), torch.zeros(b, dtype=torch.bool, device=x.device)
    if any(name in params for name in GROUPS["b"] + GROUPS["g"]):
        m = geometric_matrix(params, b, h, w, like)
        out = warp(out, m)
        changed |= (m != torch.eye(3, dtype=work, device=x.device)).flatten(1).any(1)
    if any(name in params for name in GROUPS["c"]):
        m = color_matrix(params, b, c, like)
        out = recolor(out, m)
        changed |= (m != torch.eye(c + 1, dtype=work, device=x.device)).flatten(1).any(1)
    # Images with identity parameters are returned bitwise (so is the batch at p = 0).
    return torch.where(changed.view(b, 1, 1, 1), out.to(x.dtype), x)


def _check_images(x: torch.Tensor, names: tuple[str, ...]) -> None:
    if x.dim() != 4:
        raise ValueError(f"expected images (b, c, h, w), got shape {tuple(x.shape)}")
    _, c, h, w = x.shape
    if "rotate90" in names and h != w:
        raise ValueError(f"90° rotations need square images, got {h}×{w}; leave out 'rotate90'")
    if "hue" in names and c not in (1, 3):
        raise ValueError(f"hue rotation needs 1 (grey) or 3 (RGB) channels, got {c}")


def augment(x: torch.Tensor, p: float | torch.Tensor, generator: torch.Generator, *,
            rank: int = 0, world: int = 1, ops: str | Sequence[str] = "bgc") -> torch.Tensor:
    """ADA-augment this process's images x (b of the world · b global batch), each op with prob. p.

    p is a number or a 0-d tensor (`AdaController.p`). A number (or a CPU tensor) equal to 0
    returns x at once; a device tensor is never read on the host (that would wait for the
    device), so p = 0 there does the work and still returns x bitwise. Pass a fresh generator
    per call (e.g. `draws.generator("augment_D")`): the draws are its first numbers. For
    micro-batch i of `accumulate`, pass rank · accumulate + i and world · accumulate.
    """
    names = op_names(ops)
    _check_images(x, names)
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, world) = [0, {world}), got {rank}")
    if torch.is_tensor(p) and p.device.type == "cpu":
        p = float(p)
    if not torch.is_tensor(p):
        if not 0 <= p <= 1:
            raise ValueError(f"augmentation probability p must be in [0, 1], got {p}")
        if p == 0:
            return x
    b = x.shape[0]
    params = draw_params(b * world, p, generator, names)
    mine = {k: v[rank * b : (rank + 1) * b].to(x.device) for k, v in params.items()}
    return apply_params(x, mine)
