"""StyleGAN2 config F assembled: widths and parameter counts from the paper, the skip generator
and residual discriminator against explicit references, truncation, noise and mixing through the
whole generator, R1 and path length checked on the path the recipe runs, the lazy schedule, and
exact resumption."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds
from test_modulation import reference_correlate
from test_upfirdn import reference_upfirdn
from torch import nn

from nanogan import checkpoint, models, stylegan2
from nanogan.ema import ema_beta
from nanogan.modulation import ModulatedConv2d
from nanogan.upfirdn import make_kernel

TINY = stylegan2.Config(resolution=16, channels=1, z_dim=8, w_dim=8, mapping_layers=2,
                        channel_base=64, channel_max=8, batch_size=4, mbstd_group=2,
                        r1_gamma=1.0, r1_interval=4, pl_interval=2, ema_kimg=0.01)
FIR = torch.outer(*[make_kernel().double()] * 2)  # the [1, 3, 3, 1] "bilinear" filter in 2-D


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is faster than two, and does not stall when the cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def nets(cfg=TINY, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)  # module initialisation (outside hypothesis)
    return stylegan2.Generator(cfg).to(dtype), stylegan2.Discriminator(cfg).to(dtype)


def set_noise_strength(G, value):
    with torch.no_grad():
        for layer in G.layers:
            layer.noise.strength.fill_(value)


# -- Architecture: §4.2, footnote 4, Appendix B ---------------------------------------------------

def test_widths_are_config_f():
    """Config F doubles StyleGAN's feature maps at 64²–1024²: 512 up to 64², then halving to 32 at 1024²."""
    stylegan = [512, 512, 512, 512, 256, 128, 64, 32, 16]  # StyleGAN (configs A–E), 4² … 1024²
    config_f = [min(2 * n, 512) if r >= 64 else n
                for r, n in zip([2**k for k in range(2, 11)], stylegan)]
    assert config_f == [512, 512, 512, 512, 512, 256, 128, 64, 32]
    for name, top in [("paper1024", 1024), ("paper256", 256)]:
        cfg = stylegan2.PRESETS[name]
        widths = [cfg.width(2**k) for k in range(2, int(math.log2(top)) + 1)]
        assert widths == config_f[: len(widths)], name
    configs_a_to_e = dataclasses.replace(stylegan2.PRESETS["paper1024"], channel_base=16384)
    assert [configs_a_to_e.width(2**k) for k in range(2, 11)] == stylegan


def test_parameter_counts_match_footnote_4():
    """At 1024² config F has 30M parameters in G and 29M in D, 22% and 21% more than StyleGAN's 25M and 24M."""
    f = stylegan2.PRESETS["paper1024"]
    e = dataclasses.replace(f, channel_base=16384)
    counts = {}
    for name, cfg in [("F", f), ("E", e)]:
        G, D = nets(cfg)
        counts[name] = params(G), params(D)
    # The paper rounds to millions and whole percents.
    assert [round(n / 1e6) for n in counts["F"]] == [30, 29]
    assert [round(n / 1e6) for n in counts["E"]] == [25, 24]
    assert round(100 * (counts["F"][0] / counts["E"][0] - 1)) == 22
    assert round(100 * (counts["F"][1] / counts["E"][1] - 1)) == 21


@pytest.mark.parametrize("resolution, num_ws", [(8, 4), (32, 8), (256, 14), (1024, 18)])
def test_num_ws_counts_the_style_inputs(resolution, num_ws):
    """One style for 4², two for every further resolution, one more for the last tRGB: 18 at 1024²."""
    cfg = dataclasses.replace(TINY, resolution=resolution)
    assert cfg.num_ws == num_ws
    if resolution <= 32:
        G, _ = nets(cfg)
        convs = [m for m in G.modules() if isinstance(m, ModulatedConv2d)]
        blocks = int(math.log2(resolution)) - 1
        assert sum(m.demodulate for m in convs) == 1 + 2 * (blocks - 1)  # demodulated 3×3
        assert sum(not m.demodulate for m in convs) == blocks  # tRGB, no demodulation
        z = torch.randn(2, cfg.z_dim, generator=generator(0))
        assert G(z, return_ws=True)[1].shape == (2, num_ws, cfg.w_dim)


