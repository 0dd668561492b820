"""Hypothesis strategies and seeded generators shared by the test files."""

import torch
from hypothesis import strategies as st

seeds = st.integers(min_value=0, max_value=2**32 - 1)
small = st.integers(min_value=1, max_value=6)


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded by `seed`: the only source of randomness in tests."""
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal tensor drawn from a generator seeded by `seed`."""
    return torch.randn(*shape, generator=generator(seed), dtype=dtype)
