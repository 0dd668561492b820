"""G's last layer against the data's range (output_range.py): torch's own clamp and tanh."""

import pytest
import torch
from hypothesis import example, given
from strategies import generator, seeds

from nanogan import progan, stylegan2
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
    torch.testing.assert_close(to_range(u, "clamp"), torch.clamp(u, -1, 1), rtol=0, atol=0)
    torch.testing.assert_close(to_range(u, "tanh"), torch.tanh(u), rtol=0, atol=0)


def test_what_each_output_teaches_a_pixel_below_black():
    """A pixel at u = −1.5 that D would rather see at 0 (loss y²): the clamp gives it no gradient
    of its own, tanh 2·tanh(u)·(1 − tanh²(u)), the linear output 2u (the derivatives by hand)."""
    t = torch.tanh(torch.tensor(-1.5, dtype=torch.float64))
    for output, expected in (("clamp", 0.0), ("tanh", (2 * t * (1 - t**2)).item()),
                             ("linear", -3.0)):
        u = torch.tensor([-1.5], dtype=torch.float64, requires_grad=True)
        to_range(u, output).square().sum().backward()
        assert u.grad.item() == pytest.approx(expected, rel=1e-12, abs=0), output


@pytest.mark.parametrize("module", [progan, stylegan2])
def test_an_unknown_output_is_refused_naming_the_choices(module):
    """By the config's validation before any work, and by to_range itself (a generator built
    from a stored config without validating it)."""
    cfg = apply_overrides(module.PRESETS["tiny"], ["output=sigmoid"])
    choices = r"output must be one of linear, clamp, tanh, got 'sigmoid'"
    with pytest.raises(ConfigError, match=choices):
        cfg.validate()
    with pytest.raises(ConfigError, match=choices):
        to_range(torch.zeros(2), "sigmoid")
