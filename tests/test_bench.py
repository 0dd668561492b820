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
