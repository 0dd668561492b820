"""Evaluate a generator: draw images, extract features once, compute the requested metrics, and
return every number with the protocol that produced it.

Paper: Heusel et al. (2017), arXiv:1706.08500, §3 (FID) and Bińkowski et al. (2018),
arXiv:1801.01401 (KID) on features; Kynkäänniemi et al. (2019), arXiv:1904.06991 (precision and
recall); Salimans et al. (2016), arXiv:1606.03498, §4 (Inception Score) on class probabilities;
Karras et al. (2018), arXiv:1710.10196, §5 (sliced Wasserstein distance) and Odena et al. (2017),
arXiv:1610.09585 (MS-SSIM diversity) on pixels.

    fid = ‖μ_r − μ_g‖² + Tr(Σ_r + Σ_g − 2(Σ_r Σ_g)^½)   on φ(real), φ(generated)

Names: "fid", "kid", "pr", "is" use the extractor; "swd" and "msssim" use the pixels and record
the extractor "pixels". Real features are cached on disk under their protocol (`features.py`).

Generated images are scored as they would be saved: clamped to [-1, 1] and rounded to 8 bits,
like the real images they are compared with (the papers' metric code converts to uint8 too; an
unclamped generator output at ±2.5 would otherwise be compared with reals that never leave ±1).

Shapes: generate(b, generator) -> (b, c, h, w), nominally [-1, 1]; reals (n, c, h, w) in [-1, 1].
Lesson: lessons/31_features.md
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from nanogan.data import to_uint8
from nanogan.features import Extractor, Protocol, extract, get_extractor, real_features
from nanogan.fid import fid, kid
from nanogan.inception_score import inception_score
from nanogan.msssim import ms_ssim_diversity
from nanogan.precision_recall import precision_recall
from nanogan.randomness import derive_seed
from nanogan.swd import swd

METRICS = ("swd", "fid", "kid", "pr", "msssim", "is")
ON_FEATURES = {"fid", "kid", "pr", "is"}  # the rest compare pixels


@dataclasses.dataclass(frozen=True)
class MetricResult:
    """One score and the protocol it was measured under."""

    name: str
    value: float | dict[str, float]
    protocol: Protocol

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.name, "value": self.value, **dataclasses.asdict(self.protocol)}


def score(name: str, fake_images: torch.Tensor, real_images: Callable[[], torch.Tensor],
          fake: tuple[torch.Tensor, torch.Tensor] | None,
          real: Callable[[], tuple[torch.Tensor, torch.Tensor]], seed: int) -> float | dict:
    """One metric from images or (features, probs); each metric draws from its own stream."""
    g = torch.Generator().manual_seed(derive_seed(seed, "metric", name))
    if name == "fid":
        return fid(real()[0], fake[0])
    if name == "kid":
        mean, std = kid(real()[0], fake[0], generator=g)
        return {"mean": mean, "std": std}
    if name == "pr":
        return dict(precision_recall(real()[0], fake[0], k=3))
    if name == "is":
        mean, std = inception_score(fake[1], splits=min(10, len(fake[1])))
        return {"mean": mean, "std": std}
    if name == "swd":
        return swd(real_images(), fake_images, generator=g)
    return ms_ssim_diversity(fake_images, generator=g)


def _measure(metrics, fake_images, real_images, real, model: Extractor | None,
             protocol: Protocol, batch_size: int, seed: int) -> dict[str, MetricResult]:
    fake = extract(model, fake_images, batch_size=batch_size) if model is not None else None
    pixels = dataclasses.replace(protocol, extractor="pixels", resize=None)
    return {name: MetricResult(name, score(name, fake_images, real_images, fake, real, seed),
                               protocol if name in ON_FEATURES else pixels)
            for name in metrics}


def parse_metrics(text: str) -> list[str]:
    """"fid, kid" -> ["fid", "kid"]; an unknown name is a ValueError that lists the choices."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}")
    return names


def _check(metrics: Sequence[str], num_images: int, batch_size: int) -> None:
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown metrics {unknown or 'none given'}; choose from {list(METRICS)}")
    if num_images < 2 or batch_size < 1:
        raise ValueError(f"need >= 2 images and batch_size >= 1, got {num_images}, {batch_size}")


def _as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1 if images.dtype == torch.uint8 else images.float()


def as_saved(images: torch.Tensor) -> torch.Tensor:
    """Images as a PNG would hold them, back in float [-1, 1]: clamped, rounded to 8 bits."""
    return _as_float(images if images.dtype == torch.uint8 else to_uint8(images))


