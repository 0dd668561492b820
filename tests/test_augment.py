"""ADA's pipeline against independent references: torch.flip/rot90 and a reflected roll for pixel
blitting (bitwise), a loop-and-bilinear resampler for the general geometric operations, per-pixel
formulas for the colour operations, and the paper's parameter distributions (Appendix B)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.augment import ORDER, apply_params, augment, color_matrix, draw_params, op_names

sizes = st.sampled_from([4, 8, 16])
channels = st.sampled_from([1, 3])


def images(b, c, s, seed, dtype=torch.float64):
    return torch.rand(b, c, s, s, generator=generator(seed), dtype=dtype) * 2 - 1


def full(b, value):
    return torch.full((b,), float(value), dtype=torch.float64)


def sym(k, n):
    """Index k reflected into [0, n) about the borders, edge repeated: … b a | a b … z | z y …."""
    k %= 2 * n
    return k if k < n else 2 * n - 1 - k


def reflected_roll(x, dy, dx):
    """out[i, j] = x[sym(i − dy), sym(j − dx)]: a translation by whole pixels with reflection."""
    h, w = x.shape[-2:]
    rows = torch.tensor([sym(i - dy, h) for i in range(h)])
    cols = torch.tensor([sym(j - dx, w) for j in range(w)])
    return x[..., rows, :][..., cols]


def reference_resample(x, inverse):
    """Bilinear sampling of the reflected image at inverse(u), u the output pixel's offset from
    the centre in pixels (x right, y down), one pixel at a time, in float64."""
    img = x.double().numpy()
    b, c, h, w = img.shape
    out = np.zeros_like(img)
    for n in range(b):
        for i in range(h):
            for j in range(w):
                ux, uy = inverse(n, j - (w - 1) / 2, i - (h - 1) / 2)
                px, py = ux + (w - 1) / 2, uy + (h - 1) / 2
                x0, y0 = math.floor(px), math.floor(py)
                fx, fy = px - x0, py - y0
                for yy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
                    for xx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
                        out[n, :, i, j] += wy * wx * img[n, :, sym(yy, h), sym(xx, w)]
    return torch.from_numpy(out)


def undo_rotation(theta, x, y):
    """Where a rotation by θ counter-clockwise on screen (x right, y down, the sense of
    torch.rot90) takes the content of output position (x, y) from: (x, y) turned clockwise by θ."""
    return math.cos(theta) * x - math.sin(theta) * y, math.sin(theta) * x + math.cos(theta) * y


# -- pixel blitting: exact -------------------------------------------------------------------------

@given(seed=seeds, s=sizes, c=channels)
@example(seed=0, s=8, c=3)
def test_xflip_is_torch_flip(seed, s, c):
    """An x-flip is torch.flip along the width, bit for bit."""
    x = images(2, c, s, seed)
    assert torch.equal(apply_params(x, {"xflip": full(2, 1)}), x.flip(-1))


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rotate90_is_torch_rot90(k, dtype):
    """A rotation by k · 90° is torch.rot90(x, k) over (h, w), bit for bit."""
    x = images(2, 3, 8, seed=k, dtype=dtype)
    assert torch.equal(apply_params(x, {"rotate90": full(2, k)}), torch.rot90(x, k, (-2, -1)))


@given(seed=seeds, s=sizes, t=st.tuples(st.floats(-0.125, 0.125), st.floats(-0.125, 0.125)))
@example(seed=1, s=16, t=(0.125, -0.125))
def test_integer_translation_is_a_reflected_roll(seed, s, t):
    """An integer translation by round(t · size) pixels is a roll with reflection at the borders."""
    x = images(1, 3, s, seed)
    dx, dy = round(t[0] * s), round(t[1] * s)
    out = apply_params(x, {"xint": torch.tensor([t], dtype=torch.float64)})
    assert torch.equal(out, reflected_roll(x, dy, dx))


@given(seed=seeds, k=st.integers(0, 3), t=st.tuples(st.sampled_from([-2, 0, 1]),
                                                     st.sampled_from([-1, 0, 2])))
def test_blits_compose_in_the_paper_order(seed, k, t):
    """Flip, then rotate by k · 90°, then translate: one resampling equals the three in sequence."""
    x = images(1, 3, 16, seed)
    params = {"xflip": full(1, 1), "rotate90": full(1, k),
              "xint": torch.tensor([[t[0] / 16, t[1] / 16]], dtype=torch.float64)}
    expected = reflected_roll(torch.rot90(x.flip(-1), k, (-2, -1)), t[1], t[0])
    assert torch.equal(apply_params(x, params), expected)


# -- general geometric: against the reference resampler -------------------------------------------

@given(seed=seeds, s=st.sampled_from([5, 8]), scale=st.floats(0.5, 2.0))
@example(seed=0, s=8, scale=0.7)
def test_isotropic_scaling_matches_reference(seed, s, scale):
    """Scaling by s samples the input at u / s, bilinearly, reflected at the borders."""
    x = images(2, 3, s, seed)
    expected = reference_resample(x, lambda n, ux, uy: (ux / scale, uy / scale))
    torch.testing.assert_close(apply_params(x, {"scale": full(2, scale)}), expected)


@given(seed=seeds, theta=st.floats(-math.pi, math.pi))
@example(seed=0, theta=0.3)
def test_rotation_matches_reference(seed, theta):
    """A rotation by θ samples the input at the output position turned back by θ."""
    x = images(2, 1, 8, seed)
    expected = reference_resample(x, lambda n, ux, uy: undo_rotation(theta, ux, uy))
    torch.testing.assert_close(apply_params(x, {"rotate_pre": full(2, theta)}), expected)


@given(seed=seeds)
def test_general_geometric_ops_compose_in_the_paper_order(seed):
    """Scale, rotate, stretch, rotate, translate: one sampling at the composed inverse map."""
    g = generator(seed)
    s, a = (2 ** (0.3 * torch.randn(2, generator=g, dtype=torch.float64))).tolist()
    r1, r2 = (torch.rand(2, generator=g, dtype=torch.float64) * 6 - 3).tolist()
    t = (torch.randn(2, generator=g, dtype=torch.float64) * 0.125).tolist()
    x = images(1, 3, 8, seed)

    def inverse(n, ux, uy):  # undo the last operation first
        ux, uy = ux - t[0] * 8, uy - t[1] * 8
        ux, uy = undo_rotation(r2, ux, uy)
        ux, uy = ux / a, uy * a
        ux, uy = undo_rotation(r1, ux, uy)
        return ux / s, uy / s

    params = {"scale": full(1, s), "rotate_pre": full(1, r1), "aniso": full(1, a),
              "rotate_post": full(1, r2), "xfrac": torch.tensor([t], dtype=torch.float64)}
    torch.testing.assert_close(apply_params(x, params), reference_resample(x, inverse))


def test_a_quarter_turn_rotation_is_rot90():
    """A general rotation by π/2 equals the exact 90° rotation, up to rounding."""
    x = images(2, 3, 8, seed=3)
    out = apply_params(x, {"rotate_post": full(2, math.pi / 2)})
    torch.testing.assert_close(out, torch.rot90(x, 1, (-2, -1)))


# -- colour: against per-pixel formulas -----------------------------------------------------------

def luma(x):
    """Per pixel, the projection onto v = (1, …, 1)/√c: the channel mean, in every channel."""
    return x.mean(1, keepdim=True).expand_as(x)


@given(seed=seeds, b=st.floats(-1, 1), c=st.floats(0.25, 4), s=st.floats(0.1, 4))
@example(seed=0, b=0.2, c=2.0, s=0.5)
def test_brightness_contrast_saturation_match_per_pixel_formulas(seed, b, c, s):
    """Brightness adds b, contrast multiplies by c, saturation scales the distance to grey."""
    x = images(2, 3, 4, seed)
    torch.testing.assert_close(apply_params(x, {"brightness": full(2, b)}), x + b)
    torch.testing.assert_close(apply_params(x, {"contrast": full(2, c)}), c * x)
    torch.testing.assert_close(apply_params(x, {"saturation": full(2, s)}),
                               luma(x) + s * (x - luma(x)))


@given(seed=seeds, theta=st.floats(-math.pi, math.pi))
def test_hue_rotation_keeps_luma_and_chroma_length(seed, theta):
    """A hue rotation keeps every pixel's channel mean and its distance to the grey axis."""
    x = images(2, 3, 4, seed)
    out = apply_params(x, {"hue": full(2, theta)})
    torch.testing.assert_close(out.mean(1), x.mean(1))
    torch.testing.assert_close((out - luma(out)).norm(dim=1), (x - luma(x)).norm(dim=1))


