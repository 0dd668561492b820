"""BigGAN assembled: Appendix B's widths and non-local blocks, Table 1's parameter counts,
hierarchical latents, the projection discriminator, the training recipe, exact resumption,
cross-replica BatchNorm and standing statistics."""

import copy
import dataclasses
import math

import pytest
import torch
from strategies import generator

from nanogan import biggan, stylegan2
from nanogan.conditional_bn import CrossReplicaBatchNorm2d
from nanogan.config import ConfigError
from nanogan.orthogonal import orthogonal_penalty
from nanogan.randomness import derive_seed, seed_latents
from nanogan.spectral_norm import spectral_layers

SMALL = biggan.Config(resolution=32, channels=1, num_classes=3, ch=4, z_dim=16, shared_dim=4,
                      attention=16, d_attention=16, batch_size=8, ema_start=2,
                      ema_decay=0.9, standing_batches=2, standing_batch_size=8)


@pytest.fixture
def nets():
    torch.manual_seed(0)  # module initialisation (outside hypothesis)
    return biggan.init_weights_(biggan.Generator(SMALL)), biggan.init_weights_(
        biggan.Discriminator(SMALL))


def inputs(n, seed=1, cfg=SMALL):
    g = generator(seed)
    return torch.randn(n, cfg.z_dim, generator=g), torch.randint(cfg.num_classes, (n,), generator=g)


def on_meta(cfg):
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        return biggan.Generator(cfg), biggan.Discriminator(cfg)


def count(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("resolution", [32, 64])
def test_shapes(resolution):
    cfg = dataclasses.replace(SMALL, resolution=resolution, z_dim=4 * (3 + resolution // 32),
                              attention=32, d_attention=16)
    torch.manual_seed(0)
    G, D = biggan.Generator(cfg), biggan.Discriminator(cfg)
    z, y = inputs(4, cfg=cfg)
    images = G(z, y)
    assert images.shape == (4, 1, resolution, resolution)
    assert images.abs().max() <= 1  # tanh
    assert D(images, y).shape == (4,)


# Tables 4–6, typed from the paper: G's block output widths and D's, in units of ch, and where
# the non-local block sits (after the block whose output has that many ch, at that size).
TABLES = {
    128: dict(g=[16, 8, 4, 2, 1], d=[1, 2, 4, 8, 16, 16], g_attention=(64, 2), d_attention=(64, 1)),
    256: dict(g=[16, 8, 8, 4, 2, 1], d=[1, 2, 4, 8, 8, 16, 16], g_attention=(128, 2),
              d_attention=(64, 2)),
    512: dict(g=[16, 8, 8, 4, 2, 1, 1], d=[1, 1, 2, 4, 8, 8, 16, 16], g_attention=(64, 4),
              d_attention=(64, 2)),
}


@pytest.mark.parametrize("resolution", sorted(TABLES))
def test_widths_and_non_local_blocks_follow_tables_4_to_6(resolution):
    """Block widths are Tables 4–6's, G starts from a 4×4×16ch dense layer, and each network has one non-local block where the table puts it."""
    cfg = biggan.PRESETS[f"paper{resolution}"]
    G, D = on_meta(cfg)
    table, ch = TABLES[resolution], cfg.ch
    assert G.dense.out_features == 4 * 4 * 16 * ch
    assert [b.conv2.out_channels for b in G.blocks] == [m * ch for m in table["g"]]
    assert [b.conv2.out_channels for b in D.blocks] == [m * ch for m in table["d"]]
    (g_key, g_att), (d_key, d_att) = *G.attention.items(), *D.attention.items()
    size, width = table["g_attention"]
    assert 8 * 2 ** int(g_key) == size and g_att.theta.in_channels == width * ch
    size, width = table["d_attention"]
    assert resolution // 2 ** (int(d_key) + 1) == size and d_att.theta.in_channels == width * ch


def test_parameter_counts_match_table_1():
    """At 128² G and D together have Table 1's parameter counts, 158.3M at ch = 96 and 71.3M at ch = 64 (within 0.2%), G about 70M of them."""
    for ch, expected in ((96, 158.3e6), (64, 71.3e6)):
        G, D = on_meta(dataclasses.replace(biggan.PRESETS["paper128"], ch=ch))
        assert count(G) + count(D) == pytest.approx(expected, rel=2e-3), ch
    G, _ = on_meta(biggan.PRESETS["paper128"])
    assert 70e6 < count(G) < 71e6


def test_no_bias_feeds_a_batchnorm(nets):
    """G's only biases are the output BatchNorm's and the output conv's: a bias before a BatchNorm would be subtracted again."""
    G, _ = nets
    assert [n for n, _ in G.named_parameters() if n.endswith("bias")] == ["out_bn.bias",
                                                                          "out_conv.bias"]


def test_z_that_does_not_split_is_an_error():
    """A z size that does not split into one chunk per block plus one is refused, naming the fix."""
    with pytest.raises(ConfigError, match=r"must split into 6 equal chunks .* try 126 or 132"):
        dataclasses.replace(biggan.PRESETS["paper128"], z_dim=128).validate()
    with pytest.raises(ValueError, match="does not split into 4 equal chunks"):
        biggan.split_latent(torch.zeros(2, 10), 4)
    for preset in biggan.PRESETS.values():
        preset.validate()


def test_each_block_is_conditioned_on_the_shared_embedding_and_its_own_chunk(nets):
    """Hierarchical latents: z's first chunk feeds the dense layer, chunk ℓ + 1 is concatenated to the shared class embedding for block ℓ."""
    G, _ = nets
    z, y = inputs(4)
    seen = []
    hooks = [b.register_forward_pre_hook(lambda m, args: seen.append(args[1])) for b in G.blocks]
    first = []
    hooks.append(G.dense.register_forward_pre_hook(lambda m, args: first.append(args[0])))
    G(z, y)
    for h in hooks:
        h.remove()
    chunks = z.split(SMALL.z_dim // 4, dim=1)
    assert torch.equal(first[0], chunks[0])
    for cond, chunk in zip(seen, chunks[1:], strict=True):
        assert torch.equal(cond, torch.cat([G.shared.weight[y], chunk], dim=1))


def test_projection_discriminator_is_linear_plus_inner_product(nets):
    """D(x, y) = w·h + b + ⟨V_y, h⟩ with h the summed features and V the normalized class embedding."""
    _, D = nets
    D = D.double().eval()
    x = torch.randn(5, 1, 32, 32, generator=generator(2), dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1, 0])
    h = D.features(x)
    w, V = D.linear.normalized_weight(), D.embed.normalized_weight()
    expected = torch.einsum("bc,c->b", h, w[0]) + D.linear.bias + torch.einsum("bc,bc->b", V[y], h)
    torch.testing.assert_close(D(x, y), expected)
    # Changing the label moves the logit by exactly ⟨V_y' − V_y, h⟩.
    y2 = (y + 1) % 3
    torch.testing.assert_close(D(x, y2) - D(x, y), torch.einsum("bc,bc->b", V[y2] - V[y], h))


def test_features_are_relu_then_global_sum_pooling(nets):
    """D's feature vector is the sum over positions of the ReLU of the last block's output."""
    _, D = nets
    D.eval()
    x = torch.randn(2, 1, 32, 32, generator=generator(3))
    last = []
    D.blocks[-1].register_forward_hook(lambda m, args, out: last.append(out))
    h = D.features(x)
    torch.testing.assert_close(h, torch.relu(last[0]).sum(dim=(2, 3)))


def test_self_attention_runs_at_the_configured_resolution(nets):
    """G's and D's non-local blocks see feature maps of the configured size, once per forward."""
    G, D = nets
    sizes = []
    for net in (G, D):
        for att in net.attention.values():
            att.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[-1]))
    z, y = inputs(2)
    D(G(z, y), y)
    assert sizes == [SMALL.attention, SMALL.d_attention]
    with pytest.raises(ConfigError, match="attention=12"):
        dataclasses.replace(SMALL, attention=12).validate()


