"""The model registry: configurations adapt to a dataset, grids use fixed seeds, a seed gives the
same image in any batch, and a model file rebuilds exactly the generator that was saved."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_recipe import MODELS, SMALL

from nanogan import biggan, checkpoint, config, models
from nanogan.data import ImageDataset


def small(model: str):
    module = models.MODELS[model]
    cfg = dataclasses.replace(module.PRESETS["tiny"], **SMALL[model])
    torch.manual_seed(0)
    return module, cfg, module.Generator(cfg).eval()


def dataset(n=8, channels=3, resolution=8, classes=("a", "b")):
    images = torch.zeros(n, channels, resolution, resolution, dtype=torch.uint8).numpy()
    return ImageDataset(images, torch.arange(n) % max(len(classes), 1), name="toy",
                        class_names=classes)


def test_every_model_provides_the_registry_interface():
    """Each registered model's spec is complete: types, a tiny preset, sampling functions, and
    facts of the right kind (truncation rule, labels, W space)."""
    for name, spec in models.SPECS.items():
        assert isinstance(spec, models.ModelSpec) and spec.name == name
        for field in dataclasses.fields(spec):
            assert getattr(spec, field.name) is not None or field.name in ("truncation", "styles")
        assert "tiny" in spec.PRESETS
        for preset in spec.PRESETS.values():
            preset.validate()
        assert spec.labels in ("never", "optional", "always")
        assert (spec.labels == "never") == (not hasattr(spec.PRESETS["tiny"], "num_classes"))
        if spec.truncation is not None:
            assert all(spec.truncation.valid(v) for v in spec.truncation.grid + spec.truncation.curve)
    assert models.MODELS is models.SPECS


@pytest.mark.parametrize("model", [m for m in MODELS if models.SPECS[m].styles is not None])
def test_mapping_then_synthesis_is_generate(model):
    """A W-space model's map (with ψ) followed by synthesis draws exactly generate's images."""
    spec, cfg, G = small(model)
    z = torch.randn(3, cfg.z_dim, generator=torch.Generator().manual_seed(0))
    ws = spec.styles.map(G, z, truncation=0.5)
    assert ws.shape == (3, spec.styles.num_ws(cfg), cfg.w_dim)
    assert torch.equal(spec.styles.synthesize(G, ws, "const"),
                       spec.generate(G, z, truncation=0.5, noise_mode="const"))
    torch.testing.assert_close(models.render_ws(spec, G, ws, batch_size=2, noise_mode="const"),
                               models.render(spec, G, z, truncation=0.5, batch_size=3,
                                             noise_mode="const"), rtol=1e-5, atol=1e-6)


def test_a_truncation_in_z_is_drawn_by_the_random_sampler():
    """The metrics' sampler honours a threshold (every |z| within it, BigGAN) and a fixed label."""
    spec, cfg, G = small("biggan")
    z = models.random_latents(spec, cfg, 64, torch.Generator().manual_seed(0), truncation=0.5)
    assert z.abs().max() <= 0.5
    plain = models.random_latents(spec, cfg, 4, torch.Generator().manual_seed(0))
    assert torch.equal(plain, torch.randn(4, cfg.z_dim, generator=torch.Generator().manual_seed(0)))
    seen = []
    spec_generate = spec.generate
    sampler = models.random_sampler(dataclasses.replace(
        spec, generate=lambda G, z, y, **kw: seen.append(y) or spec_generate(G, z, y, **kw)),
        G, cfg, label=2)
    sampler(4, torch.Generator().manual_seed(1))
    assert torch.equal(seen[0], torch.full((4,), 2))


def test_fit_to_dataset_takes_channels_and_classes():
    """A config takes the data's channels and, when class-conditional, its number of classes."""
    cfg = models.fit_to_dataset(dataclasses.replace(models.MODELS["progan"].PRESETS["tiny"],
                                                    resolution=8), dataset(channels=3))
    assert cfg.channels == 3
    big = dataclasses.replace(models.MODELS["biggan"].PRESETS["tiny"], resolution=32)
    fitted = models.fit_to_dataset(big, dataset(resolution=32, classes=("a", "b", "c")))
    assert fitted.num_classes == 3
    with pytest.raises(config.ConfigError, match="class-conditional but the dataset"):
        models.fit_to_dataset(big, dataset(resolution=32, classes=()))


