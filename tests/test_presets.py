"""Every hyperparameter of every paper preset against the paper's own table or text.

The tables below are written from the papers (section, table or equation cited on each row), not
from the presets; FROM_CODE adds the values a paper leaves to its official code. Fields with
nothing to compare with are listed with their source in NOT_IN_PAPER, and a test checks that
every field of every paper preset is in one list or the other, so a new field must be placed.
`tiny` presets are CPU-sized on purpose (their differences are documented beside them) and are
not checked here.

Papers: ProGAN, Karras et al. 2018, arXiv:1710.10196 (§6.1, Appendix A.1, A.2, Table 2);
StyleGAN2, Karras et al. 2020, arXiv:1912.04958 (§4.2 and footnote 4, Tables 1 and 3,
Appendix B); StyleGAN, Karras et al. 2019, arXiv:1812.04948 (mixing regularization, Table 2);
BigGAN, Brock et al. 2019, arXiv:1809.11096 (§3, §3.1, §5, Tables 1 and 4–6, Appendix C).
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from nanogan import biggan, progan, stylegan2
from nanogan.fade import growth_stage

MODULES = {"progan": progan, "stylegan2": stylegan2, "biggan": biggan}

# ----------------------------------------------------------------------------- the tables

PROGAN_COMMON = [
    ("channels", 3, "A.1 / §6.1: RGB CelebA-HQ, CelebA and LSUN images"),
    ("z_dim", 512, "A.1: latent vectors are points on a 512-dimensional hypersphere"),
    ("lr", 0.001, "A.1: Adam α = 0.001"),
    ("betas", (0.0, 0.99), "A.1: Adam β1 = 0, β2 = 0.99"),
    ("batch_size", 16, "A.1: minibatch 16 for 4²–128² (§6.1, Table 1 (c)–(h): 16)"),
    ("loss", "wgan", "A.1: the WGAN-GP loss"),
    ("gp_weight", 10.0, "WGAN-GP (arXiv:1704.00028) Algorithm 1: λ = 10, used as is in A.1"),
    ("gp_target", 1.0, "WGAN-GP: ‖∇‖ → 1 (ProGAN's γ = 750 is CIFAR-10 only, §6.5)"),
    ("drift", 0.001, "A.1: ε_drift = 0.001"),
    ("ema_beta", 0.999, "A.1: exponential moving average of G with decay 0.999"),
    ("output", "linear", "A.1: every layer leaky ReLU except the last, which is linear"),
]
STYLEGAN2_COMMON = [
    ("channels", 3, "Tables 1 and 3: RGB FFHQ and LSUN"),
    ("num_classes", 0, "§1: unconditional generation"),
    ("z_dim", 512, "Appendix B: dimensionality of Z and W (512)"),
    ("w_dim", 512, "Appendix B: dimensionality of Z and W (512)"),
    ("mapping_layers", 8, "Appendix B: mapping network of 8 fully connected layers"),
    ("mapping_lr_mul", 0.01, "Appendix B: 100× lower learning rate in the mapping network"),
    ("batch_size", 32, "Appendix B: minibatch = 32"),
    ("lr", 0.002, "Appendix B (progressive growing): configs E–F use λ = 2·10⁻³"),
    ("betas", (0.0, 0.99), "Appendix B: Adam β1 = 0, β2 = 0.99"),
    ("r1_gamma", 10.0, "Appendix B: γ = 10 except config E and LSUN Church / Horse (γ = 100)"),
    ("r1_interval", 16, "§3.1, Appendix B: lazy regularization k = 16 for D"),
    ("pl_interval", 8, "Appendix B: lazy regularization k = 8 for G"),
]
BIGGAN_COMMON = [
    ("channels", 3, "§5: RGB ImageNet"),
    ("num_classes", 1000, "§5: ImageNet ILSVRC 2012"),
    ("ch", 96, "§5 uses Table 1 row 8: ch = 96"),
    ("batch_size", 2048, "§5 uses Table 1 row 8: batch 2048"),
    ("d_steps", 2, "Appendix C: two D steps per G step"),
    ("lr_G", 5e-5, "Appendix C: learning rate 5·10⁻⁵ in G"),
    ("lr_D", 2e-4, "Appendix C: learning rate 2·10⁻⁴ in D"),
    ("betas", (0.0, 0.999), "Appendix C: β1 = 0 and β2 = 0.999 in both networks"),
    ("bn_eps", 1e-4, "Appendix C: ε raised from 10⁻⁸ to 10⁻⁴ in BatchNorm"),
    ("sn_eps", 1e-4, "Appendix C: ε raised from 10⁻⁸ to 10⁻⁴ in Spectral Norm"),
    ("ortho_beta", 1e-4, "§3.1, Eq. 3: we sweep β and select 10⁻⁴"),
    ("ema_decay", 0.9999, "§3, Appendix C: EMA of G's weights with decay 0.9999"),
    ("standing_batches", 100, "Appendix C.1: standing statistics over typically 100 passes"),
    ("output", "tanh", "Tables 4–6: G ends in BN, ReLU, 3×3 conv to RGB, then Tanh"),
]

PAPER = {
    ("progan", "paper"): PROGAN_COMMON + [
        ("resolution", 1024, "A.1: the 1024×1024 network for CelebA-HQ"),
        ("stabilize_kimg", 800, "A.1: 800k real images at 4×4 and per stabilization"),
        ("fade_kimg", 800, "A.1: each new block fades in during 800k images"),
    ],
    ("progan", "paper128"): PROGAN_COMMON + [
        ("resolution", 128, "§6.1: CelebA and LSUN Bedroom at 128×128"),
        ("stabilize_kimg", 600, "A.2: 600k images per resolution for Table 1 and Fig. 4"),
        ("fade_kimg", 600, "A.2: new layers fade in over 600k images"),
        ("kimg", 10000, "§6.1: training ends when D has been shown 10M real images"),
    ],
    ("stylegan2", "paper1024"): STYLEGAN2_COMMON + [
        ("resolution", 1024, "Table 1: FFHQ at 1024×1024"),
        ("kimg", 25000, "Table 1 caption: 25M images shown to D for FFHQ"),
    ],
    ("stylegan2", "paper256"): STYLEGAN2_COMMON + [
        ("resolution", 256, "Table 3: LSUN at 256×256"),
        ("kimg", 88000, "Table 3 caption: 88M images for LSUN Cat (γ = 10, Appendix B)"),
    ],
    ("biggan", "paper128"): BIGGAN_COMMON + [
        ("resolution", 128, "Table 4: ImageNet at 128×128"),
        ("attention", 64, "Table 4: G's non-local block at 64×64"),
        ("d_attention", 64, "Table 4: D's non-local block at 64×64"),
    ],
    ("biggan", "paper256"): BIGGAN_COMMON + [
        ("resolution", 256, "Table 5: ImageNet at 256×256"),
        ("attention", 128, "Table 5: G's non-local block moved up to 128×128"),
        ("d_attention", 64, "Table 5: memory keeps D's non-local block at 64×64"),
    ],
    ("biggan", "paper512"): BIGGAN_COMMON + [
        ("resolution", 512, "Table 6: ImageNet at 512×512"),
        ("attention", 64, "Table 6: G's non-local block back at 64×64"),
        ("d_attention", 64, "Table 6: D's non-local block at 64×64"),
    ],
}

# Values the paper leaves to its official code, which it defers to (StyleGAN2 Appendix B: "we keep
# most details unchanged" from StyleGAN's code; BigGAN's released code): pinned all the same.
FROM_CODE = {
    "progan": [
        ("mbstd_group", 4, "official code: minibatch std over groups of 4 (§3: 'the minibatch')"),
    ],
    "stylegan2": [
        ("pl_decay", 0.01, "official code: a = running mean of the lengths with decay 0.01"),
        ("pl_batch_shrink", 2, "official code: path length on half the minibatch"),
        ("mixing_prob", 0.9, "StyleGAN (arXiv:1812.04948) Table 2 and code: 90 %, kept in App. B"),
        ("mbstd_group", 4, "official code: minibatch-std group of 4"),
        ("ema_kimg", 10.0, "official code: G_ema half-life 10 kimg"),
        ("ema_rampup", None, "official code: no ramp-up (StyleGAN2-ADA adds 0.05)"),
        ("output", "linear", "official code: G's image is the linear sum of the tRGBs"),
    ],
    "biggan": [
        ("shared_dim", 128, "authors' code: a 128-d shared class embedding"),
        ("ema_start", 20000, "authors' code: the EMA starts after 20k G steps"),
    ],
}
for (model, _), table in PAPER.items():
    table += FROM_CODE[model]

# Fields with no value in the paper or its code to compare with, and where they are checked.
# Augmentation came after these papers, which trained without it: every paper preset keeps
# augment = "none"; the controller's settings are ADA's (Karras et al. 2020, arXiv:2006.06676, §3).
AUGMENT_FIELDS = {
    "augment": "ADA (arXiv:2006.06676) and DiffAugment (arXiv:2006.10738) came later; the paper "
               "trained without: test_paper_presets_train_without_augmentation",
    "ada_target": "ADA §3: r_t target 0.6 (used only with augment='ada')",
    "ada_kimg": "ADA §3: p from 0 to 1 in 500k images (used only with augment='ada')",
    "ada_interval": "ADA §3: p adjusted every 4 minibatches (used only with augment='ada')",
}
NOT_IN_PAPER = {
    "progan": AUGMENT_FIELDS | {
        "fmap_base": "widths: test_progan_widths", "fmap_max": "widths: test_progan_widths",
        "kimg": "no total in A.1 (4 days on 8 V100): test_progan_runs_through_the_schedule",
    },
    "stylegan2": AUGMENT_FIELDS | {
        "channel_base": "widths: test_stylegan2_widths_are_config_f",
        "channel_max": "widths: test_stylegan2_widths_are_config_f",
        "pl_weight": "Eq. 5 rescaled to our lengths: test_stylegan2_path_length_weight_is_eq_5",
        "num_fp16_res": "StyleGAN2-ADA (arXiv:2006.06676) code: fp16 in the 4 top resolutions",
        "conv_clamp": "StyleGAN2-ADA code: fp16 activations clamped at ±256",
    },
    "biggan": AUGMENT_FIELDS | {
        "z_dim": "authors' released generators: 20 per chunk (Tables 4–6 say 128, which does "
                 "not split into 6 or 7 equal chunks): test_biggan_latent_chunks",
        "adam_eps": "not in the paper: torch's 1e-8 (documented in biggan.py)",
        "standing_batch_size": "not in the paper",
        "preview_batches": "not in the paper: 0, all of standing_batches before every grid",
        "kimg": "not in the paper (≈146k iterations, before Table 1 row 8's collapse at 165k)",
    },
}

# Rows where a preset departs from the paper: each would be a finding, reported, with a strict
# xfail that the fix flips. None today (the last three were fixed: progan paper kimg 13600,
# paper128 kimg 10000 and fmap_base 2048).
FINDINGS: dict[tuple[str, str, str], str] = {}


def rows():
    for (model, preset), table in PAPER.items():
        for name, value, cite in table:
            reason = FINDINGS.get((model, preset, name))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(model, preset, name, value, cite, marks=marks,
                               id=f"{model}-{preset}-{name}")


@pytest.mark.parametrize("model, preset, name, value, cite", rows())
def test_paper_preset_matches_the_paper(model, preset, name, value, cite):
    """Each field with a value in the paper has that value (the citation is in the table)."""
    actual = getattr(MODULES[model].PRESETS[preset], name)
    if isinstance(value, float):
        assert actual == pytest.approx(value, rel=1e-12), cite
    elif value is None:
        assert actual is None, cite
    else:
        assert actual == value, cite


@pytest.mark.parametrize("model, preset", list(PAPER))
def test_every_field_of_a_paper_preset_is_accounted_for(model, preset):
    """A field is either in the paper's table or named with its source in NOT_IN_PAPER."""
    fields = {f.name for f in dataclasses.fields(MODULES[model].Config)}
    named = [name for name, _, _ in PAPER[model, preset]]
    assert len(named) == len(set(named)), "a field is in the table twice"
    checked = set(named) | set(NOT_IN_PAPER[model])
    assert fields - checked == set(), f"place these fields of {model}/{preset} in a table"
    assert checked - fields == set(), "the tables name fields that no longer exist"