@pytest.mark.parametrize("resolution", [8, 16, 32])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_shapes(resolution, num_classes):
    cfg = dataclasses.replace(TINY, resolution=resolution, channels=3, num_classes=num_classes)
    G, D = nets(cfg)
    g = generator(resolution)
    z = torch.randn(4, cfg.z_dim, generator=g)
    labels = torch.randint(3, (4,), generator=g) if num_classes else None
    images = G(z, labels)
    assert images.shape == (4, 3, resolution, resolution)
    assert D(images, labels).shape == (4,)


def test_every_layer_gets_its_own_style():
    """Conv layer i is modulated by ws[:, i]; the tRGB of block b by ws[:, 2b + 1], as the next conv."""
    G, _ = nets()
    ws = torch.randn(2, TINY.num_ws, TINY.w_dim, generator=generator(1))
    seen = []
    hooks = [m.affine.register_forward_hook(lambda mod, args, out, m=m: seen.append((m, args[0])))
             for m in G.modules() if isinstance(m, ModulatedConv2d)]
    G.synthesis(ws)
    for h in hooks:
        h.remove()
    expected = {id(layer.conv): i for i, layer in enumerate(G.layers)}
    expected |= {id(rgb.conv): 2 * b + 1 for b, rgb in enumerate(G.to_rgb)}
    assert len(seen) == len(expected)
    for module, w in seen:
        assert torch.equal(w, ws[:, expected[id(module)]])


def test_skip_generator_sums_the_upsampled_trgb_outputs():
    """The image is Σ_b up^(B−b)(tRGB_b): each resolution's RGB, bilinearly upsampled to the top and summed (Fig. 7b)."""
    G, _ = nets()
    outputs = []
    hooks = [rgb.register_forward_hook(lambda m, a, out: outputs.append(out.double()))
             for rgb in G.to_rgb]
    image = G(torch.randn(3, TINY.z_dim, generator=generator(2)), noise_mode="const")
    for h in hooks:
        h.remove()
    expected = 0
    for y in outputs:
        while y.shape[-1] < TINY.resolution:  # 2× up: zero-stuff, [1,3,3,1] filter, gain 4
            y = reference_upfirdn(y, FIR, 2, 1, (2, 1, 2, 1), 4.0)
        expected = expected + y
    assert len(outputs) == int(math.log2(TINY.resolution)) - 1
    torch.testing.assert_close(image.double(), expected, rtol=1e-4, atol=1e-5)


def reference_down_conv(x, weight, bias):
    """Equalized conv with 2× bilinear downsampling: FIR-filter, convolve, keep every second pixel."""
    k = weight.shape[-1]
    w = weight.double() / math.sqrt(weight[0].numel())  # He constant, gain 1
    p = (FIR.shape[-1] - 2) // 2 + k // 2  # the filter's and the conv's half-widths
    blurred = reference_upfirdn(x, FIR, 1, 1, (p,) * 4, 1.0)
    out = torch.stack([reference_correlate(xb, w) for xb in blurred])[:, :, ::2, ::2]
    return out if bias is None else out + bias.double().view(1, -1, 1, 1)


def lrelu(x):
    return F.leaky_relu(x, 0.2) * math.sqrt(2)


@given(seed=seeds, i=st.integers(1, 3), o=st.integers(1, 4), size=st.sampled_from([4, 8]))
def test_residual_block_matches_reference(seed, i, o, size):
    """A D block is (skip + main)/√2: main = conv, conv ↓; skip = 1×1 ↓ without bias (Fig. 7c, footnote 3)."""
    torch.manual_seed(0)
    block = stylegan2.DBlock(i, o)
    g = generator(seed)
    with torch.no_grad():  # non-zero biases, so that a misplaced bias shows
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.randn(2, i, size, size, generator=g)
    c0 = block.conv0
    main = lrelu(torch.stack([reference_correlate(xb, c0.weight.double() / math.sqrt(i * 9))
                              for xb in F.pad(x.double(), (1, 1, 1, 1))])
                 + c0.bias.double().view(1, -1, 1, 1))
    main = lrelu(reference_down_conv(main, block.conv1.weight, block.conv1.bias))
    skip = reference_down_conv(x.double(), block.skip.weight, None)
    assert skip.shape[-1] == size // 2
    torch.testing.assert_close(block(x).double(), (skip + main) / math.sqrt(2),
                               rtol=1e-4, atol=1e-4)


