"""nanogan/sampling.py, what sample.py's commands compute: the list parsers against a plain
reference expansion, style ranges against StyleGAN's Fig. 3 grouping, the style-mixing grid's
layout, and a seed's image independent of the seeds drawn beside it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from test_recipe import SMALL

from nanogan import loading, models, sampling

SPEC = models.SPECS["stylegan2"]


def expand(parts: list[tuple[int, int]]) -> list[int]:
    """The reference: each (lo, hi) part written out, in the order given."""
    return [s for lo, hi in parts for s in range(lo, hi + 1)]


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 5)), min_size=1, max_size=4))
@example([(0, 63)])
@example([(1, 0), (5, 0), (9, 0)])
@example([(0, 3), (10, 0)])
def test_parse_seeds_expands_ranges_in_the_order_written(parts):
    """'lo-hi' and single numbers, comma-separated, become the integers they name, in order."""
    parts = [(lo, lo + width) for lo, width in parts]
    text = ",".join(f"{lo}-{hi}" if hi > lo else str(lo) for lo, hi in parts)
    assert sampling.parse_seeds(text) == expand(parts)


@pytest.mark.parametrize("text, what, message", [
    ("3-1", "seeds", "seeds: seed range 3-1 is reversed; write 1-3"),
    ("5-2", "indices", "indices: index range 5-2 is reversed; write 2-5"),
    ("-2", "seeds", "seeds: seeds are whole numbers >= 0; got '-2'"),
    ("0-x", "seeds", "seeds: seeds look like 0-63 or 1,5,9"),
    (" , ", "classes", "classes: no classes given"),
    (str(2**64), "seeds", "seeds: seeds must be in [0, 2^64)"),
])
def test_parse_seeds_names_the_list_and_the_problem(text, what, message):
    """A bad list raises a SamplingError (a ValueError) naming the parameter, not a flag."""
    with pytest.raises(sampling.SamplingError) as err:
        sampling.parse_seeds(text, what)
    assert str(err.value).startswith(message) and err.value.parameter == what
    assert isinstance(err.value, ValueError)


def test_parse_floats():
    assert sampling.parse_floats("1,0.7, 0.5,", "values") == [1.0, 0.7, 0.5]
    with pytest.raises(sampling.SamplingError, match=r"^values: values look like 1,0.7,0.5"):
        sampling.parse_floats("1,x", "values")


def small_cfg(resolution: int):
    return dataclasses.replace(SPEC.PRESETS["tiny"], **SMALL["stylegan2"] | {
        "resolution": resolution})


@pytest.mark.parametrize("resolution", [8, 32, 256])
def test_style_groups_follow_stylegan_fig_3(resolution):
    """coarse = styles 0-3 (4²–8²), middle = 4-7 (16²–32²), fine = 8 on (64² up), cut to the
    model's 2·log2(r) − 2 styles; ranges '0-3', '4-' and '5' are [start, stop)."""
    cfg = small_cfg(resolution)
    n = 2 * resolution.bit_length() - 4  # 2·log2(r) − 2
    assert SPEC.styles.num_ws(cfg) == n
    for name, (lo, hi) in {"coarse": (0, 4), "middle": (4, 8), "fine": (8, n)}.items():
        if lo < min(hi, n):
            assert sampling.parse_layers(SPEC, cfg, name) == (lo, min(hi, n))
    assert sampling.parse_layers(SPEC, cfg, "0-3") == (0, 4)
    assert sampling.parse_layers(SPEC, cfg, "2-") == (2, n)
    assert sampling.parse_layers(SPEC, cfg, "3") == (3, 4)
    with pytest.raises(sampling.SamplingError, match=f"^layers: {n}-{n + 3} selects no styles"):
        sampling.parse_layers(SPEC, cfg, f"{n}-{n + 3}")


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return SPEC.Generator(small_cfg(8)).eval().requires_grad_(False)


