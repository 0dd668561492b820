"""The CUDA paths against the CPU: kernels, penalties under autocast, cross-process BatchNorm
(two gloo processes on one GPU), training steps of every model in fp32, bf16 and fp16, and exact
resumption. Marked `cuda` (`pytest -m cuda`); without a GPU every test here is skipped with the
reason. `benchmarks/gpu_check.sh` runs them.

Tolerances, stated once. Kernels and penalties compare with TF32 off (full fp32 products), so
fp32 CUDA and CPU agree to rounding (rtol 1e-4). Under autocast the comparison is with fp32 and
the tolerance is the dtype's: a penalty's relative error under fp16 (10 mantissa bits) ≤ 2e-2,
under bf16 (7 bits) ≤ 1e-1 — through a D forward, a first and (R1, path length) a second
backward, each a few roundings of ~2^-11 resp. 2^-8 relative.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from strategies import generator
from test_conditional_bn import check_halves_match_the_whole_batch
from test_modulation import draw, reference_modulated_conv
from test_recipe import SMALL, data, small_recipe
from test_upfirdn import reference_upfirdn

from nanogan import checkpoint, models
from nanogan.modulation import modulated_conv2d
from nanogan.path_length import path_lengths
from nanogan.penalties import gradient_penalty, r1_penalty
from nanogan.upfirdn import make_kernel, upfirdn2d

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.bench import make_recipe  # noqa: E402  (the fp16 loss-scaling wrapper)

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="needs a CUDA GPU (torch.cuda.is_available() is False)")]
MODELS = [m for m in SMALL if m in models.MODELS]
PENALTY_RTOL = {torch.float16: 2e-2, torch.bfloat16: 1e-1}


@pytest.fixture(autouse=True)
def full_fp32():
    """TF32 off while comparing with fp32 references; previous settings restored."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize("resample", ["none", "up", "down"])
