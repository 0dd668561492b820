"""ProGAN: generator and discriminator that grow from 4×4 to the target resolution.

Paper: Karras, Aila, Laine, Lehtinen (2018), "Progressive Growing of GANs for Improved Quality,
Stability, and Variation", arXiv:1710.10196 — §2 and Fig. 2 (growing, fade-in), §3 (minibatch
standard deviation), §4.1 (equalized learning rate), §4.2 (pixel norm), Appendix A.1 (Table 2
architecture, Adam α=0.001 β=(0, 0.99) ε=1e-8, WGAN-GP with n_critic=1 and ε_drift=0.001,
G EMA 0.999).

    G: z → PN → [4×4: dense → conv3] → [2×, conv3, conv3] × … → toRGB (1×1, linear)
    D: fromRGB (1×1) → [conv3, conv3, ½×] × … → [mbstd → conv3 → conv4×4 → dense] → D(x)

Every conv is equalized (gain √2, toRGB gain 1) and followed by leaky ReLU 0.2; in G also by
pixel norm. All resolutions' layers exist from the start; `forward(…, resolution, alpha)` uses
those up to `resolution` and fades the newest in with weight alpha, in G and in D alike.
Widths: channels(r) = min(fmap_base·2/r, fmap_max) (512 … 16 for the 1024² network).

Shapes: z (b, z) -> images (b, c, r, r) -> logits (b,).
Lesson: lessons/07_progan.md
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nanogan import recipe
from nanogan.config import ConfigError, check_resolution
from nanogan.ema import make_ema, update_ema
from nanogan.equalized import EqualConv2d, EqualLinear
from nanogan.fade import downscale2x, fade_in, growth_stage, resize_reals, upscale2x
from nanogan.images import upscale
from nanogan.losses import lsgan_d_loss, lsgan_g_loss, wgan_d_loss, wgan_g_loss
from nanogan.minibatch_std import minibatch_std
from nanogan.output_range import check_output, to_range
from nanogan.penalties import gradient_penalty
from nanogan.pixelnorm import pixel_norm
from nanogan.randomness import seed_latents

SQRT2 = math.sqrt(2)
FIND_UNUSED_PARAMETERS = True  # layers of other resolutions sit idle in a stage (for DDP)


@dataclass(frozen=True)
class Config:
    resolution: int = 32
    channels: int = 1
    z_dim: int = 512
    fmap_base: int = 8192
    fmap_max: int = 512
    batch_size: int = 16
    lr: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.99)
    loss: str = "wgan"  # "wgan" (WGAN-GP, the paper's default) or "lsgan" (Appendix B)
    gp_weight: float = 10.0
    gp_target: float = 1.0
    drift: float = 0.001
    mbstd_group: int = 4
    stabilize_kimg: float = 800.0
    fade_kimg: float = 800.0
    ema_beta: float = 0.999
    output: str = "linear"  # G's last layer: linear (the paper) or one of output_range.OUTPUTS
    kimg: float = 12000.0
    augment: str = "none"  # D's view: "none", "ada" or "diffaugment" (recipe.AUGMENTS)
    ada_target: float = 0.6  # ADA (arXiv:2006.06676) §3: the r_t that p steers toward
    ada_kimg: float = 500.0  # ADA §3: p can go from 0 to 1 in this many thousand images
    ada_interval: int = 4  # ADA §3: p is adjusted every this many D minibatches

    def validate(self) -> None:
        check_resolution(self.resolution)
        recipe.check_augment(self)
        check_output(self.output)
        if self.loss not in ("wgan", "lsgan"):
            raise ConfigError(f"loss must be 'wgan' or 'lsgan', got {self.loss!r}")
        if self.augment == "ada":  # r_t = E[sign D(x_real)] assumes D's boundary is at 0
            raise ConfigError("augment 'ada' needs a loss whose real/fake boundary is D = 0 "
                              "(StyleGAN2's logistic, BigGAN's hinge); ProGAN's WGAN critic is "
                              "centred on 0 by its drift term and LSGAN's boundary is 0.5, so "
                              "r_t would not measure overfitting: use augment 'diffaugment'")
        if self.batch_size < self.mbstd_group or self.batch_size % self.mbstd_group:
            raise ConfigError(f"batch_size {self.batch_size} must be a multiple of the minibatch-std"
                              f" group size {self.mbstd_group}")

    def width(self, resolution: int) -> int:
        return min(self.fmap_base * 2 // resolution, self.fmap_max)


PRESETS = {
    # 30 CPU minutes on 32×32 Fashion-MNIST (lessons/07_progan.md, "The tiny preset"): the
    # paper's batch 16 (A.1: 16 up to 128²); phases of 20 kimg (1,250 steps) and fades of 10
    # kimg instead of 800k images (50k steps). The paper's α = 0.001 moves a weight by about α
    # per step, so a resolution needs hundreds of steps: with 156-step phases each resolution
    # ended half-learnt and the new layers' speckle stayed as checkerboard texture. Narrow
    # layers (64 channels, 32 at 32²) buy those steps: 2.5× the images per second of 128
    # channels; SWD fell from 20.4 to 10.7 on 10,000 images (the table's former latents; 11.1
    # on its present ones) in the same half hour.
    # EMA: a half-life of 138 steps (2.2 kimg) instead of 0.999's 693 steps, which would still
    # carry the 16² network's weights into the first part of the 32² stage (measured: 0.998 and
    # 0.999 score no better at 140 kimg and worse at 120; lesson 07).
    # G ends in clamp(1.03·tanh(u)), not A.1's linear layer: 62% of Fashion-MNIST's pixels
    # (padded to 32²) are exactly black; a linear G scatters that background around −1 and the
    # part above is saved as a faint haze, tanh never reaches −1 (output_range.py; lesson 30,
    # "The black background"). README command, 10,000 images, SWD / classifier-FID: linear
    # 11.1 / 170, tanh 10.5 / 168, tanh_clamp 8.3 / 159 (one run each).
    # α = 0.002, twice A.1's: 3,750 steps at 32² are still few; runs to 140 kimg (tanh_clamp;
    # α = 0.001 the README run of the time, the others on one thread) with α = 0.001 / 0.0015 /
    # 0.002 scored SWD 8.3 / 9.3 / 7.6, classifier-FID 159 / 130 / 92 and mean classifier
    # confidence 0.81 / 0.83 / 0.84; the README command with 0.002: SWD 9.5, FID 104 (lesson 07).
    "tiny": Config(z_dim=128, fmap_base=512, fmap_max=64, batch_size=16, stabilize_kimg=20,
                   fade_kimg=10, ema_beta=0.995, output="tanh_clamp", lr=0.002, kimg=140),
    # Appendix A.1: CelebA-HQ 1024², 800k images per phase: 800 + 8 × 1600 = 13600 kimg
    # reaches the end of the 1024² fade-in and stabilization.
    "paper": Config(resolution=1024, channels=3, batch_size=16, kimg=13600),
    # §6.1 / Appendix A.2: the lower-capacity 128² network (widths 512, 512, 256, 128, 64, 32),
    # 600k images per phase, 10M images in all.
    "paper128": Config(resolution=128, channels=3, fmap_base=2048, stabilize_kimg=600,
                       fade_kimg=600, kimg=10000),
}


def _resolutions(final: int) -> list[int]:
    return [2**k for k in range(2, int(math.log2(final)) + 1)]


class Generator(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg, w4 = cfg, cfg.width(4)
        # Table 2's "Conv 4×4" on a 1×1 latent: fan-in 16·z_dim, so gain √2/4 for fan-in z_dim.
        self.dense = EqualLinear(cfg.z_dim, w4 * 16, gain=SQRT2 / 4)
        self.blocks = nn.ModuleDict({"4": EqualConv2d(w4, w4, 3, gain=SQRT2)})
        for r in _resolutions(cfg.resolution)[1:]:
            self.blocks[str(r)] = nn.Sequential(
                EqualConv2d(cfg.width(r // 2), cfg.width(r), 3, gain=SQRT2),
                EqualConv2d(cfg.width(r), cfg.width(r), 3, gain=SQRT2))
        self.to_rgb = nn.ModuleDict({str(r): EqualConv2d(cfg.width(r), cfg.channels, 1)
                                     for r in _resolutions(cfg.resolution)})

    @staticmethod
    def _act(x: torch.Tensor) -> torch.Tensor:
        return pixel_norm(F.leaky_relu(x, 0.2))

    def forward(self, z: torch.Tensor, resolution: int | None = None,
                alpha: float = 1.0) -> torch.Tensor:
        resolution = resolution or self.cfg.resolution
        x = self._act(rearrange(self.dense(pixel_norm(z)), "b (c h w) -> b c h w", h=4, w=4))
        x = self._act(self.blocks["4"](x))
        previous = x
        for r in _resolutions(resolution)[1:]:
            previous = x
            x = upscale2x(x)
            for conv in self.blocks[str(r)]:
                x = self._act(conv(x))
        rgb = self.to_rgb[str(resolution)](x)
        if alpha < 1 and resolution > 4:
            rgb = fade_in(alpha, upscale2x(self.to_rgb[str(resolution // 2)](previous)), rgb)
        return to_range(rgb, self.cfg.output)


class Discriminator(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg, w4 = cfg, cfg.width(4)
        self.from_rgb = nn.ModuleDict({str(r): EqualConv2d(cfg.channels, cfg.width(r), 1, gain=SQRT2)
                                       for r in _resolutions(cfg.resolution)})
        self.blocks = nn.ModuleDict({
            str(r): nn.Sequential(EqualConv2d(cfg.width(r), cfg.width(r), 3, gain=SQRT2),
                                  EqualConv2d(cfg.width(r), cfg.width(r // 2), 3, gain=SQRT2))
            for r in _resolutions(cfg.resolution)[1:]})
        self.final_conv = EqualConv2d(w4 + 1, w4, 3, gain=SQRT2)
        self.final_dense = EqualLinear(w4 * 16, w4, gain=SQRT2)  # "Conv 4×4", valid padding
        self.out = EqualLinear(w4, 1)

    def _block(self, r: int, x: torch.Tensor) -> torch.Tensor:
        for conv in self.blocks[str(r)]:
            x = F.leaky_relu(conv(x), 0.2)
        return downscale2x(x)

    def forward(self, images: torch.Tensor, resolution: int | None = None,
                alpha: float = 1.0) -> torch.Tensor:
        resolution = resolution or self.cfg.resolution
        x = F.leaky_relu(self.from_rgb[str(resolution)](images), 0.2)
        if resolution > 4:
            x = self._block(resolution, x)
            if alpha < 1:
                low = F.leaky_relu(self.from_rgb[str(resolution // 2)](downscale2x(images)), 0.2)
                x = fade_in(alpha, low, x)
        for r in reversed(_resolutions(resolution // 2)[1:]):
            x = self._block(r, x)
        x = minibatch_std(x, self.cfg.mbstd_group)
        x = F.leaky_relu(self.final_conv(x), 0.2)
        x = F.leaky_relu(self.final_dense(rearrange(x, "b c h w -> b (c h w)")), 0.2)
        return self.out(x).squeeze(1)


class Recipe(recipe.Recipe):
    """WGAN-GP (or LSGAN) with n_critic = 1, growing on a schedule of images shown."""

    name = "progan"
    accumulates = True

    def build(self) -> None:
        cfg = self.cfg
        cfg.validate()
        self.check_minibatch_groups(cfg.mbstd_group)
        self.G, self.D = Generator(cfg).to(self.device), Discriminator(cfg).to(self.device)
        self.G_ema = make_ema(self.G)
        adam = dict(lr=cfg.lr, betas=cfg.betas, eps=1e-8)
        self.opt_G = torch.optim.Adam(self.G.parameters(), **adam)
        self.opt_D = torch.optim.Adam(self.D.parameters(), **adam)
        self.stage_index = 0

    def stage(self):
        cfg = self.cfg
        return growth_stage(self.images_seen, final_resolution=cfg.resolution,
                            stabilize_images=round(cfg.stabilize_kimg * 1000),
                            fade_images=round(cfg.fade_kimg * 1000))

    def train_step(self, reals: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg, draws, batch = self.cfg, self.draws(), self.cfg.batch_size
        stage = self.stage()
        if stage.index != self.stage_index:  # a new resolution starts fading in: fresh Adam
            recipe.reset_optimizer(self.opt_G)
            recipe.reset_optimizer(self.opt_D)
            self.stage_index = stage.index
        res, alpha = stage.resolution, stage.alpha
        reals = resize_reals(reals, res, alpha)
        z_D, t = draws.normal("z_D", (batch, cfg.z_dim)), draws.uniform("gp", (batch,))
        stats: dict[str, torch.Tensor] = {}

        def critic(x):
            return self.D(x, res, alpha)

        def d_loss(i: int) -> torch.Tensor:
            x = self.aug(self.micro(reals, i), draws, "D_real", i)
            with self.autocast():
                with torch.no_grad():
                    fakes = self.aug(self.G(self.micro(z_D, i), res, alpha), draws, "D_fake", i)
                real_logits, fake_logits = critic(x), critic(fakes)
                if cfg.loss == "lsgan":
                    loss = lsgan_d_loss(real_logits, fake_logits)
                else:
                    loss = wgan_d_loss(real_logits, fake_logits, drift=cfg.drift)
            self.observe_reals(real_logits)
            self.tally(stats, "real", real_logits.mean())
            self.tally(stats, "fake", fake_logits.mean())
            # In fp32: the penalty differentiates D twice. With augmentation x̂ lies between the
            # augmented reals and fakes (D's inputs): no derivative through the augmentation.
            if cfg.loss == "wgan":
                gp = gradient_penalty(critic, x.float(), fakes.float(), self.micro(t, i),
                                      target=cfg.gp_target)
                self.tally(stats, "gp", gp)
                loss = loss + cfg.gp_weight / cfg.gp_target**2 * gp
            return loss

        stats["loss_D"] = self.optimize(self.opt_D, self.D, d_loss)

        z_G = draws.normal("z_G", (batch, cfg.z_dim))
        d = recipe.unwrap(self.D)
        recipe.set_requires_grad(d, False)

        def g_loss(i: int) -> torch.Tensor:
            with self.autocast():
                fake_logits = d(self.aug(self.G(self.micro(z_G, i), res, alpha), draws, "G", i),
                                res, alpha)
                return wgan_g_loss(fake_logits) if cfg.loss == "wgan" else lsgan_g_loss(fake_logits)

        stats["loss_G"] = self.optimize(self.opt_G, self.G, g_loss)
        recipe.set_requires_grad(d, True)
        update_ema(self.G_ema, recipe.unwrap(self.G), cfg.ema_beta)
        self.adapt(batch)  # ADA: p moves after the step

        self.step += 1
        self.images_seen += batch
        return stats

    def extra_state(self) -> dict:
        return {"stage_index": self.stage_index}

    def load_extra_state(self, state: dict) -> None:
        self.stage_index = state.get("stage_index", 0)

    def diagnostics(self) -> dict[str, float]:
        """Where the growth stands now: the resolution and the fade-in weight α."""
        stage = self.stage()
        return super().diagnostics() | {"resolution": float(stage.resolution),
                                        "alpha": stage.alpha}

    def sampling_view(self) -> dict:
        """Grids during training show the current resolution and fade."""
        stage = self.stage()
        return {"resolution": stage.resolution, "alpha": stage.alpha}


def sample_latents(cfg: Config, seeds: list[int], truncation: float | None = None) -> torch.Tensor:
    if truncation is not None:
        raise ConfigError("ProGAN has no truncation trick; sample it without truncation")
    return seed_latents(seeds, (cfg.z_dim,))


GENERATE_OPTIONS: set[str] = set()  # ProGAN has no noise inputs and no truncation
TRUNCATION = None  # the model contract (models.ModelSpec): no truncation trick,
LABELS = "never"  # unconditional,
W_SPACE = False  # no intermediate latent space


@torch.no_grad()
def generate(G: Generator, z: torch.Tensor, labels: torch.Tensor | None = None, *,
             truncation: float | None = None, resolution: int | None = None,
             alpha: float = 1.0) -> torch.Tensor:
    """Images at the full resolution; a lower training resolution is shown upscaled (nearest)."""
    images = G(z, resolution, alpha)
    return upscale(images, G.cfg.resolution // images.shape[-1])