def test_a_discriminator_saved_with_the_old_downconv_names_still_loads():
    """D's state_dict from before EqualConv2d(down=2) (keys `conv1.conv.weight`, `skip.conv.weight`)
    loads into today's D and gives the same logits."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(stylegan2.PRESETS["tiny"], resolution=8, channels=1,
                              channel_base=64, channel_max=8)
    D = stylegan2.Discriminator(cfg)
    old = {k.replace(".conv1.", ".conv1.conv.").replace(".skip.", ".skip.conv."): v.clone()
           for k, v in D.state_dict().items()}
    assert "blocks.0.conv1.conv.weight" in old and "blocks.0.skip.conv.weight" in old
    torch.manual_seed(1)
    other = stylegan2.Discriminator(cfg)
    other.load_state_dict(old)  # strict: every key found
    x = torch.randn(4, 1, 8, 8, generator=generator(0))
    assert torch.equal(other(x), D(x))


# -- Sampling: truncation, noise, mixing through the generator -----------------------------------

@given(seed=seeds)
def test_psi_zero_gives_the_average_image_for_every_seed(seed):
    """With ψ = 0 and fixed noise every latent gives the image of w̄: G(z) = g(w̄) for all z."""
    G, _ = nets()
    set_noise_strength(G, 0.3)
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(TINY.w_dim, generator=generator(seed)))
    z = torch.randn(5, TINY.z_dim, generator=generator(seed + 1))
    images = stylegan2.generate(G, z, truncation=0.0)
    average = G.synthesis(G.mapping.w_avg.expand(1, TINY.num_ws, -1), noise_mode="const")
    torch.testing.assert_close(images, average.expand_as(images), rtol=1e-5, atol=1e-5)
    assert not torch.equal(stylegan2.generate(G, z, truncation=0.5)[0],
                           stylegan2.generate(G, z, truncation=0.5)[1])


def test_noise_modes():
    """"const" repeats the same images, "random" changes them, "none" ignores any noise given."""
    G, _ = nets()
    set_noise_strength(G, 0.5)
    z = torch.randn(3, TINY.z_dim, generator=generator(3))
    const = G(z, noise_mode="const")
    assert torch.equal(const, G(z, noise_mode="const"))
    torch.testing.assert_close(const[1:], G(z[1:], noise_mode="const"))  # whatever the batch
    torch.manual_seed(0)
    assert not torch.allclose(G(z), G(z))
    loud = lambda i, shape: torch.full(shape, 100.0)  # noqa: E731
    none = G(z, noise_mode="none", noise=loud)
    set_noise_strength(G, 0.0)
    assert torch.equal(none, G(z, noise_mode="const"))
    assert not torch.allclose(const, none)


@given(seed=seeds, crossover=st.lists(st.integers(1, TINY.num_ws), min_size=3, max_size=3))
def test_mixing_changes_only_layers_from_the_crossover_on(seed, crossover):
    """Changing mix_z changes exactly the styles of layers ≥ crossover; crossover = num_ws ignores it."""
    G, _ = nets()
    g = generator(seed)
    z, a, b = (torch.randn(3, TINY.z_dim, generator=g) for _ in range(3))
    m = torch.tensor(crossover)
    images_a, ws_a = G(z, mix_z=a, crossover=m, noise_mode="const", return_ws=True)
    images_b, ws_b = G(z, mix_z=b, crossover=m, noise_mode="const", return_ws=True)
    _, plain = G(z, noise_mode="const", return_ws=True)
    for i, c in enumerate(crossover):
        assert torch.equal(ws_a[i, :c], plain[i, :c]) and torch.equal(ws_b[i, :c], plain[i, :c])
        assert not (ws_a[i, c:] == ws_b[i, c:]).all(-1).any()
        assert torch.equal(images_a[i], images_b[i]) == (c == TINY.num_ws)


# -- Regularizers on the path the recipe runs (float64) ------------------------------------------

def double_recipe():
    torch.manual_seed(0)
    r = stylegan2.Recipe(TINY)
    r.G.double(), r.D.double()
    return r


def gradcheck_params(net, fn, names, args):
    """gradcheck of fn(*args) with respect to the named parameters of net (the rest held fixed)."""
    wrapper = nn.Module()
    wrapper.net = net
    wrapper.forward = lambda *a: fn(*a)
    named = dict(net.named_parameters())
    inputs = tuple(named[n].detach().clone().requires_grad_(True) for n in names)

    def f(*tensors):
        return torch.func.functional_call(
            wrapper, {f"net.{n}": t for n, t in zip(names, tensors)}, args)

    return torch.autograd.gradcheck(f, inputs)


def test_r1_gradient_is_exact():
    """R1's gradient with respect to D's weights (a double backward) matches finite differences."""
    r = double_recipe()
    reals = torch.rand(4, 1, 16, 16, generator=generator(4), dtype=torch.float64) * 2 - 1
    names = ["from_rgb.weight", "blocks.0.conv0.weight", "blocks.0.skip.weight",
             "blocks.1.conv1.bias", "conv.bias", "out.weight"]  # a sample of every kind
    assert gradcheck_params(r.D, lambda x: r.r1(x, None)[0], names, (reals,))
    x = reals[:2].clone().requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda x: r.D(x), (x,), fast_mode=True)


def test_path_length_gradient_is_exact():
    """The path-length lengths' gradient with respect to G's weights matches finite differences."""
    r = double_recipe()
    set_noise_strength(r.G, 0.2)
    g = generator(5)
    noise = {}

    def fixed_noise(i, shape):
        return noise.setdefault(i, torch.randn(shape, generator=g, dtype=torch.float64))

    inputs = dict(z=torch.randn(2, TINY.z_dim, generator=g, dtype=torch.float64),
                  mix_z=torch.randn(2, TINY.z_dim, generator=g, dtype=torch.float64),
                  crossover=torch.tensor([2, TINY.num_ws]), labels=None, noise=fixed_noise)
    y = torch.randn(2, 1, 16, 16, generator=g, dtype=torch.float64) / 16
    names = ["mapping.layers.0.weight", "layers.2.noise.strength", "layers.3.bias",
             "layers.4.conv.affine.weight", "to_rgb.1.conv.affine.bias", "to_rgb.2.conv.weight"]
    assert gradcheck_params(r.G, lambda: r.path_lengths(inputs, y)[0], names, ())
    ws = torch.randn(1, TINY.num_ws, TINY.w_dim, generator=g, dtype=torch.float64)
    assert torch.autograd.gradgradcheck(lambda ws: r.G.synthesis(ws, noise_mode="const"),
                                        (ws.requires_grad_(True),), fast_mode=True)


# -- The training recipe --------------------------------------------------------------------------

def recipe(cfg=TINY, seed=0):
    torch.manual_seed(seed)
    return stylegan2.Recipe(cfg, seed=0)


def batch(step):
    g = generator(1000 + step)
    return torch.rand(4, 1, 16, 16, generator=g) * 2 - 1, torch.zeros(4, dtype=torch.long)


def test_lazy_schedule_and_adam_rescaling():
    """R1 runs every 4th and path length every 2nd step, each multiplied by its interval k, with Adam's λ' = cλ, β' = β^c, c = k/(k+1)."""
    r = recipe()
    for opt, k in [(r.opt_D, TINY.r1_interval), (r.opt_G, TINY.pl_interval)]:
        c = k / (k + 1)
        group = opt.param_groups[0]
        assert group["lr"] == pytest.approx(TINY.lr * c)
        assert group["betas"] == pytest.approx((0.0, TINY.betas[1] ** c))
    losses = []
    r.backward = lambda loss: losses.append(loss.detach()) or loss.backward()
    for step in range(9):
        losses.clear()
        stats = r.train_step(*batch(step))
        assert ("r1" in stats) == (step % 4 == 0) and ("pl" in stats) == (step % 2 == 0)
        expected = [stats["loss_D"]]
        if "r1" in stats:
            expected.append(stats["r1"] * TINY.r1_gamma / 2 * TINY.r1_interval)
        expected.append(stats["loss_G"])
        if "pl" in stats:
            expected.append(stats["pl"] * TINY.pl_weight * TINY.pl_interval)
        torch.testing.assert_close(torch.stack(losses), torch.stack(expected))
    plain = recipe(dataclasses.replace(TINY, r1_gamma=0.0, pl_weight=0.0))
    assert plain.opt_D.param_groups[0]["lr"] == TINY.lr == plain.opt_G.param_groups[0]["lr"]
    assert set(plain.train_step(*batch(0))) == {"loss_D", "loss_G", "real", "fake"}


