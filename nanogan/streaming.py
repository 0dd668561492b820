"""The streamed path: each image decoded when it is read, in the DataLoader workers that read it.

`StreamingDataset` reads an `ImageSource`, best a zip prepared by `nanogan.prepare` (PNGs at one
resolution, labels in its dataset.json), and decodes image i when item i is asked for: the
interface of `nanogan.decoded.ImageDataset` and exactly its pixels (`decode_image`, the same
index order). Start-up reads the zip's directory, or a folder's cached index, and decodes
nothing; the DataLoader workers of each process decode that process's share of every batch.
`Subset` takes the same n images of either kind of dataset in every run.

Paper: Karras et al. 2020 (StyleGAN2-ADA, arXiv:2006.06676), §4: training sets of 1k–50k images
taken as fixed subsets of larger ones (ADA's `--subset`, here `subset`).
Shapes: a dataset item is (uint8 (c, r, r), label); `images_uint8` gives (b, c, r, r).
Lesson: lessons/00_reading_this_repo.md
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

from nanogan.sources import DataError, ImageSource, UnreadableImageError, decode_image

logger = logging.getLogger(__name__)


class StreamingDataset(torch.utils.data.Dataset):
    """Images decoded one per item from an ImageSource; the interface of ImageDataset.

    Index n + i is image i mirrored (xflip). Nothing is decoded at start-up; DataLoader workers
    each open their own file descriptor (forked or pickled copies never share one). The result
    is exactly the decoded path's (`decode_image`, same index order), so the data order stays
    a function of (seed, step) whichever path reads it.

    A file that cannot be read raises UnreadableImageError naming `archive.zip:member` or the
    path. With skip_bad=True it is replaced by the next readable image (i + 1, i + 2, … modulo
    n, mirrored if the index was a mirror, with that image's label): a choice that depends only
    on the data, so resumed and N-process runs stay exact. Each process logs one warning per bad
    image and appends it to its own `skipped` (a worker's list is not seen by the main process).
    The decoded path fills a bad image's row by the same rule, so the two paths stay equal.
    """

    cache = "stream"

    def __init__(self, source: ImageSource, *, resolution: int, channels: int, name: str,
                 xflip: bool = False, skip_bad: bool = False):
        self.source, self.resolution, self.channels = source, resolution, channels
        self.name, self.xflip, self.skip_bad = name, xflip, skip_bad
        self.class_names = tuple(source.class_names)
        self.num_classes = len(self.class_names)
        self.skipped = [tuple(s) for s in (source.prepared or {}).get("skipped", [])]
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.source) * (2 if self.xflip else 1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        n = len(self.source)
        image, i = self._decode(index % n)
        if index >= n:
            image = image[..., ::-1]
        # one copy: contiguous, and writable (Pillow's array is read-only)
        return torch.from_numpy(np.array(image, order="C")), int(self.source.labels[i])

    def _decode(self, i: int) -> tuple[np.ndarray, int]:
        """Image i, or with skip_bad the next readable one, and the index actually read."""
        n = len(self.source)
        for j in (k % n for k in range(i, i + n)):
            if j in self._bad:
                continue
            try:
                return decode_image(self.source.read(j), self.resolution, self.channels), j
            except Exception as err:  # noqa: BLE001 - any failure is this file's failure
                reason, where = f"{type(err).__name__}: {err}", self.source.where(j)
                if not self.skip_bad:
                    raise UnreadableImageError(
                        f"{where}: cannot read this image ({reason}); fix or delete it (prepare "
                        "the zip again), or pass skip_bad=True to read the next "
                        "image in its place") from None
                self._bad.add(j)
                self.skipped.append((where, reason))
                logger.warning("%s: cannot read this image (%s); reading the next one in its "
                               "place", where, reason)
        raise DataError(f"{self.source.path}: none of its {n} images could be read")

    def images_uint8(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (b, c, r, r) images for dataset indices, each decoded now."""
        index = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices,
                           np.int64).reshape(-1)
        if not index.size:
            return torch.empty(0, self.channels, self.resolution, self.resolution,
                               dtype=torch.uint8)
        return torch.stack([self[i][0] for i in index.tolist()])

    def labels(self) -> torch.Tensor:
        """int64 (len(self),) labels (all 0 when the dataset is unlabeled): each file's own, as
        listed; with skip_bad, a bad file's index reads the next readable image and its label,
        which only indexing shows (the decoded path's labels() already holds the substitutes)."""
        return torch.from_numpy(np.tile(self.source.labels, 2 if self.xflip else 1))

    def __repr__(self) -> str:
        r = self.resolution
        return (f"StreamingDataset({self.name!r}, {len(self)} images, {self.channels}×{r}×{r}, "
                f"{self.num_classes} classes)")


SUBSET_SEED = 0  # ADA's --subset: one fixed subset of a dataset, whatever the run's --seed


class Subset(torch.utils.data.Dataset):
    """The same `n` images of a dataset in every run: the interface of the dataset it wraps.

    The images are the first n of a permutation drawn with `SUBSET_SEED` (independent of the
    training seed), in the dataset's order, as ADA's `--subset` (Karras et al. 2020,
    arXiv:2006.06676, §4: training sets of 1k–50k images). A mirrored dataset (xflip) is
    subset first and then mirrored: its n + i-th image is the i-th image flipped.
    """

    def __init__(self, dataset, n: int):
        base = len(dataset) // (2 if dataset.xflip else 1)
        if not 1 <= n <= base:
            raise DataError(f"max_images must be between 1 and the {base} images of "
                            f"{dataset.name}, got {n}")
        order = torch.randperm(base, generator=torch.Generator().manual_seed(SUBSET_SEED))
        chosen = order[:n].sort().values
        self._index = torch.cat([chosen, chosen + base]) if dataset.xflip else chosen
        self.dataset, self.size = dataset, n
        for name in ("channels", "resolution", "num_classes", "class_names", "xflip", "skipped",
                     "cache"):
            setattr(self, name, getattr(dataset, name))
        flip = "+xflip"
        plain = dataset.name[: -len(flip)] if dataset.xflip and dataset.name.endswith(flip) \
            else dataset.name
        self.name = f"{plain}[{n} of {base}]" + (flip if dataset.xflip else "")

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= int(index) < len(self):
            raise IndexError(f"index {index} out of range for a subset of {len(self)} images")
        return self.dataset[int(self._index[int(index)])]

    def images_uint8(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        index = torch.as_tensor(np.asarray(indices.cpu() if isinstance(indices, torch.Tensor)
                                           else indices, np.int64).reshape(-1))
        if index.numel() and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"index out of range for a subset of {len(self)} images")
        return self.dataset.images_uint8(self._index[index])

    def labels(self) -> torch.Tensor:
        return self.dataset.labels()[self._index]

    def __repr__(self) -> str:
        return f"Subset({self.name!r}, {len(self)} images of {self.dataset!r})"


def subset(dataset, n: int | None):
    """`Subset(dataset, n)`, or the dataset itself when n is None (every image)."""
    return dataset if n is None else Subset(dataset, n)
