"""Sliced Wasserstein distance (ProGAN §5) against references written from its definition."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.swd import (collapse_pyramid, descriptors, laplacian_pyramid, normalize_descriptors,
                         pyramid_down, pyramid_up, sliced_wasserstein, swd)

TAPS = [1, 4, 6, 4, 1]


def _mirror(i, n):
    """Reflect an index about the border pixels (the border itself is not repeated)."""
    return -i if i < 0 else 2 * (n - 1) - i if i >= n else i


def reference_blur(x):
    """Σ_uv k_u k_v x[i+u−2, j+v−2] / 256 with mirrored indices, one output pixel at a time."""
    x = x.double()
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    for i in range(h):
        for j in range(w):
            for u in range(5):
                for v in range(5):
                    out[..., i, j] += TAPS[u] * TAPS[v] / 256 * x[..., _mirror(i + u - 2, h),
                                                                  _mirror(j + v - 2, w)]
    return out


def reference_pyramid(x, num_levels):
    """G_{l+1} = REDUCE(G_l), L_l = G_l − EXPAND(G_{l+1}), the residual G last."""
    gaussians = [x.double()]
    for _ in range(num_levels - 1):
        gaussians.append(reference_blur(gaussians[-1])[..., ::2, ::2])
    bands = []
    for fine, coarse in zip(gaussians, gaussians[1:]):
        zeros = torch.zeros_like(fine)
        zeros[..., ::2, ::2] = coarse
        bands.append(fine - 4 * reference_blur(zeros))
    return bands + [gaussians[-1]]


def reference_sliced_wasserstein(a, b, directions, seed):
    """Loop over the unit directions θ the function draws: mean_i |sort(aθ)_i − sort(bθ)_i|."""
    theta = torch.randn(a.shape[1], directions, generator=generator(seed), dtype=torch.float64)
    total = 0.0
    for k in range(directions):
        unit = theta[:, k] / theta[:, k].norm()
        pa, pb = sorted((a.double() @ unit).tolist()), sorted((b.double() @ unit).tolist())
        total += sum(abs(p - q) for p, q in zip(pa, pb)) / len(pa)
    return total / directions


def images(seed, n=8, c=3, size=32):
    return torch.rand(n, c, size, size, generator=generator(seed)) * 2 - 1


@settings(max_examples=3)
@given(seed=seeds, size=st.sampled_from([8, 12, 16]), levels=st.integers(1, 3))
def test_pyramid_matches_reference(seed, size, levels):
    x = images(seed, n=2, c=2, size=size).double()
    for got, expected in zip(laplacian_pyramid(x, levels), reference_pyramid(x, levels)):
        torch.testing.assert_close(got, expected)


@given(seed=seeds, n=st.integers(2, 20), d=st.integers(1, 6))
def test_sliced_wasserstein_matches_reference(seed, n, d):
    a = torch.randn(n, d, generator=generator(seed), dtype=torch.float64)
    b = torch.randn(n, d, generator=generator(seed + 1), dtype=torch.float64) + 0.5
    got = sliced_wasserstein(a, b, directions=12, generator=generator(seed + 2), chunk=5)
    expected = reference_sliced_wasserstein(a, b, 12, seed + 2)
    torch.testing.assert_close(got.item(), expected)


@given(seed=seeds, n=st.integers(1, 50))
def test_one_dimensional_data_give_the_exact_wasserstein_distance(seed, n):
    """In one dimension every direction is ±1, so SWD is the exact W1 distance mean |sort(a) − sort(b)|."""
    a = torch.randn(n, 1, generator=generator(seed), dtype=torch.float64)
    b = torch.rand(n, 1, generator=generator(seed + 1), dtype=torch.float64) * 3
    exact = (a.flatten().sort().values - b.flatten().sort().values).abs().mean()
    torch.testing.assert_close(sliced_wasserstein(a, b, directions=7, generator=generator(seed)),
                               exact)


def test_normalize_matches_reference():
    desc = torch.randn(40, 3 * 4, generator=generator(0), dtype=torch.float64) * 3 + 1
    got = normalize_descriptors(desc, channels=3)
    for c in range(3):
        block = desc[:, 4 * c : 4 * c + 4]
        expected = (block - block.mean()) / (block - block.mean()).square().mean().sqrt()
        torch.testing.assert_close(got[:, 4 * c : 4 * c + 4], expected)


@settings(max_examples=3)
@given(seed=seeds)
def test_descriptors_are_patches_of_their_own_image(seed):
    """Every descriptor is a 7×7×c neighbourhood, fully inside the level, of the image it is listed under."""
    x = images(seed, n=3, c=2, size=32)
    levels = laplacian_pyramid(x, 2)
    for level, desc in zip(levels, descriptors(x, per_image=5, generator=generator(seed))):
        patches = level.unfold(2, 7, 1).unfold(3, 7, 1)  # (b, c, y, x, 7, 7): every position
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(3, -1, 2 * 49)
        assert desc.shape == (3 * 5, 2 * 49)
        for i, row in enumerate(desc):
            assert (patches[i // 5] == row).all(dim=1).any()


def test_pyramid_reconstructs_the_image_exactly():
    """Collapsing the Laplacian pyramid (expand the residual, add back each band) returns the image."""
    x = images(3, n=2, size=64).double()
    torch.testing.assert_close(collapse_pyramid(laplacian_pyramid(x, 3)), x, rtol=0, atol=1e-12)
    ones = torch.ones(1, 3, 16, 16)
    torch.testing.assert_close(pyramid_up(pyramid_down(ones)), ones)  # constants pass unchanged


@settings(max_examples=3)
@given(seed=seeds)
def test_zero_for_identical_sets(seed):
    """Two identical image sets get the same descriptors, so every level's SWD is zero."""
    x = images(seed)
    result = swd(x, x.clone(), per_image=16, directions=32, generator=generator(seed))
    assert result == {"swd_32": 0.0, "swd_16": 0.0, "swd_avg": 0.0}


