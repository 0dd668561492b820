"""What each training step computes: which tensors every loss and penalty sees, with which weight.

The components are tested against references in their own files; here one real `train_step` of
each recipe runs on a tiny network while a `Tape` records every optimizer step — the networks as
the phase found them, the loss handed to backward, the gradients at `step()` — and the test
recomputes each phase from the papers' equations, with the same random draws (`Draws(seed,
step)` is a pure function of its names) on copies of those networks. Loss values and gradients
must agree. The weights in the expected losses are the papers' numbers, written here, not read
from the recipe: R1 taken on fakes, a path-length noise without its 1/√(HW), γ instead of γ/2,
a forgotten lazy factor k, a lost drift term, BigGAN's two D steps sharing one latent or an
orthogonal penalty on the shared embedding all fail a test below.

Papers: ProGAN, arXiv:1710.10196, Appendix A.1 (WGAN-GP, n_critic = 1, ε_drift = 0.001, Adam
(0.001, 0, 0.99, 1e-8), fade-in of reals, Table 2 layers and §4.1 He constants); WGAN-GP,
arXiv:1704.00028, Algorithm 1 (λ = 10, per-sample ε ~ U[0, 1]); StyleGAN2, arXiv:1912.04958, §3.1
and Appendix B (lazy regularization: k = 16 / 8, the regularizer × k, λ' = cλ, β' = β^c,
c = k/(k + 1)), §3.2 Eq. 4 (path length, y ~ N(0, I) / √(H·W) as in path_length.py);
R1, arXiv:1801.04406, Eq. 9 (γ/2 · E‖∇_x D(x)‖² on real data); BigGAN, arXiv:1809.11096, §3
(hinge loss, projection D, two D steps per G step), §3.1 Eq. 3 (orthogonal regularization of
G, β = 1e-4), Appendix C (Adam lr G 5e-5, D 2e-4, β = (0, 0.999); EMA of G).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F
from strategies import OUTPUT_REFERENCES, generator
from torch import nn

from nanogan import biggan, progan, stylegan2
from nanogan.augment import augment
from nanogan.diffaugment import diff_augment
from nanogan.equalized import EqualLinear
from nanogan.mixing import draw_crossover
from nanogan.randomness import Draws
from nanogan.recipe import unwrap

# ------------------------------------------------------------------------------- the tape


@dataclass
class Phase:
    """One optimizer step: which optimizer, the networks as the phase found them, its loss."""

    opt: str  # "opt_D" or "opt_G"
    step: int  # the recipe's step counter during the phase
    G: nn.Module  # copies taken at zero_grad, before any forward of the phase
    D: nn.Module
    pl_mean: torch.Tensor | None  # StyleGAN2's running path length a at that moment
    losses: list = field(default_factory=list)  # what the recipe passed to backward
    grads: dict | None = None  # the stepped network's .grad at opt.step(), by name


class Tape:
    """Records every optimizer step a recipe takes (see Phase); the steps still happen."""

    def __init__(self, r):
        self.r, self.phases = r, []
        for name in ("opt_D", "opt_G"):
            self._wrap(name)
        backward = r.backward

        def backward_spy(loss):
            self.phases[-1].losses.append(loss.detach().clone())
            backward(loss)

        r.backward = backward_spy

    def _wrap(self, name: str) -> None:
        r, opt = self.r, getattr(self.r, name)
        zero_grad, step = opt.zero_grad, opt.step
        net = unwrap(r.D if name == "opt_D" else r.G)

        def zero_grad_spy(*args, **kwargs):
            pl = getattr(r, "pl", None)
            self.phases.append(Phase(name, r.step, copy.deepcopy(unwrap(r.G)),
                                     copy.deepcopy(unwrap(r.D)),
                                     None if pl is None else pl.mean.detach().clone()))
            return zero_grad(*args, **kwargs)

        def step_spy(*args, **kwargs):
            self.phases[-1].grads = {n: torch.zeros_like(p) if p.grad is None else p.grad.clone()
                                     for n, p in net.named_parameters()}
            return step(*args, **kwargs)

        opt.zero_grad, opt.step = zero_grad_spy, step_spy

    def at(self, step: int) -> list[Phase]:
        return [p for p in self.phases if p.step == step]


def assert_phase(phase: Phase, expected: torch.Tensor, net: nn.Module) -> None:
    """The recipe backpropagated `expected` (value) and stepped with its gradients w.r.t. `net`."""
    assert len(phase.losses) == 1, f"{phase.opt} called backward {len(phase.losses)} times"
    torch.testing.assert_close(phase.losses[0], expected.detach(), rtol=1e-5, atol=1e-6,
                               msg=f"{phase.opt} loss at step {phase.step}")
    params = dict(net.named_parameters())
    grads = torch.autograd.grad(expected, list(params.values()), allow_unused=True)
    for (name, p), g in zip(params.items(), grads):
        g = torch.zeros_like(p) if g is None else g
        torch.testing.assert_close(phase.grads[name], g, rtol=1e-4,
                                   atol=1e-7 + 1e-4 * g.abs().max().item(),
                                   msg=f"{phase.opt} gradient of {name} at step {phase.step}")


def make(module, overrides: dict, seed: int = 3):
    cfg = dataclasses.replace(module.PRESETS["tiny"], **overrides)
    torch.manual_seed(0)
    return module.Recipe(cfg, seed=seed)


def batch(cfg, n: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = generator(100 + step)
    reals = torch.rand(n, cfg.channels, cfg.resolution, cfg.resolution, generator=g) * 2 - 1
    return reals, torch.randint(max(getattr(cfg, "num_classes", 0), 1), (n,), generator=g)


def run(r, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    batches = []
    for step in range(steps):
        batches.append(batch(r.cfg, r.batch_per_step, step))
        r.train_step(*batches[-1])
    return batches


def adam(opt) -> tuple[float, tuple[float, float], float]:
    (group,) = opt.param_groups
    return group["lr"], tuple(group["betas"]), group["eps"]


# ------------------------------------------------------------------------------ StyleGAN2

# Paper values (Appendix B, official config F) except the sizes and the lazy intervals, which are
# shrunk so that R1 (k = 4) and path length (k = 2) fall on different steps; the EMA half-life is
# 10 images so that one step moves G_ema measurably.
GAMMA, PL_WEIGHT, PL_DECAY, PL_SHRINK, MIXING = 10.0, 2.0, 0.01, 2, 0.9
SG2 = dict(resolution=8, channels=1, z_dim=8, w_dim=8, mapping_layers=2, channel_base=64,
           channel_max=8, batch_size=8, lr=0.002, betas=(0.0, 0.99), r1_gamma=GAMMA,
           r1_interval=4, pl_interval=2, pl_weight=PL_WEIGHT, pl_decay=PL_DECAY,
           pl_batch_shrink=PL_SHRINK, mixing_prob=MIXING, mbstd_group=4, ema_kimg=0.01,
           ema_rampup=None, output="linear")


def sg2_inputs(cfg, draws: Draws, tag: str, n: int) -> dict:
    """G's inputs for one phase from the step's draws: z, a mixing latent and crossover drawn
    with probability 0.9 (Appendix B), and per-layer noise."""
    crossover = draw_crossover(n, cfg.num_ws, MIXING, draws.generator(f"crossover_{tag}"))

    def noise(i, shape):
        return draws.normal(f"noise_{tag}_{i}", (n, *shape[1:]))

    return dict(z=draws.normal(f"z_{tag}", (n, cfg.z_dim)), labels=None,
                mix_z=draws.normal(f"mix_z_{tag}", (n, cfg.z_dim)), crossover=crossover,
                noise=noise)


def sg2_path_lengths(G, inputs: dict, y: torch.Tensor) -> torch.Tensor:
    """‖J_wᵀ y‖ per sample, as the mean over the layers of the squared norms (Appendix B)."""
    images, ws = G(**inputs, return_ws=True)
    (grad,) = torch.autograd.grad((images * y).sum(), ws, create_graph=True)
    return grad.square().sum(2).mean(1).sqrt()


def recorded_first_step(r):
    """(recipe, its tape, the reals) after one recorded train_step at step 0."""
    tape = Tape(r)
    reals, labels = batch(r.cfg, r.cfg.batch_size, 0)
    r.train_step(reals, labels)
    return r, tape, reals


@pytest.fixture(scope="module")
def sg2_step0():
    return recorded_first_step(make(stylegan2, SG2))


def test_stylegan2_d_loss_is_logistic_on_reals_and_mixed_fakes(sg2_step0):
    """D's loss is E softplus(D(G(z))) + E softplus(−D(x)), the fakes with style mixing p = 0.9."""
    r, tape, reals = sg2_step0
    phase = tape.at(0)[0]
    assert phase.opt == "opt_D"
    with torch.no_grad():
        fakes = phase.G(**sg2_inputs(r.cfg, Draws(r.seed, 0), "D", r.cfg.batch_size))
    loss = F.softplus(phase.D(fakes)).mean() + F.softplus(-phase.D(reals)).mean()
    assert_phase(phase, loss, phase.D)


