"""DiffAugment's policy `color,translation,cutout` against per-pixel loops and the ranges of
Zhao et al. 2020, §3 (brightness ±0.5, saturation ×[0, 2], contrast ×[0.5, 1.5], shifts up to
1/8 of the image with zero padding, a cut-out square of half the image side)."""

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.diffaugment import apply_params, diff_augment, draw_params, policy_names


def images(b, c, h, w, seed, dtype=torch.float64):
    return torch.rand(b, c, h, w, generator=generator(seed), dtype=dtype) * 2 - 1


def reference_color(x, brightness, saturation, contrast):
    """Per image: add b; scale each pixel about its channel mean; then about the image mean."""
    out = x.clone()
    for n in range(x.shape[0]):
        y = x[n] + brightness[n]
        for i in range(x.shape[2]):
            for j in range(x.shape[3]):
                m = y[:, i, j].mean()
                y[:, i, j] = m + saturation[n] * (y[:, i, j] - m)
        out[n] = y.mean() + contrast[n] * (y - y.mean())
    return out


def reference_shift(x, ty, tx):
    """out[i, j] = x[i − t_y, j − t_x] where that pixel exists, else 0 (one image)."""
    c, h, w = x.shape
    out = torch.zeros_like(x)
    for i in range(h):
        for j in range(w):
            if 0 <= i - ty < h and 0 <= j - tx < w:
                out[:, i, j] = x[:, i - ty, j - tx]
    return out


def reference_cutout(x, cy, cx):
    """Zero the pixels of the square of side round(size/2) whose centre is (cy, cx) (one image)."""
    c, h, w = x.shape
    sy, sx = int(h / 2 + 0.5), int(w / 2 + 0.5)
    out = x.clone()
    for i in range(h):
        for j in range(w):
            if cy - sy // 2 <= i < cy - sy // 2 + sy and cx - sx // 2 <= j < cx - sx // 2 + sx:
                out[:, i, j] = 0
    return out


@given(seed=seeds, c=st.sampled_from([1, 3]))
@example(seed=0, c=3)
def test_color_matches_per_pixel_formulas(seed, c):
    """Brightness, saturation and contrast are the per-pixel formulas, applied in that order."""
    x = images(3, c, 4, 5, seed)
    g = generator(seed + 1)
    u = torch.rand(3, 3, generator=g, dtype=torch.float64)
    b, s, k = u[0] - 0.5, u[1] * 2, u[2] + 0.5
    out = apply_params(x, {"brightness": b, "saturation": s, "contrast": k})
    torch.testing.assert_close(out, reference_color(x, b, s, k))


@given(seed=seeds, ty=st.integers(-3, 3), tx=st.integers(-3, 3))
@example(seed=0, ty=1, tx=-2)
def test_translation_is_a_zero_padded_shift(seed, ty, tx):
    """A translation by (t_y, t_x) moves every pixel by whole pixels and fills with zeros."""
    x = images(2, 3, 6, 8, seed)
    t = torch.tensor([[ty, tx], [-tx, ty]])
    out = apply_params(x, {"translation": t})
    assert torch.equal(out[0], reference_shift(x[0], ty, tx))
    assert torch.equal(out[1], reference_shift(x[1], -tx, ty))


@given(seed=seeds, cy=st.integers(0, 8), cx=st.integers(0, 8), h=st.sampled_from([7, 8]))
@example(seed=0, cy=4, cx=4, h=8)
@example(seed=0, cy=0, cx=8, h=8)  # a corner: a quarter of the square remains
def test_cutout_zeroes_a_square_of_half_the_side(seed, cy, cx, h):
    """Cutout zeroes exactly the pixels of a half-side square around its centre, nothing else."""
    x = images(1, 2, h, 8, seed)
    out = apply_params(x, {"cutout": torch.tensor([[cy, cx]])})
    assert torch.equal(out[0], reference_cutout(x[0], cy, cx))


def test_a_centred_cutout_removes_a_quarter_of_the_image():
    """A cut-out square of half the side, fully inside, removes a quarter of the pixels."""
    x = torch.ones(1, 1, 16, 16)
    out = apply_params(x, {"cutout": torch.tensor([[8, 8]])})
    assert (out == 0).sum().item() == 16 * 16 // 4


def test_draws_cover_the_papers_ranges():
    """Draws fill brightness [−0.5, 0.5), saturation [0, 2), contrast [0.5, 1.5), shifts ±size/8."""
    p = draw_params(20000, 16, 32, generator(0))
    for name, (lo, hi) in {"brightness": (-0.5, 0.5), "saturation": (0, 2),
                           "contrast": (0.5, 1.5)}.items():
        v = p[name]
        assert lo <= v.min() and v.max() < hi and v.min() < lo + 0.01 and v.max() > hi - 0.01, name
        assert abs(v.mean().item() - (lo + hi) / 2) < 0.01, name
    assert set(p["translation"][:, 0].tolist()) == {-2, -1, 0, 1, 2}  # 16 / 8
    assert set(p["translation"][:, 1].tolist()) == set(range(-4, 5))  # 32 / 8
    assert set(p["cutout"][:, 0].tolist()) == set(range(17))  # centres 0 … 16, side 8
    assert set(p["cutout"][:, 1].tolist()) == set(range(33))


@given(seed=seeds)
def test_two_processes_equal_one(seed):
    """Ranks 0 and 1 of 2, each with half the batch, augment exactly as one process with all."""
    x = images(8, 3, 8, 8, seed, dtype=torch.float32)
    whole = diff_augment(x, generator(seed))
    halves = [diff_augment(part, generator(seed), rank=r, world=2)
              for r, part in enumerate(x.chunk(2))]
    assert torch.equal(torch.cat(halves), whole)


def test_every_image_is_augmented():
    """DiffAugment has no probability: every image changes."""
    x = images(32, 3, 8, 8, seed=2, dtype=torch.float32)
    out = diff_augment(x, generator(3))
    assert ((out - x).flatten(1).abs().amax(1) > 1e-3).all()


def test_gradients_flow_through_every_operation():
    """With fixed draws the policy is twice differentiable in the images (G's grads, R1)."""
    params = {"brightness": torch.tensor([0.2, -0.3]), "saturation": torch.tensor([1.5, 0.4]),
              "contrast": torch.tensor([0.7, 1.2]), "translation": torch.tensor([[1, -1], [0, 1]]),
              "cutout": torch.tensor([[1, 2], [4, 0]])}
    x = images(2, 3, 4, 4, seed=1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: apply_params(x, params), (x,))
    assert torch.autograd.gradgradcheck(lambda x: apply_params(x, params), (x,))


def test_policies_and_errors():
    assert policy_names("color,translation,cutout") == ("color", "translation", "cutout")
    assert set(draw_params(2, 8, 8, generator(0), "translation")) == {"translation"}
    with pytest.raises(ValueError, match="comma-separated subset of color,translation,cutout"):
        policy_names("color,flip")
    with pytest.raises(ValueError, match="rank"):
        diff_augment(torch.zeros(2, 3, 8, 8), generator(0), rank=1, world=1)
    with pytest.raises(ValueError, match=r"\(b, c, h, w\)"):
        diff_augment(torch.zeros(3, 8, 8), generator(0))