def test_modulated_conv_matches_the_reference_on_both_paths(grouped, resample):
    """Both modulated-convolution paths on CUDA equal Eq. 1–3 computed in float64 on the CPU."""
    x, weight, styles = draw(0, 3, 8, 6, 3, 8)
    up, down = int(resample == "up") + 1, int(resample == "down") + 1
    expected = reference_modulated_conv(x, weight, styles, True, up, down)
    got = modulated_conv2d(x.cuda(), weight.cuda(), styles.cuda(), up=up, down=down,
                           grouped=grouped)
    torch.testing.assert_close(got.cpu().double(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("up, down, pad", [(1, 1, (1, 2, 2, 1)), (2, 1, (2, 1, 2, 1)),
                                           (1, 2, (1, 1, 1, 1)), (2, 1, (-1, 3, 0, 2)),
                                           (1, 2, (0, 3, 2, 0))])
def test_upfirdn_matches_the_reference(up, down, pad):
    """FIR resampling on CUDA (transposed-conv and conv paths) equals the float64 tap loop."""
    x = torch.randn(2, 3, 9, 7, generator=generator(1))
    kernel = make_kernel()
    expected = reference_upfirdn(x, torch.outer(kernel, kernel), up, down, pad, up**2)
    got = upfirdn2d(x.cuda(), kernel.cuda(), up=up, down=down, pad=pad, gain=up**2)
    torch.testing.assert_close(got.cpu().double(), expected, rtol=1e-5, atol=1e-5)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12)).item()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_penalties_under_autocast_stay_near_fp32(dtype):
    """R1 (StyleGAN2's D), the gradient penalty (ProGAN's D) and path lengths (StyleGAN2's G)
    computed with the networks under autocast differ from fp32 by at most the dtype's tolerance.
    (The recipes run them outside autocast; this bounds the harm if autocast ever reaches them.)"""
    sg = small_recipe("stylegan2", device="cuda")
    pg = small_recipe("progan", device="cuda")
    g = generator(2)
    reals = (torch.rand(8, 1, 8, 8, generator=g) * 2 - 1).cuda()
    fakes = (torch.rand(8, 1, 8, 8, generator=g) * 2 - 1).cuda()
    t = torch.rand(8, generator=g).cuda()
    z = torch.randn(8, sg.cfg.z_dim, generator=g).cuda()
    y = torch.randn(8, 1, 8, 8, generator=g).cuda() / 8

    def penalties():
        x = reals.clone().requires_grad_(True)
        r1 = r1_penalty(sg.D(x), x)
        gp = gradient_penalty(lambda v: pg.D(v, 8, 1.0), reals, fakes, t)
        images, ws = sg.G(z, noise_mode="const", return_ws=True)
        return r1, gp, path_lengths(images, ws, y).mean()

    reference = penalties()
    with torch.autocast("cuda", dtype=dtype):
        mixed = penalties()
    for name, a, b in zip(("r1", "gp", "pl"), mixed, reference):
        assert torch.isfinite(a), name
        assert relative_error(a, b) <= PENALTY_RTOL[dtype], (name, a.item(), b.item())


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
@pytest.mark.parametrize("momentum", [0.1, None])
def test_two_processes_on_cuda_normalize_with_the_whole_batch(tmp_path, momentum):
    """CrossReplicaBatchNorm2d (what BigGAN trains with on several GPUs) in two gloo processes
    on cuda:0 tensors, half a batch each (gloo accepts CUDA tensors; NCCL refuses two ranks on
    one GPU), against BatchNorm2d on the whole batch on the CPU: outputs, input and parameter
    gradients, running statistics. The CPU test of test_conditional_bn on CUDA; a rank
    normalizing with its own half's statistics fails it."""
    check_halves_match_the_whole_batch(tmp_path, momentum, "cuda:0", rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("precision", ["no", "bf16", "fp16"])
@pytest.mark.parametrize("model", MODELS)
def test_training_steps_on_cuda_give_finite_losses(model, precision):
    """A few steps of every model on CUDA (R1/path length due on step 0 and 2) in fp32, bf16 and
    fp16 (with loss scaling) report finite losses and keep fp32 weights."""
    module = models.MODELS[model]
    cfg = dataclasses.replace(module.PRESETS["tiny"], **SMALL[model])
    torch.manual_seed(0)
    r = make_recipe(module, cfg, "cuda", precision, seed=3)
    for step in range(3):
        reals, labels = data(r, step)
        stats = r.train_step(reals.cuda(), labels.cuda())
        assert all(torch.isfinite(v).all() for v in stats.values()), (step, stats)
    assert all(p.dtype == torch.float32 and p.is_cuda for p in r.G.parameters())


def trained(r, steps: range):
    for step in steps:
        reals, labels = data(r, step)
        r.train_step(reals.cuda(), labels.cuda())
    return r


@pytest.mark.parametrize("model", MODELS)
def test_resume_on_cuda_is_exact(model, tmp_path):
    """k steps, save, load into a fresh recipe, m steps = k + m steps straight through, on CUDA:
    bitwise with deterministic algorithms (cuDNN deterministic, no autotuning); where torch warns
    that an op has no deterministic CUDA kernel, within rtol 1e-4 / atol 1e-5 instead."""
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.are_deterministic_algorithms_enabled())
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            straight = trained(small_recipe(model, device="cuda"), range(6))
            first = trained(small_recipe(model, device="cuda"), range(3))
            first.before_sampling()
            path = tmp_path / "checkpoint.safetensors"
            checkpoint.save(path, first.state_dict(), kind="training", model=model, config={})
            torch.manual_seed(1)
            resumed = models.MODELS[model].Recipe(first.cfg, seed=99, device="cuda")
            resumed.load_state_dict(checkpoint.load(path).state)
            trained(resumed, range(3, 6))
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[:2]
        torch.use_deterministic_algorithms(saved[2])
    nondeterministic = [str(w.message) for w in caught if "deterministic" in str(w.message)]
    a, skeleton_a = checkpoint.flatten(straight.state_dict())
    b, skeleton_b = checkpoint.flatten(resumed.state_dict())
    assert skeleton_a == skeleton_b and a.keys() == b.keys()
    for k in a:
        if nondeterministic:
            torch.testing.assert_close(b[k].cpu(), a[k].cpu(), rtol=1e-4, atol=1e-5,
                                       msg=lambda m, k=k: f"{k}: {m} ({nondeterministic[0]})")
        else:
            assert torch.equal(a[k].cpu(), b[k].cpu()), k
