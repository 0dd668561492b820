"""Noise inputs (StyleGAN §2; StyleGAN2 Fig. 2c) against a per-channel float64 loop."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.noise import NoiseInput, add_noise


def reference_add_noise(x, noise, strength):
    """Every channel c of sample b gets the same image strength · n_b added."""
    x, noise = x.double(), noise.double()
    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            out[b, c] = x[b, c] + strength * noise[b if noise.shape[0] > 1 else 0, 0]
    return out


def layer_with_strength(resolution, strength, seed):
    layer = NoiseInput(resolution)
    with torch.no_grad():  # redraw the const image from a seeded generator, set the strength
        layer.const.copy_(torch.randn(layer.const.shape, generator=generator(seed)))
        layer.strength.fill_(strength)
    return layer


shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5))


@given(seed=seeds, shape=shapes, strength=st.floats(-2, 2), shared=st.booleans())
def test_matches_reference(seed, shape, strength, shared):
    b, c, r = shape
    g = generator(seed)
    # float64 throughout: a float32 result differs from the float64 loop by rounding (~1e-7).
    x = torch.randn(b, c, r, r, generator=g, dtype=torch.float64)
    noise = torch.randn(1 if shared else b, 1, r, r, generator=g, dtype=torch.float64)
    expected = reference_add_noise(x, noise, strength)
    torch.testing.assert_close(add_noise(x, noise, strength), expected)


@given(seed=seeds, shape=shapes, mode=st.sampled_from(["random", "const"]))
def test_noise_is_the_same_in_every_channel(seed, shape, mode):
    """The noise added at a pixel is the same for every channel of that sample."""
    b, c, r = shape
    layer = layer_with_strength(r, 0.7, 0)
    g = generator(seed)
    x = torch.randn(b, c, r, r, generator=g)
    added = layer(x, noise=torch.randn(b, 1, r, r, generator=g), mode=mode) - x
    torch.testing.assert_close(added, added[:, :1].expand_as(added))


@given(seed=seeds, mode=st.sampled_from(["random", "const", "none"]))
def test_zero_strength_or_mode_none_is_the_identity(seed, mode):
    """At initialisation (strength 0) every mode returns x unchanged, and mode "none" always does."""
    x = torch.randn(2, 3, 4, 4, generator=generator(seed))
    noise = torch.randn(2, 1, 4, 4, generator=generator(seed + 1))
    assert torch.equal(NoiseInput(4)(x, noise, mode=mode), x)
    assert torch.equal(layer_with_strength(4, 1.5, 0)(x, noise, mode="none"), x)


def test_const_noise_is_deterministic_and_random_noise_is_not():
    """Mode "const" adds the same stored image on every call; mode "random" draws a new one."""
    layer = layer_with_strength(4, 1.0, 0)
    x = torch.zeros(2, 3, 4, 4)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        first, second = layer(x, mode="const"), layer(x, mode="const")
        drawn = [layer(x) for _ in range(2)]
    assert torch.equal(first, second)
    torch.testing.assert_close(first, layer.const.expand(2, 3, 4, 4))
    assert not torch.equal(drawn[0], drawn[1])
    given_noise = torch.randn(2, 1, 4, 4, generator=generator(2))
    torch.testing.assert_close(layer(x, given_noise), given_noise.expand(2, 3, 4, 4))


def test_gradcheck():
    g = generator(3)
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    noise = torch.randn(2, 1, 3, 3, dtype=torch.float64, generator=g)
    strength = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, s: add_noise(x, noise, s), (x, strength))


def test_rejects_bad_arguments():
    layer = NoiseInput(4)
    with pytest.raises(ValueError, match="'random', 'const', 'none'"):
        layer(torch.zeros(1, 1, 4, 4), mode="fixed")
    with pytest.raises(ValueError, match=r"\(b, 1, h, w\)"):
        add_noise(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), 1.0)