def test_hue_rotation_by_a_third_turn_permutes_channels():
    """Rotating by 2π/3 about the grey axis maps R → G → B → R (a cyclic channel shift)."""
    x = images(2, 3, 4, seed=5)
    out = apply_params(x, {"hue": full(2, 2 * math.pi / 3)})
    torch.testing.assert_close(out, x.roll(1, dims=1))


@given(seed=seeds, c=channels)
def test_luma_flip_is_an_involution(seed, c):
    """Luma flip negates the grey component and keeps the colour; twice, it is the identity."""
    x = images(2, c, 4, seed)
    once = apply_params(x, {"lumaflip": full(2, 1)})
    torch.testing.assert_close(once, x - 2 * luma(x))
    torch.testing.assert_close(apply_params(once, {"lumaflip": full(2, 1)}), x)


@given(seed=seeds)
def test_color_ops_compose_in_the_paper_order(seed):
    """The one colour matrix equals brightness, contrast, luma flip, hue, saturation in sequence."""
    g = generator(seed)
    b, theta = (torch.randn(2, generator=g, dtype=torch.float64)).tolist()
    c, s = (2 ** torch.randn(2, generator=g, dtype=torch.float64)).tolist()
    x = images(1, 3, 4, seed)
    y = c * (x + b)
    y = y - 2 * luma(y)
    hue = torch.stack([apply_params(y[:, :, i:i + 1, j:j + 1], {"hue": full(1, theta)})
                       for i in range(4) for j in range(4)], -1).view_as(y)
    y = luma(hue) + s * (hue - luma(hue))
    params = {"brightness": full(1, b), "contrast": full(1, c), "lumaflip": full(1, 1),
              "hue": full(1, theta), "saturation": full(1, s)}
    torch.testing.assert_close(apply_params(x, params), y)


