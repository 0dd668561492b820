"""Projection into W (StyleGAN2 Appendix D) and detection by projection distance (§5.1)."""

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan import stylegan2
from nanogan.classifier import FashionClassifier
from nanogan.projector import (ClassifierDistance, autocorrelation_penalty, learning_rate,
                               noise_pyramid, noise_regularization, noise_shapes, normalize_noise,
                               project, separating_threshold, w_noise_std, w_statistics)


def reference_learning_rate(step, num_steps, lr_max=0.1):
    """Appendix D: 0 → λ_max linearly over the first 5 %, cosine λ_max → 0 over the last 25 %."""
    t = step / num_steps
    if t < 0.05:
        return lr_max * t / 0.05
    if t > 0.75:
        return lr_max * (1 + math.cos(math.pi * (t - 0.75) / 0.25)) / 2
    return lr_max


def reference_w_noise(step, num_steps, sigma_w):
    """σ = 0.05 σ_w t'², t' going from 1 to 0 over the first ¾ of the steps, then 0."""
    t = 1 - step / (0.75 * num_steps)
    return 0.05 * sigma_w * t * t if t > 0 else 0.0


def reference_penalty(n):
    """L = (1/r² Σ n(x,y) n(x−1,y))² + (1/r² Σ n(x,y) n(x,y−1))², indices wrapping, per image."""
    b, _, r, _ = n.shape
    out = torch.zeros(b, dtype=torch.float64)
    for i in range(b):
        across = sum(n[i, 0, y, x].item() * n[i, 0, y, (x - 1) % r].item()
                     for x in range(r) for y in range(r))
        down = sum(n[i, 0, y, x].item() * n[i, 0, (y - 1) % r, x].item()
                   for x in range(r) for y in range(r))
        out[i] = (across / r**2) ** 2 + (down / r**2) ** 2
    return out


def reference_pyramid(n):
    """n_{j+1}(x, y) = 2 · mean of the 2×2 block of n_j at (2x, 2y), down to 8×8."""
    levels = [n.double()]
    while levels[-1].shape[-1] > 8:
        prev, r = levels[-1], levels[-1].shape[-1] // 2
        nxt = torch.zeros(*prev.shape[:2], r, r, dtype=torch.float64)
        for y in range(r):
            for x in range(r):
                nxt[..., y, x] = 2 * prev[..., 2 * y : 2 * y + 2, 2 * x : 2 * x + 2].mean((-2, -1))
        levels.append(nxt)
    return levels


def reference_distance(classifier, x, y, pixel_weight):
    """Σ_l mean_hw ‖φ̂_l(x) − φ̂_l(y)‖² over the three stages and the feature layer, + w · MSE."""
    body = classifier.body

    def taps(images):
        h1 = body[0](images)
        h2 = body[1](h1)
        h3 = body[2](h2)
        features = body[5](body[4](body[3](h3)))
        return [h1, h2, h3, features[:, :, None, None]]

    total = pixel_weight * ((x - y) ** 2).mean(dim=(1, 2, 3)).double()
    for a, b in zip(taps(x), taps(y)):
        a = a.double() / a.double().pow(2).sum(1, keepdim=True).sqrt().clamp_min(1e-10)
        b = b.double() / b.double().pow(2).sum(1, keepdim=True).sqrt().clamp_min(1e-10)
        total = total + ((a - b) ** 2).sum(1).mean(dim=(1, 2))
    return total


def tiny_generator(seed=0, strength=0.1):
    """A random 32×32 StyleGAN2 (16 channels, 16-d z and w) with noise strengths set nonzero."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cfg = stylegan2.Config(resolution=32, channels=1, z_dim=16, w_dim=16, mapping_layers=2,
                               channel_base=256, channel_max=16)
        G = stylegan2.Generator(cfg).eval().requires_grad_(False)
    with torch.no_grad():
        for layer in G.layers:
            layer.noise.strength.fill_(strength)
    return G


def generated_images(G, n, g):
    """G's images for n random z, with random noise inputs drawn from g."""
    with torch.no_grad():
        ws = G.mapping(torch.randn(n, G.cfg.z_dim, generator=g))[:, None]
        ws = ws.expand(-1, G.cfg.num_ws, -1)
        noise = {i: torch.randn(s, generator=g) for i, s in noise_shapes(G, ws).items()}
        return G.synthesis(ws, "random", noise=lambda i, _: noise[i])


def rectangles(n, g):
    """Images no generator made: a white rectangle on black, corners drawn from g."""
    out = -torch.ones(n, 1, 32, 32)
    for k in range(n):
        x0, y0 = torch.randint(2, 12, (2,), generator=g).tolist()
        x1, y1 = torch.randint(20, 30, (2,), generator=g).tolist()
        out[k, :, y0:y1, x0:x1] = 1
    return out


