"""Minibatch standard deviation (ProGAN §3) against a loop written from the paper's description."""

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.minibatch_std import MinibatchStd, minibatch_std


def reference(x, group_size, num_channels, eps=1e-8):
    """Per contiguous group: std of each feature at each pixel, averaged, appended (float64)."""
    x = x.double()
    b, c, h, w = x.shape
    g = min(group_size, b)
    per_group = c // num_channels
    extra = torch.empty(b, num_channels, h, w, dtype=torch.float64)
    for n in range(b // g):
        members = range(n * g, (n + 1) * g)
        for f in range(num_channels):
            stds = []
            for k in range(f * per_group, (f + 1) * per_group):
                for i in range(h):
                    for j in range(w):
                        values = [x[m, k, i, j].item() for m in members]
                        mean = sum(values) / g
                        variance = sum((v - mean) ** 2 for v in values) / g
                        stds.append(math.sqrt(variance + eps))
            extra[n * g : (n + 1) * g, f] = sum(stds) / len(stds)
    return torch.cat([x, extra], dim=1)


@st.composite
def layouts(draw):
    """(batch, group size, channels, channel groups, size) with the batch a multiple of the group."""
    group = draw(st.integers(1, 4))
    batch = group * draw(st.integers(1, 3))
    num_channels = draw(st.integers(1, 3))
    channels = num_channels * draw(st.integers(1, 3))
    return batch, group, channels, num_channels, draw(st.integers(1, 3))


@given(seed=seeds, layout=layouts())
@example(seed=0, layout=(2, 4, 3, 1, 2))  # group larger than the batch: one group of size b
def test_matches_reference(seed, layout):
    b, group, c, f, size = layout
    x = torch.randn(b, c, size, size, generator=generator(seed))
    expected = reference(x, group, f)
    torch.testing.assert_close(minibatch_std(x, group, f).double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(MinibatchStd(group, f)(x), minibatch_std(x, group, f))


@given(seed=seeds, layout=layouts())
def test_statistic_of_a_group_depends_only_on_that_group(seed, layout):
    """The statistic of a group depends only on that group."""
    b, group, c, f, size = layout
    x = torch.randn(b, c, size, size, generator=generator(seed))
    y = x.clone()
    y[group:] = torch.randn(b - group, c, size, size, generator=generator(seed + 1)) * 5
    first_group = minibatch_std(x, group, f)[:group, c:]
    assert torch.equal(minibatch_std(y, group, f)[:group, c:], first_group)


@given(seed=seeds, layout=layouts())
def test_contiguous_shards_of_whole_groups_see_the_same_statistic(seed, layout):
    """Splitting a batch into contiguous shards of whole groups, as data-parallel training does, leaves every statistic unchanged."""
    b, group, c, f, size = layout
    x = torch.randn(2 * b, c, size, size, generator=generator(seed))
    shards = torch.cat([minibatch_std(x[:b], group, f), minibatch_std(x[b:], group, f)])
    torch.testing.assert_close(shards, minibatch_std(x, group, f), rtol=0, atol=0)


@given(seed=seeds, layout=layouts())
def test_constant_group_gives_sqrt_eps(seed, layout):
    """When all samples of a group are identical, its statistic is √ε (no variation at all)."""
    b, group, c, f, size = layout
    one = torch.randn(b // group, 1, c, size, size, generator=generator(seed), dtype=torch.float64)
    x = one.expand(-1, group, -1, -1, -1).reshape(b, c, size, size)
    stat = minibatch_std(x, group, f)[:, c:]
    torch.testing.assert_close(stat, torch.full_like(stat, math.sqrt(1e-8)), rtol=1e-6, atol=0)


@given(seed=seeds, layout=layouts())
def test_original_channels_pass_through(seed, layout):
    """The input channels come out unchanged, followed by num_channels constant-per-group maps."""
    b, group, c, f, size = layout
    x = torch.randn(b, c, size, size, generator=generator(seed))
    out = minibatch_std(x, group, f)
    assert out.shape == (b, c + f, size, size)
    assert torch.equal(out[:, :c], x)
    extra = out[:, c:]
    assert torch.equal(extra, extra[:, :, :1, :1].expand_as(extra))


def test_gradcheck_and_gradgradcheck():
    x = torch.randn(4, 4, 2, 2, dtype=torch.float64, generator=generator(5), requires_grad=True)
    for group, f in [(2, 1), (4, 2)]:
        assert torch.autograd.gradcheck(lambda x: minibatch_std(x, group, f), (x,))
        assert torch.autograd.gradgradcheck(lambda x: minibatch_std(x, group, f), (x,))


@pytest.mark.parametrize("shape, group, f, message", [
    ((6, 2, 1, 1), 4, 1, "batch size 6 is not divisible by group size 4"),
    ((4, 3, 1, 1), 2, 2, "num_channels 2 must divide the 3 channels"),
    ((4, 2, 1, 1), 0, 1, "group_size and num_channels must be >= 1"),
    ((4, 2, 1, 1), 2, 0, "group_size and num_channels must be >= 1"),
    ((4, 2, 1), 2, 1, r"expects \(b, c, h, w\)"),
])
def test_rejects_bad_arguments(shape, group, f, message):
    with pytest.raises(ValueError, match=message):
        minibatch_std(torch.zeros(shape), group, f)
