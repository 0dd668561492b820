"""The device check (issue 14): everything a first GPU should prove, in at most 8 minutes.

    bash benchmarks/gpu_check.sh            # or: python benchmarks/gpu_check.py

On a CUDA machine: (1) `pytest -m cuda`; (2) the GPU benchmarks, one fresh `bench.py --one`
process per row, 16 warm-up steps (FLOPs counted over them) and 2 timed windows of 16 steps at
batch 32 (~1.5 kimg a StyleGAN2 row): the headline rows first — StyleGAN2 config F at 256² in
bf16 and fp32+TF32, at 128² in bf16, BigGAN 128² ch 96 in bf16 — then, as time allows, fp16,
256² bf16 with channels_last (NHWC) weights and images, 128² fp32+TF32, the grouped
modulated-conv path forced, and both modulated-conv paths per layer shape; (3) a training run of every tiny preset, all three at once (they are launch-bound and
leave the GPU mostly idle), stopped by SIGINT after TRAIN_SECONDS (train.py saves and exits),
with img/s from each run's log.jsonl.

Budget (GPU; seconds; a step's timeout is its worst case, "expected" a guess from NVlabs' A100
figure of 12.53 s/kimg at 256² with custom kernels, plus ~10 s of start-up, CUDA init, cuDNN
autotuning and FLOP counting per row):

    step                                   timeout  expected  required
    start-up, device info, data, reports        10         5  yes
    pytest -m cuda                              55        35  yes
    stylegan2-256px bf16                        70        40  yes
    stylegan2-256px fp32+TF32                   80        50  yes
    stylegan2-128px bf16                        45        25  yes
    biggan-128px bf16 (batch 256)               75        40  yes
    training, 3 tiny presets at once       120 + 15  120 + 5  yes
    ---------------------------------------------------------------
    required, sum                              470       320  (≤ BUDGET_S = 480)
    stylegan2-256px fp16                        70        40  if time is left
    stylegan2-256px bf16, channels_last         70        40  if time is left
    stylegan2-128px fp32+TF32                   45        30  if time is left
    stylegan2-128px fp16                        45        25  if time is left
    stylegan2-256px bf16, grouped modconv       70        45  if time is left
    modconv suite (bf16)                        40        15  if time is left

A step runs only when what is left of BUDGET_S still covers its timeout and the timeouts of the
required steps after it (a required step's timeout shrinks to fit instead), so the optional rows
use only what the required ones did not; the shell's outer `timeout 500` is the last resort.
A step that times out has its whole process group killed (its `bench.py` workers with it), and
the JSON is rewritten (atomically) after every step, so a run cut short still reports what it
measured. Without CUDA: a CPU dry run of the same steps at tiny sizes, 1 step per window, a 10 s
training (it proves the plumbing only). Data: Fashion-MNIST when it is on the machine, else a
synthetic 10-class folder (the GPU machine may be offline). One JSON: $OUT/gpu_check.json if
$OUT is set, else benchmarks/results/gpu_check.json.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("torch", "numpy", "einops", "accelerate", "typer", "rich", "safetensors", "PIL",
            "matplotlib", "pytest", "hypothesis")
MODELS = ("stylegan2", "progan", "biggan")
BUDGET_S = 480  # the whole check; gpu_check.sh's outer limit is 500 s
STARTUP_S, FINAL_S = 5, 5  # before the first step; after the last (the report)
TESTS_S = 55
TRAIN_SECONDS = 120
STOP_GRACE_S = 15  # after SIGINT, for train.py to save and exit before its group is killed
# (row, precision, modconv path, layout, timeout s, required), in the order they run (see the
# budget above); the optional channels_last row measures whether NHWC pays on this card
GPU_ROWS = (("stylegan2-256px", "bf16", "auto", "nchw", 70, True),
            ("stylegan2-256px", "no", "auto", "nchw", 80, True),
            ("stylegan2-128px", "bf16", "auto", "nchw", 45, True),
            ("biggan-128px", "bf16", "auto", "nchw", 75, True),
            ("stylegan2-256px", "fp16", "auto", "nchw", 70, False),
            ("stylegan2-256px", "bf16", "auto", "channels_last", 70, False),
            ("stylegan2-128px", "no", "auto", "nchw", 45, False),
            ("stylegan2-128px", "fp16", "auto", "nchw", 45, False),
            ("stylegan2-256px", "bf16", "grouped", "nchw", 70, False))
MODCONV_S = 40
# bench.py --steps, --windows, --warmup: warm-up ≥ steps, so FLOPs are counted over the warm-up
GPU_STEPS, SMOKE_STEPS = (16, 2, 16), (1, 1, 1)
SMOKE_OF = {"stylegan2-256px": "stylegan2-smoke", "stylegan2-128px": "stylegan2-smoke",
            "biggan-128px": "biggan-smoke"}  # the dry run's stand-ins
DRY_RUN = {"row_s": 60, "tests_s": 60, "modconv_s": 60, "train_s": 10}


def missing_packages(names=PACKAGES) -> list[str]:
    """The packages of `names` that cannot be imported here."""
    return [n for n in names if importlib.util.find_spec(n) is None]


def pytest_counts(text: str) -> dict[str, int]:
    """{"passed": 25, "skipped": 2, ...} from pytest's last summary line ("25 passed, 2 skipped
    in 3.1s"); empty when there is none."""
    for line in reversed(text.strip().splitlines()):
        counts = {kind: int(n) for n, kind in re.findall(
            r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed|warnings?)", line)}
        if counts and " in " in line:
            return counts
    return {}


def train_speed(log: Path) -> dict:
    """Images/s of a run from its log.jsonl: the median over the logged ticks after the first
    (which holds start-up and the first grid), the ticks, the last kimg and any non-finite event."""
    if not log.exists():
        return {"error": f"no log at {log}"}
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    speeds = [r["images_per_s"] for r in records if "images_per_s" in r]
    steady = speeds[1:] or speeds
    return {"ticks": len(speeds), "median_img_per_s": statistics.median(steady) if steady else None,
            "kimg": max((r.get("kimg", 0) for r in records), default=0),
            "events": [r["event"] for r in records if "event" in r]}


def plan(cuda: bool) -> list[dict]:
    """The steps in the order they run: {"kind": tests | bench | modconv | train, "timeout",
    "required", ...}; without CUDA the dry run's stand-ins (smoke rows, each row kind once)."""
    steps = [{"kind": "tests", "timeout": TESTS_S if cuda else DRY_RUN["tests_s"],
              "required": True}]
    seen = set()
    for name, precision, modconv, layout, timeout, required in GPU_ROWS:
        if not cuda:
            name, timeout = SMOKE_OF[name], DRY_RUN["row_s"]
        if (name, precision, modconv, layout) not in seen:
            seen.add((name, precision, modconv, layout))
            steps.append({"kind": "bench", "name": name, "precision": precision,
                          "modconv": modconv, "layout": layout, "timeout": timeout,
                          "required": required})
    train_s = TRAIN_SECONDS if cuda else DRY_RUN["train_s"]
    return steps + [{"kind": "modconv", "timeout": MODCONV_S if cuda else DRY_RUN["modconv_s"],
                     "required": False},
                    {"kind": "train", "timeout": train_s + STOP_GRACE_S, "required": True}]


def step_timeout(step: dict, left: float, later: list[dict], least: float = 5.0) -> float | None:
    """Seconds to give `step` with `left` seconds of the budget and `later` steps to come, or None
    to skip it: an optional step runs only if its whole timeout fits beside the timeouts of the
    required steps after it (and FINAL_S); a required step's timeout shrinks to fit (not below
    `least`)."""
    spare = left - FINAL_S - sum(s["timeout"] for s in later if s["required"])
    if not step["required"]:
        return step["timeout"] if spare >= step["timeout"] else None
    return min(step["timeout"], spare) if spare >= least else None


RUNNING: set[subprocess.Popen] = set()  # the steps' processes not yet waited for


def start(cmd: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    """Start `cmd` in its own session (a process group to kill as one), output to `log`."""
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env=None if env is None else os.environ | env)
    RUNNING.add(proc)
    return proc


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL `proc`'s whole process group (its own children too, e.g. bench.py's workers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def finish(proc: subprocess.Popen, timeout: float) -> int | str:
    """Wait up to `timeout` s for `proc`; past it, kill its process group. Its exit status, or
    "timeout"."""
    try:
        rc = proc.wait(timeout=max(timeout, 0.1))
    except subprocess.TimeoutExpired:
        kill_group(proc)
        proc.wait()
        rc = "timeout"
    RUNNING.discard(proc)
    return rc


class Stopped(Exception):
    """SIGTERM (the shell's outer timeout) or SIGINT reached the check itself."""


def stop_steps(signum, frame) -> None:
    """The signal handler: the running steps' groups (in sessions of their own, so the signal
    does not reach them) are killed, then the check reports what it has."""
    for proc in list(RUNNING):
        kill_group(proc)
    raise Stopped(signal.Signals(signum).name)


def run(cmd: list[str], timeout: float, log: Path, env: dict | None = None) -> dict:
    """Run a command under `timeout` (see `finish`); its status, seconds and output's tail (all
    of the output is in `log`)."""
    began = time.perf_counter()
    rc = finish(start(cmd, log, env), timeout)
    text = log.read_text(errors="replace")
    if rc == "timeout":
        text += f"\ntimed out after {timeout:.0f} s"
    return {"cmd": " ".join(cmd), "rc": rc, "seconds": round(time.perf_counter() - began, 1),
            "timeout": round(timeout), "tail": text[-2000:]}


def last_json(text: str) -> dict | None:
    """The last line of `text` that is a JSON object (bench.py --one prints its row so)."""
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def write_report(report: dict, target: Path) -> None:
    """Replace `target` with the report atomically (a cut-short run leaves a whole file)."""
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(json.dumps(report, indent=2, default=str))
    os.replace(temporary, target)


def device_info(cuda: bool) -> dict:
    import torch
    info = {"torch": torch.__version__, "cuda_available": cuda, "python": sys.version.split()[0]}
    if cuda:
        sys.path.insert(0, str(ROOT))
        from benchmarks.bench import machine
        info |= machine("cuda")
    else:
        info["note"] = "no CUDA device: a CPU dry run of the same steps at tiny sizes"
    return info


def synthetic_folder(folder: Path, classes: int = 10, per_class: int = 64, size: int = 32) -> Path:
    """A labelled image folder of random grey blobs (one sub-folder per class), for offline runs."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    for c in range(classes):
        (folder / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cy, cx, r = rng.uniform(8, size - 8, 2).tolist() + [3 + c]
            image = 255 * ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) + rng.integers(0, 40, (size, size))
            Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(folder / f"class{c}/{i}.png")
    return folder


def training_data(scratch: Path) -> str:
    sys.path.insert(0, str(ROOT))
    try:
        from nanogan.data import find_fashion_mnist
        find_fashion_mnist(download=False)
        return "fashion-mnist"
    except Exception:  # not on this machine (and no internet): synthetic classes
        return str(synthetic_folder(scratch / "synthetic"))


NEVER_KIMG = 100_000  # a --kimg no run reaches in the time: each is ended by the SIGINT


def train_all(out: Path, data: str, seconds: float, cuda: bool) -> dict:
    """All tiny presets at once, each SIGINTed after `seconds` (train.py saves and exits) and its
    process group killed if it has not exited STOP_GRACE_S later. None may end by itself: a run
    that reached its kimg has restored the default SIGINT handler on its way out, so the
    check's SIGINT arriving then would kill it (rc -2) and count as a failure."""
    extra = ["--kimg", str(NEVER_KIMG)]
    if not cuda:
        extra += ["--log-every", "2", "--threads", "1"]
    procs = {}
    for model in MODELS:
        shutil.rmtree(out / f"run-{model}", ignore_errors=True)  # an earlier run's
        # BigGAN's save after the SIGINT takes the paper's 100 passes of standing statistics: a
        # fraction of a second on a GPU, 14 s on one free CPU thread, over STOP_GRACE_S shared
        own = ["--set", "standing_batches=8"] if model == "biggan" and not cuda else []
        cmd = [sys.executable, "train.py", "--model", model, "--out", str(out / f"run-{model}"),
               "--data", data, "--grid-kimg", "1000", "--snapshot-kimg", "1000", *extra, *own]
        procs[model] = start(cmd, out / f"train-{model}.log")
    began = time.perf_counter()
    while time.perf_counter() - began < seconds and any(p.poll() is None for p in procs.values()):
        time.sleep(0.5)
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    stop_by = time.perf_counter() + STOP_GRACE_S
    results = {}
    for model, p in procs.items():
        rc = finish(p, stop_by - time.perf_counter())
        results[model] = {"rc": rc, **train_speed(out / f"run-{model}" / "log.jsonl"),
                          "tail": (out / f"train-{model}.log").read_text(errors="replace")[-1000:]}
    return results


def bench_step(step: dict, timeout: float, device: str, scratch: Path) -> dict:
    """One benchmark row in a fresh `bench.py --one` process (the protocol of bench.py)."""
    cuda = device == "cuda"
    steps, windows, warmup = GPU_STEPS if cuda else SMOKE_STEPS
    cmd = [sys.executable, "benchmarks/bench.py", "--one", step["name"], "--device", device,
           "--suite", "gpu" if cuda else "smoke", "--precision", step["precision"],
           "--modconv", step["modconv"], "--steps", str(steps), "--windows", str(windows),
           "--warmup", str(warmup), *([] if cuda else ["--threads", "1"]),
           *(["--channels-last"] if step["layout"] == "channels_last" else [])]
    tag = f"{step['name']}-{step['precision']}-{step['modconv']}-{step['layout']}"
    log = scratch / f"bench-{tag}.log"
    done = run(cmd, timeout, log)
    row = last_json(log.read_text(errors="replace")) if done["rc"] == 0 else None
    record = {k: step[k] for k in ("name", "precision", "modconv", "layout")} | {
        k: done[k] for k in ("rc", "seconds", "timeout")} | {"result": row}
    tag = f"bench {step['name']} {step['precision']} {step['modconv']} {step['layout']}"
    if row is None:
        print(f"{tag}: failed (rc {done['rc']}) after {done['seconds']} s", flush=True)
        return record | {"tail": done["tail"]}
    mfu = f"{row['mfu_bf16']:.1%}" if row.get("mfu_bf16") else "n/a"
    print(f"{tag}: {row['s_per_kimg']:.2f} s/kimg, {row['train_img_per_s']:.1f} img/s, MFU {mfu}"
          f" ({done['seconds']} s)", flush=True)
    return record


def main() -> int:
    began = time.perf_counter()
    missing = missing_packages()
    print(f"missing packages: {', '.join(missing) or 'none'}", flush=True)
    if "torch" in missing:
        print("torch is not installed: nothing to check", flush=True)
        return 1
    import torch
    cuda = torch.cuda.is_available()
    print("CUDA device found" if cuda else "no CUDA device: CPU dry run at tiny sizes", flush=True)
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "benchmarks" / "results"
    scratch = out / "gpu_check_runs"
    scratch.mkdir(parents=True, exist_ok=True)
    target = out / "gpu_check.json"
    steps = plan(cuda)
    report = {"complete": False, "device": device_info(cuda), "missing_packages": missing,
              "budget_s": BUDGET_S, "plan": steps, "steps": {}, "bench": [], "skipped": []}

    def save() -> None:
        report["seconds"] = round(time.perf_counter() - began, 1)
        write_report(report, target)

    save()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop_steps)
    try:
        run_steps(steps, report, save, began, cuda, scratch)
    except Stopped as why:
        report["stopped"] = f"{why} after {time.perf_counter() - began:.0f} s"
        save()
        print(f"stopped by {why}; wrote {target}", flush=True)
        return 1
    report["complete"] = True
    report["failed"] = failures(report)
    save()
    print(f"wrote {target} after {report['seconds']} s", flush=True)
    if report["failed"]:
        print(f"gpu_check: {len(report['failed'])} step(s) failed: "
              f"{'; '.join(report['failed'])}", flush=True)
        return 1
    return 0