@settings(max_examples=3)
@given(seed=seeds)
def test_grows_with_a_colour_shift(seed):
    """Shifting the colour of half the images by a growing amount makes SWD grow monotonically."""
    x = images(seed, n=16)
    scores = []
    for shift in (0.0, 0.1, 0.2, 0.4, 0.8):
        fake = x.clone()
        fake[:8, 0] += shift
        fake[:8, 2] -= shift
        result = swd(x, fake, per_image=16, directions=64, generator=generator(seed))
        scores.append(result["swd_16"])
    assert scores[0] == 0.0
    assert all(lo < hi for lo, hi in zip(scores, scores[1:])), scores


def test_blind_to_a_global_colour_change():
    """Each set is normalised by its own per-channel mean and std, so one affine colour change of a whole set is invisible."""
    x = images(4, n=16)
    gain, offset = torch.tensor([0.5, 1.5, 0.8]), torch.tensor([0.3, -0.2, 0.0])
    fake = x * gain.view(1, 3, 1, 1) + offset.view(1, 3, 1, 1)
    kwargs = dict(per_image=16, directions=64, generator=generator(0))
    assert swd(x, fake, **kwargs)["swd_avg"] < 1e-2
    kwargs["generator"] = generator(0)
    assert swd(x, images(5, n=16), **kwargs)["swd_avg"] > 1


@settings(max_examples=3)
@given(seed=seeds)
def test_symmetric(seed):
    """SWD(real, fake) equals SWD(fake, real) for the same seed."""
    x, y = images(seed), images(seed + 1)
    kwargs = dict(per_image=16, directions=32)
    assert swd(x, y, generator=generator(seed), **kwargs) == swd(y, x, generator=generator(seed),
                                                                 **kwargs)


@given(seed=seeds, n=st.integers(2, 30))
def test_invariant_to_the_order_of_descriptors(seed, n):
    """Reordering either descriptor set leaves the sliced Wasserstein distance unchanged."""
    a = torch.randn(n, 5, generator=generator(seed), dtype=torch.float64)
    b = torch.randn(n, 5, generator=generator(seed + 1), dtype=torch.float64)
    perm = torch.randperm(n, generator=generator(seed + 2))
    first = sliced_wasserstein(a, b, directions=16, generator=generator(seed))
    torch.testing.assert_close(
        sliced_wasserstein(a[perm], b.flip(0), directions=16, generator=generator(seed)), first)


def test_descriptors_of_batches_concatenate_to_those_of_the_whole_set():
    """Descriptors drawn batch by batch from one generator equal those of the whole set at once."""
    x = images(6, n=10)
    whole = descriptors(x, per_image=9, generator=generator(1))
    for sizes in ([3, 7], [1, 4, 5], [10]):
        g = generator(1)
        parts = [descriptors(batch, per_image=9, generator=g) for batch in x.split(sizes)]
        for level, pieces in zip(whole, zip(*parts)):
            assert torch.equal(level, torch.cat(pieces))


def test_deterministic_for_a_seed():
    """The same seed gives the same numbers; another seed draws other positions and directions."""
    x, y = images(7), images(8)
    first = swd(x, y, per_image=16, directions=32, generator=generator(0))
    assert first == swd(x, y, per_image=16, directions=32, generator=generator(0))
    assert first != swd(x, y, per_image=16, directions=32, generator=generator(1))
    assert list(first) == ["swd_32", "swd_16", "swd_avg"]
    assert first["swd_avg"] == pytest.approx((first["swd_32"] + first["swd_16"]) / 2)


def test_gradcheck():
    a = torch.randn(6, 3, generator=generator(0), dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, 3, generator=generator(1), dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda a: sliced_wasserstein(a, b, directions=4, generator=generator(2)), (a,))


@pytest.mark.parametrize("shapes", [((4, 3, 32, 32), (5, 3, 32, 32)), ((4, 3, 8, 8),) * 2,
                                    ((4, 3, 32, 16),) * 2])
def test_rejects_bad_image_sets(shapes):
    with pytest.raises(ValueError, match="same shape|at least|square"):
        swd(torch.zeros(shapes[0]), torch.zeros(shapes[1]))
