"""Counter-based randomness: every random draw of training step t is a pure function of
(seed, t, name), drawn for the global batch and sliced to this process.

Two promises follow, and both are tested. Resuming a run at step t draws exactly what the
uninterrupted run drew — no RNG state to save and restore. And N processes with batch b/N draw,
between them, exactly the latents, noise and mixing points that one process with batch b draws,
so data parallelism changes nothing but speed.

Where the numbers are drawn: on the training device when it has a `torch.Generator` (CPU,
CUDA, MPS), else on the CPU and then moved (XLA: `torch.Generator(device=xla)` raises). CUDA
keeps its own generator on purpose: a CPU draw would be a blocking host-to-device copy per draw
(pageable memory waits for the GPU's queue to drain: ~40 draws in a StyleGAN2 step) plus CPU
time for millions of noise values at 256², and CPU-drawn latents would not make GPU runs equal
to CPU runs anyway (cuDNN's sums round differently). So a seed gives the same draws on CPU and
XLA, and other (equally valid) draws on CUDA.

Shapes: every draw has the global batch first: (B, ...) -> this process's (B/N, ...).
Lesson: lessons/00_reading_this_repo.md
"""

from __future__ import annotations

import hashlib

import torch


def generator_device(device: torch.device | str) -> torch.device:
    """Where `Draws` draws for `device`: itself if it has a torch.Generator, else the CPU."""
    device = torch.device(device)
    if device.type == "cpu":
        return device
    try:
        torch.Generator(device=device)
    except RuntimeError:  # XLA (and any device without a generator): draw on the CPU, move
        return torch.device("cpu")
    return device


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, stable across runs, machines and Python versions."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class Draws:
    """The randomness of one training step on one process."""

    def __init__(self, seed: int, step: int, *, rank: int = 0, world: int = 1,
                 device: torch.device | str = "cpu"):
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, {world}), got {rank}")
        self.seed, self.step, self.rank, self.world = seed, step, rank, world
        self.device = torch.device(device)
        self.source = generator_device(self.device)  # where the numbers are drawn

    def generator(self, name: str) -> torch.Generator:
        """A generator on `self.source` seeded by (seed, step, name)."""
        return torch.Generator(device=self.source).manual_seed(derive_seed(self.seed, self.step, name))

    def local(self, x: torch.Tensor) -> torch.Tensor:
        """This process's slice of a global-batch tensor."""
        if x.shape[0] % self.world:
            raise ValueError(f"global batch {x.shape[0]} does not split over {self.world} processes")
        n = x.shape[0] // self.world
        return x[self.rank * n : (self.rank + 1) * n]

    def _placed(self, x: torch.Tensor) -> torch.Tensor:
        """This process's slice, on the training device (sliced first: less to copy)."""
        return self.local(x).to(self.device)

    def normal(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        return self._placed(torch.randn(shape, generator=self.generator(name), device=self.source))

    def uniform(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        return self._placed(torch.rand(shape, generator=self.generator(name), device=self.source))

    def integers(self, name: str, high: int, shape: tuple[int, ...]) -> torch.Tensor:
        g = self.generator(name)
        return self._placed(torch.randint(high, shape, generator=g, device=self.source))


def seed_latents(seeds: list[int], shape: tuple[int, ...]) -> torch.Tensor:
    """One N(0, I) latent of `shape` per seed, drawn on the CPU so every device sees the same z."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s))
                        for s in seeds])