@given(seed=seeds, num_steps=st.integers(20, 2000), where=st.floats(0, 0.999))
@example(seed=0, num_steps=1000, where=0.0)
def test_learning_rate_matches_reference(seed, num_steps, where):
    step = int(where * num_steps)
    assert learning_rate(step, num_steps) == pytest.approx(
        reference_learning_rate(step, num_steps), abs=1e-12)


def test_learning_rate_ramps_up_holds_then_ramps_down():
    """The rate starts at 0, reaches λ_max after 5 % of the steps, holds it to 75 % and falls back towards 0."""
    rates = [learning_rate(s, 1000) for s in range(1000)]
    assert rates[0] == 0 and rates[50] == pytest.approx(0.1) and rates[750] == pytest.approx(0.1)
    assert all(a <= b for a, b in zip(rates[:50], rates[1:51]))
    assert all(a >= b for a, b in zip(rates[750:], rates[751:]))
    assert 0 < rates[-1] < 1e-5  # ½(1 − cos(π · 0.004)) · λ_max ≈ 4e-6


@given(seed=seeds, num_steps=st.integers(4, 3000), where=st.floats(0, 0.999),
       sigma_w=st.floats(0.1, 30))
def test_w_noise_matches_reference(seed, num_steps, where, sigma_w):
    step = int(where * num_steps)
    assert w_noise_std(step, num_steps, sigma_w) == pytest.approx(
        reference_w_noise(step, num_steps, sigma_w), abs=1e-12)


def test_w_noise_decays_to_zero_over_three_quarters():
    """The noise on w starts at 0.05 σ_w and is exactly zero from ¾ of the steps on."""
    assert w_noise_std(0, 1000, 4.0) == pytest.approx(0.2)
    assert w_noise_std(749, 1000, 4.0) > 0
    assert all(w_noise_std(s, 1000, 4.0) == 0 for s in range(750, 1000))


@given(seed=seeds, b=st.integers(1, 3), r=st.sampled_from([4, 8, 16]))
def test_penalty_matches_reference(seed, b, r):
    n = torch.randn(b, 1, r, r, generator=generator(seed), dtype=torch.float64)
    torch.testing.assert_close(autocorrelation_penalty(n), reference_penalty(n))


@given(seed=seeds, rs=st.lists(st.sampled_from([4, 8, 16, 32]), min_size=1, max_size=4))
def test_regularization_matches_reference(seed, rs):
    g = generator(seed)
    maps = [torch.randn(2, 1, r, r, generator=g, dtype=torch.float64) for r in rs]
    expected = sum(reference_penalty(level) for n in maps for level in reference_pyramid(n))
    torch.testing.assert_close(noise_regularization(maps), expected)
    for n in maps:
        for ours, ref in zip(noise_pyramid(n), reference_pyramid(n), strict=True):
            torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("r", [4, 8, 16])
def test_white_noise_penalty_is_two_over_r_squared(r):
    """For white unit noise each wrapped one-pixel autocorrelation has mean 0 and variance 1/r², so E L = 2/r²."""
    n = torch.randn(20_000, 1, r, r, generator=generator(r), dtype=torch.float64)
    penalty = autocorrelation_penalty(n)
    assert penalty.mean().item() == pytest.approx(2 / r**2, rel=0.05)


def test_perfectly_correlated_maps_score_the_maximum():
    """A unit-variance map whose neighbours are all equal or all opposite scores 2, the Cauchy–Schwarz maximum."""
    y, x = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    checkerboard = ((x + y) % 2 * 2 - 1).double()[None, None]
    stripes = ((x % 2) * 2 - 1).double()[None, None]  # equal down, opposite across
    for n in (checkerboard, stripes, torch.ones(1, 1, 8, 8, dtype=torch.float64)):
        torch.testing.assert_close(autocorrelation_penalty(n), torch.tensor([2.0]).double())
    white = normalize_noise(torch.randn(100, 1, 8, 8, generator=generator(0)))
    assert autocorrelation_penalty(white).max().item() < 2


def test_pyramid_keeps_unit_variance_down_to_8x8():
    """Each pyramid level of white noise has unit variance, and the pyramid stops at 8×8 (smaller maps have one level)."""
    n = torch.randn(64, 1, 64, 64, generator=generator(1), dtype=torch.float64)
    levels = noise_pyramid(n)
    assert [lv.shape[-1] for lv in levels] == [64, 32, 16, 8]
    for level in levels:
        assert level.var().item() == pytest.approx(1.0, rel=0.03)
    assert len(noise_pyramid(torch.randn(1, 1, 4, 4))) == len(noise_pyramid(n[:, :, :8, :8])) == 1


@given(seed=seeds, b=st.integers(1, 4), r=st.sampled_from([4, 8, 16]),
       shift=st.floats(-5, 5), scale=st.floats(0.1, 10))
