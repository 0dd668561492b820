"""BigGAN: class-conditional residual G and D with self-attention, spectral norm everywhere,
a shared class embedding, hierarchical latents and a projection discriminator.

Paper: Brock, Donahue, Simonyan (2019), "Large Scale GAN Training for High Fidelity Natural Image
Synthesis", arXiv:1809.11096 — §3 (SA-GAN baseline with hinge loss, conditional BN in G,
projection D, shared embedding, hierarchical latents, EMA, cross-replica BN; Table 1), §3.1
(truncation; orthogonal regularization Eq. 3), §4 (σ₀ of every layer), Appendix B (Tables 4–6,
Fig. 15), Appendix C (orthogonal init, Adam lr D 2e-4 / G 5e-5, β = (0, 0.999), 2 D steps per
G step, EMA 0.9999, ε = 1e-4 in BN and SN; C.1 standing statistics).

    G: z = [z₀ ‖ z₁ ‖ … ‖ z_L]; h = dense(z₀) → 4×4×16ch; block ℓ: CBN(h | [e(y) ‖ z_ℓ]) → ReLU →
       2× → conv3 → CBN → ReLU → conv3, + conv1(2× h); one non-local block; BN → ReLU → conv3 → tanh
    D: per block [ReLU → conv3 → ReLU → conv3 → ½×] + [conv1 → ½×]; one non-local block;
       ReLU → Σ_hw → D(x, y) = dense(h) + ⟨embed(y), h⟩      (projection, Miyato & Koyama 2018)

The z sizes 120 / 140 / 128 at 128² / 256² / 512² (20, 20, 16 per chunk) are those of the
authors' released generators; the transcriptions of Tables 4–6 we have say 128 everywhere, which
does not split into 6 or 7 equal chunks. Adam's ε is not in the paper: we keep 1e-8. G's layers
that feed a BatchNorm have no bias (BN subtracts it; see Generator). Cross-replica BN is
conditional_bn.CrossReplicaBatchNorm2d on every device (CUDA, CPUs with gloo, XLA).

Shapes: z (b, z), y (b,) -> images (b, c, r, r) -> logits (b,).
Lesson: lessons/25_biggan.md
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nanogan import recipe
from nanogan.attention import SelfAttention
from nanogan.conditional_bn import ConditionalBatchNorm2d, sync_batchnorm
from nanogan.config import ConfigError, check_resolution
from nanogan.ema import make_ema, update_ema
from nanogan.losses import hinge_d_loss, hinge_g_loss
from nanogan.orthogonal import orthogonal_init_, orthogonal_penalty
from nanogan.output_range import check_output, to_range
from nanogan.randomness import derive_seed
from nanogan.spectral_norm import (SNConv2d, SNEmbedding, SNLinear, reset_power_iterations_,
                                   spectral_norms)
from nanogan.truncation import TruncationRule, truncated_normal

FIND_UNUSED_PARAMETERS = False
GENERATE_OPTIONS: set[str] = set()
# The model contract (models.ModelSpec): a threshold on |z| (§3.1), swept as in Fig. 2a.
TRUNCATION = TruncationRule(
    "threshold", grid=(2, 1.5, 1, 0.5, 0.04), curve=(2, 1.75, 1.5, 1.25, 1, 0.75, 0.5, 0.25, 0.04),
    valid=lambda v: v > 0, in_z=True,
    allowed="threshold must be > 0 (2: little truncation, 0.04: nearly one image per class)")
LABELS = "always"  # class-conditional
W_SPACE = False

# Width multipliers of ch (Tables 4–6; 32² is SN-GAN's CIFAR layout and 64² the same pattern):
# G: the 4×4 input, then each up-block's output; D: (output, downsample?) per block.
G_ARCH = {32: (4, 4, 4, 4), 64: (16, 16, 8, 4, 2), 128: (16, 16, 8, 4, 2, 1),
          256: (16, 16, 8, 8, 4, 2, 1), 512: (16, 16, 8, 8, 4, 2, 1, 1)}
D_ARCH = {32: ((4, True), (4, True), (4, False), (4, False)),
          64: ((1, True), (2, True), (4, True), (8, True), (16, False)),
          128: ((1, True), (2, True), (4, True), (8, True), (16, True), (16, False)),
          256: ((1, True), (2, True), (4, True), (8, True), (8, True), (16, True), (16, False)),
          512: ((1, True), (1, True), (2, True), (4, True), (8, True), (8, True), (16, True),
                (16, False))}


@dataclass(frozen=True)
class Config:
    resolution: int = 128
    channels: int = 3
    num_classes: int = 1000
    ch: int = 96
    z_dim: int = 120
    shared_dim: int = 128
    attention: int = 64  # resolution of G's non-local block (0: none)
    d_attention: int = 64  # resolution of D's non-local block (0: none)
    batch_size: int = 2048  # per D step
    d_steps: int = 2
    lr_G: float = 5e-5
    lr_D: float = 2e-4
    betas: tuple[float, float] = (0.0, 0.999)
    adam_eps: float = 1e-8
    bn_eps: float = 1e-4
    sn_eps: float = 1e-4
    ortho_beta: float = 1e-4
    ema_decay: float = 0.9999
    ema_start: int = 20000  # G steps during which the EMA is a copy (BigGAN's code)
    standing_batches: int = 100  # Appendix C.1: "typically 100" forward passes
    standing_batch_size: int = 64
    preview_batches: int = 0  # passes before each grid, snapshot or metric on the way (0: all)
    output: str = "tanh"  # G's last layer: tanh (Table 4) or one of output_range.OUTPUTS
    kimg: float = 600000.0  # ≈ 146k iterations of 2 × 2048; Table 1 row 8 collapsed at 165k
    augment: str = "none"  # D's view: "none", "ada" or "diffaugment" (recipe.AUGMENTS)
    ada_target: float = 0.6  # ADA (arXiv:2006.06676) §3: the r_t that p steers toward
    ada_kimg: float = 500.0  # ADA §3: p can go from 0 to 1 in this many thousand images
    ada_interval: int = 4  # ADA §3: p is adjusted every this many D minibatches

    @property
    def num_blocks(self) -> int:
        return len(G_ARCH[self.resolution]) - 1

    def validate(self) -> None:
        check_resolution(self.resolution, low=32, high=512)
        recipe.check_augment(self)
        check_output(self.output)
        if self.num_classes < 1:
            raise ConfigError("BigGAN is class-conditional: num_classes must be >= 1")
        chunks = self.num_blocks + 1
        if self.z_dim % chunks:
            below = chunks * (self.z_dim // chunks)
            hint = f"{below} or {below + chunks}" if below else str(chunks)
            raise ConfigError(f"z_dim {self.z_dim} must split into {chunks} equal chunks (one for "
                              f"the dense layer, one per block) at resolution {self.resolution}; "
                              f"try {hint}")
        if min(self.ch, self.shared_dim, self.batch_size, self.d_steps, self.standing_batches,
               self.standing_batch_size) < 1:
            raise ConfigError("ch, shared_dim, batch_size, d_steps, standing_batches and "
                              "standing_batch_size must be >= 1")
        if self.preview_batches < 0:
            raise ConfigError(f"preview_batches must be >= 0 (0: all {self.standing_batches} "
                              f"standing_batches), got {self.preview_batches}")
        g_sizes = {8 * 2**i: m * self.ch for i, m in enumerate(G_ARCH[self.resolution][1:])}
        d_sizes, size = {}, self.resolution
        for m, down in D_ARCH[self.resolution]:
            size = size // 2 if down else size
            d_sizes.setdefault(size, m * self.ch)
        for key, sizes in (("attention", g_sizes), ("d_attention", d_sizes)):
            r = getattr(self, key)
            if r and (r not in sizes or sizes[r] % 8):
                raise ConfigError(f"{key}={r}: the non-local block needs a block output size of "
                                  f"{sorted(sizes)} whose width is a multiple of 8 (0: none)")


PRESETS = {
    # 32×32 Fashion-MNIST, 10 classes, in under 30 minutes on 2 CPU cores (300 kimg at 174-190
    # real images/s). Learning rates: twice SAGAN's 1e-4 / 4e-4 (BigGAN halves those for batch
    # 2048): at equal CPU time they halved SWD and cut FID by 40% at 130 kimg; the 320-kimg
    # model's classifier-FID was half the old rates' (lessons/25_biggan.md, "The tiny preset's
    # learning rates"). G_ema's decay 0.995 is a half-life of 8.9 kimg (2 × 32 images per G
    # step), near StyleGAN2's 10; 0.999 (44 kimg, 14% of the 320-kimg run) blurred the detail
    # (one run resumed at 280 kimg with 0.995: SWD 12.2 -> 10.8, classifier-FID 58 -> 47).
    # G ends in the clamp (the paper: tanh). Standing statistics over the paper's 100 passes for
    # the files the run ends with (~7 s on 2 cores), over 8 before each of the ~75 grids and 30
    # snapshots on the way (lessons/25_biggan.md, "Standing statistics for the model file").
    "tiny": Config(resolution=32, channels=1, num_classes=10, ch=8, z_dim=64, shared_dim=32,
                   attention=16, d_attention=16, batch_size=32, lr_G=2e-4, lr_D=8e-4,
                   ema_decay=0.995, ema_start=1000, preview_batches=8, output="clamp", kimg=300),
    # ImageNet 128² (Table 4, Table 1 row 8: ch = 96, batch 2048) and 256² / 512² (Tables 5, 6).
    "paper128": Config(),
    "paper256": Config(resolution=256, z_dim=140, attention=128, d_attention=64),
    "paper512": Config(resolution=512, z_dim=128, attention=64, d_attention=64),
}


def split_latent(z: torch.Tensor, chunks: int) -> tuple[torch.Tensor, ...]:
    """Hierarchical latents (§3): z split along its channels into `chunks` equal chunks."""
    if z.ndim != 2 or z.shape[1] % chunks:
        raise ValueError(f"z of shape {tuple(z.shape)} does not split into {chunks} equal chunks")
    return z.chunk(chunks, dim=1)


class GBlock(nn.Module):
    """Fig. 15(b): BN → ReLU → 2× → conv3 → BN → ReLU → conv3, plus a 1×1-conv skip, 2×."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, cfg: Config):
        super().__init__()
        # No biases: every output here feeds a BatchNorm, which subtracts them (see Generator).
        conv = functools.partial(SNConv2d, eps=cfg.sn_eps, bias=False)
        linear = functools.partial(SNLinear, eps=cfg.sn_eps)
        self.bn1 = ConditionalBatchNorm2d(in_ch, cond_dim, cfg.bn_eps, linear=linear)
        self.conv1 = conv(in_ch, out_ch, 3, padding=1)
        self.bn2 = ConditionalBatchNorm2d(out_ch, cond_dim, cfg.bn_eps, linear=linear)
        self.conv2 = conv(out_ch, out_ch, 3, padding=1)
        self.skip = conv(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, cond)), scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), cond)))
        # A 1×1 conv commutes with nearest upsampling: convolve first, on a quarter of the pixels.
        return h + F.interpolate(self.skip(x), scale_factor=2.0, mode="nearest")


