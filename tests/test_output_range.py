"""G's last layer against the data's range (output_range.py): torch's own clamp and tanh."""

import pytest
import torch
from hypothesis import example, given
from strategies import generator, seeds

from nanogan import progan, stylegan2
from nanogan.config import ConfigError, apply_overrides
from nanogan.output_range import to_range


def values(seed: int, n: int = 64) -> torch.Tensor:
    """Values in (−3, 3): a third of them beyond ±1 on either side."""
    return torch.rand(n, generator=generator(seed), dtype=torch.float64) * 6 - 3


@given(seed=seeds)
@example(seed=0)
def test_each_output_is_torchs_function(seed):
    u = values(seed)
    torch.testing.assert_close(to_range(u, "linear"), u, rtol=0, atol=0)
    torch.testing.assert_close(to_range(u, "clamp"), torch.clamp(u, -1, 1), rtol=0, atol=0)
    torch.testing.assert_close(to_range(u, "tanh"), torch.tanh(u), rtol=0, atol=0)


def test_a_clamped_pixel_below_black_gets_no_gradient_and_tanh_always_some():
    """What each output teaches a pixel at −1.5 that D would rather see at 0 (loss y²): the clamp
    gives it no gradient at all (it stays black for good), tanh a small one towards 0."""
    for output, moves in (("clamp", False), ("tanh", True), ("linear", True)):
        u = torch.tensor([-1.5], requires_grad=True)
        to_range(u, output).square().sum().backward()
        assert (u.grad.item() < 0) is moves, output  # descent raises u only if grad < 0


@pytest.mark.parametrize("module", [progan, stylegan2])
def test_an_unknown_output_is_refused_naming_the_choices(module):
    cfg = apply_overrides(module.PRESETS["tiny"], ["output=sigmoid"])
    with pytest.raises(ConfigError, match=r"output must be one of linear, clamp, tanh, got 'sigmoid'"):
        cfg.validate()
