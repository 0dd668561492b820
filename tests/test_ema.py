"""EMA of generator weights against the closed form of a geometric average (float64)."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds
from torch import nn

from nanogan.ema import ema_beta, make_ema, update_ema


def randomize(model, seed):
    g = generator(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def net(seed=0):
    """A small model with parameters and buffers (BatchNorm running stats and a counter)."""
    return randomize(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double(),
                     seed)


@given(seed=seeds, beta=st.floats(0.0, 1.0))
def test_matches_reference(seed, beta):
    model, ema = net(), net()
    randomize(model, seed)
    randomize(ema, seed + 1)
    expected = {name: beta * e + (1 - beta) * p for (name, e), (_, p)
                in zip(ema.named_parameters(), model.named_parameters())}
    update_ema(ema, model, beta)
    for name, p in ema.named_parameters():
        torch.testing.assert_close(p, expected[name])


@given(seed=seeds, beta=st.floats(0.0, 1.0), dtype=st.sampled_from([torch.float32,
                                                                     torch.float64]))
def test_fused_update_equals_a_loop_of_lerps_bitwise(seed, beta, dtype):
    """The one-call foreach update gives, bit for bit, a loop of lerp_ over the parameters
    (training numbers do not change with the implementation)."""
    model, ema = randomize(net().to(dtype), seed), randomize(net().to(dtype), seed + 1)
    expected = [e.detach().clone().lerp_(p, 1 - beta)
                for e, p in zip(ema.parameters(), model.parameters())]
    update_ema(ema, model, beta)
    for e, x in zip(ema.parameters(), expected):
        assert torch.equal(e, x)


@given(seed=seeds, beta=st.sampled_from([0.5, 0.9, 0.999]), n=st.integers(1, 30))
def test_constant_model_gives_closed_form(seed, beta, n):
    """After n updates towards constant weights θ, the EMA is β^n·θ₀ + (1 − β^n)·θ."""
    model, ema = net(), net()
    randomize(model, seed)
    randomize(ema, seed + 1)
    start = {name: p.clone() for name, p in ema.named_parameters()}
    for _ in range(n):
        update_ema(ema, model, beta)
    for name, p in model.named_parameters():
        expected = beta**n * start[name] + (1 - beta**n) * p
        torch.testing.assert_close(dict(ema.named_parameters())[name], expected)


@given(batch=st.sampled_from([1, 4, 16, 32, 64]), half_life_images=st.sampled_from([640, 3200]))
def test_old_snapshot_weight_halves_after_one_half_life(batch, half_life_images):
    """After exactly half-life images, shown in steps of any batch size, an old snapshot's weight in the EMA is ½."""
    steps, half_life_kimg = half_life_images // batch, half_life_images / 1000
    model, ema = nn.Linear(1, 1, bias=False).double(), nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        ema.weight.fill_(1.0)   # the old snapshot
        model.weight.fill_(0.0)  # everything since
    beta = ema_beta(batch, half_life_kimg)
    for _ in range(steps):
        update_ema(ema, model, beta)
    assert ema.weight.item() == pytest.approx(0.5, rel=1e-9)


@given(images_seen=st.integers(0, 10**6), batch=st.sampled_from([4, 32]))
def test_rampup_caps_the_half_life(images_seen, batch):
    """With a ramp-up r the half-life is min(half-life, r · images_seen), so early averages forget faster."""
    capped = ema_beta(batch, 10, images_seen=images_seen, rampup=0.05)
    half_life = min(10_000, 0.05 * images_seen)
    assert capped == (0.0 if half_life == 0 else pytest.approx(0.5 ** (batch / half_life)))
    assert capped <= ema_beta(batch, 10)


def test_zero_half_life_copies():
    """A half-life of 0 (or no images seen yet under ramp-up) gives β = 0: the EMA is a copy."""
    assert ema_beta(16, 0.0) == 0.0
    assert ema_beta(16, 10.0, images_seen=0, rampup=0.05) == 0.0


def test_beta_zero_copies_and_beta_one_freezes():
    """β = 0 makes the EMA an exact copy of the model; β = 1 leaves its parameters untouched."""
    model, ema = net(), net()
    randomize(model, 1)
    randomize(ema, 2)
    frozen = {name: p.clone() for name, p in ema.named_parameters()}
    update_ema(ema, model, 1.0)
    for name, p in ema.named_parameters():
        assert torch.equal(p, frozen[name])
    update_ema(ema, model, 0.0)
    for (_, e), (_, p) in zip(ema.named_parameters(), model.named_parameters()):
        assert torch.equal(e, p)


def test_buffers_are_copied_not_averaged():
    """Buffers (BatchNorm running statistics, counters) are copied from the model, not averaged."""
    model = net()
    ema = make_ema(model)
    model.train()(torch.randn(8, 3, generator=generator(0), dtype=torch.float64))
    update_ema(ema, model, 0.9)
    for (name, e), (_, b) in zip(ema.named_buffers(), model.named_buffers()):
        assert torch.equal(e, b), name
    assert ema[1].num_batches_tracked.item() == 1


def test_make_ema_is_an_independent_frozen_copy():
    model = net()
    ema = make_ema(model)
    assert not ema.training and not any(p.requires_grad for p in ema.parameters())
    assert all(p.requires_grad for p in model.parameters()) and model.training
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert not torch.equal(ema[0].weight, model[0].weight)


def test_rejects_mismatched_names():
    message = r"parameter names differ.*missing from the EMA \['2.bias'"
    with pytest.raises(ValueError, match=message):
        update_ema(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2, bias=False)),
                   net().float(), 0.5)


@pytest.mark.parametrize("call, message", [
    (lambda: update_ema(net(), net(), 1.5), r"beta must be in \[0, 1\]"),
    (lambda: ema_beta(0, 10), "batch_size must be >= 1"),
    (lambda: ema_beta(4, -1), "half_life_kimg and images_seen must be >= 0"),
    (lambda: ema_beta(4, 10, images_seen=5, rampup=0.0), "rampup must be > 0 or None"),
])
def test_rejects_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
