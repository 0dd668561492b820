"""The model contract: what train.py and sample.py may know about a model, written once.

Every model file (`progan.py`, `biggan.py`, `stylegan2.py`) provides the same facts —
`Config`, `PRESETS`, `Generator`, `Discriminator`, `Recipe`, `sample_latents(cfg, seeds,
truncation)`, `generate(G, z, labels, **options)`, `FIND_UNUSED_PARAMETERS`, `GENERATE_OPTIONS`,
`TRUNCATION` (a `truncation.TruncationRule` or None), `LABELS` ("never", "optional", "always")
and `W_SPACE` (True: also `map_ws`, `synthesize`, `LAYER_NAMES`) — and `ModelSpec.of` gathers
them into one typed record. `SPECS` (alias `MODELS`) maps the registry names to specs; the entry
points speak only to specs and to the functions below: fit a config to a dataset, grid seeds,
render images batch by batch, the metrics' random sampler, and rebuild a generator from a file.

Lesson: lessons/00_reading_this_repo.md
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import torch

from nanogan import biggan, checkpoint, config, progan, runs, stylegan2
from nanogan.truncation import TruncationRule, truncated_normal


@dataclasses.dataclass(frozen=True)
class StyleSpace:
    """A model's intermediate latent space W (StyleGAN): z → ws → images.

    map(G, z, labels, truncation=None, truncation_cutoff=None) -> ws (b, num_ws, d), truncated in W
    synthesize(G, ws, noise_mode="const", noise=None) -> images; ws (b, num_ws, d)
    num_ws(cfg) -> how many style inputs G has (one per conv layer and tRGB)
    layer_names: "coarse" / "middle" / "fine" -> [start, stop) of styles (StyleGAN §3.1, Fig. 3;
    stop None: to the last style)."""

    map: Callable[..., torch.Tensor]
    synthesize: Callable[..., torch.Tensor]
    num_ws: Callable[[Any], int]
    layer_names: Mapping[str, tuple[int, int | None]]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything the entry points need to know about one model.

    name: the registry name (`--model`), and the name written in checkpoints.
    Config, PRESETS, Generator, Discriminator, Recipe: the model file's types; PRESETS has "tiny".
    sample_latents(cfg, seeds, truncation=None) -> z (b, z): one latent per seed, batch-independent
    (a threshold truncation acts here). generate(G, z, labels=None, *, truncation=None, **options)
    -> images in [-1, 1] from G_ema; `options` are the names in GENERATE_OPTIONS (StyleGAN2:
    noise_mode, truncation_cutoff; ProGAN takes its training view: resolution, alpha).
    FIND_UNUSED_PARAMETERS: what DDP must be told (ProGAN's idle resolutions).
    truncation: its rule (symbol, valid values, sweeps), None where the model has no trick.
    labels: "never" (unconditional), "optional" (conditional when trained with labels) or
    "always" (class-conditional); whether a given config is: `conditional(cfg)`.
    styles: the W space (mapping, synthesis from W, layer names), None where there is none."""

    name: str
    Config: type
    PRESETS: Mapping[str, Any]
    Generator: type
    Discriminator: type
    Recipe: type
    sample_latents: Callable[..., torch.Tensor]
    generate: Callable[..., torch.Tensor]
    FIND_UNUSED_PARAMETERS: bool
    GENERATE_OPTIONS: frozenset[str]
    truncation: TruncationRule | None
    labels: Literal["never", "optional", "always"]
    styles: StyleSpace | None

    @classmethod
    def of(cls, name: str, module: ModuleType) -> ModelSpec:
        """The spec a model file declares (the attributes listed in this module's docstring)."""
        styles = None
        if module.W_SPACE:
            styles = StyleSpace(module.map_ws, module.synthesize, lambda cfg: cfg.num_ws,
                                module.LAYER_NAMES)
        return cls(name, module.Config, module.PRESETS, module.Generator, module.Discriminator,
                   module.Recipe, module.sample_latents, module.generate,
                   module.FIND_UNUSED_PARAMETERS, frozenset(module.GENERATE_OPTIONS),
                   module.TRUNCATION, module.LABELS, styles)

    @staticmethod
    def conditional(cfg: Any) -> bool:
        """Whether this configuration takes class labels."""
        return conditional(cfg)


SPECS: dict[str, ModelSpec] = {name: ModelSpec.of(name, module) for name, module in
                               (("progan", progan), ("stylegan2", stylegan2), ("biggan", biggan))}
MODELS = SPECS  # the name train.py and the tests use


def conditional(cfg: Any) -> bool:
    """Whether a configuration takes class labels (it has classes)."""
    return getattr(cfg, "num_classes", 0) > 0


def fit_to_dataset(cfg: Any, dataset: Any) -> Any:
    """Take the image channels (and, for a class-conditional model, the classes) from the data."""
    changes: dict[str, Any] = {"channels": dataset.channels}
    if dataset.resolution != cfg.resolution:
        raise config.ConfigError(f"dataset resolution {dataset.resolution} != model {cfg.resolution}")
    if hasattr(cfg, "num_classes") and getattr(cfg, "conditional", True):
        if cfg.num_classes and dataset.num_classes == 0:
            raise config.ConfigError(f"{type(cfg).__module__} is class-conditional but the dataset "
                                     f"{dataset.name} has no labels (use sub-folders as classes)")
        if cfg.num_classes:
            changes["num_classes"] = dataset.num_classes
    return dataclasses.replace(cfg, **changes)