def pick_real_images(dataset: Any, num_images: int) -> torch.Tensor:
    """`num_images` images of a tensor or an indexable dataset of images or (image, label) pairs,
    as float [-1, 1]: all of them in order, or a subset fixed by seed 0 so that the protocol
    alone decides which images are used (and the cache stays valid)."""
    n = len(dataset)
    if num_images > n:
        raise ValueError(f"asked for {num_images} real images, the dataset has {n}")
    fixed = torch.Generator().manual_seed(0)
    order = torch.arange(n) if num_images == n else torch.randperm(n, generator=fixed)[:num_images]
    if isinstance(dataset, torch.Tensor):
        return _as_float(dataset[order])
    items = [dataset[i] for i in order.tolist()]
    return _as_float(torch.stack([torch.as_tensor(x[0] if isinstance(x, tuple) else x)
                                  for x in items]))


def evaluate(metrics: Sequence[str], *, generate: Callable[[int, torch.Generator], torch.Tensor],
             dataset: Any, num_images: int, extractor: str = "fashion", split: str = "test",
             batch_size: int = 64, seed: int = 0, cache_dir: str | Path | None = None,
             dataset_name: str | None = None) -> dict[str, MetricResult]:
    """Draw `num_images` from `generate` (one generator seeded by `seed`, batch by batch) and as
    many real images from `dataset` (the requested split), extract features once, score each metric.

    Real features are cached under the protocol; `dataset_name` (default: `dataset.name`) names
    the data in it, so two different datasets must not share a name.
    """
    _check(metrics, num_images, batch_size)
    g = torch.Generator().manual_seed(seed)
    sizes = [batch_size] * (num_images // batch_size) + [num_images % batch_size] * bool(
        num_images % batch_size)
    with torch.no_grad():
        fakes = as_saved(torch.cat([generate(b, g).detach().float().cpu() for b in sizes]))
    if fakes.ndim != 4 or len(fakes) != num_images:
        raise ValueError(f"generate must return (b, c, h, w) images, got {tuple(fakes.shape)} "
                         f"for {num_images}")
    reals = functools.cache(lambda: pick_real_images(dataset, num_images))
    model = get_extractor(extractor) if ON_FEATURES & set(metrics) else None
    name = dataset_name or getattr(dataset, "name", None) or "images"
    protocol = Protocol(extractor, num_images, split, model.resize if model else None, name)
    real = functools.cache(lambda: real_features(reals, protocol, cache_dir=cache_dir,
                                                 batch_size=batch_size, extractor=model))
    return _measure(metrics, fakes, reals, real, model, protocol, batch_size, seed)


def class_accuracy(probs: torch.Tensor, labels: torch.Tensor,
                   num_classes: int) -> dict[str, float]:
    """For a class-conditional G: per class k, the fraction of images generated for k that the
    classifier assigns to k ("acc_k"), and their mean ("acc_mean"). Needs a classifier whose
    classes are the model's (the Fashion-MNIST classifier for Fashion-MNIST models)."""
    if probs.ndim != 2 or probs.shape[1] < num_classes or labels.shape != probs.shape[:1]:
        raise ValueError(f"need probs (n, >= {num_classes}) and labels (n,), got "
                         f"{tuple(probs.shape)} and {tuple(labels.shape)}")
    hit = probs.argmax(1) == labels
    per_class = {f"acc_{k}": hit[labels == k].float().mean().item()
                 for k in range(num_classes) if (labels == k).any()}
    return per_class | {"acc_mean": sum(per_class.values()) / len(per_class)}


def evaluate_images(metrics: Sequence[str], fake_images: torch.Tensor, real_images: torch.Tensor,
                    *, extractor: str = "fashion", dataset: str = "images", split: str = "",
                    batch_size: int = 64, seed: int = 0) -> dict[str, MetricResult]:
    """The same metrics between two fixed sets of equal size (e.g. the test split against the
    train split for a floor, uniform noise for a ceiling); nothing is cached."""
    _check(metrics, len(fake_images), batch_size)
    if len(real_images) != len(fake_images):
        raise ValueError(f"the sets must have the same size, got {len(fake_images)} and "
                         f"{len(real_images)}")
    fakes, reals = as_saved(fake_images), as_saved(real_images)
    model = get_extractor(extractor) if ON_FEATURES & set(metrics) else None
    protocol = Protocol(extractor, len(fakes), split, model.resize if model else None, dataset)
    real = functools.cache(lambda: extract(model, reals, batch_size=batch_size))
    return _measure(metrics, fakes, lambda: reals, real, model, protocol, batch_size, seed)
