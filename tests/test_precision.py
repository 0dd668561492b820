"""Mixed precision on the path train.py takes: Accelerate's settings are honoured, the main
phases run under autocast, and R1, path length and the gradient penalty never do.

Accelerate's `prepare` wraps each model's forward in autocast. train.py removes that wrapper
again with Accelerate's public `unwrap_model(..., keep_fp32_wrapper=False)`, so that the recipes
alone decide where autocast applies: around the main losses, never around a penalty. The test
below builds the recipe exactly as train.py does (`make_accelerator` +
`trainer.build_recipe`) under bf16, records the dtype of every activation inside G and D, and
splits the records by phase: inside a penalty every activation must be fp32, and in the main
phases some must be bf16 (so the test can tell autocast on from off). Leave the wrapper in place
and the penalty half fails.

fp16 goes through the same code, but Accelerate enables fp16 autocast only on GPUs (on a CPU it
quietly trains in fp32, which train.py refuses): its variant of the test is marked `cuda` and
skipped without a GPU; tests/test_cuda.py checks the penalties' fp16 accuracy.
"""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch
from test_distributed import _train_module
from test_recipe import SMALL, data

from nanogan import models, progan, trainer
from nanogan.recipe import unwrap

train = _train_module()


@pytest.fixture(autouse=True)
def each_test_its_own_accelerator(fresh_accelerate_state):
    """Each test builds its own Accelerator with its own precision (conftest's fixture)."""


class Recorder:
    """The dtypes of every leaf module's floating outputs, split by phase."""

    def __init__(self, *nets: torch.nn.Module):
        self.phase, self.seen = "main", {"main": set(), "penalty": set()}
        for net in nets:
            for module in net.modules():
                if not list(module.children()):
                    module.register_forward_hook(self.hook)

    def hook(self, module, inputs, output):
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                self.seen[self.phase].add(t.dtype)

    @contextlib.contextmanager
    def penalty(self):
        self.phase = "penalty"
        try:
            yield
        finally:
            self.phase = "main"

    def wrap(self, fn):
        def spied(*args, **kwargs):
            with self.penalty():
                return fn(*args, **kwargs)
        return spied


def recipe_as_train_builds_it(model: str, precision: str, **overrides):
    module = models.MODELS[model]
    cfg = dataclasses.replace(module.PRESETS["tiny"], **SMALL[model] | overrides)
    accelerator = train.make_accelerator(module, precision)
    return trainer.build_recipe(module, cfg, accelerator, seed=0)


def check_penalties_in_fp32(model: str, precision: str, half: torch.dtype, monkeypatch) -> None:
    """Two steps of the recipe train.py builds: some main-phase activation in `half`, every
    activation inside a penalty fp32, finite losses, the penalty logged."""
    every_step = {"r1_interval": 1, "pl_interval": 1} if model == "stylegan2" else {}
    r = recipe_as_train_builds_it(model, precision, **every_step)
    record = Recorder(unwrap(r.G), unwrap(r.D))
    if model == "stylegan2":
        monkeypatch.setattr(r, "r1", record.wrap(r.r1))
        monkeypatch.setattr(r, "path_lengths", record.wrap(r.path_lengths))
    else:
        monkeypatch.setattr(progan, "gradient_penalty", record.wrap(progan.gradient_penalty))
    for _ in range(2):  # train.py's loader puts the batch on the device (Accelerate's prepare)
        stats = r.train_step(*(t.to(r.device) for t in data(r, r.step)))
    assert half in record.seen["main"], record.seen
    assert record.seen["penalty"] == {torch.float32}, record.seen
    assert all(torch.isfinite(v) for v in stats.values())
    penalty = "r1" if model == "stylegan2" else "gp"
    assert penalty in stats


@pytest.mark.parametrize("model", ["stylegan2", "progan"])
def test_penalties_run_in_fp32_under_bf16_on_train_pys_path(model, monkeypatch):
    """Under bf16 the main phases compute in bf16 and R1, path length and the GP in fp32."""
    check_penalties_in_fp32(model, "bf16", torch.bfloat16, monkeypatch)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("model", ["stylegan2", "progan"])
def test_penalties_run_in_fp32_under_fp16_on_train_pys_path(model, monkeypatch):
    """Under fp16 (GPUs only: Accelerate's autocast and GradScaler) the same split as bf16."""
    check_penalties_in_fp32(model, "fp16", torch.float16, monkeypatch)


def test_accelerates_own_precision_setting_is_honoured(monkeypatch):
    """Without --precision, a resumed run keeps its own, else ACCELERATE_MIXED_PRECISION (what
    `accelerate launch` and `accelerate config` set) decides; --precision wins over both; on a
    CPU fp16 is refused, naming bf16."""
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    assert train.effective_precision(None) == "bf16"
    assert train.effective_precision("no") == "no"
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    assert train.effective_precision(None) == "no"
    assert train.effective_precision(None, stored="bf16") == "bf16"  # a resumed run keeps its own
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # what `accelerate launch` sets
    assert train.effective_precision(None, stored="bf16") == "bf16"  # ... by default
    assert train.effective_precision("no", stored="bf16") == "no"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp8")
    with pytest.raises(Exception, match="'fp8'.*not one of no, fp16, bf16"):
        train.effective_precision(None)
    if not torch.cuda.is_available():
        with pytest.raises(Exception, match="fp16 autocast needs a GPU; on a CPU use bf16"):
            train.effective_precision("fp16")
