"""The generator that sample.py's commands read, and the checks of what a request asks of it.

`load` reads a sampling file, a training checkpoint, a snapshot or a run folder (where
`runs.model_file` picks the file) into a `Loaded`: the model's spec, config and G_ema, and the
folder its outputs go to by default. The checks hold a request (a truncation value, a class
label, noise inputs, a W space) against the model's spec and raise a `SamplingError` that names
the parameter at fault, so that a command line can word it with its own flags
(`SamplingError.worded`). No model is named here: every fact comes from the spec.

Lesson: lessons/00_reading_this_repo.md
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nanogan import models, runs
from nanogan.truncation import TruncationRule

PARAMETER = re.compile(r"\{(\w+)\}")  # a parameter's name in a subject: "{truncation} 0.5:"


class SamplingError(ValueError):
    """A value this library cannot use. `parameter` names the argument at fault (for the list
    parsers: the list's name, `what`), `problem` says what is wrong, and the message is
    "parameter: problem". A check whose message reads as a sentence about the request gives a
    `subject` instead: a phrase with each parameter's name in braces ("{truncation} with {path}
    walk", or a caller's own word such as a command's name), and the message is "subject problem".
    `worded(name)` writes the message with name(p) for each parameter p: a command line passes
    its flags."""

    def __init__(self, parameter: str, problem: str, subject: str | None = None):
        self.parameter, self.problem, self.subject = parameter, problem, subject
        super().__init__(self.worded(lambda name: name))

    def worded(self, name: Callable[[str], str]) -> str:
        if self.subject is None:
            return f"{name(self.parameter)}: {self.problem}"
        return PARAMETER.sub(lambda match: name(match[1]), self.subject) + " " + self.problem


def having(what: Callable[[models.ModelSpec], bool]) -> list[str]:
    """The registered models for which what(spec) holds (for "applies to …" messages)."""
    return sorted(name for name, spec in models.SPECS.items() if what(spec))


@dataclass
class Loaded:
    """A generator read for sampling, and where what is made from it goes by default."""

    path: Path  # the file read: the one given, or the one runs.model_file picked in a folder
    spec: models.ModelSpec
    cfg: Any
    G: torch.nn.Module
    home: Path  # where outputs go by default: the run folder given, else the file's folder

    @property
    def name(self) -> str:
        return self.spec.name


def default_device() -> torch.device:
    """CUDA where there is a GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load(path: Path, device: torch.device | None = None) -> Loaded:
    """The generator (G_ema) in a model file, checkpoint, snapshot or run folder (see
    runs.model_file), on `device` (default: default_device())."""
    path = Path(path)
    file = runs.model_file(path)
    spec, cfg, G = models.load_generator(file, device or default_device())
    return Loaded(file, spec, cfg, G, path if path.is_dir() else file.parent)


def require(loaded: Loaded, subject: str, what: str, applies: list[str]) -> None:
    """Raise: `subject` (a parameter in braces, or the caller's word for what was asked)
    applies to `what`, the models `applies`, and the loaded model is not one of them."""
    found = PARAMETER.search(subject)
    raise SamplingError(found[1] if found else subject,
                        f"applies to {what} ({', '.join(applies) or 'none here'}); "
                        f"{loaded.path} holds a {loaded.name} model", subject)


def require_styled(loaded: Loaded, subject: str) -> None:
    """A generator with a mapping network and a W space (style mixing, projection, lerp in W)."""
    if loaded.spec.styles is None:
        require(loaded, subject, "style-based generators with a mapping network",
                having(lambda s: s.styles is not None))


def require_conditional(loaded: Loaded, subject: str) -> None:
    """A class-conditional generator; the message names the models that can be one."""
    if not models.conditional(loaded.cfg):
        require(loaded, subject, "class-conditional models",
                [f"{n} (trained with labels)" if s.labels == "optional" else n
                 for n, s in models.SPECS.items() if s.labels != "never"])


def truncation_rule(loaded: Loaded, subject: str = "{truncation}") -> TruncationRule:
    """The model's truncation rule (ψ in W, or a threshold on z); an error where it has none."""
    if loaded.spec.truncation is None:
        require(loaded, subject, "models with a truncation trick",
                having(lambda s: s.truncation is not None))
    return loaded.spec.truncation


def check_truncation(loaded: Loaded, truncation: float | None,
                     parameter: str = "truncation") -> None:
    """A truncation value (None: none) that the model has and that its rule accepts."""
    if truncation is None:
        return
    rule = truncation_rule(loaded, f"{{{parameter}}}")
    if not rule.valid(truncation):
        raise SamplingError(parameter, f"{loaded.name}'s {rule.allowed}",
                            f"{{{parameter}}} {truncation:g}:")


def generate_options(loaded: Loaded, noise_mode: str | None) -> dict[str, Any]:
    """The model's generate() options: the noise mode ("const" by default) where the model has
    noise inputs; asking for one from a model without them is an error."""
    if "noise_mode" not in loaded.spec.GENERATE_OPTIONS:
        if noise_mode is not None:
            require(loaded, "{noise_mode}", "models with noise inputs",
                    having(lambda s: "noise_mode" in s.GENERATE_OPTIONS))
        return {}
    return {"noise_mode": noise_mode or "const"}


def labels_for(loaded: Loaded, label: int | None, n: int) -> torch.Tensor | None:
    """n copies of `label` (0 by default) for a conditional model; None for an unconditional
    one, which takes no label."""
    if not models.conditional(loaded.cfg):
        if label is not None:
            raise SamplingError("label", f"applies to class-conditional models; {loaded.path} "
                                         f"holds an unconditional {loaded.name} model", "{label}")
        return None
    label = 0 if label is None else label
    if not 0 <= label < loaded.cfg.num_classes:
        raise SamplingError("label", f"must be in [0, {loaded.cfg.num_classes}), got {label}",
                            "{label}")
    return torch.full((n,), label, dtype=torch.long)


def request(loaded: Loaded, n: int, *, label: int | None = None,
            truncation: float | None = None, noise_mode: str | None = None
            ) -> tuple[torch.Tensor | None, dict[str, Any]]:
    """A request for n images, checked: their labels, and generate()'s keyword arguments (the
    truncation and the model's options)."""
    check_truncation(loaded, truncation)
    labels = labels_for(loaded, label, n)
    return labels, {"truncation": truncation, **generate_options(loaded, noise_mode)}