def failures(report: dict) -> list[str]:
    """The steps that failed: the cuda tests, a benchmark row or the modconv suite with a
    non-zero status, a training run that ended other than by itself (0) or by the check's SIGINT
    (130), or that logged no tick before it ended. Steps skipped for time are not failures; they
    are listed under "skipped"."""
    failed = []
    tests = report["steps"].get("tests")
    if tests is not None and tests["rc"] != 0:
        failed.append(f"pytest -m cuda (rc {tests['rc']})")
    failed += [f"bench {b['name']} {b['precision']} {b['modconv']} {b['layout']} "
               + (f"(rc {b['rc']})" if b["rc"] != 0 else "(no result)")
               for b in report["bench"] if b["rc"] != 0 or b["result"] is None]
    modconv = report.get("modconv")
    if isinstance(modconv, dict) and "rc" in modconv:  # the suite wrote no JSON
        failed.append(f"modconv suite (rc {modconv['rc']})")
    for model, r in report.get("train", {}).get("runs", {}).items():
        if r["rc"] not in (0, 130):
            failed.append(f"train {model} (rc {r['rc']})")
        elif not r.get("ticks"):  # stopped (or typer's 130) before its first logged tick
            failed.append(f"train {model} (no tick logged: stopped before it trained)")
    return failed


