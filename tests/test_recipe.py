"""The recipe contract: gradient accumulation equals one step on the whole batch, micro-batches
partition the batch, mixed precision leaves the penalties in fp32, and every registered model
honours the contract the same way."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds
from torch import nn

from nanogan import checkpoint, models, recipe
from nanogan.config import ConfigError


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    batch_size: int = 8


class Toy(recipe.Recipe):
    """A linear 'D' fitted by least squares: enough to check `optimize` against plain SGD."""

    name = "toy"
    accumulates = True

    def build(self) -> None:
        self.D = nn.Linear(3, 1).double()
        self.opt_D = torch.optim.SGD(self.D.parameters(), lr=0.1)


@given(seed=seeds, accumulate=st.sampled_from([1, 2, 4, 8]))
def test_accumulated_step_equals_one_step_on_the_whole_batch(seed, accumulate):
    """Accumulating n micro-batch means, each scaled by 1/n, is one optimizer step on the batch mean."""
    g = generator(seed)
    x, y = torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randn(8, 1, generator=g,
                                                                             dtype=torch.float64)
    torch.manual_seed(0)  # the toy's initialisation (outside hypothesis' draws)
    one, many = Toy(ToyConfig()), Toy(ToyConfig(), accumulate=accumulate)
    many.D.load_state_dict(one.D.state_dict())
    loss_one = one.optimize(one.opt_D, one.D, lambda i: (one.D(x) - y).square().mean())
    loss_many = many.optimize(many.opt_D, many.D, lambda i: (many.D(many.micro(x, i))
                                                              - many.micro(y, i)).square().mean())
    torch.testing.assert_close(loss_many.double(), loss_one.double(), rtol=1e-6, atol=1e-7)
    for a, b in zip(one.D.parameters(), many.D.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_micro_batches_partition_the_batch():
    """The micro-batches of a tensor, concatenated in order, are the tensor; None stays None."""
    r = Toy(ToyConfig(), accumulate=4)
    x = torch.arange(8)
    assert torch.equal(torch.cat([r.micro(x, i) for i in range(4)]), x)
    assert r.micro(None, 2) is None


def test_a_batch_that_does_not_split_is_refused():
    with pytest.raises(ConfigError, match="must split into 1 processes × 3 micro-batches"):
        Toy(ToyConfig(), accumulate=3)


# Config F's path length, style mixing, minibatch-std groups of 4 and linear output, which
# StyleGAN2's tiny preset replaces (StyleGAN2-ADA's `cifar` settings and a clamp): put back
# wherever every kind of step is tested (test_meta_step also runs the preset as shipped).
SG2_REGULARIZED = {k: getattr(models.MODELS["stylegan2"].PRESETS["paper256"], k)
                   for k in ("pl_weight", "mixing_prob", "mbstd_group", "output")}
# Every registered model, shrunk to CPU milliseconds.
SMALL = {
    "progan": dict(resolution=8, channels=1, z_dim=8, fmap_base=32, fmap_max=8, batch_size=8,
                   stabilize_kimg=0.016, fade_kimg=0.016),
    "stylegan2": SG2_REGULARIZED | dict(resolution=8, channels=1, z_dim=8, w_dim=8,
                                        mapping_layers=2, channel_base=64, channel_max=8,
                                        batch_size=8, r1_interval=2, pl_interval=2),
    "biggan": dict(resolution=32, channels=1, num_classes=3, ch=4, z_dim=16, shared_dim=4,
                   attention=16, d_attention=16, batch_size=8, standing_batches=8),
}
MODELS = [m for m in SMALL if m in models.MODELS]


def small_recipe(model: str, **kwargs) -> recipe.Recipe:
    module = models.MODELS[model]
    cfg = dataclasses.replace(module.PRESETS["tiny"], **SMALL[model])
    torch.manual_seed(0)
    return module.Recipe(cfg, seed=3, **kwargs)


def data(r: recipe.Recipe, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g, cfg = generator(100 + step), r.cfg
    n = r.batch_per_step
    reals = torch.rand(n, cfg.channels, cfg.resolution, cfg.resolution, generator=g) * 2 - 1
    return reals, torch.randint(max(getattr(cfg, "num_classes", 0), 1), (n,), generator=g)


@pytest.mark.parametrize("model", [m for m in MODELS if models.MODELS[m].Recipe.accumulates
                                   and m != "biggan"])
def test_gradient_accumulation_gives_the_whole_batch_update(model):
    """Without BatchNorm, 2 accumulated micro-batches of b/2 train exactly like one batch of b,
    up to rounding. Adam's step lr·m/√v is about lr whatever the gradient's size, so where a
    gradient nearly cancels (ProGAN's critic output bias: WGAN's real and fake terms cancel on
    it) rounding of the sum's order moves the weight by a fraction of lr: atol is 1% of lr."""
    one, two = small_recipe(model), small_recipe(model, accumulate=2)
    for step in range(4):  # crosses ProGAN's first fade and StyleGAN2's R1/PL steps
        batch = data(one, step)
        one.train_step(*batch)
        two.train_step(*batch)
    atol = max(1e-5, 0.01 * one.cfg.lr)
    for (name, a), b in zip(one.G.named_parameters(), two.G.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=atol, msg=name)
    for (name, a), b in zip(one.D.named_parameters(), two.D.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=atol, msg=name)


