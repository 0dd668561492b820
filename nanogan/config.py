"""Configurations: dataclass presets, `key=value` overrides (train.py --set), JSON round trips.

Every model file defines a `Config` dataclass and a `PRESETS` dict of named instances. A run's
configuration is a preset with command-line overrides applied; it is stored as JSON in every
checkpoint and rebuilt from there, so a resumed run and `sample.py` see exactly the training
configuration.

Lesson: lessons/00_reading_this_repo.md
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """An unknown key, a value of the wrong type, or an invalid combination of settings."""


def _unknown(key: str, known: list[str], what: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(f"unknown {what} {key!r}{hint} (known: {', '.join(sorted(known))})")


def _field_types(cfg_type: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cfg_type)
    return {f.name: hints[f.name] for f in dataclasses.fields(cfg_type)}


def coerce(text: str, annotation: Any, key: str = "value") -> Any:
    """Turn command-line text into a value of the field's annotated type (int, float, bool, str,
    tuples of those, and `X | None`)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if text.strip().lower() in ("none", "null", ""):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return coerce(text, inner[0], key)
    if origin is tuple:
        parts = [p for p in text.replace("(", "").replace(")", "").split(",") if p.strip()]
        item = args[0]
        return tuple(coerce(p.strip(), item, key) for p in parts)
    if annotation is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key} must be true or false, got {text!r}")
    if annotation in (int, float):
        try:
            value = float(text) if annotation is float else int(float(text))
        except ValueError:
            raise ConfigError(f"{key} must be a number ({annotation.__name__}), got {text!r}") from None
        if annotation is int and float(text) != value:
            raise ConfigError(f"{key} must be a whole number, got {text!r}")
        return value
    if annotation is str:
        return text
    raise ConfigError(f"{key}: cannot set a field of type {annotation!r} from the command line")


def apply_overrides(cfg: Any, items: list[str] | tuple[str, ...]) -> Any:
    """Return a copy of `cfg` with `key=value` items applied, each coerced to its field's type."""
    types_ = _field_types(type(cfg))
    changes = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"an override is key=value, got {item!r}")
        key, text = (s.strip() for s in item.split("=", 1))
        if key not in types_:
            raise _unknown(key, list(types_), "config key")
        changes[key] = coerce(text, types_[key], key)
    return dataclasses.replace(cfg, **changes)


def to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-ready dict of a config (tuples become lists)."""
    return dataclasses.asdict(cfg)


def from_dict(cfg_type: type, data: dict[str, Any]) -> Any:
    """Rebuild a config from `to_dict` output; unknown keys are an error, missing keys default."""
    types_ = _field_types(cfg_type)
    for key in data:
        if key not in types_:
            raise _unknown(key, list(types_), f"key in the stored {cfg_type.__qualname__}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cfg_type(**values)


def choose(name: str, options: dict[str, Any], what: str) -> Any:
    """Look up a preset/model by name with a 'did you mean' error."""
    if name not in options:
        raise _unknown(name, list(options), what)
    return options[name]


def is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def check_resolution(resolution: int, low: int = 4, high: int = 1024) -> None:
    """Raise a ConfigError listing the allowed values unless resolution is a power of two in range."""
    if not (is_power_of_two(resolution) and low <= resolution <= high):
        allowed = ", ".join(str(2**k) for k in range(low.bit_length() - 1, high.bit_length()))
        raise ConfigError(f"resolution must be a power of two in [{low}, {high}] "
                          f"({allowed}), got {resolution}")
