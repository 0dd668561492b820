"""The device check (issue 14): everything a first GPU should prove, in at most 8 minutes.

    bash benchmarks/gpu_check.sh            # or: python benchmarks/gpu_check.py

On a CUDA machine: (1) `pytest -m cuda`; (2) the GPU benchmarks — StyleGAN2 config F at 128² and
256² (batch 32) in fp32+TF32, bf16 and fp16, BigGAN 128² ch 96 in bf16, StyleGAN2 256² bf16 with
the grouped modulated-conv path forced, and both modulated-conv paths per layer shape; (3) a
training run of every tiny preset, all three at once (they are launch-bound and leave the GPU
mostly idle), stopped by SIGINT after TRAIN_SECONDS (train.py saves and exits), with img/s from
each run's log.jsonl. Without CUDA it says so and runs a CPU dry run of the same steps at tiny
sizes (seconds). Every step has its own timeout inside one overall deadline, so a hang costs its
step only. Data: Fashion-MNIST when it is on the machine, else a synthetic 10-class folder (the
GPU machine may be offline). One JSON: $OUT/gpu_check.json if $OUT is set, else
benchmarks/results/gpu_check.json.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
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
BUDGET_S = 480  # the whole check
TRAIN_SECONDS = 120


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


def run(cmd: list[str], timeout: float, env: dict | None = None) -> dict:
    """Run a command with a timeout; its status, seconds and the tail of its output."""
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              env=None if env is None else os.environ | env)
        rc, text = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as err:
        rc, text = "timeout", f"timed out after {timeout:.0f} s\n{err.stdout or ''}"
        text = text if isinstance(text, str) else text.decode(errors="replace")
    return {"cmd": " ".join(cmd), "rc": rc, "seconds": round(time.perf_counter() - start, 1),
            "tail": text[-2000:]}


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


def train_all(out: Path, data: str, seconds: float, cuda: bool) -> dict:
    """All tiny presets at once, each SIGINTed after `seconds` (train.py saves and exits)."""
    extra = [] if cuda else ["--kimg", "0.2", "--log-every", "2", "--threads", "1"]
    procs = {}
    for model in MODELS:
        cmd = [sys.executable, "train.py", "--model", model, "--out", str(out / f"run-{model}"),
               "--data", data, "--grid-kimg", "1000", "--snapshot-kimg", "1000", *extra]
        procs[model] = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds and any(p.poll() is None for p in procs.values()):
        time.sleep(1)
    results = {}
    for model, p in procs.items():
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        try:
            output, _ = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            output, _ = p.communicate()
        results[model] = {"rc": p.returncode, **train_speed(out / f"run-{model}" / "log.jsonl"),
                          "tail": output[-1000:]}
    return results


def main() -> int:
    began = time.perf_counter()

    def left() -> float:
        return BUDGET_S - (time.perf_counter() - began)

    missing = missing_packages()
    print(f"missing packages: {', '.join(missing) or 'none'}", flush=True)
    if "torch" in missing:
        print("torch is not installed: nothing to check", flush=True)
        return 1
    import torch
    cuda = torch.cuda.is_available()
    print("CUDA device found" if cuda else "no CUDA device: CPU dry run at tiny sizes", flush=True)
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    scratch = out / "gpu_check_runs"
    report = {"device": device_info(cuda), "missing_packages": missing, "steps": {}}
    py = sys.executable

    # (1) the CUDA tests (skipped, but imported and collected, without CUDA)
    step = run([py, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "-rs"],
               timeout=min(100, left()))
    report["steps"]["tests"] = step | {"counts": pytest_counts(step["tail"])}
    print(f"tests: {report['steps']['tests']['counts']} ({step['seconds']} s)", flush=True)

    # (2) benchmarks: one bench.py call per (rows, precision), each row with its own timeout
    device = "cuda" if cuda else "cpu"
    if cuda:
        plan = [("stylegan2-128px,stylegan2-256px", p, None) for p in ("no", "bf16", "fp16")]
        plan += [("biggan-128px", "bf16", None), ("stylegan2-256px", "bf16", "grouped")]
        suite, row_timeout = "gpu", 45
    else:
        plan = [("stylegan2-smoke,biggan-smoke", p, None) for p in ("no", "bf16", "fp16")]
        plan += [("stylegan2-smoke", "no", "grouped")]
        suite, row_timeout = "smoke", 60
    bench = []
    for only, precision, modconv in plan:
        if left() < 20 + TRAIN_SECONDS:
            bench.append({"only": only, "precision": precision, "skipped": "out of time"})
            continue
        path = scratch / f"bench-{precision}-{modconv or 'auto'}-{len(bench)}.json"
        cmd = [py, "benchmarks/bench.py", "--device", device, "--suite", suite, "--only", only,
               "--precision", precision, "--timeout", str(row_timeout), "--out", str(path)]
        cmd += ["--modconv", modconv] if modconv else []
        step = run(cmd, timeout=min(row_timeout * only.count(",") + row_timeout + 10, left()))
        rows = json.loads(path.read_text())["results"] if path.exists() else []
        bench.append({"only": only, "precision": precision, "modconv": modconv or "auto",
                      "rc": step["rc"], "results": rows, **({} if rows else {"tail": step["tail"]})})
        for r in rows:
            print(f"bench {r['name']} {precision} {modconv or ''}: " + (
                r.get("error") or f"{r['s_per_kimg']:.2f} s/kimg, {r['train_img_per_s']:.1f} "
                f"img/s, MFU " + (f"{r['mfu_bf16']:.1%}" if r.get("mfu_bf16") else "n/a")),
                flush=True)
    report["bench"] = bench
    path = scratch / "modconv.json"
    step = run([py, "benchmarks/bench.py", "--device", device, "--suite", "modconv",
                "--precision", "bf16" if cuda else "no", "--out", str(path)],
               timeout=max(min(60, left() - TRAIN_SECONDS - 10), 1))
    report["modconv"] = json.loads(path.read_text())["modconv"] if path.exists() else step

    # (3) the tiny presets, trained at once
    data = training_data(scratch)
    seconds = TRAIN_SECONDS if cuda else 15
    report["train"] = {"data": data, "seconds": seconds,
                       "runs": train_all(scratch, data, min(seconds, max(left() - 35, 5)), cuda)}
    for model, r in report["train"]["runs"].items():
        print(f"train {model}: rc {r['rc']}, {r.get('median_img_per_s')} img/s, "
              f"{r.get('kimg')} kimg", flush=True)
    report["seconds"] = round(time.perf_counter() - began, 1)
    target = out / "gpu_check.json"
    target.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {target} after {report['seconds']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