@pytest.mark.parametrize("model, preset", list(PAPER))
def test_paper_presets_validate(model, preset):
    MODULES[model].PRESETS[preset].validate()


# ----------------------------------------------------------------------------- derived checks

# Table 2 (A.1): feature maps of the 1024² generator (D mirrors it) at each resolution; A.2:
# the §6.1 networks halve them at 16×16 and divide them by 4 from 32×32 on, leaving 32 at 128².
TABLE_2 = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
A_2 = {4: 512, 8: 512, 16: 256, 32: 128, 64: 64, 128: 32}


@pytest.mark.parametrize("preset, widths", [
    pytest.param("paper", TABLE_2, id="paper-table2"),
    pytest.param("paper128", A_2, id="paper128-a2"),
])
def test_progan_widths(preset, widths):
    """Feature maps per resolution: Table 2 for the 1024² network, A.2 for §6.1's 128² one."""
    cfg = progan.PRESETS[preset]
    assert {r: cfg.width(r) for r in widths if r <= cfg.resolution} == \
        {r: w for r, w in widths.items() if r <= cfg.resolution}


@pytest.mark.parametrize("preset, phase_kimg", [
    pytest.param("paper", 800, id="paper"),
    pytest.param("paper128", 600, id="paper128"),
])
def test_progan_runs_through_the_schedule(preset, phase_kimg):
    """The run lasts at least the whole growth schedule of A.1: phase_kimg at 4×4, then per
    doubling phase_kimg fading in and phase_kimg stable."""
    cfg = progan.PRESETS[preset]
    doublings = int(math.log2(cfg.resolution)) - 2
    assert cfg.kimg >= phase_kimg + doublings * 2 * phase_kimg


