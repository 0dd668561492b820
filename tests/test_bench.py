"""The benchmark's FLOP count: the analytic count behind its "effective GFLOP/s" column."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.bench import CountFlops  # noqa: E402


def counted(fn) -> int:
    counter = CountFlops()
    with counter:
        fn()
    return counter.total


def test_reference_conv_forward_and_backward_is_two_flops_per_multiply_add_three_times():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=g, requires_grad=True)
    w = torch.randn(5, 3, 3, 3, generator=g, requires_grad=True)
    forward = 2 * 2 * 5 * 8 * 8 * 3 * 3 * 3  # 2 · batch · out · pixels · (in · k²)
    assert counted(lambda: F.conv2d(x, w, padding=1)) == forward
    assert counted(lambda: F.conv2d(x, w, padding=1).sum().backward()) == 3 * forward


@settings(max_examples=10, deadline=None)
@given(groups=st.integers(1, 4), cin=st.integers(1, 3), cout=st.integers(1, 3),
       transposed=st.booleans())
def test_a_grouped_conv_counts_as_its_groups_run_one_by_one(groups, cin, cout, transposed):
    """StyleGAN2's per-sample weights fold the batch into the groups: same work, same count
    (torch's own formula counts the weight gradient `groups` times over)."""
    g = torch.Generator().manual_seed(groups * 100 + cin * 10 + cout)
    x = torch.randn(1, groups * cin, 6, 6, generator=g, requires_grad=True)
    if transposed:
        w = torch.randn(groups * cin, cout, 3, 3, generator=g, requires_grad=True)
        conv = lambda x, w, groups: F.conv_transpose2d(x, w, stride=2, groups=groups)  # noqa: E731
    else:
        w = torch.randn(groups * cout, cin, 3, 3, generator=g, requires_grad=True)
        conv = lambda x, w, groups: F.conv2d(x, w, padding=1, groups=groups)  # noqa: E731
    grouped = counted(lambda: conv(x, w, groups).sum().backward())
    xs, ws = x.detach().chunk(groups, 1), w.detach().chunk(groups, 0)
    one_by_one = sum(counted(lambda: conv(xi.requires_grad_(), wi.requires_grad_(), 1)
                             .sum().backward()) for xi, wi in zip(xs, ws))
    assert grouped == one_by_one


def test_channels_last_changes_the_layout_not_the_numbers(monkeypatch):
    """A StyleGAN2 and a BigGAN training step with channels_last weights and images (bench.py
    --channels-last) give the losses, the gradients of G and D (Adam's first moments, β1 = 0)
    and the updated weights of the NCHW step (fp32, to rounding).

    StyleGAN2 with CUDA's choice of modulated-conv path (modulation.grouped_rule: the
    modulated-activation path where gradients flow, per-sample weights where none do), which
    the GPU row runs. On this CPU, per-sample weights with channels_last give a different
    gradient for the styles of a 1×1 modulated convolution fed by a 3×3 one (every op in
    between is layout-independent; cause not found), so channels_last is measured, not used in
    training."""
    from benchmarks.bench import SMOKE_SUITE, build, to_channels_last
    from nanogan import modulation

    monkeypatch.setattr(modulation, "grouped_rule",
                        lambda device, numel, pixels, needs_grad: not needs_grad)
    for name in ("stylegan2-smoke", "biggan-smoke"):
        results = []
        for channels_last in (False, True):
            _, cfg, recipe = build(name, SMOKE_SUITE, "cpu")
            g = torch.Generator().manual_seed(1)
            reals = torch.rand(recipe.batch_per_step, cfg.channels, cfg.resolution,
                               cfg.resolution, generator=g) * 2 - 1
            labels = torch.randint(max(getattr(cfg, "num_classes", 0), 1),
                                   (recipe.batch_per_step,), generator=g)
            if channels_last:
                to_channels_last(recipe)
                reals = reals.contiguous(memory_format=torch.channels_last)
                for net in (recipe.G, recipe.D):
                    conv = next(p for p in net.parameters() if p.dim() == 4 and p.shape[-1] > 1)
                    assert conv.is_contiguous(memory_format=torch.channels_last)
            losses = recipe.train_step(reals, labels)
            moments = [opt.state[p]["exp_avg"].clone() for opt in (recipe.opt_G, recipe.opt_D)
                       for group in opt.param_groups for p in group["params"] if p in opt.state]
            weights = [p.detach().clone() for net in (recipe.G, recipe.D)
                       for p in net.parameters()]
            results.append(({k: float(v) for k, v in losses.items()}, moments, weights))
        (plain, plain_m, plain_w), (nhwc, nhwc_m, nhwc_w) = results
        assert plain.keys() == nhwc.keys() and len(plain_m) == len(nhwc_m) > 0
        for k in plain:
            assert abs(plain[k] - nhwc[k]) <= 1e-4 * max(1.0, abs(plain[k])), (name, k)
        for a, b in zip(plain_m + plain_w, nhwc_m + nhwc_w):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_ada_runs_reads_a_process_cpu_time_and_a_snapshot_kimg():
    """ada_runs' budget reads a process's utime + stime from /proc (this process: as os.times
    says), and a snapshot's name gives its kimg."""
    import os
    from pathlib import Path

    from benchmarks.ada_runs import cpu_seconds, snapshot_kimg

    sum(i * i for i in range(300_000))  # some CPU time of our own
    before = os.times()
    measured = cpu_seconds(os.getpid())
    after = os.times()
    assert before.user + before.system - 0.05 <= measured <= after.user + after.system + 0.05
    assert snapshot_kimg(Path("snapshots/snapshot-000120.safetensors")) == 120
    assert snapshot_kimg(Path("snapshot-000000.032.safetensors")) == 0.032
