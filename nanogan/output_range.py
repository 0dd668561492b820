"""How G's last layer meets the data's range [−1, 1]: linear, clamped, tanh, clamped tanh.

ProGAN (Appendix A.1) and StyleGAN2 end G in a linear layer; images are clamped to [−1, 1] only
when saved. DCGAN and BigGAN end it in tanh. On data whose background is one exact value — 62%
of Fashion-MNIST's test pixels, padded to 32², are exactly black, −1 — the choice shows. D
judges a linear G on values around −1, so its background can only aim at −1 itself and scatters
on both sides; the half above becomes a faint haze when saved (12% of the pixels in the tiny
linear models' 64-image grids lie 3–20 grey levels above black, 1.9% of the test split's), and
SWD's detail level charges such a haze (lesson 30, "The black background"). The options:

    linear:  y = u                   the papers; D sees values beyond ±1 that no saved image has
    clamp:   y = clamp(u, −1, 1)     D judges what is saved; ∂y/∂u = 0 beyond ±1, so a pixel
                                     below −1 gets no gradient of its own (only shared weights
                                     move it back)
    tanh:    y = tanh(u)             saturates smoothly: ∂y/∂u = 1 − y², small near ±1 (0 in
                                     float32 only beyond |u| ≈ 9); never reaches ±1, and an
                                     8-bit black needs u < −3.1
    tanh_clamp:
             y = clamp(1.03·tanh(u), −1, 1)
                                     tanh with 3% headroom: exactly ±1 from |u| ≈ 2.11
                                     (atanh(1/1.03)), where tanh's slope is already 0.06

Measured on the tiny presets (lesson 30): the clamp removes the haze but leaves too much
black (a pixel below −1 gets no gradient while the slope there would be 1); tanh leaves some
haze and too little black, lowered ProGAN's SWD from 11.1 to 10.5 and raised StyleGAN2's from
16.3 to 26.8; tanh_clamp took ProGAN to 8.3 (README command, one run each) and is its tiny
preset's last layer. StyleGAN2's tiny preset, without path length and style mixing (lesson
17), ends in the clamp: 11.7 → 9.6 against its linear sum (one run each on one core), and so
does BigGAN's, with a shorter EMA (lesson 25). The paper presets end G as their papers do
(BigGAN: tanh).

Shapes: any -> the same shape.
Lesson: lessons/30_evaluation.md ("The black background")
"""

from __future__ import annotations

import torch

from nanogan.config import ConfigError

OUTPUTS = ("linear", "clamp", "tanh", "tanh_clamp")
# tanh_clamp's stretch before the clamp: part of the option's definition, not a setting (a
# stored model says only "tanh_clamp"; another stretch would need another name).
HEADROOM = 1.03


def check_output(output: str) -> None:
    if output not in OUTPUTS:
        raise ConfigError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")


def to_range(u: torch.Tensor, output: str) -> torch.Tensor:
    """G's last layer's values u as the images G hands out: u, clamp(u, −1, 1), tanh(u) or
    clamp(1.03·tanh(u), −1, 1)."""
    if output == "clamp":
        return u.clamp(-1, 1)
    if output == "tanh":
        return torch.tanh(u)
    if output == "tanh_clamp":
        return torch.tanh(u).mul(HEADROOM).clamp(-1, 1)
    check_output(output)  # anything but "linear" raises, naming the choices
    return u