@pytest.mark.parametrize("preset", sorted(progan.PRESETS))
def test_every_progan_preset_ends_at_its_resolution_fully_faded_in(preset):
    """Its last image is shown at the final resolution with α = 1 (a kimg that stops inside a
    fade, as `--kimg 60` would with the tiny preset's 20/10-kimg phases, trains a blend)."""
    cfg = progan.PRESETS[preset]
    last = growth_stage(round(cfg.kimg * 1000) - cfg.batch_size, final_resolution=cfg.resolution,
                        stabilize_images=round(cfg.stabilize_kimg * 1000),
                        fade_images=round(cfg.fade_kimg * 1000))
    assert (last.resolution, last.alpha) == (cfg.resolution, 1.0)


def test_stylegan2_widths_are_config_f():
    """Footnote 4 / §4.2: config F doubles config E's feature maps (512 up to 32², halving to 16
    at 1024²) at 64²–1024², so 512 up to 64², 256, 128, 64 and 32 at 1024² (at most 512)."""
    config_e = {r: min(512, 16384 // r) for r in (4, 8, 16, 32, 64, 128, 256, 512, 1024)}
    config_f = {r: min(512, 2 * w) if r >= 64 else w for r, w in config_e.items()}
    for name in ("paper256", "paper1024"):
        cfg = stylegan2.PRESETS[name]
        assert {r: cfg.width(r) for r in config_f} == config_f, name


@pytest.mark.parametrize("preset", ["paper256", "paper1024"])
def test_stylegan2_path_length_weight_is_eq_5(preset):
    """Eq. 5, γ_pl = ln 2 / (r² (ln r − ln 2)), for lengths over all num_ws·d coordinates of a
    unit-variance y; our y is divided by √(H·W) = r and the lengths average over the num_ws =
    2 log2 r − 2 layers (path_length.py), so the same penalty needs γ_pl · r² · num_ws."""
    cfg = stylegan2.PRESETS[preset]
    r = cfg.resolution
    gamma_pl = math.log(2) / (r**2 * (math.log(r) - math.log(2)))
    num_ws = 2 * int(math.log2(r)) - 2
    assert cfg.pl_weight == pytest.approx(gamma_pl * r**2 * num_ws, rel=1e-9)


@pytest.mark.parametrize("preset, chunk", [("paper128", 20), ("paper256", 20), ("paper512", 16)])
def test_biggan_latent_chunks(preset, chunk):
    """Hierarchical latents (§3): z splits into one chunk for the dense layer and one per
    ResBlock of Tables 4–6 (5, 6, 7 blocks), 20 / 20 / 16 wide as in the released generators."""
    cfg = biggan.PRESETS[preset]
    blocks = {128: 5, 256: 6, 512: 7}[cfg.resolution]
    assert cfg.z_dim == chunk * (blocks + 1)


@pytest.mark.parametrize("model, preset", [(m, p) for m, module in MODULES.items()
                                           for p in module.PRESETS if p != "tiny"])
def test_paper_presets_train_without_augmentation(model, preset):
    """The papers trained without augmenting D's inputs; ADA's controller defaults are §3's."""
    cfg = MODULES[model].PRESETS[preset]
    assert cfg.augment == "none"
    assert (cfg.ada_target, cfg.ada_kimg, cfg.ada_interval) == (0.6, 500.0, 4)
