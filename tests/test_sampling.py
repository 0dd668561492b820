"""nanogan/sampling.py, what sample.py's commands compute: the list parsers against a plain
reference expansion, style ranges against StyleGAN's Fig. 3 grouping, the style-mixing grid's
layout, and a seed's image independent of the seeds drawn beside it."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from test_recipe import SMALL

from nanogan import models, sampling

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


def test_calibration_reals_of_a_conditional_model_come_from_its_class():
    """--detect's calibration of a class-conditional G uses real images of the chosen class only
    (after the generated ones), in a fixed random order."""
    from nanogan.data import ImageDataset, to_float

    cfg = dataclasses.replace(small_cfg(8), num_classes=2)
    torch.manual_seed(0)
    G = SPEC.Generator(cfg).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, cfg.channels, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.arange(12) % 2
    real_set = ImageDataset(images, labels, name="twelve", class_names=("a", "b"))
    out = sampling.calibration_targets(SPEC, G, cfg, real_set, count=3, label=1,
                                       labels_for=lambda n: torch.ones(n, dtype=torch.long))
    assert out.shape[0] == 6
    reals = out[3:]
    matches = [[torch.equal(r, to_float(images[i])) for i in range(12)] for r in reals]
    chosen = [m.index(True) for m in matches]
    assert all(labels[i] == 1 for i in chosen) and len(set(chosen)) == 3