def test_normalized_noise_has_zero_mean_and_unit_variance(seed, b, r, shift, scale):
    """After renormalisation every map has mean 0 and population variance 1; renormalising again changes nothing."""
    n = torch.randn(b, 1, r, r, generator=generator(seed), dtype=torch.float64) * scale + shift
    out = normalize_noise(n)
    torch.testing.assert_close(out.mean((-2, -1)), torch.zeros(b, 1, dtype=torch.float64))
    torch.testing.assert_close(out.var((-2, -1), unbiased=False),
                               torch.ones(b, 1, dtype=torch.float64))
    torch.testing.assert_close(normalize_noise(out), out)


def test_w_statistics_of_a_linear_mapping():
    """For f(z) = Az + c, μ_w → c and σ_w² = E‖A z‖² → ‖A‖²_F; with labels each image gets its label's statistics."""
    g = generator(5)
    a, c = torch.randn(6, 4, generator=g), torch.randn(6, generator=g)
    mean, sigma = w_statistics(lambda z: z @ a.T + c, 4, 40_000, generator=generator(6))
    torch.testing.assert_close(mean, c, atol=0.1, rtol=0)
    assert sigma**2 == pytest.approx(a.square().sum().item(), rel=0.03)
    shift = torch.randn(3, 6, generator=g)
    means, sigmas = w_statistics(lambda z, y: z @ a.T + shift[y], 4, 40_000,
                                 labels=torch.tensor([2, 0, 2]), generator=generator(6))
    torch.testing.assert_close(means, shift[[2, 0, 2]], atol=0.1, rtol=0)
    assert sigmas.shape == (3,) and sigmas[0].item() == pytest.approx(sigmas[1].item())
    assert torch.equal(means[0], means[2])


@pytest.fixture(scope="module")
def classifier():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = FashionClassifier(width=4, feature_dim=8)
        for m in model.modules():  # non-trivial batch-norm statistics
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@given(seed=seeds, b=st.integers(1, 4), pixel_weight=st.sampled_from([0.0, 1.0, 3.0]))
def test_distance_matches_reference(classifier, seed, b, pixel_weight):
    g = generator(seed)
    x, y = torch.randn(b, 1, 32, 32, generator=g), torch.randn(b, 1, 32, 32, generator=g)
    ours = ClassifierDistance(classifier, pixel_weight)(x, y)
    torch.testing.assert_close(ours.double(), reference_distance(classifier, x, y, pixel_weight),
                               rtol=1e-4, atol=1e-5)


@given(seed=seeds, b=st.integers(2, 5), size=st.sampled_from([16, 32, 64]),
       channels=st.sampled_from([1, 3]))