def grid_inputs(spec: ModelSpec, cfg: Any, per_class: int = 8) -> tuple[list[int], torch.Tensor | None]:
    """Fixed seeds for progress grids: 64 images, or `per_class` per class (one row each)."""
    if conditional(cfg):
        labels = torch.arange(cfg.num_classes).repeat_interleave(per_class)
        return list(range(len(labels))), labels
    return list(range(64)), None


def grid_columns(cfg: Any, n: int) -> int:
    """Columns of a grid of n images: one row per class for a conditional model, else square."""
    return n // cfg.num_classes if conditional(cfg) and n % cfg.num_classes == 0 else math.isqrt(n - 1) + 1


def in_batches(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor | None,
               device: torch.device, batch_size: int = 32) -> torch.Tensor:
    """fn(*batch) over consecutive batches of `inputs` (None stays None), moved to `device`;
    results as float on the CPU, concatenated: the one batched renderer."""
    n = len(next(x for x in inputs if x is not None))
    out = []
    with torch.no_grad():
        for i in range(0, n, batch_size):
            batch = [None if x is None else x[i : i + batch_size].to(device) for x in inputs]
            out.append(fn(*batch).float().cpu())
    return torch.cat(out)


def device_of(G: torch.nn.Module) -> torch.device:
    return next(G.parameters()).device


def sample(spec: ModelSpec, G: torch.nn.Module, cfg: Any, seeds: list[int],
           labels: torch.Tensor | None = None, *, batch_size: int = 32,
           truncation: float | None = None, **options: Any) -> torch.Tensor:
    """Images for `seeds` (float [-1, 1], on the CPU): same seed, same image, whatever the batch."""
    z = spec.sample_latents(cfg, seeds, truncation)
    return render(spec, G, z, labels, batch_size=batch_size, truncation=truncation, **options)


def render(spec: ModelSpec, G: torch.nn.Module, z: torch.Tensor,
           labels: torch.Tensor | None = None, *, batch_size: int = 32,
           truncation: float | None = None, **options: Any) -> torch.Tensor:
    """Images (float [-1, 1], on the CPU) from latents z (e.g. an interpolation path), batch by
    batch."""
    return in_batches(lambda z, y: spec.generate(G, z, y, truncation=truncation, **options),
                      z, labels, device=device_of(G), batch_size=batch_size)


def render_ws(spec: ModelSpec, G: torch.nn.Module, ws: torch.Tensor, *, batch_size: int = 32,
              **options: Any) -> torch.Tensor:
    """Images from styles: ws (b, num_ws, d), or (b, d) for the same w in every layer."""
    if spec.styles is None:
        raise ValueError(f"{spec.name} has no W space to synthesize from")
    ws = ws[:, None].expand(-1, spec.styles.num_ws(G.cfg), -1) if ws.ndim == 2 else ws
    return in_batches(lambda ws: spec.styles.synthesize(G, ws, **options), ws,
                      device=device_of(G), batch_size=batch_size)


def random_latents(spec: ModelSpec, cfg: Any, b: int, generator: torch.Generator,
                   truncation: float | None = None) -> torch.Tensor:
    """b fresh latents from `generator`; a truncation that acts on z (BigGAN) is drawn here."""
    if truncation is not None and spec.truncation is not None and spec.truncation.in_z:
        return truncated_normal((b, cfg.z_dim), truncation, generator=generator)
    return torch.randn(b, cfg.z_dim, generator=generator)


def random_sampler(spec: ModelSpec, G: torch.nn.Module, cfg: Any, *,
                   truncation: float | None = None, label: int | None = None, **options: Any):
    """`generate(b, generator)` for metrics: b images from fresh latents (and uniform labels, or
    all `label`) drawn from the generator alone, rendered on G's device (float, on G's device)."""
    device = device_of(G)

    @torch.no_grad()
    def generate(b: int, g: torch.Generator) -> torch.Tensor:
        z = random_latents(spec, cfg, b, g, truncation)
        y = None
        if conditional(cfg):
            y = (torch.randint(cfg.num_classes, (b,), generator=g) if label is None
                 else torch.full((b,), label, dtype=torch.long))
        return spec.generate(G, z.to(device), None if y is None else y.to(device),
                             truncation=truncation, **options).float()

    return generate


def load_generator(path: str | Path, device: str | torch.device = "cpu"):
    """(spec, config, G_ema in eval mode) from a model file, a training checkpoint, a snapshot or
    a run folder (its model.safetensors, else newest snapshot, else checkpoint)."""
    path = runs.model_file(Path(path))
    ckpt = checkpoint.load(path)
    if not isinstance(ckpt.state, dict) or "G_ema" not in ckpt.state:
        raise checkpoint.CheckpointError(f"{path} holds no generator weights ('G_ema')")
    spec = SPECS.get(ckpt.model)
    if spec is None:
        raise checkpoint.CheckpointError(f"{path}: unknown model {ckpt.model!r}")
    stored = {k: v for k, v in ckpt.config.items() if not k.startswith("_")}
    cfg = config.from_dict(spec.Config, stored)
    G = spec.Generator(cfg)
    G.load_state_dict(ckpt.state["G_ema"])
    return spec, cfg, G.to(device).eval().requires_grad_(False)