def run_steps(steps: list[dict], report: dict, save, began: float, cuda: bool,
              scratch: Path) -> None:
    """Run the plan's steps in order, each under `step_timeout`, saving the report after each."""
    device = "cuda" if cuda else "cpu"
    for i, step in enumerate(steps):
        timeout = step_timeout(step, BUDGET_S - (time.perf_counter() - began), steps[i + 1:])
        if timeout is None:
            report["skipped"].append(step | {"why": "out of time"})
            print(f"skipped (out of time): {step}", flush=True)
            continue
        if step["kind"] == "tests":  # skipped, but imported and collected, without CUDA
            done = run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p",
                        "no:cacheprovider", "-rs"], timeout, scratch / "tests.log")
            report["steps"]["tests"] = done | {"counts": pytest_counts(done["tail"])}
            print(f"tests: {report['steps']['tests']['counts']} ({done['seconds']} s)", flush=True)
        elif step["kind"] == "bench":
            report["bench"].append(bench_step(step, timeout, device, scratch))
        elif step["kind"] == "modconv":
            path = scratch / "modconv.json"
            path.unlink(missing_ok=True)  # an earlier run's
            done = run([sys.executable, "benchmarks/bench.py", "--device", device, "--suite",
                        "modconv", "--precision", "bf16" if cuda else "no", "--out", str(path)],
                       timeout, scratch / "modconv.log")
            report["modconv"] = json.loads(path.read_text())["modconv"] if path.exists() else done
            print(f"modconv: rc {done['rc']} ({done['seconds']} s)", flush=True)
        else:
            data = training_data(scratch)
            seconds = max(timeout - STOP_GRACE_S, 1)
            report["train"] = {"data": data, "seconds": seconds,
                               "runs": train_all(scratch, data, seconds, cuda)}
            for model, r in report["train"]["runs"].items():
                print(f"train {model}: rc {r['rc']}, {r.get('median_img_per_s')} img/s, "
                      f"{r.get('kimg')} kimg", flush=True)
        save()


if __name__ == "__main__":
    sys.exit(main())
