"""Progressive growing (ProGAN §2, Fig. 2, A.1): fade-in, resampling, blended reals, schedule."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.fade import (Stage, downscale2x, fade_in, growth_stage, images_until_final,
                          resize_reals, upscale2x)

alphas = st.floats(0.0, 1.0)


def randn(*shape, seed):
    return torch.randn(*shape, generator=generator(seed), dtype=torch.float64)


def block_mean(x, factor):
    """Every factor×factor block replaced by its mean (float64 loops): the reals at size/factor."""
    b, c, size, _ = x.shape
    out = torch.empty(b, c, size // factor, size // factor, dtype=torch.float64)
    for i in range(size // factor):
        for j in range(size // factor):
            block = x[:, :, i * factor:(i + 1) * factor, j * factor:(j + 1) * factor]
            out[:, :, i, j] = block.sum((2, 3)) / factor**2
    return out


def replicate(x):
    """Nearest-neighbour 2×: out[i, j] = x[i // 2, j // 2] (float64 loops)."""
    b, c, h, w = x.shape
    out = torch.empty(b, c, 2 * h, 2 * w, dtype=x.dtype)
    for i in range(2 * h):
        for j in range(2 * w):
            out[:, :, i, j] = x[:, :, i // 2, j // 2]
    return out


@given(seed=seeds, alpha=alphas)
def test_fade_in_matches_reference(seed, alpha):
    low, high = randn(2, 3, 4, 4, seed=seed), randn(2, 3, 4, 4, seed=seed + 1)
    torch.testing.assert_close(fade_in(alpha, low, high), (1 - alpha) * low + alpha * high)
    per_sample = torch.tensor([alpha, 1 - alpha]).view(2, 1, 1, 1)  # a tensor α, float32
    expected = torch.stack([(1 - alpha) * low[0] + alpha * high[0],
                            alpha * low[1] + (1 - alpha) * high[1]])
    torch.testing.assert_close(fade_in(per_sample, low, high), expected)


@given(seed=seeds)
def test_fade_in_endpoints_are_exact(seed):
    """α = 0 returns the old path and α = 1 the new layers, bit for bit."""
    low, high = randn(2, 3, 4, 4, seed=seed) * 1e6, randn(2, 3, 4, 4, seed=seed + 1)
    assert torch.equal(fade_in(0.0, low, high), low) and torch.equal(fade_in(1.0, low, high), high)


@given(seed=seeds, size=st.sampled_from([2, 4, 6]))
def test_resampling_matches_reference(seed, size):
    x = randn(2, 3, size, size, seed=seed)
    torch.testing.assert_close(upscale2x(x), replicate(x))
    torch.testing.assert_close(upscale2x(x), F.interpolate(x, scale_factor=2, mode="nearest"))
    torch.testing.assert_close(downscale2x(x), block_mean(x, 2))
    torch.testing.assert_close(downscale2x(x), F.avg_pool2d(x, 2))
    torch.testing.assert_close(downscale2x(upscale2x(x)), x)


@given(seed=seeds, size=st.sampled_from([4, 8, 16]), data=st.data())
def test_resize_reals_matches_reference(seed, size, data):
    x = randn(2, 3, size, size, seed=seed)
    resolution = data.draw(st.sampled_from([r for r in (1, 2, 4, 8, 16) if r <= size]))
    torch.testing.assert_close(resize_reals(x, resolution), block_mean(x, size // resolution))
    if resolution >= 2:
        alpha = data.draw(alphas)
        blended = ((1 - alpha) * replicate(block_mean(x, 2 * size // resolution))
                   + alpha * block_mean(x, size // resolution))
        torch.testing.assert_close(resize_reals(x, resolution, alpha), blended)


@given(seed=seeds, size=st.sampled_from([8, 16]), data=st.data())
def test_reals_at_alpha_zero_are_the_half_resolution_reals_upscaled(seed, size, data):
    """At α = 0 the blended reals at resolution r are the reals at r/2 upscaled, just as G's output at α = 0 is its r/2 output upscaled."""
    x = randn(2, 3, size, size, seed=seed)
    resolution = data.draw(st.sampled_from([r for r in (2, 4, 8, 16) if r <= size]))
    torch.testing.assert_close(resize_reals(x, resolution, 0.0),
                               upscale2x(resize_reals(x, resolution // 2)))


@given(value=st.floats(-1, 1), size=st.sampled_from([4, 16]), alpha=alphas, data=st.data())
def test_constant_image_stays_constant(value, size, alpha, data):
    """A constant image stays the same constant at every resolution and every α."""
    x = torch.full((1, 3, size, size), value, dtype=torch.float64)
    resolution = data.draw(st.sampled_from([r for r in (2, 4, 8, 16) if r <= size]))
    out = resize_reals(x, resolution, alpha)
    torch.testing.assert_close(out, torch.full_like(out, value))


def timeline(final, stabilize, fade, start):
    """Appendix A.1's phases as explicit (first image, end image, resolution, fading) rows."""
    rows, t, resolution = [(0, stabilize, start, False)], stabilize, start
    while resolution < final:
        resolution *= 2
        rows += [(t, t + fade, resolution, True),
                 (t + fade, t + fade + stabilize, resolution, False)]
        t += fade + stabilize
    return rows


def reference_stage(t, final, stabilize, fade, start):
    for first, end, resolution, fading in timeline(final, stabilize, fade, start):
        if first <= t < end:
            alpha = (t - first) / fade if fading else 1.0
            return resolution, alpha, int(math.log2(resolution // start))
    return final, 1.0, int(math.log2(final // start))


schedules = st.tuples(st.sampled_from([1, 2, 4]), st.integers(0, 3), st.integers(0, 40),
                      st.integers(0, 40))


@given(schedule=schedules)
def test_schedule_matches_reference(schedule):
    start, doublings, stabilize, fade = schedule
    final = start * 2**doublings
    kwargs = dict(final_resolution=final, stabilize_images=stabilize, fade_images=fade,
                  start_resolution=start)
    total = images_until_final(**kwargs)
    assert total == doublings * (stabilize + fade)
    for t in range(total + stabilize + 3):
        stage = growth_stage(t, **kwargs)
        assert isinstance(stage, Stage)
        assert tuple(stage) == pytest.approx(reference_stage(t, final, stabilize, fade, start))


@given(schedule=schedules)
def test_schedule_is_monotone_and_continuous(schedule):
    """Resolution never decreases; α rises by exactly 1/fade_images per image within a fade; the index steps by one exactly when the resolution doubles."""
    start, doublings, stabilize, fade = schedule
    kwargs = dict(final_resolution=start * 2**doublings, stabilize_images=stabilize,
                  fade_images=fade, start_resolution=start)
    total = images_until_final(**kwargs)
    stages = [growth_stage(t, **kwargs) for t in range(total + 5)]
    for before, after in zip(stages, stages[1:]):
        assert after.resolution >= before.resolution
        assert (after.index != before.index) == (after.resolution != before.resolution)
        if after.resolution != before.resolution:
            assert after.resolution == 2 * before.resolution and after.index == before.index + 1
            assert after.alpha == (0.0 if fade else 1.0)
        elif after.alpha < 1:
            assert after.alpha - before.alpha == pytest.approx(1 / fade)
        assert after.alpha >= before.alpha or after.resolution > before.resolution


@given(schedule=schedules)
def test_schedule_reaches_final_resolution(schedule):
    """At images_until_final the final resolution is fully faded in (α = 1) and stays so forever."""
    start, doublings, stabilize, fade = schedule
    kwargs = dict(final_resolution=start * 2**doublings, stabilize_images=stabilize,
                  fade_images=fade, start_resolution=start)
    total = images_until_final(**kwargs)
    final = Stage(start * 2**doublings, 1.0, doublings)
    assert growth_stage(total, **kwargs) == final
    assert growth_stage(total + 10**9, **kwargs) == final
    if doublings and fade:
        assert growth_stage(total - 1, **kwargs).alpha < 1


def test_progan_celeba_hq_schedule():
    """Appendix A.1: 800k images at 4×4, then 800k fade-in + 800k stable per doubling."""
    kwargs = dict(final_resolution=1024, stabilize_images=800_000, fade_images=800_000)
    assert growth_stage(799_999, **kwargs) == Stage(4, 1.0, 0)
    assert growth_stage(1_200_000, **kwargs) == Stage(8, 0.5, 1)
    assert growth_stage(2_000_000, **kwargs) == Stage(8, 1.0, 1)
    assert images_until_final(**kwargs) == 8 * 1_600_000


@pytest.mark.parametrize("call, message", [
    (lambda: resize_reals(torch.zeros(1, 1, 8, 8), 3), r"one of \[1, 2, 4, 8\]"),
    (lambda: resize_reals(torch.zeros(1, 1, 8, 8), 16), r"one of \[1, 2, 4, 8\]"),
    (lambda: resize_reals(torch.zeros(1, 1, 8, 8), 1, 0.5), "at least 2 while alpha < 1"),
    (lambda: resize_reals(torch.zeros(1, 1, 6, 6), 3), "square with a power-of-two side"),
    (lambda: resize_reals(torch.zeros(1, 1, 8, 4), 4), "square with a power-of-two side"),
    (lambda: fade_in(1.5, torch.zeros(1), torch.ones(1)), r"alpha must be in \[0, 1\]"),
    (lambda: downscale2x(torch.zeros(1, 1, 3, 4)), "even height and width"),
    (lambda: growth_stage(0, final_resolution=48, stabilize_images=1, fade_images=1),
     "final_resolution must be a power of two"),
    (lambda: growth_stage(0, final_resolution=8, stabilize_images=1, fade_images=1,
                          start_resolution=16), "start_resolution 16 must be <= final_resolution"),
    (lambda: images_until_final(final_resolution=8, stabilize_images=-1, fade_images=1),
     "stabilize_images and fade_images must be >= 0"),
    (lambda: growth_stage(-1, final_resolution=8, stabilize_images=1, fade_images=1),
     "images_seen must be >= 0"),
])
def test_rejects_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