def test_stylegan2_r1_is_on_the_reals_with_weight_gamma_over_2_times_k(sg2_step0):
    """The R1 phase minimises k · γ/2 · E‖∇_x D(x)‖² over the real batch x (Eq. 9, §3.1)."""
    r, tape, reals = sg2_step0
    phase = tape.at(0)[1]
    assert phase.opt == "opt_D"
    x = reals.clone().requires_grad_(True)
    # ∇ of the summed logits, as the official code: minibatch std adds cross-sample terms.
    (grad,) = torch.autograd.grad(phase.D(x).sum(), x, create_graph=True)
    r1 = grad.square().sum((1, 2, 3)).mean()
    assert_phase(phase, r1 * (GAMMA / 2) * r.cfg.r1_interval, phase.D)


def test_stylegan2_g_loss_is_non_saturating(sg2_step0):
    """G's loss is E softplus(−D(G(z))) through the D that the R1 phase left."""
    r, tape, _ = sg2_step0
    phase = tape.at(0)[2]
    assert phase.opt == "opt_G"
    images = phase.G(**sg2_inputs(r.cfg, Draws(r.seed, 0), "G", r.cfg.batch_size))
    assert_phase(phase, F.softplus(-phase.D(images)).mean(), phase.G)


def test_stylegan2_path_length_penalty(sg2_step0):
    """Path length on b/2 samples with y ~ N(0, I)/√(H·W): a ← a + 0.01 (mean length − a), then
    k · w_pl · E(‖J_wᵀ y‖ − a)² (Eq. 4, Appendix B)."""
    r, tape, _ = sg2_step0
    phase = tape.at(0)[3]
    assert phase.opt == "opt_G"
    cfg, draws, n = r.cfg, Draws(r.seed, 0), r.cfg.batch_size // PL_SHRINK
    y = draws.normal("pl_y", (n, cfg.channels, cfg.resolution, cfg.resolution))
    y = y / math.sqrt(cfg.resolution * cfg.resolution)
    lengths = sg2_path_lengths(phase.G, sg2_inputs(cfg, draws, "PL", n), y)
    a = phase.pl_mean + PL_DECAY * (lengths.detach().mean() - phase.pl_mean)
    assert_phase(phase, (lengths - a).square().mean() * PL_WEIGHT * cfg.pl_interval, phase.G)
    torch.testing.assert_close(r.pl.mean, a)


