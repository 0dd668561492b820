"""StyleGAN2 (config F): mapping network, skip generator, residual discriminator, lazy R1 and
path-length regularization, style mixing, truncation in W.

Paper: Karras, Laine, Aittala, Hellsten, Lehtinen, Aila (2020), "Analyzing and Improving the Image
Quality of StyleGAN", arXiv:1912.04958 — §2.2 (Eq. 1–3, weight demodulation), §3.1 (lazy
regularization), §3.2 (Eq. 4–5, path length), §4.1 and Fig. 7 (output skips in G, residual D),
§4.2 and footnote 4 (config F widths), Appendix B (Adam β=(0, 0.99), ε=1e-8, lr 0.002, R1 γ=10,
minibatch 32, const input N(0, 1), no demodulation in tRGB, intervals k = 16 (D) and 8 (G)).
From the official code, which the paper defers to: minibatch-std group 4, EMA half-life 10 kimg,
mixing probability 0.9, path-length weight 2, decay 0.01 and batch shrink 2.

    G: z → mapping → w → ws (b, num_ws, d) → const 4×4 → [modconv ↑, modconv] per resolution,
       each + noise + bias → lrelu·√2; image = Σ upsampled tRGB outputs (skips)
    D: fromRGB → [conv, conv ↓ ; skip 1×1 ↓ ; (main + skip)/√2] per resolution →
       mbstd → conv → fc → fc (projection onto the class embedding when conditional)

Widths: channels(r) = min(channel_base / r, channel_max). StyleGAN (configs A–E) has
channel_base 16384: 512 up to 32², then halving to 16 at 1024². Config F doubles the feature
maps at 64²–1024² (footnote 4), channel_base 32768: 512 up to 64², 256 at 128², 128 at 256²,
64 at 512², 32 at 1024² — G 25M → 30M and D 24M → 29M parameters at 1024².

Mixed precision (StyleGAN2-ADA's recipe, Karras et al. 2020, arXiv:2006.06676, in our words):
under autocast only the `num_fp16_res` highest resolutions of G and D compute in reduced
precision (where the pixels, and the time, are); the mapping network, the lower resolutions and
D's 4×4 epilogue compute in fp32 (autocast off inside). Under fp16 those fast blocks clamp their
activations at ±conv_clamp before the leaky ReLU's √2 gain (±conv_clamp·√2 after it; tRGB at
±conv_clamp; ADA clamps at ±conv_clamp after its gains) so nothing reaches fp16's 65504; bf16
has fp32's range and is not clamped. Without autocast neither rule applies: fp32 runs compute
exactly what they computed before these options existed.

Shapes: z (b, z) -> w (b, d) -> ws (b, n, d) -> images (b, c, r, r) -> logits (b,).
Lesson: lessons/17_stylegan2.md
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import ContextManager

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nanogan import recipe
from nanogan.config import ConfigError, check_resolution
from nanogan.ema import ema_beta, make_ema, update_ema
from nanogan.equalized import EqualConv2d, EqualLinear
from nanogan.lazy import is_due, lazy_adam_hyperparameters
from nanogan.losses import logistic_d_loss, logistic_g_loss
from nanogan.mapping import MappingNetwork, track_average
from nanogan.minibatch_std import minibatch_std
from nanogan.mixing import draw_crossover, mix_styles
from nanogan.modulation import ModulatedConv2d, ToRGB, full_precision
from nanogan.noise import NoiseInput
from nanogan.output_range import check_output, to_range
from nanogan.path_length import PathLengthPenalty, path_lengths
from nanogan.penalties import r1_penalty
from nanogan.randomness import seed_latents
from nanogan.truncation import TruncationRule, truncate_w
from nanogan.upfirdn import make_kernel, upsample2d

SQRT2 = math.sqrt(2)
FIND_UNUSED_PARAMETERS = False
GENERATE_OPTIONS = {"noise_mode", "truncation_cutoff"}
# The model contract (models.ModelSpec). ψ may extrapolate (ψ > 1) or invert (ψ < 0, StyleGAN
# Fig. 8); the grid is StyleGAN2's Fig. 12 (ψ = 1, 0.7, 0.5, 0).
TRUNCATION = TruncationRule(
    "ψ", grid=(1, 0.7, 0.5, 0), curve=(1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0),
    valid=math.isfinite, in_z=False,
    allowed="ψ must be a finite number (1: no truncation, 0: the average image w̄)")
LABELS = "optional"  # conditional when trained with labels (num_classes > 0)
W_SPACE = True  # map_ws, synthesize, LAYER_NAMES below
LAYER_NAMES = {"coarse": (0, 4), "middle": (4, 8), "fine": (8, None)}  # StyleGAN §3.1, Fig. 3


@dataclass(frozen=True)
class Config:
    resolution: int = 256
    channels: int = 3
    num_classes: int = 0  # > 0: class-conditional mapping and projection D
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_lr_mul: float = 0.01
    channel_base: int = 32768  # config F (footnote 4); StyleGAN and configs A–E: 16384
    channel_max: int = 512
    batch_size: int = 32
    lr: float = 0.002
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = 10.0
    r1_interval: int = 16
    pl_weight: float = 2.0  # Eq. 5 in our normalisation, see path_length.py
    pl_interval: int = 8
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    mixing_prob: float = 0.9
    mbstd_group: int = 4
    ema_kimg: float = 10.0
    ema_rampup: float | None = None
    num_fp16_res: int = 4  # under autocast, reduced precision in this many top resolutions only
    conv_clamp: float | None = 256.0  # fp16 blocks clamp activations here (None: never)
    output: str = "linear"  # G's last layer: linear (the paper) or one of output_range.OUTPUTS
    kimg: float = 25000.0
    augment: str = "none"  # D's view: "none", "ada" or "diffaugment" (recipe.AUGMENTS)
    ada_target: float = 0.6  # ADA (arXiv:2006.06676) §3: the r_t that p steers toward
    ada_kimg: float = 500.0  # ADA §3: p can go from 0 to 1 in this many thousand images
    ada_interval: int = 4  # ADA §3: p is adjusted every this many D minibatches

    @property
    def num_ws(self) -> int:
        return 2 * int(math.log2(self.resolution)) - 2

    def width(self, resolution: int) -> int:
        return min(self.channel_base // resolution, self.channel_max)

    def fast(self, resolution: int) -> bool:
        """Whether the block at `resolution` may compute in reduced precision (ADA's rule: the
        num_fp16_res highest resolutions, never 4×4)."""
        lowest = max(2 ** (int(math.log2(self.resolution)) + 1 - self.num_fp16_res), 8)
        return resolution >= lowest

    def validate(self) -> None:
        check_resolution(self.resolution, low=8)
        recipe.check_augment(self)
        check_output(self.output)
        if self.num_fp16_res < 0:
            raise ConfigError(f"num_fp16_res must be >= 0 (0: fp32 everywhere, StyleGAN2-ADA: "
                              f"4), got {self.num_fp16_res}")
        if self.conv_clamp is not None and not self.conv_clamp > 0:
            raise ConfigError(f"conv_clamp must be > 0 or None (off; StyleGAN2-ADA: 256), got "
                              f"{self.conv_clamp}")
        if self.batch_size % self.mbstd_group:
            raise ConfigError(f"batch_size {self.batch_size} must be a multiple of the "
                              f"minibatch-std group size {self.mbstd_group} (or set "
                              f"mbstd_group=N with N dividing {self.batch_size})")
        if self.batch_size % self.pl_batch_shrink:
            raise ConfigError(f"batch_size {self.batch_size} must be divisible by "
                              f"pl_batch_shrink {self.pl_batch_shrink}")


PRESETS = {
    # 32×32 Fashion-MNIST in under 30 minutes on 2 CPU cores (130 kimg in 20.0 min at 108 img/s,
    # the README command): 32 channels at every resolution, the paper's mapping and optimizer.
    # Half an hour is too short for the width to be the limit: side by side for 25 minutes on one
    # core each (one run each), 32 channels saw 84 kimg to 64 channels' 37 and drew better images
    # (classifier-FID 270 against 443 on 2,000 images), although per image seen 64 channels learnt
    # faster (lesson 17, "Train it"). Batch 16: a CPU shows as many images per second as at 32 but
    # takes twice the steps, and in equal time short runs reached garment shapes sooner. γ = 1,
    # far above StyleGAN2-ADA's heuristic 0.0002·r²/batch (6.6 at 1024² and batch 32, 0.01 at 32²
    # and batch 16): at 90 kimg, γ = 0.01 / 0.1 / 1 scored classifier-FID 440 / 300 / 203 and SWD
    # 38.6 / 26.0 / 16.6 on 2,000 images (one run each; γ = 10 was worse). EMA: half-life 5% of
    # the images seen (ADA's ramp-up), at most 5 kimg, instead of the 10 kimg that suits a 25 000
    # kimg run. From StyleGAN2-ADA's `cifar` configuration (among its settings for 32×32 images):
    # no path-length penalty (so G's Adam is not rescaled for lazy steps either), no style mixing,
    # the minibatch-std statistic over larger groups (16, the whole batch; `cifar`: 32). And G's
    # image clamped to [−1, 1] as D sees it (no haze around the black background, output_range.py).
    # README command, table protocol: SWD 16.3 → 8.8, classifier-FID 204 → 90, recall 0.04 → 0.18.
    # One run each on one core: the cifar settings alone 11.7 (FID 189), the clamp alone 17.1
    # (FID 143), both 9.6 (FID 99); not ablated further (lesson 17, "Train it").
    "tiny": Config(resolution=32, channels=1, channel_base=1024, channel_max=32, batch_size=16,
                   r1_gamma=1.0, ema_kimg=5.0, ema_rampup=0.05, kimg=130, mbstd_group=16,
                   mixing_prob=0.0, pl_weight=0.0, output="clamp"),
    # Config F at 256² (LSUN Cat, 88M images, Table 3; Church and Horse used γ = 100) and 1024²
    # (FFHQ, 25M images, Table 1; the paper also x-flips FFHQ), batch 32 on 8 GPUs.
    "paper256": Config(resolution=256, kimg=88000),
    "paper1024": Config(resolution=1024, kimg=25000),
}


def bias_act(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Add a per-channel bias and apply leaky ReLU 0.2 with gain √2 (keeps unit variance)."""
    return F.leaky_relu(x + bias.view(1, -1, 1, 1).to(x.dtype), 0.2).mul_(SQRT2)