def test_ema_and_w_avg_follow_the_generator():
    """After a step G_ema = β·G_ema + (1 − β)·G with the configured half-life, and w̄ is copied from G."""
    r = recipe()
    before = {k: v.clone() for k, v in r.G_ema.named_parameters()}
    r.train_step(*batch(0))
    beta = ema_beta(TINY.batch_size, TINY.ema_kimg)
    for name, p in r.G.named_parameters():
        torch.testing.assert_close(dict(r.G_ema.named_parameters())[name],
                                   beta * before[name] + (1 - beta) * p)
    assert r.G_ema.mapping.w_avg.abs().sum() > 0
    assert torch.equal(r.G_ema.mapping.w_avg, r.G.mapping.w_avg)


def test_micro_batches_train_as_one_batch():
    """Two accumulated micro-batches of b/2 give the weights, w̄ and path-length mean of one batch of b."""
    one, two = recipe(), stylegan2.Recipe(TINY, seed=0, accumulate=2)
    two.G.load_state_dict(one.G.state_dict()), two.D.load_state_dict(one.D.state_dict())
    two.G_ema.load_state_dict(one.G_ema.state_dict())
    for step in range(5):  # R1 at steps 0 and 4, path length at 0, 2, 4
        one.train_step(*batch(step))
        two.train_step(*batch(step))
    for name, a in [*one.G.state_dict().items(), *one.D.state_dict().items()]:
        b = {**two.G.state_dict(), **two.D.state_dict()}[name]
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(one.pl.mean, two.pl.mean, rtol=1e-5, atol=1e-7)
    assert one.pl.mean > 0 and one.G.mapping.w_avg.abs().sum() > 0


