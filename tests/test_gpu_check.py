"""The device check's pure-Python parts: pytest's summary, a run's speed from its log, the
package check, the cards' peaks, the fp16 optimizer wrapper it benchmarks with, its time budget,
and the killing of a timed-out step's whole process group."""

import json
import os
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.bench import ScaledOptimizer, peak_bf16_tflops, precision_kwargs  # noqa: E402
from benchmarks.bench import GPU_SUITE, SMOKE_SUITE  # noqa: E402
from benchmarks.gpu_check import (BUDGET_S, STARTUP_S, last_json, missing_packages,  # noqa: E402
                                  plan, pytest_counts, run, step_timeout, train_speed,
                                  write_report)


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


@pytest.mark.parametrize("cuda", [True, False])
def test_every_required_step_gets_its_whole_timeout_in_the_worst_case(cuda):
    """Each step using all of its timeout, in order: no required step is shrunk or skipped, so the
    headline rows and the training always run in full within BUDGET_S."""
    steps = plan(cuda)
    left = BUDGET_S - STARTUP_S
    for i, step in enumerate(steps):
        timeout = step_timeout(step, left, steps[i + 1:])
        if step["required"]:
            assert timeout == step["timeout"], step
        left -= timeout or 0
    assert left >= 0


def test_the_required_rows_come_first_and_the_dry_run_mirrors_them():
    """The GPU plan's first rows are the headline ones (StyleGAN2 256² bf16 and fp32+TF32, 128²,
    BigGAN 128²), in GPU_SUITE; the dry run runs the same row kinds on SMOKE_SUITE's rows."""
    rows = [s for s in plan(True) if s["kind"] == "bench"]
    assert [(r["name"], r["precision"]) for r in rows[:4]] == [
        ("stylegan2-256px", "bf16"), ("stylegan2-256px", "no"), ("stylegan2-128px", "bf16"),
        ("biggan-128px", "bf16")]
    assert all(r["required"] for r in rows[:4]) and not any(r["required"] for r in rows[4:])
    assert all(r["name"] in GPU_SUITE for r in rows)
    dry = [s for s in plan(False) if s["kind"] == "bench"]
    assert all(r["name"] in SMOKE_SUITE for r in dry)

    def kinds(rows):
        return {(r["name"].split("-")[0], r["precision"], r["modconv"], r["layout"])
                for r in rows}
    assert kinds(dry) == kinds(rows) and len(dry) == len(kinds(rows))
    assert [s["kind"] for s in plan(False)] == [s["kind"] for s in plan(True)][:len(dry) + 1] + [
        "modconv", "train"]


def test_step_timeout_skips_optional_steps_and_shrinks_required_ones():
    """An optional step runs only when its whole timeout fits beside the required steps after it
    (and 5 s for the report); a required one gets what is left of that, or is skipped under 5 s."""
    later = [{"timeout": 100, "required": True}, {"timeout": 50, "required": False}]
    optional, required = {"timeout": 40, "required": False}, {"timeout": 40, "required": True}
    assert step_timeout(optional, 145, later) == 40
    assert step_timeout(optional, 144, later) is None
    assert step_timeout(required, 200, later) == 40
    assert step_timeout(required, 125, later) == 20
    assert step_timeout(required, 109, later) is None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has exited


def test_a_timed_out_step_is_killed_with_its_children(tmp_path):
    """On timeout the step's whole process group goes (bench.py's --one worker with bench.py),
    and the output written so far is kept."""
    child = "import time; time.sleep(60)"
    parent = (f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', {child!r}]); "
              "print('child', p.pid, flush=True); p.wait()")
    done = run([sys.executable, "-c", parent], timeout=3, log=tmp_path / "log")
    assert done["rc"] == "timeout" and "timed out after 3 s" in done["tail"]
    pid = int(done["tail"].split("child ")[1].split()[0])
    deadline = time.time() + 5
    while alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    if alive(pid):
        os.kill(pid, 9)
        raise AssertionError("the step's child outlived the timeout")


