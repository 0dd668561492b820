"""The device check's pure-Python parts: pytest's summary, a run's speed from its log, the
package check, the cards' peaks, and the fp16 optimizer wrapper it benchmarks with."""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.bench import ScaledOptimizer, peak_bf16_tflops, precision_kwargs  # noqa: E402
from benchmarks.gpu_check import missing_packages, pytest_counts, train_speed  # noqa: E402


def test_pytest_counts_reads_the_last_summary_line():
    """Counts come from the final "N passed, M skipped in T" line, not from earlier output."""
    text = "tests/test_cuda.py ss.\n1 passed in the log\n==== 25 passed, 2 skipped, 1 error in 3.10s ===="
    assert pytest_counts(text) == {"passed": 25, "skipped": 2, "error": 1}
    assert pytest_counts("27 skipped, 980 deselected in 4.66s") == {"skipped": 27, "deselected": 980}
    assert pytest_counts("ImportError: no module") == {}


def test_train_speed_is_the_median_after_the_first_tick(tmp_path):
    """The first logged tick (start-up, first grid) is left out of the median images/s."""
    log = tmp_path / "log.jsonl"
    records = [{"step": 20, "kimg": 0.64, "images_per_s": 5.0},
               {"step": 40, "kimg": 1.28, "images_per_s": 100.0},
               {"step": 50, "kimg": 1.6, "event": "non-finite"},
               {"step": 60, "kimg": 1.92, "images_per_s": 120.0},
               {"step": 80, "kimg": 2.56, "images_per_s": 90.0}]
    log.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    speed = train_speed(log)
    assert speed == {"ticks": 4, "median_img_per_s": 100.0, "kimg": 2.56, "events": ["non-finite"]}
    assert "error" in train_speed(tmp_path / "missing.jsonl")


def test_missing_packages_names_only_the_absent():
    assert missing_packages(("torch", "json", "surely_not_a_package_x9")) == ["surely_not_a_package_x9"]


def test_peak_table_matches_card_names():
    """The PCIe H100 is not mistaken for the SXM one; an unknown card has no peak (no MFU)."""
    assert peak_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert peak_bf16_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_bf16_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_bf16_tflops("Tesla T4") is None


def test_fp16_loss_scaling_skips_a_step_with_an_infinite_gradient():
    """With fp16 the optimizer steps through a GradScaler: an inf gradient skips the step and
    lowers the scale; a finite one updates the weights."""
    kwargs, scaler = precision_kwargs("fp16", "cpu")
    w = torch.nn.Parameter(torch.ones(3))
    opt = ScaledOptimizer(torch.optim.SGD([w], lr=0.1), scaler)
    kwargs["backward"]((w * torch.tensor([1.0, float("inf"), 1.0])).sum())
    scale = scaler.get_scale()
    opt.step()
    assert torch.equal(w.detach(), torch.ones(3)) and scaler.get_scale() < scale
    opt.zero_grad(set_to_none=True)
    kwargs["backward"](w.sum())
    opt.step()
    torch.testing.assert_close(w.detach(), torch.full((3,), 0.9))
    assert precision_kwargs("no", "cpu") == ({}, None)
