"""Hypothesis strategies, seeded generators and references shared by the test files."""

import torch
from hypothesis import strategies as st

seeds = st.integers(min_value=0, max_value=2**32 - 1)
small = st.integers(min_value=1, max_value=6)


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded by `seed`: the only source of randomness in tests."""
    return torch.Generator().manual_seed(seed)


# G's output functions (nanogan/output_range.py) written from their formulas with torch's own
# tanh and clamp: the reference the models' outputs are checked against.
OUTPUT_REFERENCES = {
    "clamp": lambda u: torch.clamp(u, -1, 1),
    "tanh": torch.tanh,
    "tanh_clamp": lambda u: torch.clamp(1.03 * torch.tanh(u), -1, 1),
}


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal tensor drawn from a generator seeded by `seed`."""
    return torch.randn(*shape, generator=generator(seed), dtype=dtype)
