"""Limited data on an equal CPU budget: StyleGAN2 tiny on 1,000 and 5,000 Fashion-MNIST images,
without augmentation, with ADA and with DiffAugment, each run stopped after the same CPU time.

    python benchmarks/ada_runs.py --cpu-minutes 30 --max-images 1000,5000

All runs start together with one thread each. The budget is each process's own CPU time
(utime + stime from /proc), not wall-clock time, so runs that share the machine with each other
(and with other work) still get the same amount of computation; when a run has used its budget
it gets SIGINT (train.py saves on Ctrl-C and exits 130). A snapshot is kept every --snapshot-kimg;
afterwards each snapshot's G_ema and the final one are scored on --curve-images images
(classifier-FID against the test split, `sample.py score`) for quality-over-training curves, and
the final model on --num-images (10,000 = the whole test split, as in the README's evaluation
table) with SWD on pixels and classifier-FID. Writes benchmarks/results/ada.json and plots ADA's p, every run's r_t and the FID curves
into docs/results/ada-p-rt.png.

r_t of the run without augmentation: that run is `--augment ada` with a target of 0.999999 and a
speed of 1e9 kimg, so p stays 0 (the controller clamps it at 0; it leaves 0 only after an
interval in which all 64 real logits were positive, and then by 6.4e-11 for one interval) and
`augment` returns D's input itself at p = 0: training is the plain run's, and the controller only
measures r_t.

The budget is checked every 2 s and a run stops at its next log tick after SIGINT (at most
19 more steps, ~10 CPU-s), so each run's total CPU time (`cpu_s`, from wait4's rusage, start-up
included) is a little above the budget; `img_per_cpu_s` divides the images shown by it.
`--summarize` redoes the scoring (reusing every score file already written), the JSON and the
figure from the run folders and their timing.json, without training.

Paper: Karras et al. 2020, arXiv:2006.06676 (ADA, §3: target 0.6, interval 4; its 500 kimg
speed is for runs of millions of images: a run of ~30 kimg could move p by 0.06, so --ada-kimg,
default 5, lets p move within minutes); Zhao et al. 2020, arXiv:2006.10738.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("none", "ada", "diffaugment")
TICK = os.sysconf("SC_CLK_TCK")


def train_args(name: str, out: Path, max_images: int, ada_kimg: float,
               snapshot_kimg: float) -> list[str]:
    args = ["--model", "stylegan2", "--preset", "tiny", "--out", str(out), "--kimg", "100000",
            "--max-images", str(max_images), "--threads", "1", "--log-every", "20",
            "--grid-kimg", "0", "--snapshot-kimg", str(snapshot_kimg), "--keep-snapshots", "0"]
    if name == "none":  # measured r_t, p held at 0 (see the module docstring)
        return args + ["--augment", "ada", "--set", "ada_target=0.999999",
                       "--set", "ada_kimg=1e9"]
    if name == "ada":
        return args + ["--augment", "ada", "--set", f"ada_kimg={ada_kimg}"]
    return args + ["--augment", "diffaugment"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, all its threads (proc(5), fields 14-15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_all(runs: dict[str, list[str]], out: Path, budget_s: float) -> dict[str, dict]:
    """Start every run, SIGINT each at its CPU budget, wait for all; their CPU and wall time.
    Should one run end early, every other one is stopped too (none is left running)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    procs, timing = {}, {}
    started, stopped = time.time(), {}
    try:
        for key, args in runs.items():
            log = open(out / f"{key}.out", "w")
            procs[key] = (subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args],
                                           cwd=ROOT, env=env, stdout=log,
                                           stderr=subprocess.STDOUT), log)
        while len(stopped) < len(procs):
            time.sleep(2)
            for key, (proc, log) in procs.items():
                if key in stopped:
                    continue
                if proc.poll() is not None:
                    raise SystemExit(f"run {key} ended early (exit {proc.returncode}); see "
                                     f"{log.name}")
                if cpu_seconds(proc.pid) >= budget_s:
                    proc.send_signal(signal.SIGINT)
                    stopped[key] = time.time()
    finally:
        for key, (proc, _) in procs.items():
            if key not in stopped and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
    for key, (proc, log) in procs.items():
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own CPU time, all its threads
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.close()
        if proc.returncode != 130:
            raise SystemExit(f"run {key} exited {proc.returncode}; see {log.name}")
        timing[key] = {"cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                       "wall_s_at_stop": round(stopped[key] - started, 1)}
    (out / "timing.json").write_text(json.dumps(timing, indent=1) + "\n")
    return timing


def score(model: Path, num_images: int, dest: Path, metrics: str = "swd,fid") -> dict:
    """Classifier-FID (and SWD) of a model file's G_ema (a score file already written is
    reused)."""
    if not dest.exists():
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, str(ROOT / "sample.py"), "score", str(model),
                               "--metrics", metrics, "--num-images", str(num_images),
                               "--extractor", "fashion", "--out", str(dest)],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"scoring {model} failed:\n{done.stderr}")
    results = json.loads(dest.read_text())["results"]
    values = {r["metric"]: r["value"] for r in results}
    swd = {"swd": round(values["swd"]["swd_avg"], 2)} if "swd" in metrics else {}
    return swd | {"fid": round(values["fid"], 1)}


