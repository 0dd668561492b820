"""ProGAN assembled: Table 2's widths and sizes, fades that start exactly where the previous
resolution ended, the training recipe, and exact resumption."""

import copy
import dataclasses

import pytest
import torch
from strategies import OUTPUT_REFERENCES, generator

from nanogan import progan
from nanogan.fade import downscale2x, upscale2x

SMALL = progan.Config(resolution=16, channels=1, z_dim=16, fmap_base=64, fmap_max=16,
                      batch_size=8, stabilize_kimg=0.016, fade_kimg=0.016, kimg=0.2)


@pytest.fixture
def nets():
    torch.manual_seed(0)  # module initialisation (outside hypothesis)
    return progan.Generator(SMALL), progan.Discriminator(SMALL)


def test_tiny_preset_differs_from_a1_only_where_its_comment_says():
    """The tiny preset is A.1's recipe but for the differences its comment states, each with a
    reason (lessons/07_progan.md): Fashion-MNIST's size, narrow layers, short phases, a short
    EMA, the clamped tanh and twice the learning rate. A new difference must be stated there."""
    tiny, paper = progan.PRESETS["tiny"], progan.PRESETS["paper"]
    differs = {f.name for f in dataclasses.fields(tiny)
               if getattr(tiny, f.name) != getattr(paper, f.name)}
    assert differs == {"resolution", "channels", "z_dim", "fmap_base", "fmap_max",
                       "stabilize_kimg", "fade_kimg", "kimg", "ema_beta", "output", "lr"}
    assert (tiny.lr, tiny.output, tiny.ema_beta) == (2 * paper.lr, "tanh_clamp", 0.995)
    assert (tiny.batch_size, tiny.betas, tiny.gp_weight) == (16, (0.0, 0.99), 10.0)  # as A.1


def test_widths_match_table_2():
    """The paper preset's feature maps per resolution are Table 2's: 512 up to 32², then halving to 16 at 1024²."""
    cfg = progan.PRESETS["paper"]
    widths = [cfg.width(2**k) for k in range(2, 11)]
    assert widths == [512, 512, 512, 512, 256, 128, 64, 32, 16]


def test_parameter_counts_match_table_2():
    """The 1024² generator and discriminator each have Table 2's 23.1M trainable parameters."""
    cfg = progan.PRESETS["paper"]
    for net in (progan.Generator(cfg), progan.Discriminator(cfg)):
        count = sum(p.numel() for p in net.parameters())
        assert count == pytest.approx(23.1e6, rel=0.01), type(net).__name__


@pytest.mark.parametrize("resolution", [4, 8, 16])
def test_shapes(nets, resolution):
    G, D = nets
    z = torch.randn(8, SMALL.z_dim, generator=generator(1))
    images = G(z, resolution)
    assert images.shape == (8, 1, resolution, resolution)
    assert D(images, resolution).shape == (8,)