def widen(x: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 → fp32; any other dtype unchanged (fp32 and fp64 runs are untouched)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def clamp(x: torch.Tensor, limit: float | None) -> torch.Tensor:
    """x clamped to ±limit (None: unchanged)."""
    return x if limit is None else x.clamp(-limit, limit)


def block_precision(cfg: Config, resolution: int,
                    device_type: str) -> tuple[ContextManager, float | None]:
    """How the block at `resolution` computes under the autocast in force: (context, clamp).

    Without autocast: (nothing, None). A fast block keeps the autocast, with the clamp
    cfg.conv_clamp if its dtype is fp16; any other block turns autocast off (fp32)."""
    if not torch.is_autocast_enabled(device_type):
        return contextlib.nullcontext(), None
    if not cfg.fast(resolution):
        return torch.autocast(device_type, enabled=False), None
    fp16 = torch.get_autocast_dtype(device_type) == torch.float16
    return contextlib.nullcontext(), cfg.conv_clamp if fp16 else None


class SynthesisLayer(nn.Module):
    """Modulated 3×3 conv (optionally 2× up) → noise → bias → activation."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, resolution: int, up: int = 1):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, w_dim, up=up)
        self.noise = NoiseInput(resolution)
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x, w, noise_mode="random", noise=None, conv_clamp: float | None = None):
        x = bias_act(self.noise(self.conv(x, w), noise=noise, mode=noise_mode), self.bias)
        return clamp(x, None if conv_clamp is None else conv_clamp * SQRT2)  # after the gain


class Generator(nn.Module):
    """Mapping network + skip synthesis network (Fig. 7b): const 4×4, two modulated convs per
    resolution, and a tRGB at every resolution whose outputs are upsampled and summed."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.mapping_layers,
                                      num_classes=cfg.num_classes, lr_mul=cfg.mapping_lr_mul)
        self.const = nn.Parameter(torch.randn(cfg.width(4), 4, 4))
        self.layers, self.to_rgb = nn.ModuleList(), nn.ModuleList()
        r = 4
        self.layers.append(SynthesisLayer(cfg.width(4), cfg.width(4), cfg.w_dim, 4))
        self.to_rgb.append(ToRGB(cfg.width(4), cfg.channels, cfg.w_dim))
        while r < cfg.resolution:
            r *= 2
            self.layers.append(SynthesisLayer(cfg.width(r // 2), cfg.width(r), cfg.w_dim, r,
                                              up=2))
            self.layers.append(SynthesisLayer(cfg.width(r), cfg.width(r), cfg.w_dim, r))
            self.to_rgb.append(ToRGB(cfg.width(r), cfg.channels, cfg.w_dim))
        self.register_buffer("kernel", make_kernel(), persistent=False)

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "random", noise=None) -> torch.Tensor:
        """ws (b, num_ws, d) → images. `noise(i, shape)` supplies layer i's noise if given."""
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        image, kind = None, ws.device.type
        for block, rgb in enumerate(self.to_rgb):
            context, limit = block_precision(self.cfg, 4 * 2**block, kind)
            with context:  # fp32 below the fast resolutions (ws and x are fp32 there)
                first = max(0, 2 * block - 1)  # block 0 has one layer, the others two
                for i in range(first, 2 * block + 1):  # conv layer i takes style i
                    layer = self.layers[i]
                    shape = (x.shape[0], 1, *layer.noise.const.shape[-2:])
                    x = layer(x, ws[:, i], noise_mode, None if noise is None else noise(i, shape),
                              limit)
                y = clamp(rgb(x, ws[:, 2 * block + 1]), limit)  # tRGB: the next block's style
            with full_precision(kind):  # the image sums in fp32
                image = widen(y) if image is None else upsample2d(image, self.kernel) + widen(y)
        return to_range(image, self.cfg.output)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, *,
                mix_z: torch.Tensor | None = None, crossover: torch.Tensor | None = None,
                truncation: float = 1.0, truncation_cutoff: int | None = None,
                noise_mode: str = "random", noise=None, return_ws: bool = False):
        ws = self.styles(z, labels, mix_z=mix_z, crossover=crossover, truncation=truncation,
                         truncation_cutoff=truncation_cutoff)
        images = self.synthesis(ws, noise_mode, noise)
        return (images, ws) if return_ws else images

    def styles(self, z: torch.Tensor, labels: torch.Tensor | None = None, *,
               mix_z: torch.Tensor | None = None, crossover: torch.Tensor | None = None,
               truncation: float = 1.0, truncation_cutoff: int | None = None) -> torch.Tensor:
        """z → ws (b, num_ws, d): mapping, style mixing, truncation ψ in W."""
        n = self.cfg.num_ws
        with full_precision(z.device.type):  # the mapping network always in fp32 (cheap)
            ws = self.mapping(z, labels)[:, None].expand(-1, n, -1)  # w̄: Recipe.track_w_avg
            if mix_z is not None:
                ws = mix_styles(ws, self.mapping(mix_z, labels), crossover, n)
            if truncation != 1.0:
                ws = truncate_w(ws, self.mapping.w_avg, truncation, truncation_cutoff)
        return ws