def test_mixing_grid_layout(G):
    """Fig. 3's layout: a blank corner, B along the top row, A down the left column, and a cell
    that takes every style from B is B's image."""
    cfg = small_cfg(8)
    ws_a = sampling.mapped(SPEC, G, cfg, [1, 2], None, None)
    ws_b = sampling.mapped(SPEC, G, cfg, [3, 4, 5], None, None)
    n = ws_a.shape[1]
    grid = sampling.mixing_grid(SPEC, G, ws_a, ws_b, 0, n, noise_mode="const")
    a = models.render_ws(SPEC, G, ws_a, noise_mode="const")
    b = models.render_ws(SPEC, G, ws_b, noise_mode="const")
    assert grid.shape[0] == (1 + 2) * (1 + 3)
    rows = grid.unflatten(0, (3, 4))
    assert torch.equal(rows[0, 0], torch.ones_like(rows[0, 0]))
    torch.testing.assert_close(rows[0, 1:], b)
    torch.testing.assert_close(rows[1:, 0], a)
    torch.testing.assert_close(rows[1:, 1:], b[None].expand(2, -1, -1, -1, -1))


def test_a_seeds_image_does_not_depend_on_its_neighbours(G):
    """generated(): each seed draws its own noise, so seed 7 gives the same image alone or in a
    batch with other seeds."""
    cfg = small_cfg(8)
    alone = sampling.generated(SPEC, G, cfg, [7], None)
    together = sampling.generated(SPEC, G, cfg, [3, 7, 11], None)
    torch.testing.assert_close(alone[0], together[1])
    assert not torch.allclose(together[0], together[1])


def twelve_images(cfg):
    """(dataset, uint8 images, labels): 12 random images at cfg's size, labelled 0, 1, 0, 1, …"""
    from nanogan.data import ImageDataset

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, cfg.channels, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.arange(12) % 2
    return ImageDataset(images, labels, name="twelve", class_names=("a", "b")), images, labels


def test_calibration_reals_of_a_conditional_model_come_from_its_class():
    """--detect's calibration of a class-conditional G uses real images of the chosen class only
    (after the generated ones), in a fixed random order."""
    from nanogan.data import to_float

    cfg = dataclasses.replace(small_cfg(8), num_classes=2)
    torch.manual_seed(0)
    G = SPEC.Generator(cfg).eval().requires_grad_(False)
    real_set, images, labels = twelve_images(cfg)
    out = sampling.calibration_targets(SPEC, G, cfg, real_set, count=3, label=1,
                                       labels_for=lambda n: torch.ones(n, dtype=torch.long))
    assert out.shape[0] == 6
    reals = out[3:]
    matches = [[torch.equal(r, to_float(images[i])) for i in range(12)] for r in reals]
    chosen = [m.index(True) for m in matches]
    assert all(labels[i] == 1 for i in chosen) and len(set(chosen)) == 3


@pytest.mark.parametrize("label, count, message", [
    (1, 7, "calibrate: the calibration needs 7 real images of class 1 and twelve has 6; lower "
           "it to at most 6 or give a threshold"),
    (2, 1, "calibrate: the calibration needs 1 real image of class 2 and twelve has 0; give "
           "data with images of class 2 or give a threshold"),
])
def test_calibration_asks_for_no_more_real_images_than_the_class_has(label, count, message):
    """A calibration whose class has fewer real images than it needs raises a SamplingError
    naming `calibrate`, the class, both counts and the way out, before anything is generated."""
    cfg = dataclasses.replace(small_cfg(8), num_classes=3)
    real_set, _, _ = twelve_images(cfg)  # six of class 0, six of class 1, none of class 2
    with pytest.raises(sampling.SamplingError) as err:  # G=None: generating would fail otherwise
        sampling.calibration_targets(SPEC, None, cfg, real_set, count=count, label=label,
                                     labels_for=lambda n: torch.full((n,), label))
    assert str(err.value) == message and err.value.parameter == "calibrate"
    assert sampling.calibration_reals(cfg, real_set, count=6, label=1).shape[0] == 6  # all six


