"""GAN losses on discriminator logits: WGAN (+ drift), least squares, logistic, hinge.

Papers (x real, z latent, D(·) the raw, unbounded discriminator output):
- WGAN: Arjovsky et al. 2017 (arXiv:1701.07875); WGAN-GP: Gulrajani et al. 2017
  (arXiv:1704.00028, Algorithm 1; the penalty is in penalties.py); the drift term is ProGAN's
  (Karras et al. 2018, arXiv:1710.10196, Appendix A.1, ε_drift = 0.001):
      L_D = E[D(G(z))] − E[D(x)] + ε_drift · E[D(x)²],        L_G = −E[D(G(z))]
- LSGAN: Mao et al. 2017 (arXiv:1611.04076, Eq. 2 with labels a = 0 fake, b = 1 real, c = 1):
      L_D = ½ E[(D(x) − 1)²] + ½ E[D(G(z))²],                 L_G = ½ E[(D(G(z)) − 1)²]
- Logistic: Goodfellow et al. 2014 (arXiv:1406.2661, §3), with the non-saturating G loss they
  recommend; StyleGAN2's loss. With σ the sigmoid and softplus(t) = log(1 + eᵗ):
      L_D = −E[log σ(D(x))] − E[log(1 − σ(D(G(z))))] = E[softplus(−D(x))] + E[softplus(D(G(z)))]
      L_G = −E[log σ(D(G(z)))] = E[softplus(−D(G(z)))]
- Hinge: Lim & Ye 2017 (arXiv:1705.02894), Miyato et al. 2018 (arXiv:1802.05957); BigGAN's loss:
      L_D = E[max(0, 1 − D(x))] + E[max(0, 1 + D(G(z)))],       L_G = −E[D(G(z))]

softplus is log σ written without overflow: −log σ(t) = softplus(−t), −log(1 − σ(t)) = softplus(t).

Shapes: logits of any shape (b,) or (b, 1), ...; every expectation is a mean over all entries;
each loss returns a scalar. Real and fake batches may differ in size.
Lesson: lessons/01_gan_objective.md
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def wgan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                drift: float = 0.001) -> torch.Tensor:
    """Critic loss E[D(fake)] − E[D(real)] + drift·E[D(real)²]; ProGAN's ε_drift keeps D near 0."""
    if drift < 0:
        raise ValueError(f"drift must be >= 0 (ProGAN: 0.001, WGAN-GP: 0), got {drift}")
    return fake_logits.mean() - real_logits.mean() + drift * real_logits.square().mean()


def wgan_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator loss −E[D(fake)]."""
    return -fake_logits.mean()


def lsgan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Least-squares D loss ½E[(D(real) − 1)²] + ½E[D(fake)²]: targets 1 for real, 0 for fake."""
    return 0.5 * (real_logits - 1).square().mean() + 0.5 * fake_logits.square().mean()


def lsgan_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Least-squares G loss ½E[(D(fake) − 1)²]: G wants its fakes scored as real."""
    return 0.5 * (fake_logits - 1).square().mean()


def logistic_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic D loss E[softplus(D(fake))] + E[softplus(−D(real))]: a classifier's cross-entropy."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def logistic_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating G loss E[softplus(−D(fake))] = −E[log σ(D(fake))]."""
    return F.softplus(-fake_logits).mean()


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge D loss E[relu(1 − D(real))] + E[relu(1 + D(fake))]: zero once the margins hold."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge G loss −E[D(fake)] (the same as WGAN's)."""
    return -fake_logits.mean()


LOSSES: dict[str, tuple[Callable[..., torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
    "wgan": (wgan_d_loss, wgan_g_loss),
    "lsgan": (lsgan_d_loss, lsgan_g_loss),
    "logistic": (logistic_d_loss, logistic_g_loss),
    "hinge": (hinge_d_loss, hinge_g_loss),
}