def test_distance_is_per_image_and_zero_on_itself(classifier, seed, b, size, channels):
    """Each image's distance depends only on its own pair (any size, grey or RGB) and is zero against itself."""
    g = generator(seed)
    x = torch.randn(b, channels, size, size, generator=g)
    y = torch.randn(b, channels, size, size, generator=g)
    distance = ClassifierDistance(classifier)
    together = distance(x, y)
    alone = torch.cat([distance(x[i : i + 1], y[i : i + 1]) for i in range(b)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)
    assert bool((together > 0).all())
    torch.testing.assert_close(distance(x, x), torch.zeros(b), atol=1e-6, rtol=0)


def test_noise_shapes_follow_the_synthesis_layers():
    """The dry pass finds one (b, 1, r, r) map per synthesis layer: one at 4×4, two at every larger resolution."""
    G = tiny_generator()
    shapes = noise_shapes(G, torch.zeros(3, G.cfg.num_ws, G.cfg.w_dim))
    assert shapes == {0: (3, 1, 4, 4), 1: (3, 1, 8, 8), 2: (3, 1, 8, 8), 3: (3, 1, 16, 16),
                      4: (3, 1, 16, 16), 5: (3, 1, 32, 32), 6: (3, 1, 32, 32)}


@pytest.fixture(scope="module")
def projection():
    """Three generated images and three rectangles projected together, 100 steps in W."""
    G = tiny_generator()
    g = generator(1)
    fakes, reals = generated_images(G, 3, g), rectangles(3, g)
    targets = torch.cat([fakes, reals])
    result = project(G, targets, steps=100, w_samples=2000, generator=generator(0))
    return G, targets, result


def test_projected_generated_images_are_reconstructed(projection):
    """A generated image is re-synthesised far closer than where projection starts (at w̄) and than any other generated image."""
    G, targets, result = projection
    distance = ClassifierDistance()
    fakes = targets[:3]
    with torch.no_grad():
        mean, _ = w_statistics(G.mapping, G.cfg.z_dim, 2000, generator=generator(0))
        start = G.synthesis(mean.expand(3, G.cfg.num_ws, -1), "random",
                            noise=lambda i, s: torch.randn(s, generator=generator(i)))
        others = torch.stack([distance(fakes, fakes.roll(k, 0)) for k in (1, 2)]).min(0).values
    final = result.distance[:3]
    assert bool((final < 0.5 * distance(start, fakes)).all()), (final, distance(start, fakes))
    assert bool((final < 0.5 * others).all()), (final, others)
    torch.testing.assert_close(final, distance(result.images[:3], fakes))


def test_generated_images_project_closer_than_real_ones(projection):
    """§5.1: every generated image projects closer than every image the generator did not make, and the calibrated threshold tells them apart."""
    _, _, result = projection
    fakes, reals = result.distance[:3], result.distance[3:]
    assert fakes.max() < reals.min(), (fakes, reals)
    threshold = separating_threshold(fakes, reals)
    assert bool((fakes <= threshold).all()) and bool((reals > threshold).all())


def test_projection_returns_white_maps_and_one_w(projection):
    """The projected noise maps have zero mean, unit variance and near-zero autocorrelation; in W every layer holds the same w."""
    G, targets, result = projection
    assert result.ws.shape == (6, G.cfg.num_ws, G.cfg.w_dim)
    assert torch.equal(result.ws, result.ws[:, :1].expand_as(result.ws))
    for n in result.noise.values():
        torch.testing.assert_close(n.mean((-2, -1)), torch.zeros(6, 1), atol=1e-5, rtol=0)
        torch.testing.assert_close(n.var((-2, -1), unbiased=False), torch.ones(6, 1),
                                   atol=1e-4, rtol=0)
    assert noise_regularization(list(result.noise.values())).max() < 1e-3
    assert len(result.losses) == 100


def test_without_regularization_noise_maps_carry_the_image():
    """Fig. 18: with α = 0 the optimisation hides the target in the noise maps (strong autocorrelation) and "reconstructs" an image G never made."""
    G = tiny_generator()
    target = rectangles(1, generator(2))
    free = project(G, target, steps=50, noise_weight=0.0, w_samples=500, generator=generator(0))
    regular = project(G, target, steps=50, w_samples=500, generator=generator(0))
    free_reg = noise_regularization(list(free.noise.values())).item()
    regular_reg = noise_regularization(list(regular.noise.values())).item()
    assert free_reg > 100 * regular_reg, (free_reg, regular_reg)
    assert free.distance.item() < regular.distance.item()


def test_projection_is_deterministic_by_seed_and_w_plus_has_one_w_per_layer():
    """The same seed gives the same projection bit for bit; in W+ the layers move apart."""
    G = tiny_generator()
    target = generated_images(G, 1, generator(4))
    runs = [project(G, target, steps=5, space="w+", w_samples=100, generator=generator(9))
            for _ in range(2)]
    assert torch.equal(runs[0].ws, runs[1].ws) and torch.equal(runs[0].images, runs[1].images)
    ws = runs[0].ws[0]
    assert not torch.allclose(ws[0], ws[-1])
    other = project(G, target, steps=5, space="w+", w_samples=100, generator=generator(10))
    assert not torch.equal(other.ws, runs[0].ws)


def reference_best_error(generated, real):
    """The fewest balanced errors of any cut t (generated if d <= t), trying every value and beyond."""
    values = sorted(generated.tolist() + real.tolist())
    cuts = [values[0] - 1] + values
    return min(sum(g > t for g in generated.tolist()) / len(generated)
               + sum(r <= t for r in real.tolist()) / len(real) for t in cuts)


@given(seed=seeds, n_gen=st.integers(1, 6), n_real=st.integers(1, 6), gap=st.floats(-1, 3))
def test_threshold_makes_the_fewest_errors(seed, n_gen, n_real, gap):
    """The calibrated cut misclassifies no more (balanced) than the best cut, and separates sets that can be separated."""
    g = generator(seed)
    generated = torch.rand(n_gen, generator=g, dtype=torch.float64) + 0.01
    real = torch.rand(n_real, generator=g, dtype=torch.float64) + 1.01 + gap
    t = separating_threshold(generated, real)
    errors = (generated > t).double().mean() + (real <= t).double().mean()
    assert errors.item() == pytest.approx(reference_best_error(generated, real))
    if generated.max() < real.min():
        assert generated.max() <= t < real.min()


def test_rejects_bad_arguments():
    G = tiny_generator()
    with pytest.raises(ValueError, match="space"):
        project(G, torch.zeros(1, 1, 32, 32), space="z")
    with pytest.raises(ValueError, match="steps"):
        project(G, torch.zeros(1, 1, 32, 32), steps=0)
    with pytest.raises(ValueError, match="one shape"):
        ClassifierDistance()(torch.zeros(1, 1, 32, 32), torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="calibrate"):
        separating_threshold(torch.tensor([]), torch.tensor([1.0]))
