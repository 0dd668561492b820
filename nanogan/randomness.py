"""Counter-based randomness: every random draw of training step t is a pure function of
(seed, t, name), drawn for the global batch and sliced to this process.

Two promises follow, and both are tested. Resuming a run at step t draws exactly what the
uninterrupted run drew — no RNG state to save and restore. And N processes with batch b/N draw,
between them, exactly the latents, noise and mixing points that one process with batch b draws,
so data parallelism changes nothing but speed.

Shapes: every draw has the global batch first: (B, ...) -> this process's (B/N, ...).
Lesson: lessons/00_reading_this_repo.md
"""

from __future__ import annotations

import hashlib

import torch


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

    def generator(self, name: str) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(derive_seed(self.seed, self.step, name))

    def local(self, x: torch.Tensor) -> torch.Tensor:
        """This process's slice of a global-batch tensor."""
        if x.shape[0] % self.world:
            raise ValueError(f"global batch {x.shape[0]} does not split over {self.world} processes")
        n = x.shape[0] // self.world
        return x[self.rank * n : (self.rank + 1) * n]

    def normal(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        return self.local(torch.randn(shape, generator=self.generator(name), device=self.device))

    def uniform(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        return self.local(torch.rand(shape, generator=self.generator(name), device=self.device))

    def integers(self, name: str, high: int, shape: tuple[int, ...]) -> torch.Tensor:
        g = self.generator(name)
        return self.local(torch.randint(high, shape, generator=g, device=self.device))


def seed_latents(seeds: list[int], shape: tuple[int, ...]) -> torch.Tensor:
    """One N(0, I) latent of `shape` per seed, drawn on the CPU so every device sees the same z."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s))
                        for s in seeds])
