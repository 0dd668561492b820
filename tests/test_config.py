"""Configurations: --set coercion, 'did you mean', JSON round trips of every preset."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanogan import config, models


@given(st.integers(-10**9, 10**9))
def test_int_round_trip(n):
    """An int written on the command line comes back as the same int."""
    assert config.coerce(str(n), int) == n


@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_float_round_trip(x):
    """A float written with repr comes back exactly."""
    assert config.coerce(repr(x), float) == x


@pytest.mark.parametrize("text,expected", [("1", True), ("true", True), ("off", False), ("No", False)])
def test_bool_words(text, expected):
    assert config.coerce(text, bool) is expected


def test_tuples_and_optionals():
    """Tuples take comma lists and X | None takes 'none'."""
    assert config.coerce("0,0.99", tuple[float, float]) == (0.0, 0.99)
    assert config.coerce("(1, 2, 3)", tuple[int, ...]) == (1, 2, 3)
    assert config.coerce("none", int | None) is None
    assert config.coerce("5", int | None) == 5


def test_whole_numbers_only_for_ints():
    with pytest.raises(config.ConfigError, match="whole number"):
        config.coerce("2.5", int)
    with pytest.raises(config.ConfigError, match="number"):
        config.coerce("abc", float)


def test_unknown_key_suggests_the_closest():
    """A misspelled key names the field it was probably meant to be."""
    cfg = models.MODELS["progan"].PRESETS["tiny"]
    with pytest.raises(config.ConfigError, match="did you mean 'batch_size'"):
        config.apply_overrides(cfg, ["batch_sise=8"])


def test_overrides_are_typed():
    cfg = config.apply_overrides(models.MODELS["progan"].PRESETS["tiny"], ["lr=0.002", "betas=0,0.9"])
    assert cfg.lr == 0.002 and cfg.betas == (0.0, 0.9)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_preset_round_trips_through_json(name):
    """Every preset of every model survives to_dict -> JSON -> from_dict unchanged."""
    import json
    module = models.MODELS[name]
    for preset in module.PRESETS.values():
        data = json.loads(json.dumps(config.to_dict(preset)))
        assert config.from_dict(module.Config, data) == preset


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_preset_is_valid(name):
    """Every shipped preset passes its model's validation."""
    for preset in models.MODELS[name].PRESETS.values():
        preset.validate()


def test_resolution_error_lists_allowed_values():
    with pytest.raises(config.ConfigError, match=r"4, 8, 16, 32, 64, 128, 256, 512, 1024\), got 48"):
        config.check_resolution(48)
    for k in range(2, 11):
        config.check_resolution(2**k)
    assert math.log2(1024) == 10


def test_choose_unknown_model():
    with pytest.raises(config.ConfigError, match="did you mean 'progan'"):
        config.choose("progam", models.MODELS, "model")