def test_report_is_replaced_whole_and_rows_are_found_after_trailing_output(tmp_path):
    target = tmp_path / "gpu_check.json"
    write_report({"steps": 1}, target)
    write_report({"steps": 2}, target)
    assert json.loads(target.read_text()) == {"steps": 2} and os.listdir(tmp_path) == [target.name]
    row = {"name": "stylegan2-256px", "s_per_kimg": 9.5}
    text = f"warming up\n{json.dumps(row)}\nUserWarning: {{not json\n"
    assert last_json(text) == row and last_json("no row") is None


def test_failures_name_every_failed_step_and_only_those():
    """The check exits 1 when a step failed: the cuda tests, a benchmark row (a status or no
    result), the modconv suite without its JSON, a training run not ended by itself or by the
    check's SIGINT (130) or ended before its first tick; a clean report has none."""
    from benchmarks.gpu_check import failures

    def bench(name, rc, result):
        return {"name": name, "precision": "bf16", "modconv": "auto", "layout": "nchw",
                "rc": rc, "result": result}

    clean = {"steps": {"tests": {"rc": 0}}, "bench": [bench("sg2", 0, {"s_per_kimg": 1.0})],
             "modconv": [{"shape": "x"}],
             "train": {"runs": {"stylegan2": {"rc": 130, "ticks": 5},
                                "progan": {"rc": 0, "ticks": 7}}}}
    assert failures(clean) == []
    assert failures({"steps": {}, "bench": []}) == []  # nothing ran yet: nothing failed
    broken = {"steps": {"tests": {"rc": 1}},
              "bench": [bench("sg2", 0, {"s_per_kimg": 1.0}), bench("bg", -9, None),
                        bench("sg2-128", 0, None)],
              "modconv": {"rc": 1, "seconds": 3.0},
              "train": {"runs": {"stylegan2": {"rc": 130, "ticks": 5}, "biggan": {"rc": 1},
                                 "progan": {"rc": 130, "error": "no log at x"}}}}
    assert failures(broken) == ["pytest -m cuda (rc 1)", "bench bg bf16 auto nchw (rc -9)",
                                "bench sg2-128 bf16 auto nchw (no result)",
                                "modconv suite (rc 1)", "train biggan (rc 1)",
                                "train progan (no tick logged: stopped before it trained)"]


@pytest.mark.parametrize("cuda", [True, False])
def test_training_runs_are_ended_by_the_checks_sigint_never_by_their_kimg(tmp_path, monkeypatch,
                                                                          cuda):
    """A run that reaches its kimg just before the check's SIGINT has restored the default
    handler on its way out and dies of the signal (rc -2), a failure that depends on timing. So
    every run is told a kimg it cannot reach (over 100× its preset's) and all are SIGINTed; the
    runs are faked (a process that exits 130 on SIGINT, as train.py does)."""
    import signal

    import benchmarks.gpu_check as gpu_check
    from nanogan import models

    class Run:
        rc = None

        def poll(self):
            return self.rc

        def send_signal(self, sig):
            self.rc = 130 if sig == signal.SIGINT else -sig

    commands = {}

    def start(cmd, log, env=None):
        log.write_text("")
        commands[cmd[cmd.index("--model") + 1]] = cmd
        return Run()

    monkeypatch.setattr(gpu_check, "start", start)
    monkeypatch.setattr(gpu_check, "finish", lambda proc, timeout: proc.rc)
    runs = gpu_check.train_all(tmp_path, "fashion-mnist", 0.2, cuda)
    assert set(commands) == set(runs) == set(gpu_check.MODELS)
    for model, cmd in commands.items():
        assert float(cmd[cmd.index("--kimg") + 1]) > 100 * models.MODELS[model].PRESETS["tiny"].kimg
        assert runs[model]["rc"] == 130