def score_all(jobs: list[tuple[Path, int, Path]], parallel: int) -> list[dict]:
    """Score (model, num_images, dest, metrics) jobs, `parallel` at a time, one thread each."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(lambda job: score(*job), jobs))


def snapshot_kimg(path: Path) -> float:
    return float(path.stem.split("-")[1])


def plot(logs: dict[str, list[dict]], curves: dict[str, list[dict]], sizes: list[int],
         path: Path, target: float = 0.6) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(sizes), figsize=(6 * len(sizes), 6.4), dpi=110,
                             squeeze=False, sharex="col")
    colours = {"none": "C3", "ada": "C0", "diffaugment": "C2"}
    for col, size in enumerate(sizes):
        top, bottom = axes[0][col], axes[1][col]
        for name in ("none", "ada"):
            rows = [r for r in logs.get(f"{size}-{name}", []) if "ada_rt" in r]
            label = "r_t, no augmentation" if name == "none" else "r_t, ADA"
            top.plot([r["kimg"] for r in rows], [r["ada_rt"] for r in rows], colours[name],
                     lw=0.8, label=label)
        rows = [r for r in logs.get(f"{size}-ada", []) if "ada_p" in r]
        top.plot([r["kimg"] for r in rows], [r["ada_p"] for r in rows], "C0--", lw=2,
                 label="p, ADA")
        top.axhline(target, color="grey", lw=0.8, ls=":", label=f"target {target}")
        top.set_ylim(-1.05, 1.05)
        top.set_title(f"StyleGAN2 tiny, {size:,} Fashion-MNIST images")
        top.legend(loc="lower right", fontsize=7)
        for name in NAMES:
            points = curves.get(f"{size}-{name}", [])
            bottom.plot([p["kimg"] for p in points], [p["fid"] for p in points], "o-",
                        color=colours[name], ms=3, label=name)
        bottom.set_yscale("log")
        bottom.set_ylabel("classifier-FID on 2,000 images (lower is better)")
        bottom.set_xlabel("kimg (thousands of real images shown to D)")
        bottom.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-minutes", type=float, default=30.0)
    parser.add_argument("--max-images", default="1000,5000")
    parser.add_argument("--runs", default=",".join(NAMES))
    parser.add_argument("--ada-kimg", type=float, default=5.0)
    parser.add_argument("--snapshot-kimg", type=float, default=4.0)
    parser.add_argument("--num-images", type=int, default=10000)
    parser.add_argument("--curve-images", type=int, default=2000)
    parser.add_argument("--score-parallel", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "ada-bench")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "ada.json")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "results" / "ada-p-rt.png")
    parser.add_argument("--summarize", action="store_true",
                        help="no training: score (reusing score files), plot and write the JSON "
                             "from the run folders in --out and their timing.json")
    opts = parser.parse_args()
    sizes = [int(s) for s in opts.max_images.split(",")]
    names = opts.runs.split(",")
    opts.out.mkdir(parents=True, exist_ok=True)
    runs = {f"{size}-{name}": train_args(name, opts.out / f"{size}-{name}", size, opts.ada_kimg,
                                         opts.snapshot_kimg)
            for size in sizes for name in names}
    if opts.summarize:
        timing = json.loads((opts.out / "timing.json").read_text())
    else:
        if taken := [k for k in runs if (opts.out / k / "checkpoint.safetensors").exists()]:
            parser.error(f"{opts.out} already holds runs {', '.join(taken)}: choose another "
                         "--out, or --summarize them")
        timing = run_all(runs, opts.out, opts.cpu_minutes * 60)

    jobs, where = [], []
    for key in runs:
        folder = opts.out / key
        last_kimg = read_log(folder / "log.jsonl")[-1]["kimg"]
        for snap in sorted((folder / "snapshots").glob("snapshot-*.safetensors")):
            jobs.append((snap, opts.curve_images, folder / f"score-{snap.stem}.json", "fid"))
            where.append((key, snapshot_kimg(snap)))
        jobs.append((folder, opts.curve_images, folder / "score-final-curve.json", "fid"))
        where.append((key, last_kimg))  # the curve's last point: the model at the stop
        jobs.append((folder, opts.num_images, folder / "score-final.json", "swd,fid"))
        where.append((key, None))
    scores = score_all(jobs, opts.score_parallel)

    results, curves, logs = {}, {}, {}
    for key in runs:
        logs[key] = log = read_log(opts.out / key / "log.jsonl")
        last, tail = log[-1], log[len(log) * 3 // 4:]
        curves[key] = [{"kimg": kimg, **s} for (k, kimg), s in zip(where, scores)
                       if k == key and kimg is not None]
        final = next(s for (k, kimg), s in zip(where, scores) if k == key and kimg is None)
        results[key] = {
            **timing[key], "kimg": last["kimg"], "steps": last["step"],
            "img_per_cpu_s": round(last["kimg"] * 1000 / timing[key]["cpu_s"], 2),
            "final": final, "curve": curves[key],
            "best_curve_fid": min(p["fid"] for p in curves[key]),  # one sample size: comparable
            "final_ada_p": last.get("ada_p") if key.endswith("-ada") else None,
            "mean_rt_last_quarter": (round(sum(r["ada_rt"] for r in tail) / len(tail), 3)
                                     if "ada_rt" in last else None),
            "log": [{k: r[k] for k in ("kimg", "ada_p", "ada_rt") if k in r} for r in log],
        }
    plot(logs, curves, sizes, opts.figure)
    summary = {
        "what": f"StyleGAN2 tiny on {' and '.join(map(str, sizes))} Fashion-MNIST train images "
                f"(--max-images, fixed subset), {opts.cpu_minutes:g} CPU-minutes per run (the "
                f"process's own CPU time; all {len(runs)} runs at once with one thread each on a "
                f"{os.cpu_count()}-core machine); curves: classifier-FID of the snapshots' and "
                f"the final G_ema on {opts.curve_images} images; final: SWD on pixels ×1e3 (as "
                f"in the evaluation table) and classifier-FID on {opts.num_images} images; all "
                "against the test split",
        "command": "python benchmarks/ada_runs.py " + " ".join(sys.argv[1:]),
        "machine": os.uname().nodename + f", {os.cpu_count()} CPUs",
        "cpu_minutes": opts.cpu_minutes, "ada_kimg": opts.ada_kimg, "ada_target": 0.6,
        "ada_interval": 4, "runs": results,
    }
    opts.json.parent.mkdir(parents=True, exist_ok=True)
    opts.json.write_text(json.dumps(summary, indent=1) + "\n")
    for key, r in results.items():
        print(f"{key:18s} kimg {r['kimg']:6.2f}  rt {r['mean_rt_last_quarter']}  "
              f"p {r['final_ada_p']}  final {r['final']}  best curve fid {r['best_curve_fid']}")


if __name__ == "__main__":
    main()