def _recipe(seed=0, cfg=SMALL, **kwargs):
    torch.manual_seed(seed)
    return biggan.Recipe(cfg, seed=seed, **kwargs)


def _batch(step, cfg=SMALL):
    g = generator(1000 + step)
    n = cfg.batch_size * cfg.d_steps
    return (torch.rand(n, 1, 32, 32, generator=g) * 2 - 1,
            torch.randint(cfg.num_classes, (n,), generator=g))


def test_two_d_steps_per_g_step_with_the_papers_adam():
    """A step takes two D steps and one G step, shows 2 × batch images, with Adam β = (0, 0.999)."""
    r = _recipe()
    stats = r.train_step(*_batch(0))
    assert r.images_seen == 2 * SMALL.batch_size and r.step == 1
    assert all(s["step"].item() == 2 for s in r.opt_D.state.values())
    assert all(s["step"].item() == 1 for s in r.opt_G.state.values())
    assert all(g["betas"] == (0.0, 0.999) for g in r.opt_G.param_groups + r.opt_D.param_groups)
    assert all(torch.isfinite(v) for v in stats.values())
    paper = biggan.PRESETS["paper128"]
    assert (paper.lr_G, paper.lr_D, paper.d_steps, paper.batch_size) == (5e-5, 2e-4, 2, 2048)


def test_orthogonal_penalty_is_taken_on_g_before_its_step():
    """The reported ortho term is β‖WWᵀ ⊙ (1 − I)‖² over G's weights (shared embedding excluded) as they were before the step."""
    r = _recipe()
    expected = orthogonal_penalty(r.G, SMALL.ortho_beta, exclude=("shared",)).item()
    stats = r.train_step(*_batch(0))
    assert stats["ortho"].item() == pytest.approx(expected, rel=1e-6)


