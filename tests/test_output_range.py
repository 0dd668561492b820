"""G's last layer against the data's range (output_range.py): torch's own clamp and tanh."""

import dataclasses
import math

import pytest
import torch
from hypothesis import example, given
from strategies import OUTPUT_REFERENCES, generator, seeds

from nanogan import biggan, progan, stylegan2
from nanogan.config import ConfigError, apply_overrides
from nanogan.output_range import to_range


def values(seed: int, n: int = 64) -> torch.Tensor:
    """Values in [−3, 3): a third of them beyond ±1 on either side."""
    return torch.rand(n, generator=generator(seed), dtype=torch.float64) * 6 - 3


@given(seed=seeds)
@example(seed=0)
def test_each_output_is_torchs_function(seed):
    u = values(seed)
    torch.testing.assert_close(to_range(u, "linear"), u, rtol=0, atol=0)
    for output, reference in OUTPUT_REFERENCES.items():
        torch.testing.assert_close(to_range(u, output), reference(u), rtol=0, atol=0)


def test_what_each_output_teaches_a_pixel_below_black():
    """A pixel at u = −1.5 that D would rather see at 0 (loss y²): the clamp gives it no gradient
    of its own, tanh 2·tanh(u)·(1 − tanh²(u)), the linear output 2u, tanh_clamp (y = 1.03·tanh(u)
    there, inside ±1) 2·1.03²·tanh(u)·(1 − tanh²(u)); at u = −2.5, where 1.03·tanh(u) < −1,
    tanh_clamp gives none (the derivatives by hand)."""
    t = torch.tanh(torch.tensor(-1.5, dtype=torch.float64))
    for output, at, expected in (("clamp", -1.5, 0.0), ("tanh", -1.5, (2 * t * (1 - t**2)).item()),
                                 ("linear", -1.5, -3.0),
                                 ("tanh_clamp", -1.5, (2 * 1.03**2 * t * (1 - t**2)).item()),
                                 ("tanh_clamp", -2.5, 0.0)):
        u = torch.tensor([at], dtype=torch.float64, requires_grad=True)
        to_range(u, output).square().sum().backward()
        assert u.grad.item() == pytest.approx(expected, rel=1e-12, abs=0), (output, at)


def test_tanh_clamp_reaches_black_where_tanh_cannot():
    """An 8-bit black needs y < −1 + 1/255: tanh gets there only beyond u ≈ −3.1, tanh_clamp is
    exactly −1 from u = −atanh(1/1.03) ≈ −2.11 on (and tanh_clamp(u) > −1 just above it)."""
    knee = -math.atanh(1 / 1.03)
    u = torch.tensor([-3.0, knee - 1e-9, knee + 1e-6], dtype=torch.float64)
    assert (to_range(u, "tanh") > -1 + 1 / 255).all()
    y = to_range(u, "tanh_clamp")
    assert (y[:2] == -1).all() and y[2] > -1


@pytest.mark.parametrize("module", [progan, stylegan2, biggan])
def test_an_unknown_output_is_refused_naming_the_choices(module):
    """By the config's validation before any work, and by to_range itself (a generator built
    from a stored config without validating it)."""
    cfg = apply_overrides(module.PRESETS["tiny"], ["output=sigmoid"])
    choices = r"output must be one of linear, clamp, tanh, tanh_clamp, got 'sigmoid'"
    with pytest.raises(ConfigError, match=choices):
        cfg.validate()
    with pytest.raises(ConfigError, match=choices):
        to_range(torch.zeros(2), "sigmoid")


def test_each_preset_ends_g_as_stated():
    """The paper presets end G as their papers do (ProGAN and StyleGAN2 linear, BigGAN tanh);
    ProGAN's tiny preset ends in tanh_clamp, StyleGAN2's and BigGAN's in clamp (their stated
    differences; the README's table was trained so)."""
    papers = {progan: "linear", stylegan2: "linear", biggan: "tanh"}
    tiny = {progan: "tanh_clamp", stylegan2: "clamp", biggan: "clamp"}
    for module, paper in papers.items():
        for name, cfg in module.PRESETS.items():
            assert cfg.output == (tiny[module] if name == "tiny" else paper), (module.__name__, name)


@pytest.mark.parametrize("output", ["tanh", "clamp", "tanh_clamp", "linear"])
def test_biggan_ends_g_in_its_output_function(output):
    """BigGAN's image is its output function of the last conv's values u (caught by a hook):
    tanh(u) (Tables 4–6), clamp(u, −1, 1) (the tiny preset), clamp(1.03·tanh(u), −1, 1) or u
    itself."""
    cfg = dataclasses.replace(biggan.PRESETS["tiny"], output=output)
    torch.manual_seed(0)  # module initialisation
    G, seen = biggan.Generator(cfg).eval(), []
    G.out_conv.register_forward_hook(lambda m, args, out: seen.append(out))
    z = torch.randn(16, cfg.z_dim, generator=generator(5))
    with torch.no_grad():
        images = G(z, torch.arange(16) % cfg.num_classes)
    (u,) = seen
    expected = u if output == "linear" else OUTPUT_REFERENCES[output](u)
    torch.testing.assert_close(images, expected, rtol=0, atol=0)