def test_fit_to_dataset_refuses_another_resolution():
    cfg = models.MODELS["progan"].PRESETS["tiny"]
    with pytest.raises(config.ConfigError, match="dataset resolution 8 != model 32"):
        models.fit_to_dataset(cfg, dataset(resolution=8))


def test_grids_have_64_seeds_or_one_row_per_class():
    """Unconditional grids show seeds 0–63 in 8 columns; conditional ones one row of 8 per class."""
    module, cfg, _ = small("progan")
    seeds, labels = models.grid_inputs(module, cfg)
    assert seeds == list(range(64)) and labels is None
    assert models.grid_columns(cfg, 64) == 8
    module, cfg, _ = small("biggan")
    seeds, labels = models.grid_inputs(module, cfg)
    assert torch.equal(labels, torch.arange(cfg.num_classes).repeat_interleave(8))
    assert models.grid_columns(cfg, len(seeds)) == 8


@pytest.mark.parametrize("model", MODELS)
def test_a_seed_gives_the_same_image_in_any_batch(model):
    """sample() draws each seed's latent alone, so an image does not depend on its batch or position."""
    module, cfg, G = small(model)
    if model == "biggan":
        biggan.standing_statistics(G, cfg)
    labels = torch.arange(6) % cfg.num_classes if models.conditional(cfg) else None
    options = {"noise_mode": "const"} if "noise_mode" in module.GENERATE_OPTIONS else {}
    together = models.sample(module, G, cfg, [5, 6, 7, 8, 9, 10], labels, batch_size=6, **options)
    apart = models.sample(module, G, cfg, [5, 6, 7, 8, 9, 10], labels, batch_size=4, **options)
    torch.testing.assert_close(together, apart, rtol=1e-5, atol=1e-6)
    alone = models.sample(module, G, cfg, [7], None if labels is None else labels[2:3], **options)
    torch.testing.assert_close(alone[0], together[2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", MODELS)
def test_a_model_file_rebuilds_the_saved_generator(model, tmp_path):
    """load_generator(model.safetensors) gives the config and G_ema that were saved: same images."""
    module, cfg, G = small(model)
    path = tmp_path / "model.safetensors"
    checkpoint.save(path, {"G_ema": G.state_dict()}, kind="model", model=model,
                    config=config.to_dict(cfg) | {"_preset": "tiny"})
    loaded_module, loaded_cfg, loaded = models.load_generator(path)
    assert loaded_module is module and loaded_cfg == cfg
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    labels = torch.arange(4) % cfg.num_classes if models.conditional(cfg) else None
    options = {"noise_mode": "const"} if "noise_mode" in module.GENERATE_OPTIONS else {}
    torch.testing.assert_close(models.sample(module, loaded, cfg, [1, 2, 3, 4], labels, **options),
                               models.sample(module, G, cfg, [1, 2, 3, 4], labels, **options))


def test_a_model_file_of_an_unknown_model_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    checkpoint.save(path, {"G_ema": {"w": torch.zeros(1)}}, kind="model", model="vqgan",
                    config={})
    with pytest.raises(checkpoint.CheckpointError, match="unknown model 'vqgan'"):
        models.load_generator(path)


@pytest.mark.parametrize("model", MODELS)
def test_random_sampler_is_deterministic_by_generator(model):
    """The metrics' sampler draws latents (and labels) only from the generator it is handed."""
    module, cfg, G = small(model)
    if model == "biggan":
        biggan.standing_statistics(G, cfg)
    generate = models.random_sampler(module, G, cfg)
    a = generate(4, torch.Generator().manual_seed(1))
    b = generate(4, torch.Generator().manual_seed(1))
    c = generate(4, torch.Generator().manual_seed(2))
    assert a.shape == (4, cfg.channels, cfg.resolution, cfg.resolution)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