def test_w_avg_travels_in_the_model_file(tmp_path):
    """w̄ is a buffer of G_ema: a model file written like train.py's restores it, and ψ = 0 with it."""
    r = recipe()
    for step in range(3):
        r.train_step(*batch(step))
    assert "mapping.w_avg" in r.G_ema.state_dict()
    path = tmp_path / "model.safetensors"
    checkpoint.save(path, {"G_ema": r.G_ema.state_dict()}, kind="model", model="stylegan2",
                    config=dataclasses.asdict(TINY))
    _, cfg, G = models.load_generator(path)
    assert cfg == TINY
    assert torch.equal(G.mapping.w_avg, r.G_ema.mapping.w_avg)
    z = torch.randn(2, TINY.z_dim, generator=generator(6))
    assert torch.equal(stylegan2.generate(G, z, truncation=0.0),
                       stylegan2.generate(r.G_ema, z, truncation=0.0))


def test_presets():
    """The presets validate; tiny fits 32×32 grayscale Fashion-MNIST, the paper ones are config F."""
    for cfg in stylegan2.PRESETS.values():
        cfg.validate()
    tiny = stylegan2.PRESETS["tiny"]
    assert (tiny.resolution, tiny.channels) == (32, 1)
    for name, r in [("paper256", 256), ("paper1024", 1024)]:
        cfg = stylegan2.PRESETS[name]
        assert (cfg.resolution, cfg.batch_size, cfg.lr, cfg.betas) == (r, 32, 0.002, (0.0, 0.99))
        assert (cfg.r1_interval, cfg.pl_interval, cfg.mixing_prob, cfg.mapping_lr_mul) == \
            (16, 8, 0.9, 0.01)


def test_validate_rejects_bad_batches():
    from nanogan.config import ConfigError
    with pytest.raises(ConfigError, match="multiple of the minibatch-std group"):
        dataclasses.replace(TINY, batch_size=6, mbstd_group=4).validate()
    with pytest.raises(ConfigError, match="pl_batch_shrink"):
        dataclasses.replace(TINY, batch_size=9, mbstd_group=3).validate()
    with pytest.raises(ConfigError, match="power of two"):
        dataclasses.replace(TINY, resolution=48).validate()
    with pytest.raises(ConfigError, match="path-length batch 1 must split into 1 processes × 2"):
        stylegan2.Recipe(dataclasses.replace(TINY, pl_batch_shrink=4), accumulate=2)


# -- Mixed precision: fp16/bf16 only at the top resolutions, fp16 clamped (StyleGAN2-ADA) ------

MIXED = dataclasses.replace(TINY, resolution=32, num_fp16_res=2)  # fast: 16² and 32²