def _rename_down_convs(module, state_dict, prefix, *args) -> None:
    """Checkpoints written before EqualConv2d had `down` name D's downsampling convs
    `conv1.conv.weight`, `skip.conv.weight`: load them under today's `conv1.weight`, …"""
    for name in ("conv1", "skip"):
        for key in ("weight", "bias"):
            old = f"{prefix}{name}.conv.{key}"
            if old in state_dict:
                state_dict[f"{prefix}{name}.{key}"] = state_dict.pop(old)


class DBlock(nn.Module):
    """Residual D block (Fig. 7c): (skip 1×1 ↓ + conv, conv ↓) / √2, the √2 of footnote 3."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_ch, in_ch, 3)
        self.conv1 = EqualConv2d(in_ch, out_ch, 3, down=2)
        self.skip = EqualConv2d(in_ch, out_ch, 1, bias=False, down=2)
        self.register_load_state_dict_pre_hook(_rename_down_convs)

    def forward(self, x: torch.Tensor, conv_clamp: float | None = None) -> torch.Tensor:
        limit = None if conv_clamp is None else conv_clamp * SQRT2  # after the gain, as in G
        y = clamp(F.leaky_relu(self.conv0(x), 0.2) * SQRT2, limit)
        y = clamp(F.leaky_relu(self.conv1(y), 0.2) * SQRT2, limit)
        return (self.skip(x) + y) * (1 / SQRT2)


class Discriminator(nn.Module):
    """Residual discriminator (Fig. 7c): fRGB at the top only, one DBlock per resolution down to
    4×4, then minibatch std, a 3×3 conv and two fully connected layers."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg, r = cfg, cfg.resolution
        self.from_rgb = EqualConv2d(cfg.channels, cfg.width(r), 1)
        blocks = []
        while r > 4:
            blocks.append(DBlock(cfg.width(r), cfg.width(r // 2)))
            r //= 2
        self.blocks = nn.Sequential(*blocks)
        w4 = cfg.width(4)
        self.conv = EqualConv2d(w4 + 1, w4, 3)
        self.fc = EqualLinear(w4 * 16, w4)
        self.out = EqualLinear(w4, w4 if cfg.num_classes else 1)
        self.embed = EqualLinear(cfg.num_classes, w4) if cfg.num_classes else None

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        r, kind = self.cfg.resolution, images.device.type
        context, limit = block_precision(self.cfg, r, kind)
        with context:
            x = clamp(F.leaky_relu(self.from_rgb(images), 0.2) * SQRT2,
                      None if limit is None else limit * SQRT2)
        for block in self.blocks:
            context, limit = block_precision(self.cfg, r, kind)
            with context:  # below the fast resolutions: fp32
                x = block(x if self.cfg.fast(r) else widen(x), limit)
            r //= 2
        with full_precision(kind):  # the 4×4 epilogue in fp32, as in ADA
            return self.epilogue(widen(x), labels)

    def epilogue(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Minibatch std, a 3×3 conv and two fully connected layers at 4×4 (→ logits)."""
        x = minibatch_std(x, self.cfg.mbstd_group)
        x = F.leaky_relu(self.conv(x), 0.2) * SQRT2
        x = F.leaky_relu(self.fc(rearrange(x, "b c h w -> b (c h w)")), 0.2) * SQRT2
        x = self.out(x)
        if self.embed is None:
            return x.squeeze(1)
        cmap = self.embed(F.one_hot(labels, self.cfg.num_classes).to(x.dtype))
        return (x * cmap).sum(1) / math.sqrt(x.shape[1])  # projection onto the class (ADA style)


class Recipe(recipe.Recipe):
    """Non-saturating logistic loss; lazy R1 on D and lazy path length on G (§3.1, Appendix B)."""

    name = "stylegan2"
    accumulates = True  # every phase goes through `optimize`; micro-batches train as one batch

    def build(self) -> None:
        cfg = self.cfg
        cfg.validate()
        self.check_minibatch_groups(cfg.mbstd_group)
        parts = self.world * self.accumulate
        if (cfg.batch_size // cfg.pl_batch_shrink) % parts:
            raise ConfigError(f"the path-length batch {cfg.batch_size // cfg.pl_batch_shrink} "
                              f"must split into {self.world} processes × {self.accumulate} "
                              f"micro-batches")
        self.G, self.D = Generator(cfg).to(self.device), Discriminator(cfg).to(self.device)
        self.G_ema = make_ema(self.G)
        # One Adam per network, shared by its main loss and its lazy regularizer (Appendix B).
        lr_G, betas_G = lazy_adam_hyperparameters(cfg.lr, cfg.betas, self.pl_interval)
        lr_D, betas_D = lazy_adam_hyperparameters(cfg.lr, cfg.betas, self.r1_interval)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=lr_G, betas=betas_G, eps=1e-8)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=lr_D, betas=betas_D, eps=1e-8)
        self.pl = PathLengthPenalty(cfg.pl_decay).to(self.device)  # holds a, Eq. 4

    @property
    def r1_interval(self) -> int:
        return self.cfg.r1_interval if self.cfg.r1_gamma else 0

    @property
    def pl_interval(self) -> int:
        return self.cfg.pl_interval if self.cfg.pl_weight else 0

    def inputs(self, draws, tag: str, batch: int) -> dict:
        """G's keyword inputs for one phase: z, labels, mixing latent and crossover, noise."""
        cfg = self.cfg
        labels = None
        if cfg.num_classes:
            labels = draws.integers(f"labels_{tag}", cfg.num_classes, (batch,))
        crossover = draw_crossover(batch, cfg.num_ws, cfg.mixing_prob,
                                   draws.generator(f"crossover_{tag}"))

        def noise(i, shape):
            return draws.normal(f"noise_{tag}_{i}", (batch, *shape[1:]))

        return dict(z=draws.normal(f"z_{tag}", (batch, cfg.z_dim)), labels=labels,
                    mix_z=draws.normal(f"mix_z_{tag}", (batch, cfg.z_dim)),
                    crossover=draws.local(crossover.to(self.device)), noise=noise)

    def micro_inputs(self, inputs: dict, i: int) -> dict:
        """Micro-batch i of G's inputs, noise included."""
        noise = inputs["noise"]
        part = {k: self.micro(v, i) for k, v in inputs.items() if k != "noise"}
        return part | {"noise": lambda layer, shape: self.micro(noise(layer, shape), i)}

    def r1(self, reals: torch.Tensor, labels, draws=None, i: int = 0
           ) -> tuple[torch.Tensor, torch.Tensor]:
        """E ‖∇_x D(x)‖² on the reals (γ/2 is applied by the caller), and D's logits.

        With augmentation (given `draws`), D sees the augmented reals and the gradient is taken
        w.r.t. the clean reals through the augmentation, as ADA's official training does."""
        reals = reals.detach().requires_grad_(True)
        logits = self.D(reals if draws is None else self.aug(reals, draws, "R1", i), labels)
        return r1_penalty(logits, reals), logits

    def path_lengths(self, inputs: dict, y: torch.Tensor, G: nn.Module | None = None,
                     create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """‖J_wᵀ y‖ per sample, averaged over the layers (Eq. 4, Appendix B), and the images."""
        images, ws = (G or self.G)(**inputs, return_ws=True)
        return path_lengths(images, ws, y, create_graph=create_graph), images

    def track_w_avg(self, w_mean: torch.Tensor) -> None:
        """w̄ ← lerp(w̄, mean w, 1 − β), with the mean over the whole batch on every process."""
        mapping = recipe.unwrap(self.G).mapping
        w_mean = self.mean_over_processes(w_mean)
        mapping.w_avg.copy_(track_average(mapping.w_avg, w_mean[None], mapping.w_avg_beta))

    def train_step(self, reals: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg, draws, batch, n = self.cfg, self.draws(), self.cfg.batch_size, self.accumulate
        labels = labels if cfg.num_classes else None
        stats: dict[str, torch.Tensor] = {}

        # D: logistic loss on reals and fakes.
        fake = self.inputs(draws, "D", batch)

        def d_loss(i: int) -> torch.Tensor:
            inputs = self.micro_inputs(fake, i)
            with self.autocast():
                with torch.no_grad():
                    fakes = self.G(**inputs)
                real_logits = self.D(self.aug(self.micro(reals, i), draws, "D_real", i),
                                     self.micro(labels, i))
                fake_logits = self.D(self.aug(fakes, draws, "D_fake", i), inputs["labels"])
                loss = logistic_d_loss(real_logits, fake_logits)
            # ADA's r_t: this phase's real logits (ADA's official code also counts R1's pass)
            self.observe_reals(real_logits)
            self.tally(stats, "real", real_logits.mean())
            self.tally(stats, "fake", fake_logits.mean())
            return loss

        stats["loss_D"] = self.optimize(self.opt_D, self.D, d_loss)

        # D regularization: R1 every r1_interval steps, times the interval (§3.1), in fp32.
        if is_due(self.step, self.r1_interval):
            def r1_loss(i: int) -> torch.Tensor:
                r1, logits = self.r1(self.micro(reals, i), self.micro(labels, i), draws, i)
                self.tally(stats, "r1", r1)  # "+ 0 · logits": every parameter gets a gradient (DDP)
                return r1 * (cfg.r1_gamma / 2 * cfg.r1_interval) + 0 * logits.sum()

            self.optimize(self.opt_D, self.D, r1_loss)

        # G: non-saturating loss through a frozen D; w̄ follows the batch's mean w.
        d = recipe.unwrap(self.D)
        recipe.set_requires_grad(d, False)
        fake = self.inputs(draws, "G", batch)
        w_sum = 0

        def g_loss(i: int) -> torch.Tensor:
            nonlocal w_sum
            inputs = self.micro_inputs(fake, i)
            with self.autocast():
                images, ws = self.G(**inputs, return_ws=True)
                loss = logistic_g_loss(d(self.aug(images, draws, "G", i), inputs["labels"]))
            w_sum = w_sum + ws[:, 0].detach().float().mean(0)  # layer 0 is never mixed
            return loss

        stats["loss_G"] = self.optimize(self.opt_G, self.G, g_loss)
        recipe.set_requires_grad(d, True)
        self.track_w_avg(w_sum / n)

        # G regularization: path length every pl_interval steps on a smaller batch (§3.2).
        if is_due(self.step, self.pl_interval):
            pl_batch, r = batch // cfg.pl_batch_shrink, cfg.resolution
            pl = self.inputs(draws, "PL", pl_batch)
            y = draws.normal("pl_y", (pl_batch, cfg.channels, r, r)) / r  # N(0, I)/√(H·W)
            if n > 1:  # a needs the whole batch's mean before any part's penalty: a first pass
                G = recipe.unwrap(self.G)
                means = [self.path_lengths(self.micro_inputs(pl, i), self.micro(y, i), G,
                                           create_graph=False)[0].mean() for i in range(n)]
                self.pl.update(self.mean_over_processes(torch.stack(means).mean()))

            def pl_loss(i: int) -> torch.Tensor:
                lengths, images = self.path_lengths(self.micro_inputs(pl, i), self.micro(y, i))
                if n == 1:
                    self.pl.update(self.mean_over_processes(lengths.detach().mean()))
                penalty = self.pl.penalty(lengths)  # mean((lengths − a)²), a just updated
                self.tally(stats, "pl", penalty)
                return (penalty * (cfg.pl_weight * cfg.pl_interval)
                        + 0 * images[:, 0, 0, 0].sum())

            self.optimize(self.opt_G, self.G, pl_loss)
            stats["pl_mean"] = self.pl.mean.detach().clone().float()

        beta = ema_beta(batch, cfg.ema_kimg, images_seen=self.images_seen, rampup=cfg.ema_rampup)
        update_ema(self.G_ema, recipe.unwrap(self.G), beta)
        self.adapt(batch)  # ADA: p moves after the step, as in ADA's training loop
        self.step += 1
        self.images_seen += batch
        return stats

    def extra_state(self) -> dict:
        return {"pl_mean": self.pl.mean}

    def load_extra_state(self, state: dict) -> None:
        self.pl.mean.copy_(state["pl_mean"])


def sample_latents(cfg: Config, seeds: list[int], truncation: float | None = None) -> torch.Tensor:
    """z ~ N(0, I) per seed; StyleGAN truncates in W (`generate`), never z."""
    return seed_latents(seeds, (cfg.z_dim,))


@torch.no_grad()
def generate(G: Generator, z: torch.Tensor, labels: torch.Tensor | None = None, *,
             truncation: float | None = None, truncation_cutoff: int | None = None,
             noise_mode: str = "const") -> torch.Tensor:
    """Images from G_ema: truncation ψ in W (1 = none) and the noise mode of §2 / Fig. 5."""
    return G(z, labels, truncation=1.0 if truncation is None else truncation,
             truncation_cutoff=truncation_cutoff, noise_mode=noise_mode)


@torch.no_grad()
def map_ws(G: Generator, z: torch.Tensor, labels: torch.Tensor | None = None, *,
           truncation: float | None = None, truncation_cutoff: int | None = None) -> torch.Tensor:
    """ws (b, num_ws, d) of G_ema for z, truncated in W (ψ; None or 1 = none)."""
    return G.styles(z, labels, truncation=1.0 if truncation is None else truncation,
                    truncation_cutoff=truncation_cutoff)


@torch.no_grad()
def synthesize(G: Generator, ws: torch.Tensor, noise_mode: str = "const", noise=None) -> torch.Tensor:
    """Images from ws (b, num_ws, d); `noise(i, shape)` supplies layer i's noise if given."""
    return G.synthesis(ws, noise_mode, noise)
