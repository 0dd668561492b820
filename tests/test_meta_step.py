"""Every training step runs without a host sync or a data-dependent shape (issue 14, items 3 and 8).

A TPU (torch_xla) compiles the step into one graph: a `.item()`, `bool(tensor)` or `.tolist()`
cuts the graph and waits for the device, and an op whose output shape depends on the values
(`nonzero`, boolean-mask indexing, `unique`) cannot be compiled to a fixed shape. On a GPU the
same calls are the host syncs that stall the queue. PyTorch's `meta` device has shapes but no
values, so it raises on exactly these calls; it also has no `torch.Generator`, like XLA, so the
step's draws take the CPU-then-move path of `randomness.generator_device`. A step that runs on
`meta` from start to end therefore reads no value on the host and makes no shape from one —
with every augmentation the model accepts and with the lazy penalties (R1, path length) that
only some steps compute. (Other syncs, e.g. a host-to-device copy per step, are not caught.)

Autocast knows no `meta` device; the three calls the models make are answered as for a device
with autocast off (the fp32 path, the one a TPU takes without `--precision bf16`).
"""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch

from nanogan import biggan, progan, stylegan2
from test_recipe import SG2_REGULARIZED

SMALL = {  # (module, changes to the tiny preset, steps): every kind of step the model takes
    # R1 every 2nd step, path length every 3rd: steps 0–5 hold each combination
    "stylegan2": (stylegan2, SG2_REGULARIZED | dict(channel_base=256, channel_max=16, z_dim=16,
                                                    w_dim=16, batch_size=8, r1_interval=2,
                                                    pl_interval=3), 6),
    # the preset as shipped, shrunk: batch 16 in one minibatch-std group, no path length, no
    # mixing, clamped output (the steps above put config F's regularizers back)
    "stylegan2 tiny as shipped": (stylegan2, dict(channel_base=256, channel_max=16, z_dim=16,
                                                  w_dim=16), 2),
    # phases of two steps each (batch 16): 4², fade to 8² (α 0, ½), 8², …, fade to 32²
    "progan": (progan, dict(stabilize_kimg=0.032, fade_kimg=0.032), 12),
    # every step alike (two D steps, one G step); a meta step takes ~0.7 s here
    "biggan": (biggan, dict(), 2),
}


@pytest.fixture(autouse=True)
def autocast_off_on_meta(monkeypatch):
    autocast, enabled = torch.autocast, torch.is_autocast_enabled

    def meta_autocast(device_type, *args, **kwargs):
        return contextlib.nullcontext() if device_type == "meta" else autocast(
            device_type, *args, **kwargs)

    def meta_enabled(*args):
        return False if args and args[0] == "meta" else enabled(*args)

    monkeypatch.setattr(torch, "autocast", meta_autocast)
    monkeypatch.setattr(torch, "is_autocast_enabled", meta_enabled)


def test_meta_tensors_refuse_what_a_compiled_step_cannot_do():
    """The premise: each call this file guards against raises on `meta`."""
    x = torch.empty(4, device="meta")
    for call in (lambda: x.sum().item(), lambda: bool(x.sum() > 0), lambda: x.tolist(),
                 lambda: x.nonzero(), lambda: x[x > 0], lambda: torch.unique(x),
                 lambda: torch.Generator(device="meta")):
        with pytest.raises((RuntimeError, NotImplementedError)):
            call()


@pytest.mark.parametrize("augment", ["none", "ada", "diffaugment"])
@pytest.mark.parametrize("name", list(SMALL))
def test_training_steps_run_on_the_meta_device(name, augment):
    module, overrides, steps = SMALL[name]
    if name == "progan" and augment == "ada":
        pytest.skip("ProGAN refuses ADA (its WGAN critic has no boundary at 0; progan.py)")
    cfg = dataclasses.replace(module.PRESETS["tiny"], augment=augment, **overrides)
    if augment == "ada":
        cfg = dataclasses.replace(cfg, ada_interval=1)  # the controller acts at every step
    recipe = module.Recipe(cfg, seed=0, device="meta")
    assert all(p.is_meta for net in (recipe.G, recipe.D, recipe.G_ema)
               for p in net.parameters())
    n = recipe.batch_per_step
    reals = torch.empty(n, cfg.channels, cfg.resolution, cfg.resolution, device="meta")
    labels = torch.zeros(n, dtype=torch.long, device="meta")
    logged = set()
    for _ in range(steps):
        stats = recipe.train_step(reals, labels)
        logged |= set(stats)
    assert recipe.step == steps
    if name == "stylegan2":
        assert {"r1", "pl"} <= logged, "the lazy R1 and path-length steps did not run"
    if name == "stylegan2 tiny as shipped":
        assert "r1" in logged and "pl" not in logged, "R1 on step 0, no path length (pl_weight 0)"
    if name == "progan":
        assert recipe.stage_index == 3, "the steps did not reach the 32² fade"
    assert stats and all(isinstance(v, torch.Tensor) and v.is_meta for v in stats.values())
