"""Evaluate a generator: draw images, extract features once, compute the requested metrics, and
return every number with the protocol that produced it.

Paper: Heusel et al. (2017), arXiv:1706.08500, §3 (FID) and Bińkowski et al. (2018),
arXiv:1801.01401 (KID) on features; Kynkäänniemi et al. (2019), arXiv:1904.06991 (precision and
recall); Naeem et al. (2020), arXiv:2002.09797, §3 (density and coverage); Salimans et al.
(2016), arXiv:1606.03498, §4 (Inception Score) on class probabilities; Karras et al. (2018),
arXiv:1710.10196, §5 (sliced Wasserstein distance) and Odena et al. (2017), arXiv:1610.09585
(MS-SSIM diversity) on pixels.

    fid = ‖μ_r − μ_g‖² + Tr(Σ_r + Σ_g − 2(Σ_r Σ_g)^½)   on φ(real), φ(generated)

Names: "fid", "kid", "pr", "dc", "is" use the extractor; "swd" and "msssim" use the pixels and
record the extractor "pixels". The extractor "pixels" gives fid, kid, pr and dc on the flattened
pixels; it has no classes, so "is" is refused with it. Real features are cached on disk under
their protocol (`features.py`). `check_setup` says, before any image is drawn, whether a setup
can work at all.

Generated images are scored as they would be saved: clamped to [-1, 1] and rounded to 8 bits,
like the real images they are compared with (the papers' metric code converts to uint8 too; an
unclamped generator output at ±2.5 would otherwise be compared with reals that never leave ±1).

Many processes: the images are cut into global batches of `batch_size` (the last one shorter);
batch j is drawn from a generator seeded by (seed, "metrics", j) alone, so the image set is the
same for any number of processes. Process r generates and featurises a contiguous run of batches
on its own device; `gather` brings every process the features of all (small: n × (d + k)
floats), in the global order, and every process then computes the same scores from them (cheap
next to generation), so no process idles in a collective while another works; a process that
fails makes every process raise rather than wait.

Shapes: generate(b, generator) -> (b, c, h, w), nominally [-1, 1]; reals (n, c, h, w) in [-1, 1].
Lesson: lessons/31_features.md
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from nanogan.data import to_uint8
from nanogan.features import (EXTRACTORS, Extractor, Protocol, extract, get_extractor, load_cached,
                              store_cached)
from nanogan.fid import fid, kid
from nanogan.inception_score import inception_score
from nanogan.msssim import WEIGHTS as MS_SSIM_WEIGHTS
from nanogan.msssim import ms_ssim_diversity
from nanogan.precision_recall import density_coverage, precision_recall
from nanogan.randomness import derive_seed
from nanogan.swd import resolutions as swd_resolutions
from nanogan.swd import swd

METRICS = ("swd", "fid", "kid", "pr", "dc", "msssim", "is")
ON_FEATURES = {"fid", "kid", "pr", "dc", "is"}  # the rest compare pixels
ON_CLASSES = {"is"}  # needs an extractor with class probabilities
PR_K = 3  # neighbours per k-NN ball in precision and recall (the paper's k)
DC_K = 5  # neighbours per real k-NN ball in density and coverage (the paper's k)
# the fewest images each metric can score, and why
MIN_IMAGES = {"fid": (2, "a covariance needs 2 samples"),
              "kid": (2, "the unbiased MMD² needs pairs of samples"),
              "pr": (PR_K + 1, f"each image needs k = {PR_K} neighbours besides itself"),
              "dc": (DC_K + 1, f"each real image needs k = {DC_K} neighbours besides itself"),
              "is": (2, "a distribution needs 2 samples"),
              "swd": (2, "a distribution needs 2 samples"),
              "msssim": (2, "it compares pairs of different images")}
MIN_PIXELS = {"swd": 16, "msssim": 2 ** (len(MS_SSIM_WEIGHTS) - 1)}  # smallest image side


class MetricSetupError(ValueError):
    """A metric setup that cannot work (names, extractor, image counts, image size)."""


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
        return dict(precision_recall(real()[0], fake[0], k=PR_K))
    if name == "dc":
        return dict(density_coverage(real()[0], fake[0], k=DC_K))
    if name == "is":
        mean, std = inception_score(fake[1], splits=min(10, len(fake[1])))
        return {"mean": mean, "std": std}
    if name == "swd":
        return swd(real_images(), fake_images, generator=g)
    return ms_ssim_diversity(fake_images, generator=g)


def _measure(metrics, fake_images, real_images, real, fake, protocol: Protocol,
             seed: int) -> dict[str, MetricResult]:
    pixels = dataclasses.replace(protocol, extractor="pixels", resize=None)
    return {name: MetricResult(name, score(name, fake_images, real_images, fake, real, seed),
                               protocol if name in ON_FEATURES else pixels)
            for name in metrics}


def _unknown_metrics(names: Sequence[str]) -> str | None:
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        return f"unknown metrics {unknown or 'none given'}; choose from {', '.join(METRICS)}"
    return None


def parse_metrics(text: str) -> list[str]:
    """"fid, kid" -> ["fid", "kid"]; an unknown name is a MetricSetupError (a ValueError) that
    lists the choices. An empty text gives []."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    if names and (problem := _unknown_metrics(names)):
        raise MetricSetupError(problem)
    return names


