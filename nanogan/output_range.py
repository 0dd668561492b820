"""How G's last layer meets the data's range [−1, 1]: linear (the papers), clamped, or tanh.

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
                                     float32 only beyond |u| ≈ 9)

Measured on the tiny presets, one run each (lesson 30): the clamp removes the haze but leaves
too much black, tanh leaves some haze and too little black; tanh lowered ProGAN's SWD (10.3
against 11.1) and raised StyleGAN2's (26.8 against 16.3). Every preset keeps the papers' linear
layer until a README-command run confirms ProGAN's.

Shapes: any -> the same shape.
Lesson: lessons/30_evaluation.md ("The black background")
"""

from __future__ import annotations

import torch

from nanogan.config import ConfigError

OUTPUTS = ("linear", "clamp", "tanh")


def check_output(output: str) -> None:
    if output not in OUTPUTS:
        raise ConfigError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")


def to_range(u: torch.Tensor, output: str) -> torch.Tensor:
    """G's last layer's values u as the images G hands out: u, clamp(u, −1, 1) or tanh(u)."""
    if output == "clamp":
        return u.clamp(-1, 1)
    if output == "tanh":
        return torch.tanh(u)
    check_output(output)  # anything but "linear" raises, naming the choices
    return u