def test_ema_is_a_copy_until_the_start_step():
    """Before ema_start G_ema equals G; from then on it averages (0.9 here) and lags G."""
    r = _recipe()
    for step in range(3):
        r.train_step(*_batch(step))
        same = all(torch.equal(a, b) for a, b in zip(r.G.parameters(), r.G_ema.parameters()))
        assert same == (step < SMALL.ema_start), step


def test_tiny_model_file_gets_the_papers_standing_passes():
    """The tiny preset previews each grid and snapshot with 8 passes of standing statistics but
    gives the files a run ends with the paper's 100 (Appendix C.1: "typically 100"), as the
    paper presets do everywhere (lesson 25, "Standing statistics for the model file")."""
    tiny, paper = biggan.PRESETS["tiny"], biggan.PRESETS["paper128"]
    assert tiny.standing_batches == paper.standing_batches == 100
    assert (tiny.preview_batches, paper.preview_batches) == (8, 0)


def test_tiny_ema_half_life_is_stylegan2s_order():
    """The tiny preset's G_ema (a stated difference: decay 0.995, the paper 0.9999) halves an old
    G's weight after 8.9 kimg of the run's images (β^t = ½ at t = ln 2 / −ln β G steps, each
    consuming two D batches), within a factor of two of StyleGAN2's half-life (10 kimg in the
    paper, 5 in its tiny preset); the former 0.999 took 44 kimg, 14% of a 320-kimg run, and
    blurred the samples (lesson 25, "The tiny preset's EMA and last layer")."""
    tiny = biggan.PRESETS["tiny"]
    half_life_kimg = _recipe(cfg=tiny).batch_per_step * math.log(2) / -math.log(tiny.ema_decay) / 1000
    assert round(half_life_kimg, 1) == 8.9
    for sg2 in (stylegan2.Config(), stylegan2.PRESETS["tiny"]):
        assert sg2.ema_kimg / 2 <= half_life_kimg <= 2 * sg2.ema_kimg, sg2.ema_kimg


