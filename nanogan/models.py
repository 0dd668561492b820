"""The model registry and the few facts train.py and sample.py need about every model.

Each model file provides `Config`, `PRESETS`, `Generator`, `Discriminator`, `Recipe`,
`sample_latents(cfg, seeds, truncation)` and `generate(G, z, labels, **options)`. This module
adapts a configuration to a dataset, picks grid seeds and labels, and rebuilds a generator from
a sampling file.

Lesson: lessons/00_reading_this_repo.md
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from nanogan import checkpoint, config, progan, runs

MODELS: dict[str, ModuleType] = {"progan": progan}

for _name in ("stylegan2", "biggan"):  # registered as their files land
    try:
        MODELS[_name] = __import__(f"nanogan.{_name}", fromlist=["Recipe"])
    except ModuleNotFoundError as _err:
        if _err.name != f"nanogan.{_name}":
            raise


def conditional(cfg: Any) -> bool:
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


def grid_inputs(module: ModuleType, cfg: Any, per_class: int = 8) -> tuple[list[int], torch.Tensor | None]:
    """Fixed seeds for progress grids: 64 images, or `per_class` per class (one row each)."""
    if conditional(cfg):
        labels = torch.arange(cfg.num_classes).repeat_interleave(per_class)
        return list(range(len(labels))), labels
    return list(range(64)), None


def grid_columns(cfg: Any, n: int) -> int:
    return n // cfg.num_classes if conditional(cfg) and n % cfg.num_classes == 0 else math.isqrt(n - 1) + 1


@torch.no_grad()
def sample(module: ModuleType, G: torch.nn.Module, cfg: Any, seeds: list[int],
           labels: torch.Tensor | None = None, *, batch_size: int = 32, truncation: float | None = None,
           **options: Any) -> torch.Tensor:
    """Images for `seeds` (float [-1, 1], on the CPU): same seed, same image, whatever the batch."""
    z = module.sample_latents(cfg, seeds, truncation)
    return render(module, G, z, labels, batch_size=batch_size, truncation=truncation, **options)


@torch.no_grad()
def render(module: ModuleType, G: torch.nn.Module, z: torch.Tensor,
           labels: torch.Tensor | None = None, *, batch_size: int = 32,
           truncation: float | None = None, **options: Any) -> torch.Tensor:
    """Images (float [-1, 1], on the CPU) from latents z (e.g. an interpolation path), batch by
    batch."""
    device = next(G.parameters()).device
    out = []
    for i in range(0, len(z), batch_size):
        y = None if labels is None else labels[i : i + batch_size].to(device)
        images = module.generate(G, z[i : i + batch_size].to(device), y, truncation=truncation,
                                 **options)
        out.append(images.float().cpu())
    return torch.cat(out)


def random_sampler(module: ModuleType, G: torch.nn.Module, cfg: Any):
    """`generate(b, generator)` for metrics: b images on G's device from fresh latents (and
    uniform labels)."""
    device = next(G.parameters()).device

    @torch.no_grad()
    def generate(b: int, g: torch.Generator) -> torch.Tensor:
        z = torch.randn(b, cfg.z_dim, generator=g)
        y = torch.randint(cfg.num_classes, (b,), generator=g).to(device) if conditional(cfg) else None
        return module.generate(G, z.to(device), y).float()

    return generate


def load_generator(path: str | Path, device: str | torch.device = "cpu"):
    """(model module, config, G_ema in eval mode) from a model file, a training checkpoint, a
    snapshot or a run folder (its model.safetensors, else newest snapshot, else checkpoint)."""
    path = runs.model_file(Path(path))
    ckpt = checkpoint.load(path)
    if not isinstance(ckpt.state, dict) or "G_ema" not in ckpt.state:
        raise checkpoint.CheckpointError(f"{path} holds no generator weights ('G_ema')")
    module = MODELS.get(ckpt.model)
    if module is None:
        raise checkpoint.CheckpointError(f"{path}: unknown model {ckpt.model!r}")
    stored = {k: v for k, v in ckpt.config.items() if not k.startswith("_")}
    cfg = config.from_dict(module.Config, stored)
    G = module.Generator(cfg)
    G.load_state_dict(ckpt.state["G_ema"])
    return module, cfg, G.to(device).eval().requires_grad_(False)