def _check(metrics: Sequence[str], num_images: int, batch_size: int) -> None:
    if problem := _unknown_metrics(list(metrics)):
        raise MetricSetupError(problem)
    need, name = max((MIN_IMAGES[m][0], m) for m in metrics)
    if num_images < need or batch_size < 1:
        raise MetricSetupError(f"need >= {need} images ({name}: {MIN_IMAGES[name][1]}) and "
                               f"batch_size >= 1, got {num_images}, {batch_size}")


def _check_classes(metrics: Sequence[str], name: str, model: Extractor) -> None:
    if not model.classes and (wanting := [m for m in metrics if m in ON_CLASSES]):
        raise MetricSetupError(f"{', '.join(wanting)} needs class probabilities; the {name!r} "
                               "extractor has none: use an extractor with a classifier, such as "
                               "'fashion' or 'inception'")


def _load_extractor(name: str, metrics: Sequence[str] = ()) -> Extractor:
    """The extractor `name`, refusing `metrics` it cannot serve (class-based ones without classes)."""
    model = _loaded_extractor(name)
    _check_classes(metrics, name, model)
    return model


def _extractor_for(metrics: Sequence[str], name: str) -> Extractor | None:
    """The extractor `name` checked against `metrics`, or None when no metric uses features."""
    return _load_extractor(name, metrics) if ON_FEATURES & set(metrics) else None