# ------------------------------------------------------------- the commands' steps (Loaded)


def loaded(name: str, G=None, **changes) -> loading.Loaded:
    """A Loaded of a tiny preset: the checks read only its spec and config."""
    spec = models.SPECS[name]
    cfg = dataclasses.replace(spec.PRESETS["tiny"], **changes)
    return loading.Loaded(Path(f"/runs/{name}.safetensors"), spec, cfg, G, Path("/runs"))


@pytest.mark.parametrize("call, message", [
    (lambda: sampling.video_frames(loaded("progan"), "lerp-w", [0, 1]),
     "path lerp-w applies to style-based generators with a mapping network (stylegan2)"),
    (lambda: sampling.video_frames(loaded("stylegan2"), "slerp", [3]),
     "path slerp needs at least two seeds, got [3]"),
    (lambda: sampling.video_frames(loaded("biggan"), "walk", [0], truncation=0.5),
     "truncation with path walk applies to models that truncate in W (stylegan2); biggan's "
     "threshold resamples z"),
    (lambda: sampling.class_grid(loaded("biggan", num_classes=3), [1, 3], [0]),
     "classes must be in [0, 3), got [3]"),
    (lambda: sampling.style_mix(loaded("stylegan2"), [0], [1], 0, 1, label=2),
     "label applies to class-conditional models"),
    (lambda: sampling.seed_images(loaded("progan"), [0], noise_mode="random"),
     "noise_mode applies to models with noise inputs (stylegan2)"),
])
def test_the_commands_steps_check_the_request_in_the_librarys_words(call, message):
    """Each step refuses a request the model cannot serve before any image is drawn, naming
    the library's parameter (sample.py words it as its option)."""
    with pytest.raises(sampling.SamplingError) as err:
        call()
    assert str(err.value).startswith(message), str(err.value)


def test_save_video_upscales_to_256_pixels_and_keeps_every_frame(tmp_path, monkeypatch):
    """A GIF of one frame per image, 8-pixel images upscaled 32× by default; without ffmpeg,
    the GIF alone."""
    from PIL import Image

    monkeypatch.setattr(sampling, "has_ffmpeg", lambda: False)
    images = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert sampling.save_video(tmp_path / "v.gif", images, fps=10) == [tmp_path / "v.gif"]
    video = Image.open(tmp_path / "v.gif")
    assert video.n_frames == 5 and video.size == (256, 256)
    sampling.save_video(tmp_path / "s.gif", images, fps=10, scale=3)
    assert Image.open(tmp_path / "s.gif").size == (24, 24)


def test_detection_calibrates_a_threshold_between_generated_and_real(tmp_path):
    """Without a threshold, the one between the calibration's generated distances (after the
    targets) and its real ones; each target at or below it is called generated."""
    import json
    from types import SimpleNamespace

    distance = torch.tensor([0.5, 3.0, 1.0, 1.25, 2.0, 2.5])  # 2 targets, 2 generated, 2 real
    report = sampling.detect(tmp_path, SimpleNamespace(distance=distance), ["a", "b"],
                             threshold=None, calibrate=2, space="w", steps=3)
    assert 1.25 <= report["threshold"] < 2.0
    assert [t["verdict"] for t in report["targets"]] == ["generated", "real"]
    assert report["calibration"] == {"generated": [1.0, 1.25], "real": [2.0, 2.5]}
    assert json.loads((tmp_path / "detection.json").read_text()) == report
    given = sampling.detect(tmp_path, SimpleNamespace(distance=distance[:2]), ["a", "b"],
                            threshold=4.0, calibrate=2, space="w", steps=3)
    assert [t["verdict"] for t in given["targets"]] == ["generated", "generated"]
    assert "calibration" not in given
