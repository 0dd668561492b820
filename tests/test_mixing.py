"""Style mixing (StyleGAN §3.1) against a per-sample, per-layer loop."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.mixing import draw_crossover, mix_styles


def reference_mix(w1, w2, crossover, num_ws):
    """ws[b, n] = w1[b] for n < crossover[b], else w2[b] (per-layer inputs indexed by n)."""
    b, d = w1.shape[0], w1.shape[-1]
    out = torch.empty(b, num_ws, d, dtype=torch.float64)
    for i in range(b):
        for n in range(num_ws):
            src = w1 if n < crossover[i] else w2
            out[i, n] = src[i] if src.ndim == 2 else src[i, n]
    return out


@given(seed=seeds, b=st.integers(1, 5), num_ws=st.integers(2, 8), d=st.integers(1, 4),
       per_layer=st.tuples(st.booleans(), st.booleans()), prob=st.sampled_from([0.0, 0.5, 1.0]))
def test_matches_reference(seed, b, num_ws, d, per_layer, prob):
    g = generator(seed)
    w1, w2 = (torch.randn((b, num_ws, d) if p else (b, d), generator=g, dtype=torch.float64)
              for p in per_layer)
    crossover = draw_crossover(b, num_ws, prob, g)
    torch.testing.assert_close(mix_styles(w1, w2, crossover, num_ws),
                               reference_mix(w1, w2, crossover, num_ws))


@given(seed=seeds, b=st.integers(1, 50), num_ws=st.integers(2, 18))
def test_probability_zero_never_mixes_and_one_always_does(seed, b, num_ws):
    """With probability 0 every crossover is num_ws (all layers from w1); with 1 each lies in {1, …, num_ws − 1}."""
    never = draw_crossover(b, num_ws, 0.0, generator(seed))
    assert torch.equal(never, torch.full((b,), num_ws))
    w1, w2 = torch.zeros(b, 3), torch.ones(b, 3)
    assert torch.equal(mix_styles(w1, w2, never, num_ws), torch.zeros(b, num_ws, 3))
    always = draw_crossover(b, num_ws, 1.0, generator(seed))
    assert always.dtype == torch.int64
    assert bool(((always >= 1) & (always <= num_ws - 1)).all())


@pytest.mark.parametrize("prob, num_ws", [(0.9, 14), (0.3, 4), (0.5, 2)])
def test_mixing_frequency_and_crossover_are_as_drawn(prob, num_ws):
    """A fraction prob of the images mix, and their crossover is uniform over {1, …, num_ws − 1}."""
    n = 40_000
    crossover = draw_crossover(n, num_ws, prob, generator(0))
    mixed = crossover < num_ws
    assert abs(mixed.float().mean().item() - prob) < 4 * math.sqrt(prob * (1 - prob) / n)
    counts = torch.bincount(crossover[mixed], minlength=num_ws)[1:]
    expected = mixed.sum().item() / (num_ws - 1)
    assert (counts - expected).abs().max().item() < 5 * math.sqrt(expected)


@given(seed=seeds, b=st.integers(1, 6), num_ws=st.integers(2, 10))
def test_styles_switch_source_once_at_the_crossover(seed, b, num_ws):
    """Each image's layers come from w1 up to the crossover and from w2 from it on, never interleaved."""
    g = generator(seed)
    crossover = draw_crossover(b, num_ws, 0.9, g)
    w1, w2 = torch.randn(b, 4, generator=g), torch.randn(b, 4, generator=g)
    ws = mix_styles(w1, w2, crossover, num_ws)
    from_w1 = (ws == w1[:, None]).all(-1)
    from_w2 = (ws == w2[:, None]).all(-1)
    assert bool((from_w1 ^ from_w2).all())
    assert torch.equal(from_w1.sum(1), crossover)
    assert bool((from_w1[:, 1:] <= from_w1[:, :-1]).all())  # once w2 starts, it stays


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        draw_crossover(4, 8, 1.5)
    with pytest.raises(ValueError, match="num_ws >= 2"):
        draw_crossover(4, 1, 0.9)
    with pytest.raises(ValueError, match="crossover"):
        mix_styles(torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(3, dtype=torch.long), 8)