def test_batchnorm_is_synchronized_when_distributed():
    """With world > 1 every BatchNorm of G is cross-process (names kept); G_ema keeps plain ones."""
    single, multi = _recipe(), _recipe(world=2, rank=1)
    bns = [m for m in multi.G.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 2 * len(multi.G.blocks) + 1
    assert all(isinstance(m, CrossReplicaBatchNorm2d) for m in bns)
    assert not any(isinstance(m, CrossReplicaBatchNorm2d) for m in single.G.modules())
    assert not any(isinstance(m, CrossReplicaBatchNorm2d) for m in multi.G_ema.modules())
    assert list(multi.G.state_dict()) == list(single.G.state_dict())
    for a, b in zip(multi.G.state_dict().values(), single.G.state_dict().values()):
        assert torch.equal(a, b)


def test_standing_statistics_make_samples_independent_of_the_batch():
    """After standing statistics an eval-mode sample is the same alone or in a batch, and again next time."""
    r = _recipe()
    r.train_step(*_batch(0))
    r.before_sampling()
    u = [m.u.clone() for m in spectral_layers(r.G_ema).values()]
    z, y = inputs(6)
    batch = biggan.generate(r.G_ema, z, y)
    alone = torch.cat([biggan.generate(r.G_ema, z[i : i + 1], y[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(alone, batch, rtol=1e-5, atol=1e-5)
    state = {k: v.clone() for k, v in r.G_ema.state_dict().items()}
    biggan.standing_statistics(r.G_ema, SMALL, r.seed)  # deterministic: the same statistics again
    assert all(torch.equal(state[k], v) for k, v in r.G_ema.state_dict().items())
    assert all(torch.equal(a, m.u) for a, m in
               zip(u, spectral_layers(r.G_ema).values()))
    assert not r.G_ema.training and all(not m.training for m in r.G_ema.modules())


def _bn_buffers(G: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in G.state_dict().items() if "running" in k}


def _standing(r: biggan.Recipe, passes: int) -> dict[str, torch.Tensor]:
    """What `passes` passes of standing statistics give r's G_ema now, on a copy."""
    G = copy.deepcopy(r.G_ema)
    biggan.standing_statistics(G, r.cfg, r.seed, passes)
    return _bn_buffers(G)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_before_sampling_previews_with_few_passes_and_ends_with_all(monkeypatch):
    """During training G_ema's standing statistics come from `preview_batches` passes; the files
    a run ends with (`final`) get all `standing_batches` (Appendix C.1: ~100). Each is computed
    once per step and pass count, and again after a training step or a loaded checkpoint."""
    cfg = dataclasses.replace(SMALL, standing_batches=3, preview_batches=1)
    r, other = _recipe(0, cfg), _recipe(1, cfg)
    r.train_step(*_batch(0, cfg))
    other.train_step(*_batch(0, cfg))  # the same step, other weights
    calls, real = [], biggan.standing_statistics

    def counted(G, cfg, seed, passes):  # counts the passes of r's own computations
        if G is r.G_ema:
            calls.append(passes)
        real(G, cfg, seed, passes)

    monkeypatch.setattr(biggan, "standing_statistics", counted)
    preview, final = _standing(r, 1), _standing(r, 3)
    assert not _same(preview, final)
    r.before_sampling()
    assert _same(_bn_buffers(r.G_ema), preview)
    r.before_sampling(final=True)
    r.before_sampling(final=True)  # nothing changed: not again
    assert _same(_bn_buffers(r.G_ema), final) and calls == [1, 3]
    r.load_state_dict(other.state_dict())  # same step, other G_ema
    r.before_sampling(final=True)
    assert _same(_bn_buffers(r.G_ema), _standing(other, 3)) and calls == [1, 3, 3]
    r.train_step(*_batch(1, cfg))
    expected = _standing(r, 1)
    r.before_sampling()
    assert _same(_bn_buffers(r.G_ema), expected) and calls == [1, 3, 3, 1]


def test_standing_counts_are_checked_and_the_preview_capped():
    """standing_batches and standing_batch_size are >= 1 and preview_batches >= 0 (0: all), each
    refused by name; a preview above standing_batches previews with all of them, so that
    `--set standing_batches=N` works whatever the preset's preview count."""
    for key, bad, message in (("standing_batches", 0, "standing_batches and standing_batch_size "
                                                      "must be >= 1"),
                              ("standing_batch_size", 0, "standing_batch_size must be >= 1"),
                              ("preview_batches", -1, "preview_batches must be >= 0")):
        with pytest.raises(ConfigError, match=message):
            dataclasses.replace(SMALL, **{key: bad}).validate()
    cfg = dataclasses.replace(SMALL, standing_batches=2, preview_batches=5)
    cfg.validate()
    r = _recipe(0, cfg)
    r.before_sampling()
    assert _same(_bn_buffers(r.G_ema), _standing(r, 2))


def test_standing_statistics_average_over_batches(nets):
    """The running statistics are the average of the per-batch statistics over the passes (Appendix C.1)."""
    G, _ = nets
    G.eval()
    manual = copy.deepcopy(G)
    for m in manual.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.train()  # batch statistics everywhere, as during the passes
    seen = []
    manual.out_bn.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    n = SMALL.standing_batch_size
    gen = torch.Generator().manual_seed(derive_seed(5, "standing statistics"))
    with torch.no_grad():
        for _ in range(SMALL.standing_batches):
            manual(torch.randn(n, SMALL.z_dim, generator=gen),
                   torch.randint(SMALL.num_classes, (n,), generator=gen))
    biggan.standing_statistics(G, SMALL, seed=5)
    means = torch.stack([x.mean((0, 2, 3)) for x in seen]).mean(0)
    variances = torch.stack([x.var((0, 2, 3), unbiased=True) for x in seen]).mean(0)
    torch.testing.assert_close(G.out_bn.running_mean, means, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(G.out_bn.running_var, variances, rtol=1e-5, atol=1e-6)


def test_latents_and_truncation():
    """Without a threshold z is N(0, I) per seed; with one every component lies within ±threshold and a seed's z does not depend on the others."""
    assert torch.equal(biggan.sample_latents(SMALL, [3, 7]), seed_latents([3, 7], (SMALL.z_dim,)))
    z = biggan.sample_latents(SMALL, list(range(50)), truncation=0.5)
    assert z.abs().max() <= 0.5
    assert torch.equal(biggan.sample_latents(SMALL, [7], truncation=0.5), z[7:8])
    with pytest.raises(ValueError, match="threshold must be > 0"):
        biggan.sample_latents(SMALL, [0], truncation=0.0)
    with pytest.raises(ValueError, match="class-conditional"):
        biggan.generate(biggan.Generator(SMALL), z[:1])


def test_diagnostics_report_every_layers_sigma():
    """diagnostics() has one σ₀ per spectrally normalized layer of G and D, by module name."""
    r = _recipe()
    r.train_step(*_batch(0))
    sigmas = r.diagnostics()
    assert sigmas["sigma/G/dense"] == pytest.approx(r.G.dense.sigma.item())
    assert sigmas["sigma/D/embed"] == pytest.approx(r.D.embed.sigma.item())
    assert "sigma/G/blocks.0.bn1.to_gain" in sigmas and "sigma/D/attention.0.theta" in sigmas
    assert all(v > 0 for v in sigmas.values())