class DBlock(nn.Module):
    """ReLU → conv3 → ReLU → conv3 (→ ½×), skip: (½× →) 1×1 conv; no leading ReLU on the image."""

    def __init__(self, in_ch: int, out_ch: int, down: bool, first: bool, cfg: Config):
        super().__init__()
        self.first, self.down = first, down
        # Appendix B: the first conv already has the output width (SA-GAN's channel pattern).
        self.conv1 = SNConv2d(in_ch, out_ch, 3, padding=1, eps=cfg.sn_eps)
        self.conv2 = SNConv2d(out_ch, out_ch, 3, padding=1, eps=cfg.sn_eps)
        self.skip = SNConv2d(in_ch, out_ch, 1, eps=cfg.sn_eps) if in_ch != out_ch or down else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        h = F.avg_pool2d(h, 2) if self.down else h
        s = F.avg_pool2d(x, 2) if self.down else x  # pooling commutes with a 1×1 conv: pool first
        return h + (s if self.skip is None else self.skip(s))


class Generator(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg, widths = cfg, [m * cfg.ch for m in G_ARCH[cfg.resolution]]
        self.chunk = cfg.z_dim // (cfg.num_blocks + 1)
        self.shared = nn.Embedding(cfg.num_classes, cfg.shared_dim)  # §3: one for all layers
        # Biases that feed a BatchNorm are dropped (here and in the blocks): BN removes them, so
        # their gradient is rounding noise, which Adam with β₁ = 0 turns into ±lr steps. (The
        # block before the non-local block reaches BN through it, where a constant is not quite
        # inert; that one bias per channel is dropped too.)
        self.dense = SNLinear(self.chunk, widths[0] * 16, bias=False, eps=cfg.sn_eps)
        self.blocks = nn.ModuleList(GBlock(i, o, cfg.shared_dim + self.chunk, cfg)
                                    for i, o in zip(widths, widths[1:]))
        self.attention = nn.ModuleDict({  # keyed by the index of the block it follows
            str(i): SelfAttention(o, eps=cfg.sn_eps) for i, o in enumerate(widths[1:])
            if 8 * 2**i == cfg.attention})
        self.out_bn = nn.BatchNorm2d(widths[-1], eps=cfg.bn_eps)
        self.out_conv = SNConv2d(widths[-1], cfg.channels, 3, padding=1, eps=cfg.sn_eps)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        zs = split_latent(z, self.cfg.num_blocks + 1)
        e = self.shared(labels)
        h = self.dense(zs[0]).view(z.shape[0], -1, 4, 4)
        for i, (block, z_i) in enumerate(zip(self.blocks, zs[1:])):
            h = block(h, torch.cat([e, z_i], dim=1))  # each block: [shared embedding ‖ its chunk]
            if str(i) in self.attention:
                h = self.attention[str(i)](h)
        return to_range(self.out_conv(F.relu(self.out_bn(h))), self.cfg.output)


class Discriminator(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg, blocks, attention = cfg, [], {}
        size, in_ch = cfg.resolution, cfg.channels
        for i, (mult, down) in enumerate(D_ARCH[cfg.resolution]):
            blocks.append(DBlock(in_ch, mult * cfg.ch, down, i == 0, cfg))
            in_ch, size = mult * cfg.ch, size // 2 if down else size
            if size == cfg.d_attention and not attention:
                attention[str(i)] = SelfAttention(in_ch, eps=cfg.sn_eps)
        self.blocks, self.attention = nn.ModuleList(blocks), nn.ModuleDict(attention)
        self.linear = SNLinear(in_ch, 1, eps=cfg.sn_eps)
        self.embed = SNEmbedding(cfg.num_classes, in_ch, eps=cfg.sn_eps)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """h: the blocks, ReLU and global sum pooling, (b, 16ch)."""
        h = images
        for i, block in enumerate(self.blocks):
            h = block(h)
            if str(i) in self.attention:
                h = self.attention[str(i)](h)
        return F.relu(h).sum(dim=(2, 3))

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.features(images)
        return project(h, self.linear(h).squeeze(1), self.embed(labels))


def project(h: torch.Tensor, unconditional: torch.Tensor,
            class_embedding: torch.Tensor) -> torch.Tensor:
    """Projection discriminator: D(x, y) = ψ(h) + ⟨embed(y), h⟩ (Miyato & Koyama 2018, §3)."""
    return unconditional + (class_embedding * h).sum(dim=1)


def init_weights_(net: nn.Module) -> nn.Module:
    """Appendix C: orthogonal initialization; then fresh power-iteration vectors for the new W."""
    return reset_power_iterations_(orthogonal_init_(net))


class Recipe(recipe.Recipe):
    """Hinge loss, 2 D steps per G step, orthogonal regularization of G, EMA after a start step."""

    name = "biggan"
    accumulates = True  # micro-batches see BatchNorm statistics of b/n samples, not b

    def build(self) -> None:
        cfg = self.cfg
        cfg.validate()
        G = init_weights_(Generator(cfg)).to(self.device)
        self.D = init_weights_(Discriminator(cfg)).to(self.device)
        self.G_ema = make_ema(G)  # plain BatchNorm: no process waits for another's statistics
        self.standing_for: tuple[int, int] | None = None  # (step, passes) of G_ema's statistics
        # Appendix C: cross-replica BatchNorm; names are kept, so EMA and checkpoints still match.
        self.G = sync_batchnorm(G) if self.world > 1 else G
        adam = dict(betas=cfg.betas, eps=cfg.adam_eps)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_G, **adam)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_D, **adam)

    @property
    def batch_per_step(self) -> int:
        return self.cfg.batch_size * self.cfg.d_steps

    def train_step(self, reals: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg, draws, batch = self.cfg, self.draws(), self.cfg.batch_size
        stats: dict[str, torch.Tensor] = {}

        for k in range(cfg.d_steps):
            # Strided, not contiguous: D step k sees the same global images however many processes.
            real_k, label_k = reals[k :: cfg.d_steps], labels[k :: cfg.d_steps]
            z = draws.normal(f"z_D{k}", (batch, cfg.z_dim))
            y = draws.integers(f"y_D{k}", cfg.num_classes, (batch,))

            def d_loss(i: int) -> torch.Tensor:
                with self.autocast():
                    with torch.no_grad():
                        fakes = self.G(self.micro(z, i), self.micro(y, i))
                    real_logits = self.D(self.aug(self.micro(real_k, i), draws, f"D{k}_real", i),
                                         self.micro(label_k, i))
                    fake_logits = self.D(self.aug(fakes, draws, f"D{k}_fake", i), self.micro(y, i))
                    loss = hinge_d_loss(real_logits, fake_logits)
                self.observe_reals(real_logits)
                self.tally(stats, "real", real_logits.mean(), cfg.d_steps)
                self.tally(stats, "fake", fake_logits.mean(), cfg.d_steps)
                return loss

            stats["loss_D"] = stats.get("loss_D", 0) + self.optimize(
                self.opt_D, self.D, d_loss) / cfg.d_steps
            self.adapt(batch)  # ADA: the interval counts D minibatches

        d = recipe.unwrap(self.D)
        recipe.set_requires_grad(d, False)
        z = draws.normal("z_G", (batch, cfg.z_dim))
        y = draws.integers("y_G", cfg.num_classes, (batch,))

        def g_loss(i: int) -> torch.Tensor:
            with self.autocast():
                fakes = self.aug(self.G(self.micro(z, i), self.micro(y, i)), draws, "G", i)
                loss = hinge_g_loss(d(fakes, self.micro(y, i)))
            self.tally(stats, "loss_G", loss)
            if not cfg.ortho_beta:
                return loss
            # Eq. 3 in the loss (fp32, outside autocast) rather than added to .grad after backward:
            # under fp16 loss scaling .grad is scaled and an added gradient would not be.
            ortho = orthogonal_penalty(recipe.unwrap(self.G), cfg.ortho_beta, exclude=("shared",))
            self.tally(stats, "ortho", ortho)
            return loss + ortho

        self.optimize(self.opt_G, self.G, g_loss)
        recipe.set_requires_grad(d, True)
        decay = cfg.ema_decay if self.step >= cfg.ema_start else 0.0
        update_ema(self.G_ema, recipe.unwrap(self.G), decay)

        self.step += 1
        self.images_seen += self.batch_per_step
        return stats

    def diagnostics(self) -> dict[str, float]:
        """σ₀ of every G and D weight before normalization (§4, Fig. 3): watch for explosions."""
        return (super().diagnostics()
                | {f"sigma/G/{k}": v for k, v in spectral_norms(recipe.unwrap(self.G)).items()}
                | {f"sigma/D/{k}": v for k, v in spectral_norms(recipe.unwrap(self.D)).items()})

    def before_sampling(self, final: bool = False) -> None:
        """Standing statistics for G_ema as it is now: `preview_batches` passes on the way (at
        most all), all `standing_batches` for the files a run ends with; computed once per step
        and count."""
        cfg = self.cfg
        passes = cfg.standing_batches
        if cfg.preview_batches and not final:
            passes = min(cfg.preview_batches, passes)
        if self.standing_for == (self.step, passes):
            return  # G_ema changes only in train_step (step + 1) and load_state_dict
        standing_statistics(self.G_ema, cfg, self.seed, passes)
        self.standing_for = (self.step, passes)

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.standing_for = None


@torch.no_grad()
def standing_statistics(G: Generator, cfg: Config, seed: int = 0,
                        passes: int | None = None) -> None:
    """Appendix C.1: BN statistics averaged over many batches of fresh noise (`passes`, by default
    cfg.standing_batches), so that a sample depends neither on its batch nor on statistics
    gathered with G's (not G_ema's) weights."""
    bns = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average over the passes
        bn.train()  # only the BatchNorms: spectral norm's u stays frozen
    gen = torch.Generator().manual_seed(derive_seed(seed, "standing statistics"))
    device, n = next(G.parameters()).device, cfg.standing_batch_size
    for _ in range(cfg.standing_batches if passes is None else passes):
        z = torch.randn(n, cfg.z_dim, generator=gen).to(device)
        G(z, torch.randint(cfg.num_classes, (n,), generator=gen).to(device))
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
        bn.train(G.training)


def sample_latents(cfg: Config, seeds: list[int], truncation: float | None = None) -> torch.Tensor:
    """One z per seed; with a threshold, components beyond ±threshold are resampled (§3.1)."""
    threshold = math.inf if truncation is None else truncation
    return torch.stack([truncated_normal((cfg.z_dim,), threshold,
                                         generator=torch.Generator().manual_seed(s))
                        for s in seeds])


@torch.no_grad()
def generate(G: Generator, z: torch.Tensor, labels: torch.Tensor | None = None, *,
             truncation: float | None = None) -> torch.Tensor:
    """Images from G_ema in eval mode (standing statistics); truncation acted on z already."""
    if labels is None:
        raise ValueError("BigGAN is class-conditional: pass labels")
    return G(z, labels)