def resolution_of_layer(i: int) -> int:
    """G's conv layer i: layer 0 at 4², then two per resolution (the first upsamples)."""
    return 4 * 2 ** ((i + 1) // 2)


def record_dtypes(G, D) -> dict:
    seen = {}
    for i, layer in enumerate(G.layers):
        layer.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(("G", i), out.dtype))
    for i, block in enumerate(D.blocks):  # block i reads resolution 32 / 2^i
        block.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(("D", i), out.dtype))
    return seen


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_only_in_the_num_fp16_res_highest_resolutions(dtype):
    """Under CPU autocast, G's layers and D's blocks at 16² and 32² compute in the autocast dtype
    and those below in fp32; images, logits and every gradient come out fp32 and finite."""
    assert [MIXED.fast(r) for r in (4, 8, 16, 32)] == [False, False, True, True]
    G, D = nets(MIXED)
    seen = record_dtypes(G, D)
    z = torch.randn(4, MIXED.z_dim, generator=generator(0))
    with torch.autocast("cpu", dtype=dtype):
        images = G(z)
        logits = D(images)
    assert images.dtype == logits.dtype == torch.float32
    for i in range(len(G.layers)):
        expected = dtype if MIXED.fast(resolution_of_layer(i)) else torch.float32
        assert seen[("G", i)] == expected, (i, seen)
    for i in range(len(D.blocks)):
        assert seen[("D", i)] == (dtype if MIXED.fast(32 // 2**i) else torch.float32), (i, seen)
    logits.sum().backward()
    for p in [*G.parameters(), *D.parameters()]:
        assert p.grad is None or (p.grad.dtype == torch.float32 and p.grad.isfinite().all())


def blow_up(G, D, value=1e4):
    """Biases so large that every activation leaves fp16's comfortable range."""
    with torch.no_grad():
        for layer in G.layers:
            layer.bias.fill_(value)
        D.from_rgb.bias.fill_(value)
        for block in D.blocks:
            block.conv0.bias.fill_(value)


def test_fp16_clamps_the_activations_of_the_fast_blocks_only():
    """Under fp16 the fast blocks' activations stay within ±256·√2 (G's layers; D's fromRGB and
    its blocks' first conv), the others' do not; under bf16 and fp32 nothing is clamped."""
    G, D = nets(MIXED)
    blow_up(G, D)
    peaks = {}

    def peak(name):
        return lambda m, args, out=None: peaks.__setitem__(
            name, (args[0] if out is None else out).detach().abs().max().item())

    for i, layer in enumerate(G.layers):
        layer.register_forward_hook(peak(i))
    D.blocks[0].register_forward_pre_hook(peak("D fromRGB"))
    D.blocks[0].conv1.register_forward_pre_hook(peak("D conv0"))
    z = torch.randn(4, MIXED.z_dim, generator=generator(1))
    limit = 256 * math.sqrt(2)
    for dtype in (torch.float16, torch.bfloat16, None):
        peaks.clear()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            D(G(z))
        for name, value in peaks.items():
            fast = name in ("D fromRGB", "D conv0") or MIXED.fast(resolution_of_layer(name))
            clamped = fast and dtype == torch.float16
            assert (value <= limit * 1.001) if clamped else value > limit, (dtype, name, value)


def test_the_precision_options_change_nothing_in_fp32():
    """Without autocast, num_fp16_res and conv_clamp do not enter the computation: G and D give
    bitwise the same outputs and gradients with them on (even at activations > 256) and off."""
    off = dataclasses.replace(MIXED, num_fp16_res=0, conv_clamp=None)
    results = []
    for cfg in (MIXED, off):
        G, D = nets(cfg)
        blow_up(G, D, 1e3)
        z = torch.randn(4, cfg.z_dim, generator=generator(2))
        logits = D(G(z))
        logits.sum().backward()
        results.append([logits.detach(), *[p.grad for p in G.parameters()]])
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_fp16_stays_close_to_fp32():
    """At initialisation the fp16 images and logits differ from fp32's by rounding only."""
    G, D = nets(MIXED)
    z = torch.randn(8, MIXED.z_dim, generator=generator(3))
    images = G(z, noise_mode="const")
    logits = D(images)
    with torch.autocast("cpu", dtype=torch.float16):
        images16 = G(z, noise_mode="const")
        logits16 = D(images)
    torch.testing.assert_close(images16, images, rtol=0, atol=2e-2 * images.abs().max().item())
    torch.testing.assert_close(logits16, logits, rtol=0, atol=2e-2 * logits.abs().max().item())


def test_validate_rejects_bad_precision_options():
    from nanogan.config import ConfigError
    with pytest.raises(ConfigError, match="num_fp16_res must be >= 0"):
        dataclasses.replace(TINY, num_fp16_res=-1).validate()
    with pytest.raises(ConfigError, match="conv_clamp must be > 0 or None"):
        dataclasses.replace(TINY, conv_clamp=0.0).validate()
