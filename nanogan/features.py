"""Feature extractors for FID-style metrics, the protocol recorded with every score, and a cache of
real-data features keyed by that protocol.

Paper: Heusel et al. (2017), arXiv:1706.08500, §3: FID compares the Gaussians of two sets of
*features*, so a score means nothing without the network, the number of images, the split and
the resizing that produced it. Each score here carries a `Protocol` naming all of them.

    φ: images (b, c, h, w) in [-1, 1] -> features (b, d), class probabilities (b, k)

Extractors: "fashion" (nanogan's Fashion-MNIST classifier, d = 128, k = 10, 32×32 input, offline),
"inception" (the FID Inception-v3, d = 2048, k = 1008, any size resized to 299×299; needs the
weights file, see `nanogan.inception.load_inception`) and "pixels" (no network: the images
themselves flattened, d = c·h·w, any size and channel count; k = 0, it has no classes, so no
Inception score; meant for small images: FID's covariance is d × d, 1024² at 32² grey but
12288² at 64² RGB, and the real features are cached on disk like any others). Register more in
`EXTRACTORS`.

Shapes: images (b, c, h, w) -> features (n, d), probs (n, k), accumulated batch by batch.
Lesson: lessons/31_features.md
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange
from torch import nn


@dataclass(frozen=True)
class Protocol:
    """Everything a feature-based score depends on besides the two image sets."""

    extractor: str
    num_images: int
    split: str
    resize: str | None
    dataset: str

    def key(self, fingerprint: str = "") -> str:
        """A short hash of the fields (and of the extractor's weights): the cache file's name."""
        fields = json.dumps({**dataclasses.asdict(self), "weights": fingerprint}, sort_keys=True)
        return hashlib.sha256(fields.encode()).hexdigest()[:16]


@dataclass
class Extractor:
    """A network returning (features, logits), the input size it needs, and how it resizes."""

    model: nn.Module
    resize: str | None  # recorded in the protocol
    resolution: int | None = None  # inputs must have this size (None: the model resizes itself)
    fingerprint: str = ""  # identifies the weights, so a retrained network misses the cache
    channels: tuple[int, ...] | None = (1, 3)  # colour channels the network accepts (None: any)
    classes: bool = True  # False: the model returns (b, 0) logits and there is no Inception score

    @property
    def device(self) -> torch.device:
        tensors = itertools.chain(self.model.parameters(), self.model.buffers())
        return next((t.device for t in tensors), torch.device("cpu"))

    def to(self, device: torch.device | str) -> Extractor:
        """The same extractor with its network on `device` (its outputs come back there too)."""
        return dataclasses.replace(self, model=self.model.to(device))

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (b, d) and probabilities (b, k) in float32, on the network's device."""
        if self.resolution is not None and images.shape[-2:] != (self.resolution,) * 2:
            raise ValueError(f"this extractor needs {self.resolution}×{self.resolution} images, "
                             f"got {tuple(images.shape[-2:])}; use the 'inception' extractor for "
                             "other sizes")
        features, logits = self.model(images.to(self.device, torch.float32))
        return features.float(), logits.double().softmax(1).float()


class _ClassifierOutputs(nn.Module):
    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, x):
        features = self.classifier.features(x)
        return features, self.classifier.head(features)


class _Pixels(nn.Module):
    """The images themselves as features, (b, c·h·w), and no class logits, (b, 0): a softmax over
    no classes is empty, so no probability is ever made up."""

    def __init__(self):
        super().__init__()
        # no parameters: this empty buffer carries the device that `.to(device)` moves it to
        self.register_buffer("anchor", torch.zeros(0), persistent=False)

    def forward(self, x):
        return rearrange(x, "b c h w -> b (c h w)"), x.new_zeros(len(x), 0)


def pixels_extractor() -> Extractor:
    return Extractor(_Pixels(), resize=None, fingerprint="pixels", channels=None, classes=False)


def fashion_extractor() -> Extractor:
    from nanogan.classifier import WEIGHTS, load_classifier

    stamp = hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()[:16]
    return Extractor(_ClassifierOutputs(load_classifier()).eval(), resize=None, resolution=32,
                     fingerprint=f"fashion_classifier:{stamp}")