@pytest.mark.parametrize("model", MODELS)
def test_bf16_autocast_trains_with_finite_losses(model):
    """Under bf16 autocast every phase runs and reports finite losses; parameters stay fp32."""
    r = small_recipe(model, autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    for step in range(3):
        stats = r.train_step(*data(r, step))
        assert all(torch.isfinite(v).all() for v in stats.values()), stats
    assert all(p.dtype == torch.float32 for p in r.G.parameters())


@pytest.mark.parametrize("model", MODELS)
def test_state_dict_round_trips_every_model(model):
    """load_state_dict(state_dict()) into a recipe of another seed restores counters and weights."""
    a = small_recipe(model)
    a.train_step(*data(a, 0))
    torch.manual_seed(1)
    b = models.MODELS[model].Recipe(a.cfg, seed=99)
    b.load_state_dict(a.state_dict())
    assert (b.step, b.images_seen, b.seed) == (a.step, a.images_seen, a.seed)
    for x, y in zip(a.G_ema.state_dict().values(), b.G_ema.state_dict().values()):
        assert torch.equal(x, y)


@pytest.mark.parametrize("model", MODELS)
def test_resume_is_exact(model, tmp_path):
    """k steps, save, load into a recipe of another seed and init, m steps = k + m steps straight through: every tensor of the training state, bitwise."""
    straight = small_recipe(model)
    for step in range(6):
        straight.train_step(*data(straight, step))
    first = small_recipe(model)
    for step in range(3):
        first.train_step(*data(first, step))
    first.before_sampling()  # train.py's save() does this first (BigGAN: standing statistics)
    path = tmp_path / "checkpoint.safetensors"
    checkpoint.save(path, first.state_dict(), kind="training", model=model, config={})
    torch.manual_seed(1)  # other initial weights, w̄, path-length mean: all must come from the file
    resumed = models.MODELS[model].Recipe(first.cfg, seed=99)
    resumed.load_state_dict(checkpoint.load(path).state)
    for step in range(3, 6):
        resumed.train_step(*data(resumed, step))
    a, skeleton_a = checkpoint.flatten(straight.state_dict())
    b, skeleton_b = checkpoint.flatten(resumed.state_dict())
    assert skeleton_a == skeleton_b  # counters (step, images seen, fade stage) and the tree
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


@pytest.mark.parametrize("model", [m for m in MODELS if m != "progan"])  # ProGAN refuses ADA
def test_resume_is_exact_with_ada(model, tmp_path):
    """With ADA (p adjusted every D minibatch, fast), 2 steps + save + load + 2 steps = 4 steps
    straight through, bitwise: p, r_t and the controller's accumulators are in the checkpoint."""
    module = models.MODELS[model]
    cfg = dataclasses.replace(module.PRESETS["tiny"], **SMALL[model], augment="ada",
                              ada_interval=1, ada_kimg=0.05)
    torch.manual_seed(0)
    straight = module.Recipe(cfg, seed=3)
    straight.ada.p.fill_(0.5)  # augmenting from the start, and free to move either way
    p_after = []
    for step in range(4):
        straight.train_step(*data(straight, step))
        p_after.append(straight.ada.p.item())
    # p moves after the save point (after step 2): the test resumes a controller in motion (p can
    # come back to where it started, so compare the steps, not the ends)
    assert len(set(p_after[1:])) > 1, p_after
    torch.manual_seed(0)
    first = module.Recipe(cfg, seed=3)
    first.ada.p.fill_(0.5)
    for step in range(2):
        first.train_step(*data(first, step))
    first.before_sampling()
    path = tmp_path / "checkpoint.safetensors"
    checkpoint.save(path, first.state_dict(), kind="training", model=model, config={})
    torch.manual_seed(1)
    resumed = module.Recipe(cfg, seed=99)
    resumed.load_state_dict(checkpoint.load(path).state)
    for step in range(2, 4):
        resumed.train_step(*data(resumed, step))
    a, skeleton_a = checkpoint.flatten(straight.state_dict())
    b, skeleton_b = checkpoint.flatten(resumed.state_dict())
    assert skeleton_a == skeleton_b and a.keys() == b.keys()
    assert any("ada" in k for k in a), sorted(a)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


def test_an_unknown_augment_is_refused_naming_the_choices():
    cfg = dataclasses.replace(models.MODELS["stylegan2"].PRESETS["tiny"], augment="ADA")
    with pytest.raises(ConfigError, match="augment must be one of none, ada, diffaugment"):
        cfg.validate()
    with pytest.raises(ConfigError, match="ada_target must be in"):
        dataclasses.replace(cfg, augment="ada", ada_target=1.0).validate()


@pytest.mark.parametrize("loss", ["wgan", "lsgan"])
def test_ada_is_refused_for_progans_losses(loss):
    """ADA's r_t = E[sign D(x_real)] needs D's real/fake boundary at 0: ProGAN's WGAN critic is
    centred on 0 by its drift term and LSGAN's boundary is 0.5, so ADA is refused there, naming
    DiffAugment; DiffAugment (no controller) is accepted."""
    cfg = dataclasses.replace(models.MODELS["progan"].PRESETS["tiny"], loss=loss)
    with pytest.raises(ConfigError, match="use augment 'diffaugment'"):
        dataclasses.replace(cfg, augment="ada").validate()
    dataclasses.replace(cfg, augment="diffaugment").validate()


def test_unwrap_sees_through_ddp_and_compile_wrappers():
    """unwrap returns the plain module inside torch.compile's and DDP's wrappers."""
    net = nn.Linear(2, 2)
    compiled = torch.compile(net)
    assert recipe.unwrap(compiled) is net
    assert recipe.unwrap(net) is net


@pytest.mark.parametrize("model", [m for m in ("progan", "stylegan2") if m in MODELS])
def test_a_per_process_batch_of_partial_minibatch_std_groups_is_refused(model):
    """D's minibatch-std groups must be whole on every process and micro-batch: batch 8 over
    4 processes (2 each) or 2 processes × 2 micro-batches is refused, naming the numbers."""
    module = models.MODELS[model]
    cfg = dataclasses.replace(module.PRESETS["tiny"], **SMALL[model])
    for world, accumulate in ((4, 1), (2, 2), (1, 4)):
        with pytest.raises(ConfigError) as err:
            module.Recipe(cfg, rank=0, world=world, accumulate=accumulate)
        message = str(err.value)
        assert "per-process batch 2" in message and "group size 4" in message, message
        assert f"{world} processes × {accumulate} accumulated" in message, message
        assert f"multiple of {4 * world * accumulate}" in message, message
    module.Recipe(cfg, rank=1, world=2)  # 4 per process: whole groups


def test_minibatch_std_still_takes_a_batch_smaller_than_the_group():
    """Sampling and evaluation may show D fewer images than a group (one group of them)."""
    from nanogan.stylegan2 import Discriminator
    cfg = dataclasses.replace(models.MODELS["stylegan2"].PRESETS["tiny"], **SMALL["stylegan2"])
    assert Discriminator(cfg)(torch.zeros(2, 1, 8, 8)).shape == (2,)
