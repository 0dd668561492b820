"""ADA's controller against a hand-computed sequence and the paper's numbers (§3: target 0.6,
every 4 minibatches, p from 0 to 1 in 500k images), plus exact resume and multi-process sums."""

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from nanogan.ada import AdaController


def logits(*signs):
    """D's outputs on reals with the given signs (magnitudes vary; only the sign counts)."""
    return torch.tensor([s * (1.0 + 0.5 * i) for i, s in enumerate(signs)])


def test_update_rule_matches_a_hand_computed_sequence():
    """p moves by ±(images / (speed · 1000)) toward r_t's target once per interval, clamped at 0."""
    ada = AdaController(target=0.6, speed_kimg=1, interval=2)  # a step of 2 · 10 / 1000 = 0.02
    intervals = [  # (logits of the two steps, r_t = mean sign, p after the interval)
        ((-1, -1, 1, 1), (-1, 1, -1, -1), -0.25, 0.0),  # below the target at 0: stays at 0
        ((1, 1, -1, 1), (1, 1, 1, 1), 0.75, 0.02),
        ((1, 1, 1, 1), (1, 1, 1, 1), 1.0, 0.04),
        ((1, 1, 1, 1, 1), (1, 1, 1, -1, -1), 0.6, 0.04),  # exactly the target: no change
        ((-1, 1, 1, 1), (1, -1, -1, 1), 0.25, 0.02),
    ]
    for first, second, rt, p in intervals:
        ada.observe(logits(*first))
        before = ada.p.item()
        ada.update(batch_size=10)
        assert ada.p.item() == before  # no change in the middle of an interval
        ada.observe(logits(*second))
        ada.update(batch_size=10)
        assert ada.rt.item() == pytest.approx(rt, abs=1e-12)
        assert ada.p.item() == pytest.approx(p, abs=1e-12)


def test_p_goes_from_0_to_1_in_500k_images():
    """While r_t stays above the target, p reaches 1 at the first update after 500k images."""
    batch, interval = 1024, 4
    ada = AdaController()  # the paper's target 0.6, 500 kimg, interval 4
    images, reached = 0, None
    while reached is None and images < 1_000_000:
        ada.observe(torch.ones(batch))  # every real judged real: r_t = 1
        ada.update(batch)
        images += batch
        if ada.p.item() == 1.0:
            reached = images
    assert reached == math.ceil(500_000 / (batch * interval)) * batch * interval
    assert ada.rt.item() == 1.0


@given(rts=st.lists(st.sampled_from([-1.0, 0.0, 0.5, 0.7, 1.0]), min_size=1, max_size=60),
       speed=st.sampled_from([0.01, 0.1, 500.0]))
@example(rts=[1.0] * 30, speed=0.01)
@example(rts=[-1.0] * 30, speed=0.01)
def test_p_stays_a_probability(rts, speed):
    """Whatever r_t does, p stays in [0, 1] and moves by at most one step per interval."""
    ada = AdaController(speed_kimg=speed, interval=1)
    for rt in rts:
        n_pos = round((rt + 1) / 2 * 10)
        before = ada.p.item()
        ada.observe(torch.tensor([1.0] * n_pos + [-1.0] * (10 - n_pos)))
        ada.update(batch_size=10)
        assert 0.0 <= ada.p.item() <= 1.0
        assert abs(ada.p.item() - before) <= 10 / (speed * 1000) + 1e-12


@given(stop=st.integers(0, 11))
@example(stop=5)  # in the middle of an interval, with logits observed but not yet used
def test_state_round_trip_continues_exactly(stop):
    """A controller rebuilt from state_dict() at any step continues exactly as the original."""
    g = torch.Generator().manual_seed(0)
    stream = [torch.randn(6, generator=g) + 0.8 for _ in range(12)]
    ada = AdaController(speed_kimg=0.05)
    history = []
    for i, x in enumerate(stream):
        if i == stop:
            state = ada.state_dict()
        ada.observe(x)
        ada.update(6)
        history.append((ada.p.item(), ada.rt.item()))
    resumed = AdaController(speed_kimg=0.05)
    resumed.load_state_dict(state)
    for i, x in enumerate(stream[stop:], start=stop):
        resumed.observe(x)
        resumed.update(6)
        assert (resumed.p.item(), resumed.rt.item()) == history[i]
    assert history[-1][0] > 0  # the stream does move p


@pytest.mark.parametrize("mean", [False, True])
def test_two_processes_with_a_reduce_equal_one(mean):
    """Two controllers that each see half the logits and reduce the sums track one controller."""
    g = torch.Generator().manual_seed(1)
    one, ranks = AdaController(speed_kimg=1), [AdaController(speed_kimg=1) for _ in range(2)]
    for _ in range(20):
        x = torch.randn(8, generator=g) + 1.0
        one.observe(x)
        one.update(8)
        for ada, part in zip(ranks, x.chunk(2)):
            ada.observe(part)
        local = [torch.stack([ada.signs, ada.count]) for ada in ranks]  # what all_reduce sees
        total = (local[0] + local[1]) / (2 if mean else 1)
        for ada in ranks:
            ada.update(8, reduce=lambda t: total)
        for ada in ranks:
            assert (ada.p.item(), ada.rt.item()) == (one.p.item(), one.rt.item())
    assert 0 < one.p.item() < 1


def test_observe_keeps_no_graph_and_accepts_any_shape():
    """Logits with a graph, shaped (b,) or (b, 1), add their signs without keeping the graph."""
    ada = AdaController(interval=2)
    w = torch.ones((), requires_grad=True)
    ada.observe((w * torch.tensor([1.0, -2.0, 3.0]))[:, None])
    ada.observe(torch.tensor([0.0, 5.0]))  # sign(0) = 0: counted, neither real nor fake
    assert not ada.signs.requires_grad
    assert (ada.signs.item(), ada.count.item()) == (2.0, 5.0)


def test_without_observations_p_stays():
    """An interval in which no logits were observed leaves p and r_t as they were."""
    ada = AdaController(p=0.3, interval=2)
    for _ in range(4):
        ada.update(16)
    assert (ada.p.item(), ada.rt.item()) == (pytest.approx(0.3), 0.0)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="target must be in"):
        AdaController(target=1.0)
    with pytest.raises(ValueError, match="speed_kimg must be > 0"):
        AdaController(speed_kimg=0)
    with pytest.raises(ValueError, match="interval must be an integer >= 1"):
        AdaController(interval=0)
    with pytest.raises(ValueError, match="initial p"):
        AdaController(p=-0.1)