def test_grey_images_get_the_luma_subset():
    """On grey images hue and saturation are the identity; brightness, contrast, luma flip act."""
    x = images(2, 1, 4, seed=2)
    assert torch.equal(apply_params(x, {"hue": full(2, 1.0), "saturation": full(2, 3.0)}), x)
    m = color_matrix({"brightness": full(2, 0.5), "contrast": full(2, 2.0),
                      "lumaflip": full(2, 1)}, 2, 1, torch.empty((), dtype=torch.float64))
    torch.testing.assert_close(m[0], torch.tensor([[-2.0, -1.0], [0.0, 1.0]], dtype=torch.float64))


# -- probability, randomness, gradients ------------------------------------------------------------

def test_p_zero_is_the_identity():
    """At p = 0 every image comes back bit for bit, whether p is a number or a tensor."""
    x = images(4, 3, 8, seed=0, dtype=torch.float32)
    assert augment(x, 0.0, generator(1)) is x
    assert augment(x, torch.tensor(0.0), generator(1)) is x
    # A device tensor p is not read on the host: the pipeline runs, with identity parameters
    # (at a size whose pixel centres are not exact in grid_sample's coordinates, too).
    for size in (8, 7):
        x = images(4, 3, size, seed=0, dtype=torch.float32)
        assert torch.equal(apply_params(x, draw_params(4, 0.0, generator(1))), x)


@pytest.mark.parametrize("ops", ["bgc", "g", "c", "gc"])
def test_p_one_always_augments(ops):
    """At p = 1 every image differs from its input (each op set has a continuous operation)."""
    x = images(64, 3, 8, seed=1, dtype=torch.float32)
    out = augment(x, 1.0, generator(2), ops=ops)
    assert ((out - x).flatten(1).abs().amax(1) > 1e-4).all()


def test_each_op_is_applied_with_probability_p():
    """Each op acts on a fraction p of the images (rotations p_rot each, p at least once)."""
    n, p = 40000, 0.3
    params = draw_params(n, p, generator(0))
    acts = {name: (v != (1.0 if name in ("scale", "aniso", "contrast", "saturation") else 0.0))
            for name, v in params.items()}
    acts = {name: a.any(1) if a.dim() == 2 else a for name, a in acts.items()}
    tol = 5 * math.sqrt(p * (1 - p) / n)
    p_rot = 1 - math.sqrt(1 - p)
    expected = {"xflip": p / 2, "rotate90": p * 3 / 4, "lumaflip": p / 2,
                "rotate_pre": p_rot, "rotate_post": p_rot}
    for name, a in acts.items():
        if name == "xint":  # round(t · size) is decided later; t itself is drawn when applied
            continue
        assert abs(a.double().mean().item() - expected.get(name, p)) < tol, name
    rotated = (acts["rotate_pre"] | acts["rotate_post"]).double().mean().item()
    assert abs(rotated - p) < tol


