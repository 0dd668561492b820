"""Feature extractors for FID-style metrics, the protocol recorded with every score, and a cache of
real-data features keyed by that protocol.

Paper: Heusel et al. (2017), arXiv:1706.08500, §3: FID compares the Gaussians of two sets of
*features*, so a score means nothing without the network, the number of images, the split and
the resizing that produced it. Each score here carries a `Protocol` naming all of them.

    φ: images (b, c, h, w) in [-1, 1] -> features (b, d), class probabilities (b, k)

Extractors: "fashion" (nanogan's Fashion-MNIST classifier, d = 128, k = 10, 32×32 input, offline)
and "inception" (the FID Inception-v3, d = 2048, k = 1008, any size resized to 299×299; needs the
weights file, see `nanogan.inception.load_inception`). Register more in `EXTRACTORS`.

Shapes: images (b, c, h, w) -> features (n, d), probs (n, k), accumulated batch by batch.
Lesson: lessons/31_features.md
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
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

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.resolution is not None and images.shape[-2:] != (self.resolution,) * 2:
            raise ValueError(f"this extractor needs {self.resolution}×{self.resolution} images, "
                             f"got {tuple(images.shape[-2:])}; use the 'inception' extractor for "
                             "other sizes")
        device = next(self.model.parameters()).device
        features, logits = self.model(images.to(device, torch.float32))
        return features.float().cpu(), logits.double().softmax(1).float().cpu()


class _ClassifierOutputs(nn.Module):
    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, x):
        features = self.classifier.features(x)
        return features, self.classifier.head(features)


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
    """Features (n, d) and class probabilities (n, k) of all images, computed batch by batch."""
    extractor = get_extractor(extractor) if isinstance(extractor, str) else extractor
    outputs = [extractor(batch) for batch in batches(images, batch_size)]
    if not outputs:
        raise ValueError("no images to extract features from")
    features, probs = zip(*outputs)
    return torch.cat(features), torch.cat(probs)


def default_cache_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "nanogan" / "stats"


def real_features(images: torch.Tensor | Callable[[], torch.Tensor | Iterable[torch.Tensor]],
                  protocol: Protocol, *, cache_dir: str | Path | None = None,
                  batch_size: int = 64,
                  extractor: Extractor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and probabilities of the protocol's real images, read from or written to the cache.

    `images` is the tensor of real images, or a function returning it (called only on a cache
    miss). The cache file `<cache_dir>/<protocol.key()>.safetensors` is written atomically and
    stores the protocol in its metadata, which is checked when the file is read back.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    extractor = extractor or get_extractor(protocol.extractor)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"{protocol.key(extractor.fingerprint)}.safetensors"
    record = {k: json.dumps(v) for k, v in dataclasses.asdict(protocol).items()}
    if path.is_file():
        with safe_open(str(path), framework="pt") as f:
            if {k: v for k, v in (f.metadata() or {}).items() if k in record} == record:
                stats = load_file(str(path))
                return stats["features"], stats["probs"]
    features, probs = extract(extractor, images() if callable(images) else images,
                              batch_size=batch_size)
    if len(features) != protocol.num_images:
        raise ValueError(f"the protocol asks for {protocol.num_images} real images, "
                         f"got {len(features)}")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    os.close(fd)
    try:
        save_file({"features": features.contiguous(), "probs": probs.contiguous()}, tmp,
                  metadata={**record, "weights": extractor.fingerprint})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return features, probs