@pytest.mark.parametrize("resolution", [8, 16])
def test_generator_fade_starts_at_the_previous_resolution(nets, resolution):
    """At alpha = 0 a new resolution shows exactly the previous resolution's image, upscaled."""
    G, _ = nets
    z = torch.randn(8, SMALL.z_dim, generator=generator(2))
    torch.testing.assert_close(G(z, resolution, 0.0), upscale2x(G(z, resolution // 2, 1.0)))


@pytest.mark.parametrize("output", sorted(OUTPUT_REFERENCES))
def test_generator_applies_its_output_function_once_after_the_fade(output):
    """Mid-fade (α = 0.3 into 16²) the image is the output function of the blend
    u₈↑ + α·(u₁₆ − u₈↑) of the two linear toRGB images, applied once; applied to each toRGB
    image before the blend it would give another image. toRGB's weights are scaled up so that a
    good share of the linear values lie beyond ±1."""
    torch.manual_seed(0)  # module initialisation
    linear = progan.Generator(SMALL)
    with torch.no_grad():
        for p in linear.to_rgb.parameters():
            p.mul_(30)
    G = copy.deepcopy(linear)
    G.cfg = dataclasses.replace(SMALL, output=output)
    squash = OUTPUT_REFERENCES[output]
    z = torch.randn(8, SMALL.z_dim, generator=generator(4))
    with torch.no_grad():
        low, high = upscale2x(linear(z, 8, 1.0)), linear(z, 16, 1.0)
        blend = low + 0.3 * (high - low)
        images = G(z, 16, 0.3)
    assert (blend.abs() > 1).float().mean() > 0.2
    torch.testing.assert_close(images, squash(blend))
    before = squash(low) + 0.3 * (squash(high) - squash(low))
    assert (images - before).abs().max() > 0.1


@pytest.mark.parametrize("resolution", [8, 16])
def test_discriminator_fade_starts_at_the_previous_resolution(nets, resolution):
    """At alpha = 0 D judges an image exactly as the previous resolution's D judges it downscaled."""
    _, D = nets
    x = torch.randn(8, 1, resolution, resolution, generator=generator(3))
    torch.testing.assert_close(D(x, resolution, 0.0), D(downscale2x(x), resolution // 2, 1.0))


def test_generator_normalizes_after_every_conv(nets, monkeypatch):
    """G pixel-normalizes the latent and the features after every layer, so each has unit RMS per pixel (§4.2, A.1)."""
    G, _ = nets
    normalized = []
    real = progan.pixel_norm
    monkeypatch.setattr(progan, "pixel_norm", lambda x: normalized.append(real(x)) or normalized[-1])
    G(torch.randn(4, SMALL.z_dim, generator=generator(4)))
    assert len(normalized) == 1 + 1 + 1 + 2 * 2  # z, dense, 4×4 conv, two convs at 8² and 16²
    for a in normalized:
        torch.testing.assert_close(a.square().mean(1), torch.ones_like(a[:, 0]), rtol=1e-4, atol=1e-4)


def _recipe(seed=0):
    torch.manual_seed(seed)
    return progan.Recipe(SMALL, seed=seed)


def _batch(step):
    g = generator(1000 + step)
    return torch.rand(8, 1, 16, 16, generator=g) * 2 - 1, torch.zeros(8, dtype=torch.long)


def test_train_step_counts_images_and_returns_finite_losses():
    """A step shows one batch to D, reports finite losses, and the log shows the stage's resolution."""
    r = _recipe()
    stats = r.train_step(*_batch(0))
    assert r.images_seen == 8 and r.step == 1
    assert all(torch.isfinite(v) for v in stats.values())
    assert r.diagnostics() == {"resolution": 4.0, "alpha": 1.0}


def test_adam_is_reset_when_a_new_resolution_starts():
    """Adam's moments restart when the stage index changes (Appendix A.1's fresh optimizer per resolution)."""
    r = _recipe()
    while r.stage().index == 0:
        r.train_step(*_batch(r.step))
    assert next(iter(r.opt_G.state.values()))["step"].item() > 1
    r.train_step(*_batch(r.step))  # first step of the 8×8 fade
    assert r.stage_index == 1
    assert all(s["step"].item() == 1 for s in r.opt_G.state.values())


def test_generate_upscales_lower_training_resolutions(nets):
    """Grids during training show the current resolution at full size (nearest neighbour)."""
    G, _ = nets
    z = torch.randn(2, SMALL.z_dim, generator=generator(5))
    out = progan.generate(G, z, resolution=8)
    assert out.shape[-1] == 16
    torch.testing.assert_close(out, upscale2x(G(z, 8)))


def test_validate_rejects_bad_batches():
    import dataclasses
    from nanogan.config import ConfigError
    with pytest.raises(ConfigError, match="multiple of the minibatch-std group"):
        dataclasses.replace(SMALL, batch_size=6).validate()