def _loaded_extractor(name: str) -> Extractor:
    if name not in EXTRACTORS:
        close = difflib.get_close_matches(name, EXTRACTORS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise MetricSetupError(f"unknown extractor {name!r}; choose from "
                               f"{', '.join(sorted(EXTRACTORS))}{hint}")
    try:
        return get_extractor(name)
    except (OSError, ValueError) as err:  # weights missing or not the expected file
        others = ", ".join(sorted(set(EXTRACTORS) - {name}))
        raise MetricSetupError(f"extractor {name!r} cannot be loaded: {err}"
                               + (f" (or choose another extractor: {others})" if others
                                  else "")) from None


def check_extractor(metrics: Sequence[str], extractor: str) -> None:
    """Raise MetricSetupError unless `extractor` exists, loads and serves `metrics` (its classes
    for the class-based ones): the extractor part of `check_setup`, for commands that check it
    before they open a dataset. Image size and count are left to `check_setup`."""
    _extractor_for(metrics, extractor)


def check_setup(metrics: Sequence[str], *, extractor: str, num_images: int, num_real: int,
                resolution: int, channels: int) -> None:
    """Raise MetricSetupError unless `evaluate` can score `metrics` on `num_images` generated
    images of size `resolution`² with `channels` channels against `num_real` available real ones.

    Cheap enough to run before training: no image is drawn or decoded and nothing runs through a
    network; the feature extractor (for fid, kid, pr, dc, is) is loaded from its weights file, so a
    missing or wrong file shows here rather than at the end of a run.
    """
    metrics = list(metrics)
    if problem := _unknown_metrics(metrics):
        raise MetricSetupError(problem)
    need, name = max((MIN_IMAGES[m][0], m) for m in metrics)
    if num_images < need:
        raise MetricSetupError(f"{name} needs at least {need} images ({MIN_IMAGES[name][1]}), "
                               f"got {num_images}")
    if num_images > num_real:
        raise MetricSetupError(f"the metrics compare {num_images} generated images with as "
                               f"many real ones, but the reference split has only "
                               f"{num_real} real images; use at most {num_real}")
    if resolution < 1 or channels < 1:
        raise MetricSetupError(f"need resolution >= 1 and channels >= 1, got {resolution} and "
                               f"{channels}")
    for name in (m for m in metrics if m in MIN_PIXELS):
        if resolution < MIN_PIXELS[name]:
            raise MetricSetupError(f"{name} needs images of at least {MIN_PIXELS[name]}×"
                                   f"{MIN_PIXELS[name]} pixels, got {resolution}×{resolution}")
    levels = len(swd_resolutions(resolution)) if "swd" in metrics else 1
    if resolution % 2 ** (levels - 1):
        raise MetricSetupError(f"swd halves {resolution}×{resolution} images {levels - 1} times "
                               f"down to 16 pixels; use a size divisible by {2 ** (levels - 1)} "
                               "(a power of two)")
    model = _extractor_for(metrics, extractor)
    if model is None:
        return
    if model.resolution is not None and resolution != model.resolution:
        raise MetricSetupError(f"extractor {extractor!r} takes {model.resolution}×"
                               f"{model.resolution} images, these are {resolution}×"
                               f"{resolution}; use an extractor that resizes its input, such "
                               "as 'inception'")
    if model.channels is not None and channels not in model.channels:
        raise MetricSetupError(f"extractor {extractor!r} takes images with "
                               f"{' or '.join(map(str, model.channels))} channels, got {channels}")


def _as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1 if images.dtype == torch.uint8 else images.float()


def as_saved(images: torch.Tensor) -> torch.Tensor:
    """Images as a PNG would hold them, back in float [-1, 1]: clamped, rounded to 8 bits."""
    return _as_float(images if images.dtype == torch.uint8 else to_uint8(images))


def real_indices(n: int, num_images: int) -> torch.Tensor:
    """All n indices in order, or a subset fixed by seed 0, so that the protocol alone decides
    which images are used (and the cache stays valid)."""
    if num_images > n:
        raise ValueError(f"asked for {num_images} real images, the dataset has {n}")
    fixed = torch.Generator().manual_seed(0)
    return torch.arange(n) if num_images == n else torch.randperm(n, generator=fixed)[:num_images]


def _load_images(dataset: Any, indices: torch.Tensor) -> torch.Tensor:
    if isinstance(dataset, torch.Tensor):
        return _as_float(dataset[indices])
    items = [dataset[i] for i in indices.tolist()]
    return _as_float(torch.stack([torch.as_tensor(x[0] if isinstance(x, tuple) else x)
                                  for x in items]))


def pick_real_images(dataset: Any, num_images: int) -> torch.Tensor:
    """`num_images` images of a tensor or an indexable dataset of images or (image, label) pairs,
    as float [-1, 1]: all of them in order, or a subset fixed by seed 0 so that the protocol
    alone decides which images are used (and the cache stays valid)."""
    return _load_images(dataset, real_indices(len(dataset), num_images))


@dataclasses.dataclass(frozen=True)
class Shares:
    """`num_images` cut into global batches of `batch_size` (the last one shorter), and the
    contiguous run of batches each of `world` processes takes (counts differ by at most one)."""

    num_images: int
    batch_size: int
    world: int = 1

    @functools.cached_property
    def sizes(self) -> list[int]:
        full, rest = divmod(self.num_images, self.batch_size)
        return [self.batch_size] * full + [rest] * bool(rest)

    def batches(self, rank: int) -> range:
        """The global batch indices process `rank` handles (empty when world > batches)."""
        n = len(self.sizes)
        return range(rank * n // self.world, (rank + 1) * n // self.world)

    def count(self, rank: int) -> int:
        return sum(self.sizes[j] for j in self.batches(rank))

    def start(self, j: int) -> int:
        return j * self.batch_size


def _collect(local: torch.Tensor, shares: Shares,
             gather: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
    """All processes' rows in the global order, from this process's `local` rows.

    Shares differ in size, while an all-gather concatenates equal sizes: pad every share to the
    largest, gather, then cut each process's block back to its own count. A process without a
    batch of its own sends rows it computed only to learn their shape; they are cut away.
    """
    if shares.world == 1:
        return local
    rows = max(shares.count(r) for r in range(shares.world))
    padded = torch.cat([local[:rows], local.new_zeros(max(rows - len(local), 0), *local.shape[1:])])
    everything = gather(padded.contiguous())
    if everything.shape != (shares.world * rows, *local.shape[1:]):
        raise ValueError(f"gather must concatenate the {shares.world} processes' tensors: got "
                         f"{tuple(everything.shape)} from {tuple(padded.shape)}")
    return torch.cat([everything[r * rows: r * rows + shares.count(r)]
                      for r in range(shares.world)])


def _featurise(model: Extractor, batches: list[torch.Tensor]) -> tuple[torch.Tensor, int]:
    """[features ‖ probs] (n, d + k) of this process's image batches (one tensor: one gather)
    and d."""
    features, probs = (torch.cat(t) for t in zip(*(model(_as_float(b)) for b in batches)))
    return torch.cat([features, probs], 1), features.shape[1]


def _agree(error: Exception | None, flags: Sequence[bool], world: int, device: torch.device,
           gather: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
    """Every process's flags (world, len(flags)), once all have finished their local work.

    If any process failed, every process raises here: the others would otherwise wait in the
    next gather for a process that never comes (until NCCL's timeout kills the job).
    """
    mine = torch.tensor([[error is None, *flags]], dtype=torch.int32, device=device)
    everyone = gather(mine) if world > 1 else mine
    if error is not None:
        raise error
    if not everyone[:, 0].all():
        failed = [r for r in range(world) if not everyone[r, 0]]
        raise RuntimeError(f"evaluation failed on process {failed}; see that process's error")
    return everyone[:, 1:].bool()


def evaluate(metrics: Sequence[str], *, generate: Callable[[int, torch.Generator], torch.Tensor],
             dataset: Any, num_images: int, extractor: str = "fashion", split: str = "test",
             batch_size: int = 64, seed: int = 0, cache_dir: str | Path | None = None,
             dataset_name: str | None = None, device: torch.device | str | None = None,
             rank: int = 0, world: int = 1,
             gather: Callable[[torch.Tensor], torch.Tensor] | None = None
             ) -> dict[str, MetricResult]:
    """Draw `num_images` from `generate` and as many real images from `dataset` (the requested
    split), extract features once, score each metric; on `world` processes, each does its share.

    generate(b, g) returns b images (on any device) drawn with the CPU generator g; global batch
    j of `batch_size` images gets g seeded by (seed, "metrics", j), so the images do not depend
    on `world`. Process `rank` generates its contiguous run of batches, decodes the same run of
    real images, and runs the extractor on `device` (default: the CPU). `gather` (needed when
    world > 1; e.g. Accelerate's `accelerator.gather`) is an all-gather that concatenates
    equal-size tensors in rank order along dim 0; every process must call `evaluate` with the
    same arguments but `rank`, and all get the same results.

    What is gathered: features and probabilities, n × (d + k) floats (with the "pixels"
    extractor d = c·h·w and k = 0: the images as float32); for "swd" and "msssim"
    also the generated images as uint8 (n·c·h·w bytes on every process: 2,000 RGB images at
    256² are 390 MB) and for "swd" the real images as float32 (4 × that); those two metrics
    need the whole set at once (SWD normalises over all descriptors; MS-SSIM pairs any two
    images). Every process computes the scores, on `device` if it is a CPU or CUDA device.
    A failure in one process's share (its generator, a bad image in its part of the data) raises
    on every process, so that none is left waiting in a gather.

    Real features are cached under the protocol; `dataset_name` (default: `dataset.name`) names
    the data in it, so two different datasets must not share a name. With world > 1 the cache
    is used only when every process finds it, and only rank 0 writes it.
    """
    _check(metrics, num_images, batch_size)
    _check_processes(rank, world, gather)
    device = torch.device(device) if device is not None else torch.device("cpu")
    shares = Shares(num_images, batch_size, world)
    mine = list(shares.batches(rank)) or [0]  # no batch of its own: compute batch 0, send none
    agree = functools.partial(_agree, world=world, device=device, gather=gather)
    collect = functools.partial(_collect, shares=shares, gather=gather)
    indices = real_indices(len(dataset), num_images)  # before any work: enough real images?
    model = _extractor_for(metrics, extractor)  # before any image is drawn
    model = model.to(device) if model is not None else None
    name = dataset_name or getattr(dataset, "name", None) or "images"
    protocol = Protocol(extractor, num_images, split, model.resize if model else None, name)

    with torch.no_grad():
        # 1. local work: this process's fakes and their features; is the real-feature cache here?
        cache = lambda: load_cached(protocol, model.fingerprint, cache_dir)  # noqa: E731
        error, fakes, fake, cached = _fake_share(generate, shares, mine, seed, model, cache)
        # the cache is used only if every process has it: one that misses needs the others
        compute_real = not agree(error, [cached is not None]).all() and model is not None
        # 2. local work: this process's real images, and their features unless cached
        reals, real = _real_share(dataset, indices, shares, mine, device, agree,
                                  model if compute_real else None, "swd" in metrics)
        # 3. gather: every process gets all rows, in the global order; 4. the scores
        if model is not None:
            fake = _split(collect(fake[0]), fake[1])
            real = _split(collect(real[0]), real[1]) if compute_real else cached
        results = _gathered_scores(metrics, fakes, reals, fake, real, collect, device,
                                   protocol, seed)
    if compute_real and rank == 0:  # after the last gather: no process waits for this write
        store_cached(*real, protocol, model.fingerprint, cache_dir)
    return results


def _check_processes(rank: int, world: int,
                     gather: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}), got rank {rank}")
    if world > 1 and gather is None:
        raise ValueError(f"world = {world} processes need a gather function (an all-gather "
                         "that concatenates along dim 0 in rank order)")


def batch_generator(seed: int, j: int) -> torch.Generator:
    """The generator that draws generated batch j's latents (and labels) for a metric seeded by
    `seed`: a stream of its own, never `manual_seed(seed)`, from which `train.py --seed` drew the
    weights (its first latents would be rows of G's first layer; lessons/30_evaluation.md)."""
    return torch.Generator().manual_seed(derive_seed(seed, "metrics", j))


def _fake_share(generate: Callable[[int, torch.Generator], torch.Tensor], shares: Shares,
                batches: list[int], seed: int, model: Extractor | None,
                cached: Callable[[], tuple[torch.Tensor, torch.Tensor] | None]):
    """(error, fakes, fake, cached()) of this process's share: its generated batches, 8-bit where
    generate left them (batch j drawn with a generator seeded by (seed, "metrics", j) alone), and
    with a model their [features ‖ probs] and d, and the real features the cache holds. An error
    is returned, not raised, so that _agree raises it on every process."""
    fakes = []
    try:
        for j in batches:
            images = generate(shares.sizes[j], batch_generator(seed, j)).detach()
            if images.ndim != 4 or len(images) != shares.sizes[j]:
                raise ValueError(f"generate must return (b, c, h, w) images, got "
                                 f"{tuple(images.shape)} for b = {shares.sizes[j]}")
            fakes.append(to_uint8(images))
        if model is not None:
            return None, fakes, _featurise(model, fakes), cached()
    except Exception as err:  # noqa: BLE001 - re-raised by _agree, on every process
        return err, fakes, None, None
    return None, fakes, None, None


def _real_share(dataset: Any, indices: torch.Tensor, shares: Shares, batches: list[int],
                device: torch.device, agree: Callable, model: Extractor | None, pixels: bool
                ) -> tuple[list[torch.Tensor] | None, tuple[torch.Tensor, int] | None]:
    """This process's real images (the same batches as its fakes, on `device`) and, with a
    `model`, their [features ‖ probs]; (None, None) when neither the features (no model) nor
    the pixels are needed. Every process agrees that all succeeded before any goes on."""
    if model is None and not pixels:
        return None, None
    error = reals = real = None
    try:
        reals = [_load_images(dataset, indices[shares.start(j):][:shares.sizes[j]]).to(device)
                 for j in batches]
        real = _featurise(model, reals) if model is not None else None
    except Exception as err:  # noqa: BLE001 - re-raised by _agree, on every process
        error = err
    agree(error, [])
    return reals, real


def _gathered_scores(metrics: Sequence[str], fakes: list[torch.Tensor],
                     reals: list[torch.Tensor] | None, fake, real, collect: Callable,
                     device: torch.device, protocol: Protocol, seed: int
                     ) -> dict[str, MetricResult]:
    """The scores from every process's (gathered) features, and pixels where a metric needs
    them; the same on every process. Float64 statistics: on the CPU where a device may lack
    float64 (MPS)."""
    fake_images = real_images = None
    if {"swd", "msssim"} & set(metrics):
        fake_images = _as_float(collect(torch.cat(fakes).to(device)))
    if "swd" in metrics:
        real_images = collect(torch.cat(reals))
    where = device if device.type in ("cpu", "cuda") else torch.device("cpu")
    move = lambda t: None if t is None else (  # noqa: E731
        tuple(x.to(where) for x in t) if isinstance(t, tuple) else t.to(where))
    fake, real, fake_images, real_images = map(move, (fake, real, fake_images, real_images))
    return _measure(metrics, fake_images, lambda: real_images, lambda: real, fake, protocol,
                    seed)


def _split(both: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    return both[:, :d], both[:, d:]


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
    train split for a floor, uniform noise for a ceiling), on the CPU; nothing is cached."""
    _check(metrics, len(fake_images), batch_size)
    if len(real_images) != len(fake_images):
        raise ValueError(f"the sets must have the same size, got {len(fake_images)} and "
                         f"{len(real_images)}")
    fakes, reals = as_saved(fake_images), as_saved(real_images)
    model = _extractor_for(metrics, extractor)
    protocol = Protocol(extractor, len(fakes), split, model.resize if model else None, dataset)
    fake = extract(model, fakes, batch_size=batch_size) if model is not None else None
    real = functools.cache(lambda: extract(model, reals, batch_size=batch_size))
    return _measure(metrics, fakes, lambda: reals, real, fake, protocol, seed)