def inception_extractor() -> Extractor:
    from nanogan.inception import FILENAME, load_inception

    return Extractor(load_inception(), resize="bilinear to 299", fingerprint=FILENAME)


EXTRACTORS: dict[str, Callable[[], Extractor]] = {
    "fashion": fashion_extractor,
    "inception": inception_extractor,
    "pixels": pixels_extractor,
}


def get_extractor(name: str) -> Extractor:
    if name not in EXTRACTORS:
        raise ValueError(f"unknown extractor {name!r}; choose from {sorted(EXTRACTORS)}")
    return EXTRACTORS[name]()


def batches(images: torch.Tensor | Iterable[torch.Tensor],
            batch_size: int) -> Iterator[torch.Tensor]:
    """A tensor split into batches, or an iterable of batches passed through."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    yield from images.split(batch_size) if isinstance(images, torch.Tensor) else images


def extract(extractor: str | Extractor, images: torch.Tensor | Iterable[torch.Tensor], *,
            batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (n, d) and class probabilities (n, k) of all images, computed batch by batch on
    the extractor's device (an extractor given by name runs on the CPU)."""
    extractor = get_extractor(extractor) if isinstance(extractor, str) else extractor
    outputs = [extractor(batch) for batch in batches(images, batch_size)]
    if not outputs:
        raise ValueError("no images to extract features from")
    features, probs = zip(*outputs)
    return torch.cat(features), torch.cat(probs)


def default_cache_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "nanogan" / "stats"


def cache_path(protocol: Protocol, fingerprint: str, cache_dir: str | Path | None = None) -> Path:
    """Where the real features of `protocol` under weights `fingerprint` are cached."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / f"{protocol.key(fingerprint)}.safetensors"


def _record(protocol: Protocol) -> dict[str, str]:
    return {k: json.dumps(v) for k, v in dataclasses.asdict(protocol).items()}


def load_cached(protocol: Protocol, fingerprint: str, cache_dir: str | Path | None = None
                ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(features, probs) from the cache, on the CPU, or None when the file is absent or was
    written for another protocol."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = cache_path(protocol, fingerprint, cache_dir)
    if not path.is_file():
        return None
    record = _record(protocol)
    with safe_open(str(path), framework="pt") as f:
        if {k: v for k, v in (f.metadata() or {}).items() if k in record} != record:
            return None
    stats = load_file(str(path))
    return stats["features"], stats["probs"]


def store_cached(features: torch.Tensor, probs: torch.Tensor, protocol: Protocol,
                 fingerprint: str, cache_dir: str | Path | None = None) -> Path:
    """Write (features, probs) to the cache atomically (temporary file + rename), with the
    protocol in the file's metadata; concurrent writers of one protocol leave one whole file."""
    from safetensors.torch import save_file

    if len(features) != protocol.num_images:
        raise ValueError(f"the protocol asks for {protocol.num_images} real images, "
                         f"got {len(features)}")
    path = cache_path(protocol, fingerprint, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file({"features": features.detach().cpu().contiguous(),
                   "probs": probs.detach().cpu().contiguous()}, tmp,
                  metadata={**_record(protocol), "weights": fingerprint})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def real_features(images: torch.Tensor | Callable[[], torch.Tensor | Iterable[torch.Tensor]],
                  protocol: Protocol, *, cache_dir: str | Path | None = None,
                  batch_size: int = 64,
                  extractor: Extractor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and probabilities of the protocol's real images, read from or written to the cache.

    `images` is the tensor of real images, or a function returning it (called only on a cache
    miss). The cache file `<cache_dir>/<protocol.key()>.safetensors` is written atomically and
    stores the protocol in its metadata, which is checked when the file is read back. Results
    are on the CPU.
    """
    extractor = extractor or get_extractor(protocol.extractor)
    cached = load_cached(protocol, extractor.fingerprint, cache_dir)
    if cached is not None:
        return cached
    features, probs = extract(extractor, images() if callable(images) else images,
                              batch_size=batch_size)
    store_cached(features, probs, protocol, extractor.fingerprint, cache_dir)
    return features.cpu(), probs.cpu()