def test_stylegan2_ema_and_w_avg_after_a_step(sg2_step0):
    """G_ema ← β G_ema + (1 − β) G with β = 0.5^(batch / half-life in images); w̄ moves 0.5 %
    towards the G phase's mean w."""
    r, tape, _ = sg2_step0
    before = tape.at(0)[0].G  # G as the step found it: G_ema is still its copy
    beta = 0.5 ** (r.cfg.batch_size / (r.cfg.ema_kimg * 1000))
    ema = dict(r.G_ema.named_parameters())
    for name, p in r.G.named_parameters():
        expected = beta * dict(before.named_parameters())[name] + (1 - beta) * p
        torch.testing.assert_close(ema[name], expected, msg=name)
    g_phase = tape.at(0)[2]
    z = Draws(r.seed, 0).normal("z_G", (r.cfg.batch_size, r.cfg.z_dim))
    with torch.no_grad():
        w_mean = g_phase.G.mapping(z).mean(0)
    torch.testing.assert_close(r.G.mapping.w_avg, g_phase.G.mapping.w_avg
                               + 0.005 * (w_mean - g_phase.G.mapping.w_avg))


def test_stylegan2_penalties_see_the_real_batch_and_scaled_noise(monkeypatch):
    """r1_penalty gets the real images themselves; path_lengths gets b/2 samples and a y whose
    variance times H·W is 1."""
    seen = {}
    real_r1, real_pl = stylegan2.r1_penalty, stylegan2.path_lengths

    def r1_spy(logits, images):
        seen["r1"] = images.detach().clone()
        return real_r1(logits, images)

    def pl_spy(images, ws, y, **kwargs):
        seen.setdefault("y", []).append(y.detach().clone())
        return real_pl(images, ws, y, **kwargs)

    monkeypatch.setattr(stylegan2, "r1_penalty", r1_spy)
    monkeypatch.setattr(stylegan2, "path_lengths", pl_spy)
    r = make(stylegan2, dict(SG2, resolution=16, batch_size=16))
    reals, labels = batch(r.cfg, 16, 0)
    r.train_step(reals, labels)
    assert torch.equal(seen["r1"], reals)
    (y,) = seen["y"]
    assert y.shape == (16 // PL_SHRINK, 1, 16, 16)
    assert 0.8 < y.var().item() * 16 * 16 < 1.25  # 2048 draws: ±0.1 is 3 standard errors


def test_stylegan2_lazy_schedule_and_adam():
    """R1 runs every r1_interval steps and path length every pl_interval steps from step 0, each
    network's Adam has λ' = cλ, β' = β^c with c = k/(k + 1) for its own k, and ε = 1e-8."""
    r = make(stylegan2, SG2)
    tape = Tape(r)
    run(r, 5)
    expected = {0: ["opt_D", "opt_D", "opt_G", "opt_G"], 1: ["opt_D", "opt_G"],
                2: ["opt_D", "opt_G", "opt_G"], 3: ["opt_D", "opt_G"],
                4: ["opt_D", "opt_D", "opt_G", "opt_G"]}
    assert {s: [p.opt for p in tape.at(s)] for s in range(5)} == expected
    for opt, k in [(r.opt_D, 4), (r.opt_G, 2)]:
        c = k / (k + 1)
        lr, betas, eps = adam(opt)
        assert lr == pytest.approx(0.002 * c) and eps == 1e-8
        assert betas == pytest.approx((0.0, 0.99**c))


def bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def test_stylegan2_penalties_run_in_fp32_under_autocast(monkeypatch):
    """Under bf16 autocast D's and G's top layers compute in bf16 in the main phases, but R1
    and the path length (differentiated twice) see fp32 activations, logits and images."""
    seen = {"D": [], "G": []}
    real_r1, real_pl = stylegan2.r1_penalty, stylegan2.path_lengths

    def r1_spy(logits, images):
        seen["r1"] = (seen["D"][-1], logits.dtype, images.dtype)
        return real_r1(logits, images)

    def pl_spy(images, ws, y, **kwargs):
        seen["pl"] = (seen["G"][-1], images.dtype, ws.dtype)
        return real_pl(images, ws, y, **kwargs)

    monkeypatch.setattr(stylegan2, "r1_penalty", r1_spy)
    monkeypatch.setattr(stylegan2, "path_lengths", pl_spy)
    r = make(stylegan2, SG2)
    r.autocast = bf16
    r.D.from_rgb.register_forward_hook(lambda m, a, out: seen["D"].append(out.dtype))
    r.G.to_rgb[-1].register_forward_hook(lambda m, a, out: seen["G"].append(out.dtype))
    r.train_step(*batch(r.cfg, r.cfg.batch_size, 0))
    assert seen["D"][0] == seen["G"][1] == torch.bfloat16  # the main phases: reduced precision
    assert seen["r1"] == (torch.float32,) * 3
    assert seen["pl"] == (torch.float32,) * 3


# --------------------------------------------------------------------------------- ProGAN

# Appendix A.1's loss and optimizer; 8×8 with phases of 16 images (2 steps of 8).
DRIFT, GP_WEIGHT = 0.001, 10.0
PG = dict(resolution=8, channels=1, z_dim=8, fmap_base=32, fmap_max=8, batch_size=8,
          stabilize_kimg=0.016, fade_kimg=0.016, lr=1e-3, betas=(0.0, 0.99), loss="wgan",
          drift=DRIFT, gp_weight=GP_WEIGHT, gp_target=1.0, ema_beta=0.9, output="linear")


@pytest.fixture(scope="module")
def pg_run():
    r = make(progan, PG)
    tape = Tape(r)
    return r, tape, run(r, 4)


def pg_reals(reals: torch.Tensor, resolution: int, alpha: float) -> torch.Tensor:
    """Reals as D sees them (§2, A.1): 2×2 average pooling down to the resolution; while fading
    in, (1 − α) · (half resolution, replicated 2×) + α · full."""
    while reals.shape[-1] > resolution:
        reals = F.avg_pool2d(reals, 2)
    low = F.avg_pool2d(reals, 2).repeat_interleave(2, 2).repeat_interleave(2, 3)
    return (1 - alpha) * low + alpha * reals


# (step, resolution, α): 16 images at 4×4, then 16 images fading in 8×8 (A.1 with 16 for 800k).
PG_STAGES = [(0, 4, 1.0), (3, 8, 0.5)]


@pytest.mark.parametrize("step, res, alpha", PG_STAGES)
def test_progan_d_loss_is_wgan_gp_with_drift(pg_run, step, res, alpha):
    """D's loss is E D(G(z)) − E D(x) + 0.001 E D(x)² + 10 E(‖∇D(x̂)‖ − 1)², x̂ = x + t (G(z) − x)
    with t ~ U[0, 1] per sample, the reals faded like G's output."""
    r, tape, batches = pg_run
    phases = tape.at(step)
    assert [p.opt for p in phases] == ["opt_D", "opt_G"]  # n_critic = 1
    phase, draws, n = phases[0], Draws(r.seed, step), r.cfg.batch_size
    x = pg_reals(batches[step][0], res, alpha)
    with torch.no_grad():
        fakes = phase.G(draws.normal("z_D", (n, r.cfg.z_dim)), res, alpha)

    def critic(images):
        return phase.D(images, res, alpha)

    real, fake = critic(x), critic(fakes)
    t = draws.uniform("gp", (n,)).view(n, 1, 1, 1)
    x_hat = (x + t * (fakes - x)).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    gp = (grad.flatten(1).norm(dim=1) - 1).square().mean()
    loss = fake.mean() - real.mean() + DRIFT * real.square().mean() + GP_WEIGHT * gp
    assert_phase(phase, loss, phase.D)


@pytest.mark.parametrize("step, res, alpha", PG_STAGES)
def test_progan_g_loss_is_minus_d_of_fakes(pg_run, step, res, alpha):
    """G's loss is −E D(G(z)) at the current resolution and α, through the updated D."""
    r, tape, _ = pg_run
    phase = tape.at(step)[1]
    z = Draws(r.seed, step).normal("z_G", (r.cfg.batch_size, r.cfg.z_dim))
    assert_phase(phase, -phase.D(phase.G(z, res, alpha), res, alpha).mean(), phase.G)


def test_progan_gradient_penalty_sees_per_sample_interpolates():
    """The penalty's D input is x + t·(fake − x) with one t ∈ [0, 1] per sample (not the reals,
    not one t for the whole batch)."""
    r = make(progan, PG)
    calls = []  # D's inputs in order; the D phase's are reals, fakes and x̂ (needs a gradient)
    r.D.register_forward_hook(lambda m, args, out: calls.append(args[0]))
    reals, labels = batch(r.cfg, 8, 0)
    r.train_step(reals, labels)
    d_phase = calls[:3]
    (x_hat,) = [c.detach() for c in d_phase if c.requires_grad]
    real, fake = [c for c in d_phase if not c.requires_grad]
    torch.testing.assert_close(real, pg_reals(reals, 4, 1.0))
    diff = (fake - real).flatten(1)
    t = ((x_hat - real).flatten(1) * diff).sum(1) / diff.square().sum(1)
    torch.testing.assert_close(x_hat, real + t.view(-1, 1, 1, 1) * (fake - real))
    assert t.min() >= 0 and t.max() <= 1 and t.std() > 0.1, t


def test_progan_adam_and_ema():
    """Adam α = 0.001, β = (0, 0.99), ε = 1e-8 on both networks, one D and one G step per
    iteration, and G_ema ← β G_ema + (1 − β) G."""
    r = make(progan, PG)
    before = copy.deepcopy(r.G)
    run(r, 1)
    for opt in (r.opt_D, r.opt_G):
        assert adam(opt) == (1e-3, (0.0, 0.99), 1e-8)
        steps = [s["step"].item() for s in opt.state.values()]
        assert steps and set(steps) == {1}
    ema = dict(r.G_ema.named_parameters())
    for (name, p), p0 in zip(r.G.named_parameters(), before.parameters()):
        torch.testing.assert_close(ema[name], 0.9 * p0 + 0.1 * p, msg=name)


def test_progan_gradient_penalty_runs_in_fp32_under_autocast(monkeypatch):
    """Under bf16 autocast the critic's main outputs are bf16 but the gradient penalty gets fp32
    reals and fakes and an fp32 critic output."""
    seen = {}
    real_gp = progan.gradient_penalty

    def gp_spy(critic, real, fake, t, **kwargs):
        def watched(x):
            out = critic(x)
            seen["critic"] = out.dtype
            return out

        seen["inputs"] = (real.dtype, fake.dtype)
        return real_gp(watched, real, fake, t, **kwargs)

    monkeypatch.setattr(progan, "gradient_penalty", gp_spy)
    r = make(progan, PG)
    r.autocast = bf16
    main = []
    r.D.register_forward_hook(lambda m, a, out: main.append(out.dtype))
    r.train_step(*batch(r.cfg, r.cfg.batch_size, 0))
    assert main[0] == torch.bfloat16
    assert seen == {"inputs": (torch.float32, torch.float32), "critic": torch.float32}


def he_constant(layer: nn.Module, x: torch.Tensor) -> float:
    """The constant c the layer multiplies its stored weight by, measured from its output."""
    with torch.no_grad():
        out = (layer(x) - layer(torch.zeros_like(x))).flatten()
        if isinstance(layer, EqualLinear):
            ref = F.linear(x, layer.weight).flatten()
        else:
            ref = F.conv2d(x, layer.weight, padding=layer.weight.shape[-1] // 2).flatten()
    c = (out @ ref / (ref @ ref)).item()
    torch.testing.assert_close(out, c * ref, rtol=1e-4, atol=1e-5)
    return c


@functools.lru_cache(maxsize=1)
def progan_layers() -> dict:
    """name → (layer, input, gain, Table 2 fan-in) for every weight layer of a 16×16 ProGAN:
    gain √2 before a leaky ReLU and 1 for the linear outputs (toRGB, D's last dense)."""
    cfg = dataclasses.replace(progan.PRESETS["tiny"], resolution=16, channels=3, z_dim=16,
                              fmap_base=64, fmap_max=16)
    torch.manual_seed(0)
    G, D = progan.Generator(cfg), progan.Discriminator(cfg)
    w, s2 = cfg.width, math.sqrt(2)

    def x(*shape):
        return torch.randn(*shape, generator=generator(sum(shape)))

    rows = {"G conv 4x4 on the latent": (G.dense, x(2, cfg.z_dim), s2, 4 * 4 * cfg.z_dim),
            "G conv 3x3 at 4": (G.blocks["4"], x(2, w(4), 4, 4), s2, 9 * w(4))}
    for r in (8, 16):
        rows[f"G conv 3x3 up at {r}"] = (G.blocks[str(r)][0], x(2, w(r // 2), r, r), s2,
                                         9 * w(r // 2))
        rows[f"G conv 3x3 at {r}"] = (G.blocks[str(r)][1], x(2, w(r), r, r), s2, 9 * w(r))
        rows[f"D conv 3x3 at {r}"] = (D.blocks[str(r)][0], x(2, w(r), r, r), s2, 9 * w(r))
        rows[f"D conv 3x3 down at {r}"] = (D.blocks[str(r)][1], x(2, w(r), r, r), s2, 9 * w(r))
    for r in (4, 8, 16):
        rows[f"toRGB {r}"] = (G.to_rgb[str(r)], x(2, w(r), r, r), 1.0, w(r))
        rows[f"fromRGB {r}"] = (D.from_rgb[str(r)], x(2, 3, r, r), s2, 3)
    rows["D conv 3x3 after mbstd"] = (D.final_conv, x(2, w(4) + 1, 4, 4), s2, 9 * (w(4) + 1))
    rows["D conv 4x4"] = (D.final_dense, x(2, 16 * w(4)), s2, 16 * w(4))
    rows["D fully-connected linear"] = (D.out, x(2, w(4)), 1.0, w(4))
    return rows


PROGAN_LAYERS = ["G conv 4x4 on the latent", "G conv 3x3 at 4",
                 *[f"{net} conv 3x3{kind} at {r}" for r in (8, 16)
                   for net, kind in [("G", " up"), ("G", ""), ("D", ""), ("D", " down")]],
                 *[f"{name} {r}" for r in (4, 8, 16) for name in ("toRGB", "fromRGB")],
                 "D conv 3x3 after mbstd", "D conv 4x4", "D fully-connected linear"]


@pytest.mark.parametrize("name", PROGAN_LAYERS)
def test_progan_layers_use_he_constants_of_table_2(name):
    """Every layer scales its N(0, 1) weights by c = gain/√fan_in with the fan-in of Table 2's
    layer (§4.1: the He initializer's per-layer constant, applied at run time)."""
    assert sorted(progan_layers()) == sorted(PROGAN_LAYERS)
    layer, x, gain, fan_in = progan_layers()[name]
    assert he_constant(layer, x) == pytest.approx(gain / math.sqrt(fan_in), rel=1e-4)


# --------------------------------------------------------------------------------- BigGAN

# Appendix C's optimizer and §3.1's β; tiny sizes; EMA from step 1 with decay 0.9.
ORTHO_BETA = 1e-4
BG = dict(resolution=32, channels=1, num_classes=3, ch=4, z_dim=16, shared_dim=4, attention=16,
          d_attention=16, batch_size=8, d_steps=2, lr_G=5e-5, lr_D=2e-4, betas=(0.0, 0.999),
          ortho_beta=ORTHO_BETA, ema_decay=0.9, ema_start=1)


def off_diagonal(W: torch.Tensor) -> torch.Tensor:
    """‖W Wᵀ ⊙ (1 − I)‖²_F with one unit per row (Eq. 3 in PyTorch's layout)."""
    W = W.flatten(1)
    gram = W @ W.t()
    return (gram * (1 - torch.eye(len(gram)))).square().sum()


@pytest.fixture(scope="module")
def bg_run():
    r = make(biggan, BG)
    with torch.no_grad():  # off-orthogonal, so that a penalty on it would show
        r.G.shared.weight.copy_(torch.randn(r.G.shared.weight.shape, generator=generator(7)))
    tape = Tape(r)
    return r, tape, run(r, 2)


def test_biggan_two_hinge_d_steps(bg_run):
    """Each step takes two D steps, each E relu(1 − D(x, y)) + E relu(1 + D(G(z, ỹ), ỹ)) on its
    own half of the reals with their labels and its own z, ỹ; the projection D gets ỹ."""
    r, tape, batches = bg_run
    assert [p.opt for p in tape.at(0)] == ["opt_D", "opt_D", "opt_G"]
    reals, labels = batches[0]
    n, draws = r.cfg.batch_size, Draws(r.seed, 0)
    for k, phase in enumerate(tape.at(0)[:2]):
        z = draws.normal(f"z_D{k}", (n, r.cfg.z_dim))
        y = draws.integers(f"y_D{k}", r.cfg.num_classes, (n,))
        with torch.no_grad():
            fakes = phase.G(z, y)
        real = phase.D(reals[k::2], labels[k::2])
        fake = phase.D(fakes, y)
        assert_phase(phase, F.relu(1 - real).mean() + F.relu(1 + fake).mean(), phase.D)


def test_biggan_d_steps_draw_their_own_latents_and_label_the_fakes_with_them():
    """In each D step D judges G(z, ỹ) with the very labels ỹ that G was given, and reals with
    their own labels; every real image is shown once per step; the two D steps and the G step
    draw different z and ỹ (the hinge saturates on these tiny nets, so this is checked here)."""
    r = make(biggan, BG)
    g_in, g_out, d_in = [], [], []
    r.G.register_forward_pre_hook(lambda m, args: g_in.append(args))
    r.G.register_forward_hook(lambda m, args, out: g_out.append(out.detach()))
    r.D.register_forward_pre_hook(lambda m, args: d_in.append(args))
    reals, labels = batch(r.cfg, r.batch_per_step, 0)
    r.train_step(reals, labels)
    assert len(g_in) == 3 and len(d_in) == 5  # 2 × (reals, fakes), then G's fakes
    seen_reals, seen_labels = [], []
    for images, y in d_in:
        made = [j for j, out in enumerate(g_out) if torch.equal(out, images.detach())]
        if made:
            assert torch.equal(y, g_in[made[0]][1]), f"fakes of G call {made[0]}: wrong labels"
        else:
            seen_reals.append(images)
            seen_labels.append(y)
    seen_reals, seen_labels = torch.cat(seen_reals), torch.cat(seen_labels)
    match = [[j for j in range(len(reals)) if torch.equal(reals[j], x)] for x in seen_reals]
    assert sorted(j for (j,) in match) == list(range(len(reals)))
    assert torch.equal(labels[[j for (j,) in match]], seen_labels)
    for i in range(3):
        for j in range(i):
            assert not torch.equal(g_in[i][0], g_in[j][0]), f"G calls {j} and {i} share z"
            assert not torch.equal(g_in[i][1], g_in[j][1]), f"G calls {j} and {i} share labels"


def test_biggan_g_loss_is_hinge_plus_orthogonal_regularization_of_g(bg_run):
    """G's loss is −E D(G(z, y), y) + 1e-4 Σ ‖WWᵀ ⊙ (1 − I)‖²_F over G's weights with ≥ 2 dims,
    the shared class embedding excluded."""
    r, tape, _ = bg_run
    phase = tape.at(0)[2]
    n, draws = r.cfg.batch_size, Draws(r.seed, 0)
    z, y = draws.normal("z_G", (n, r.cfg.z_dim)), draws.integers("y_G", r.cfg.num_classes, (n,))
    loss = -phase.D(phase.G(z, y), y).mean()
    ortho = sum(off_diagonal(p) for name, p in phase.G.named_parameters()
                if p.ndim >= 2 and not name.startswith("shared."))
    assert_phase(phase, loss + ORTHO_BETA * ortho, phase.G)


def test_biggan_adam_and_ema_start(bg_run):
    """Adam lr G 5e-5, D 2e-4, β = (0, 0.999); G_ema copies G before ema_start, then averages."""
    r, tape, _ = bg_run
    assert adam(r.opt_G)[:2] == (5e-5, (0.0, 0.999))
    assert adam(r.opt_D)[:2] == (2e-4, (0.0, 0.999))
    assert adam(r.opt_G)[2] == adam(r.opt_D)[2] == r.cfg.adam_eps
    copy_at_0 = tape.at(1)[0].G  # G after step 0 = G_ema after step 0 (ema_start = 1)
    ema = dict(r.G_ema.named_parameters())
    for (name, p), p0 in zip(r.G.named_parameters(), copy_at_0.parameters()):
        torch.testing.assert_close(ema[name], 0.9 * p0 + 0.1 * p, msg=name)
    for (name, b), e in zip(r.G.named_buffers(), r.G_ema.buffers()):
        assert torch.equal(b, e), name  # BN statistics and SN vectors are copied


# ------------------------------------------------------------------ ADA and DiffAugment

# ADA (Karras et al. 2020, arXiv:2006.06676): every image D sees in training is augmented —
# reals and fakes in the D phase, fakes in the G phase, the reals of R1 — and R1 is the gradient
# w.r.t. the clean reals through the augmentation (ADA's official training). The expected losses
# below call `augment` / `diff_augment` (tested against references in their own files) with the
# draws the recipe must use: Draws(seed, step).generator("augment_" + tag).

ADA_P = 0.8  # far from 0 and 1: most images get some operations, not all


def aug_ref(x: torch.Tensor, seed: int, step: int, tag: str, p: float = ADA_P) -> torch.Tensor:
    return augment(x, p, Draws(seed, step).generator(f"augment_{tag}"))


@pytest.fixture(scope="module")
def sg2_ada_step0():
    r = make(stylegan2, dict(SG2, augment="ada"))
    r.ada.p = torch.tensor(ADA_P, dtype=torch.float64)
    return recorded_first_step(r)


def test_stylegan2_ada_d_loss_sees_augmented_reals_and_fakes(sg2_ada_step0):
    """With ADA, D's loss is E softplus(D(A(G(z)))) + E softplus(−D(A(x))), A drawn per tag."""
    r, tape, reals = sg2_ada_step0
    phase = tape.at(0)[0]
    with torch.no_grad():
        fakes = phase.G(**sg2_inputs(r.cfg, Draws(r.seed, 0), "D", r.cfg.batch_size))
    real = phase.D(aug_ref(reals, r.seed, 0, "D_real"))
    fake = phase.D(aug_ref(fakes, r.seed, 0, "D_fake"))
    assert_phase(phase, F.softplus(fake).mean() + F.softplus(-real).mean(), phase.D)


def test_stylegan2_ada_r1_is_the_gradient_wrt_the_clean_reals(sg2_ada_step0):
    """With ADA, R1 is k · γ/2 · E‖∇_x D(A(x))‖² with x the clean reals (not A(x))."""
    r, tape, reals = sg2_ada_step0
    phase = tape.at(0)[1]
    assert phase.opt == "opt_D"
    x = reals.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(phase.D(aug_ref(x, r.seed, 0, "R1")).sum(), x,
                                  create_graph=True)
    r1 = grad.square().sum((1, 2, 3)).mean()
    assert_phase(phase, r1 * (GAMMA / 2) * r.cfg.r1_interval, phase.D)
    # The other reading (∇ w.r.t. the augmented images) is a different number here.
    y = aug_ref(reals, r.seed, 0, "R1").requires_grad_(True)
    (other,) = torch.autograd.grad(phase.D(y).sum(), y)
    assert not torch.allclose(other.square().sum((1, 2, 3)).mean(), r1, rtol=1e-3)


def test_stylegan2_ada_g_loss_sees_augmented_fakes_and_pl_does_not(sg2_ada_step0):
    """With ADA, G's loss is E softplus(−D(A(G(z)))); the path length sees G's images unchanged."""
    r, tape, _ = sg2_ada_step0
    phase = tape.at(0)[2]
    images = phase.G(**sg2_inputs(r.cfg, Draws(r.seed, 0), "G", r.cfg.batch_size))
    assert_phase(phase, F.softplus(-phase.D(aug_ref(images, r.seed, 0, "G"))).mean(), phase.G)
    pl = tape.at(0)[3]
    cfg, draws, n = r.cfg, Draws(r.seed, 0), r.cfg.batch_size // PL_SHRINK
    y = draws.normal("pl_y", (n, cfg.channels, cfg.resolution, cfg.resolution)) / cfg.resolution
    lengths = sg2_path_lengths(pl.G, sg2_inputs(cfg, draws, "PL", n), y)
    a = pl.pl_mean + PL_DECAY * (lengths.detach().mean() - pl.pl_mean)
    assert_phase(pl, (lengths - a).square().mean() * PL_WEIGHT * cfg.pl_interval, pl.G)


def linear_output(G: nn.Module) -> nn.Module:
    """A copy of G with the papers' linear last layer (output "linear"), the same weights."""
    raw = copy.deepcopy(G)
    raw.cfg = dataclasses.replace(raw.cfg, output="linear")
    return raw


@pytest.mark.parametrize("output", sorted(OUTPUT_REFERENCES))
@pytest.mark.parametrize("module, overrides", [(stylegan2, SG2), (progan, PG)])
def test_d_judges_g_through_its_output_function(module, overrides, output):
    """With output "clamp", "tanh" or "tanh_clamp", the fakes D gets lie in [−1, 1], and G's loss
    and gradient are those of the loss on the function (torch's clamp and tanh) of the
    linear-output network's images (the clamps' gradient is 0 where they cut). The toRGB
    weights are scaled up so that a good share of the linear outputs lie beyond ±1."""
    r, squash = make(module, dict(overrides, output=output)), OUTPUT_REFERENCES[output]
    suffix = "conv.weight" if module is stylegan2 else "weight"  # not StyleGAN2's affine.weight
    with torch.no_grad():
        for name, p in r.G.to_rgb.named_parameters():
            if name.endswith(suffix):
                p.mul_(30)
    tape, seen = Tape(r), []
    r.D.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    reals, labels = batch(r.cfg, r.cfg.batch_size, 0)
    r.train_step(reals, labels)
    assert seen[1].abs().max() <= 1  # the D phase: reals, then fakes
    phase = next(p for p in tape.at(0) if p.opt == "opt_G")
    raw, draws, n = linear_output(phase.G), Draws(r.seed, 0), r.cfg.batch_size
    if module is stylegan2:
        images = raw(**sg2_inputs(r.cfg, draws, "G", n))
        loss = F.softplus(-phase.D(squash(images))).mean()
    else:
        images = raw(draws.normal("z_G", (n, r.cfg.z_dim)), 4, 1.0)
        loss = -phase.D(squash(images), 4, 1.0).mean()
    assert (images.abs() > 1).float().mean() > 0.2
    assert_phase(phase, loss, raw)


@pytest.mark.parametrize("module, overrides", [(stylegan2, SG2), (progan, PG)])
def test_d_sees_augmented_images_and_never_the_clean_ones(module, overrides):
    """With ADA at p = 1 and with DiffAugment, no image D gets in the D and G phases is a clean
    real or a clean fake: each D input differs from the clean batch it came from (ProGAN:
    DiffAugment only, it refuses ADA)."""
    for kind in ("ada", "diffaugment") if module is stylegan2 else ("diffaugment",):
        r = make(module, dict(overrides, augment=kind))
        if r.ada is not None:
            r.ada.p = torch.tensor(1.0, dtype=torch.float64)
        seen, fakes = [], []
        r.D.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
        r.G.register_forward_hook(lambda m, args, out: fakes.append(
            (out[0] if isinstance(out, tuple) else out).detach()))
        reals, labels = batch(r.cfg, r.cfg.batch_size, 0)
        r.train_step(reals, labels)
        clean = [reals if module is stylegan2 else pg_reals(reals, 4, 1.0)] + fakes
        main = seen[:2] + seen[-1:]  # D phase: reals, fakes; the G phase's fakes last
        for x in main:
            assert not any(c.shape == x.shape and torch.equal(c, x) for c in clean), kind


def test_progan_gradient_penalty_interpolates_the_augmented_images():
    """With DiffAugment, ProGAN's D loss is WGAN-GP on A(x) and A(G(z)): the interpolates x̂ lie
    between the augmented reals and fakes (no derivative through A)."""
    r = make(progan, dict(PG, augment="diffaugment"))
    tape = Tape(r)
    reals, labels = batch(r.cfg, 8, 0)
    r.train_step(reals, labels)
    phase, draws, n = tape.at(0)[0], Draws(r.seed, 0), r.cfg.batch_size
    x = diff_augment(pg_reals(reals, 4, 1.0), draws.generator("augment_D_real"))
    with torch.no_grad():
        fakes = diff_augment(phase.G(draws.normal("z_D", (n, r.cfg.z_dim)), 4, 1.0),
                             draws.generator("augment_D_fake"))

    def critic(images):
        return phase.D(images, 4, 1.0)

    real, fake = critic(x), critic(fakes)
    t = draws.uniform("gp", (n,)).view(n, 1, 1, 1)
    x_hat = (x + t * (fakes - x)).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    gp = (grad.flatten(1).norm(dim=1) - 1).square().mean()
    loss = fake.mean() - real.mean() + DRIFT * real.square().mean() + GP_WEIGHT * gp
    assert_phase(phase, loss, phase.D)


@pytest.mark.parametrize("module, overrides, d_batches", [(stylegan2, SG2, 1), (biggan, BG, 2)])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_ada_p_follows_the_controller_rule(monkeypatch, module, overrides, d_batches, sign):
    """ADA §3: with D's real logits all of one sign, r_t = that sign, and every `interval` D
    minibatches p steps by sign(r_t − 0.6) · interval · batch / (ada_kimg · 1000), clamped at 0."""
    interval, kimg = 2, 0.1
    r = make(module, dict(overrides, augment="ada", ada_interval=interval, ada_kimg=kimg))
    forward = type(r.D).forward
    monkeypatch.setattr(type(r.D), "forward",
                        lambda self, x, *a, **k: forward(self, x, *a, **k) * 0 + sign)
    batch_size, minibatches, expected = r.cfg.batch_size, 0, []
    for step in range(3):
        r.train_step(*batch(r.cfg, r.batch_per_step, step))
        minibatches += d_batches
        moves = minibatches // interval
        p = max(0.0, moves * interval * batch_size / (kimg * 1000)) if sign > 0 else 0.0
        expected.append(p)
        assert r.ada.p.item() == pytest.approx(p, abs=1e-12), (step, r.ada.p, expected)
    assert r.ada.rt.item() == sign
    diag = r.diagnostics()
    assert diag["ada_p"] == pytest.approx(expected[-1]) and diag["ada_rt"] == sign