def test_parameters_follow_the_papers_distributions():
    """At p = 1 the parameters have Appendix B's distributions (σ in octaves for lognormals)."""
    n = 40000
    v = {k: t.double() for k, t in draw_params(n, 1.0, generator(3)).items()}
    close = lambda a, b, tol: abs(a - b) < tol  # noqa: E731
    assert set(v["xflip"].unique().tolist()) == {0.0, 1.0}
    assert set(v["rotate90"].unique().tolist()) == {0.0, 1.0, 2.0, 3.0}
    assert v["xint"].abs().max() <= 0.125 and close(v["xint"].abs().mean().item(), 0.0625, 0.002)
    for name, octaves in [("scale", 0.2), ("aniso", 0.2), ("contrast", 0.5), ("saturation", 1.0)]:
        log2 = v[name].log2()
        assert close(log2.mean().item(), 0, 0.03 * octaves) and close(log2.std().item(), octaves,
                                                                      0.03 * octaves), name
    for name in ("rotate_pre", "rotate_post", "hue"):
        assert v[name].abs().max() <= math.pi and close(v[name].abs().mean().item(), math.pi / 2,
                                                        0.03), name
    assert close(v["xfrac"].std().item(), 0.125, 0.003)
    assert close(v["brightness"].std().item(), 0.2, 0.005)


@given(seed=seeds, p=st.sampled_from([0.3, 1.0]))
def test_two_processes_equal_one(seed, p):
    """Ranks 0 and 1 of 2, each with half the batch, augment exactly as one process with all."""
    x = images(8, 3, 8, seed, dtype=torch.float32)
    whole = augment(x, p, generator(seed))
    halves = [augment(part, p, generator(seed), rank=r, world=2)
              for r, part in enumerate(x.chunk(2))]
    assert torch.equal(torch.cat(halves), whole)


def test_gradients_flow_through_every_operation():
    """With fixed draws the pipeline is twice differentiable in the images (G's grads, R1)."""
    b = 2
    params = {"xflip": full(b, 1), "rotate90": full(b, 1), "xint": torch.full((b, 2), 0.1),
              "scale": full(b, 1.2), "rotate_pre": full(b, 0.4), "aniso": full(b, 0.9),
              "rotate_post": full(b, -0.7), "xfrac": torch.full((b, 2), 0.05),
              "brightness": full(b, 0.1), "contrast": full(b, 1.3), "lumaflip": full(b, 1),
              "hue": full(b, 0.5), "saturation": full(b, 0.7)}
    assert set(params) == set(ORDER)
    x = images(b, 3, 4, seed=4).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: apply_params(x, params), (x,))
    assert torch.autograd.gradgradcheck(lambda x: apply_params(x, params), (x,))


def test_augmentations_below_the_threshold_do_not_leak():
    """At p = 0.5, below the paper's ≈ 0.8, the mean augmented image is nearer the image than any
    of its flips, rotations or its luma flip (the clean image stays identifiable); at p = 1 an
    x-flip hides which side was which."""
    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    img = torch.stack([xx / 7, yy / 7, (xx * yy) / 49]) * 1.6 - 0.8  # no symmetry at all
    img[:, 1:3, 1:3] = 1.0
    x = img.expand(8000, 3, 8, 8)
    mean = augment(x, 0.5, generator(7)).mean(0)
    others = [torch.rot90(f, k, (-2, -1)) for f in (img, img.flip(-1)) for k in range(4)][1:]
    others.append(img - 2 * img.mean(0, keepdim=True))  # luma-flipped
    assert all((mean - img).norm() < (mean - other).norm() for other in others)
    flipped = augment(x, 1.0, generator(8), ops=["xflip"]).mean(0)
    assert (flipped - flipped.flip(-1)).norm() < 0.05 * (img - img.flip(-1)).norm()


def test_half_precision_images_keep_their_dtype():
    """bf16 images are resampled in fp32 and returned in bf16."""
    x = images(2, 3, 8, seed=0, dtype=torch.float32).bfloat16()
    out = augment(x, 1.0, generator(0))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_errors_name_the_problem():
    x = images(2, 3, 8, seed=0, dtype=torch.float32)
    with pytest.raises(ValueError, match="'b'.*'g'.*'c'"):
        augment(x, 0.5, generator(0), ops="bgx")
    with pytest.raises(ValueError, match="unknown augmentation ops"):
        op_names(["xflip", "blur"])
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        augment(x, 1.5, generator(0))
    with pytest.raises(ValueError, match="rank"):
        augment(x, 0.5, generator(0), rank=2, world=2)
    with pytest.raises(ValueError, match="square"):
        augment(torch.zeros(1, 3, 8, 4), 0.5, generator(0))
    with pytest.raises(ValueError, match="hue rotation needs 1 .* or 3"):
        augment(torch.zeros(1, 2, 8, 8), 0.5, generator(0))
    assert op_names("cb") == op_names("bc") == ORDER[:3] + ORDER[-5:]
