"""Shared test configuration: hypothesis profiles and seeded generators.

Profiles: `dev` (default, few examples, fast feedback) and `ci` (derandomized, more examples).
`ci` is chosen when $CI is set (CI runs set it) or with `HYPOTHESIS_PROFILE=ci`. Tests never touch torch's global RNG inside
hypothesis: every random tensor comes from a `torch.Generator` seeded by a drawn integer
(see `strategies.py`).
"""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev",
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# cuBLAS is deterministic only with this workspace setting, read when its handle is created
# (before any CUDA test runs); test_cuda.py's exact-resume test relies on it. No effect on CPUs.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def fresh_accelerate_state():
    """A test that builds its own Accelerator (in process, with its own precision) starts from,
    and leaves, Accelerate's process-wide state unset."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
