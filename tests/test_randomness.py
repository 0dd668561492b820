"""Counter-based randomness: draws are a pure function of (seed, step, name) and split over processes."""

import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import seeds

from nanogan.randomness import Draws, derive_seed, seed_latents


@given(seed=seeds, step=st.integers(0, 10**6), world=st.sampled_from([1, 2, 4]))
def test_processes_share_one_global_draw(seed, step, world):
    """The slices drawn by N processes concatenate to exactly what one process draws for the whole batch."""
    single = Draws(seed, step).normal("z", (8, 3))
    parts = [Draws(seed, step, rank=r, world=world).normal("z", (8, 3)) for r in range(world)]
    torch.testing.assert_close(torch.cat(parts), single, rtol=0, atol=0)


@given(seed=seeds, step=st.integers(0, 10**6))
def test_draws_are_a_pure_function_of_seed_step_and_name(seed, step):
    """Drawing again for the same (seed, step, name) repeats the numbers; another step or name does not."""
    a = Draws(seed, step).uniform("t", (16,))
    torch.testing.assert_close(Draws(seed, step).uniform("t", (16,)), a, rtol=0, atol=0)
    assert not torch.equal(Draws(seed, step + 1).uniform("t", (16,)), a)
    assert not torch.equal(Draws(seed, step).uniform("u", (16,)), a)


def test_integers_in_range():
    """Integer draws lie in [0, high)."""
    x = Draws(0, 0).integers("labels", 10, (1000,))
    assert x.min() >= 0 and x.max() < 10 and len(x.unique()) == 10


def test_seed_latents_do_not_depend_on_the_batch():
    """A seed gives the same latent alone or among other seeds."""
    torch.testing.assert_close(seed_latents([7], (5,))[0], seed_latents([1, 7, 3], (5,))[1])


def test_derive_seed_is_stable():
    """Derived seeds are fixed numbers (sha256-based), not Python's salted hash."""
    import hashlib
    digest = hashlib.sha256(b"1/2/z").digest()
    assert derive_seed(1, 2, "z") == int.from_bytes(digest[:8], "little") >> 1


def test_rejects_bad_splits():
    import pytest
    with pytest.raises(ValueError, match="does not split"):
        Draws(0, 0, rank=0, world=3).normal("z", (8,))
    with pytest.raises(ValueError, match="rank"):
        Draws(0, 0, rank=2, world=2)


def test_a_device_without_a_generator_draws_on_the_cpu():
    """torch.Generator(device="meta") raises, as XLA's does: Draws draws on the CPU and moves the
    numbers, so every kind of draw works and lands on the device with the right shape."""
    from nanogan.randomness import generator_device
    assert generator_device("meta") == torch.device("cpu")
    assert generator_device("cpu") == torch.device("cpu")
    draws = Draws(3, 5, rank=1, world=2, device="meta")
    assert draws.generator("z").device == torch.device("cpu")
    for x, dtype in ((draws.normal("z", (8, 3)), torch.float32),
                     (draws.uniform("t", (8,)), torch.float32),
                     (draws.integers("y", 10, (8,)), torch.int64)):
        assert x.device.type == "meta" and x.shape[0] == 4 and x.dtype == dtype


@given(seed=seeds, step=st.integers(0, 10**6), world=st.sampled_from([1, 2]))
def test_drawing_on_the_cpu_for_another_device_draws_the_cpu_numbers(seed, step, world):
    """The CPU-then-move path gives exactly the numbers a CPU run draws (here with the move
    forced on the CPU itself, the only device at hand)."""
    import nanogan.randomness as randomness
    direct = [Draws(seed, step, rank=world - 1, world=world) for _ in range(2)]
    original = randomness.generator_device
    try:
        randomness.generator_device = lambda device: torch.device("cpu")
        moved = Draws(seed, step, rank=world - 1, world=world, device="meta")
    finally:
        randomness.generator_device = original
    moved.device = torch.device("cpu")  # "move" to the CPU: the values become visible
    for kind in ("normal", "uniform"):
        torch.testing.assert_close(getattr(moved, kind)("x", (4, 2)),
                                   getattr(direct[0], kind)("x", (4, 2)), rtol=0, atol=0)
    assert torch.equal(moved.integers("y", 7, (6,)), direct[1].integers("y", 7, (6,)))
