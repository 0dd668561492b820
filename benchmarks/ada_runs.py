"""Limited data on a CPU budget: StyleGAN2 tiny on 1,000 Fashion-MNIST images without
augmentation, with ADA and with DiffAugment, each for the same wall-clock time, then scored.

    python benchmarks/ada_runs.py --minutes 8 --max-images 1000

The runs start together (one thread each, so they share the machine alike), each gets SIGINT
after --minutes (train.py saves on Ctrl-C), and each G_ema is scored by `sample.py score`
(SWD on pixels and classifier-FID, --num-images generated images against the test split).
Writes benchmarks/results/ada.json and plots ADA's p and every run's r_t from log.jsonl into
docs/results/ada-p-rt.png.

r_t of the run without augmentation: that run is `--augment ada` with a target of 0.999999, so
p stays exactly 0 (the controller clamps it) unless r_t reaches exactly 1, and `augment` returns
D's input itself at p = 0: training is the plain run's, and the controller only measures r_t.
(Should r_t touch 1, p becomes ~1e-13 per interval: practically still no augmentation.)

Paper: Karras et al. 2020, arXiv:2006.06676 (ADA, §3: target 0.6, interval 4; its 500 kimg
speed is for runs of millions of images: a run of ~20 kimg could move p by 0.04, so
--ada-kimg, default 5, lets p move within minutes); Zhao et al. 2020, arXiv:2006.10738.
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


def train_args(name: str, out: Path, max_images: int, ada_kimg: float) -> list[str]:
    args = ["--model", "stylegan2", "--preset", "tiny", "--out", str(out), "--kimg", "100000",
            "--max-images", str(max_images), "--threads", "1", "--log-every", "20",
            "--grid-kimg", "0", "--snapshot-kimg", "100000"]
    if name == "none":  # measured r_t, p held at 0 (see the module docstring)
        return args + ["--augment", "ada", "--set", "ada_target=0.999999",
                       "--set", "ada_kimg=1e9"]
    if name == "ada":
        return args + ["--augment", "ada", "--set", f"ada_kimg={ada_kimg}"]
    return args + ["--augment", "diffaugment"]


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot(logs: dict[str, list[dict]], path: Path, target: float = 0.6) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
    for name, style in (("none", "C3"), ("ada", "C0")):
        rows = [r for r in logs.get(name, []) if "ada_rt" in r]
        label = "r_t, no augmentation" if name == "none" else "r_t, ADA"
        ax.plot([r["kimg"] for r in rows], [r["ada_rt"] for r in rows], style, lw=1, label=label)
    rows = [r for r in logs.get("ada", []) if "ada_p" in r]
    ax.plot([r["kimg"] for r in rows], [r["ada_p"] for r in rows], "C0--", lw=2, label="p, ADA")
    ax.axhline(target, color="grey", lw=0.8, ls=":", label=f"target {target}")
    ax.set_xlabel("kimg (thousands of real images shown to D)")
    ax.set_ylim(-1.05, 1.05)
    ax.set_title("StyleGAN2 tiny, 1,000 Fashion-MNIST images")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--max-images", type=int, default=1000)
    parser.add_argument("--ada-kimg", type=float, default=5.0)
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--runs", default="none,ada,diffaugment")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "ada-bench")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "ada.json")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "results" / "ada-p-rt.png")
    opts = parser.parse_args()
    names = opts.runs.split(",")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    procs = {}
    opts.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        out = opts.out / name
        log = open(opts.out / f"{name}.out", "w")
        procs[name] = (subprocess.Popen([sys.executable, str(ROOT / "train.py"),
                                         *train_args(name, out, opts.max_images, opts.ada_kimg)],
                                        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT),
                       log)
    started = time.time()
    time.sleep(opts.minutes * 60)
    for proc, _ in procs.values():
        proc.send_signal(signal.SIGINT)  # train.py saves and exits 130
    for proc, log in procs.values():
        proc.wait()
        log.close()
    wall = time.time() - started
    results = {}
    for name in names:
        out = opts.out / name
        scores = out / "ada-bench-scores.json"
        subprocess.run([sys.executable, str(ROOT / "sample.py"), "score", str(out),
                        "--metrics", "swd,fid", "--num-images", str(opts.num_images),
                        "--extractor", "fashion", "--out", str(scores)],
                       cwd=ROOT, env=env, check=True, capture_output=True)
        log = read_log(out / "log.jsonl")
        last = log[-1]
        tail = log[len(log) * 3 // 4:]
        results[name] = {
            "kimg": last["kimg"], "steps": last["step"],
            "scores": json.loads(scores.read_text()),
            "final_ada_p": last.get("ada_p") if name == "ada" else None,
            "final_ada_rt": last.get("ada_rt"),
            "mean_rt_last_quarter": (sum(r["ada_rt"] for r in tail) / len(tail)
                                     if "ada_rt" in last else None),
        }
        results[name]["log"] = [{k: r[k] for k in ("kimg", "ada_p", "ada_rt", "real", "fake")
                                 if k in r} for r in log]
    plot({n: read_log(opts.out / n / "log.jsonl") for n in names}, opts.figure)
    summary = {
        "what": f"StyleGAN2 tiny on {opts.max_images} Fashion-MNIST train images (--max-images, "
                f"fixed subset), {opts.minutes:g} wall-clock minutes per run, the {len(names)} "
                "runs at once with one thread each on a 2-core machine shared with other work; "
                f"G_ema scored on {opts.num_images} images against the test split",
        "budget_minutes": opts.minutes, "wall_s": round(wall, 1),
        "ada_kimg": opts.ada_kimg, "ada_target": 0.6, "ada_interval": 4,
        "deviation": "the issue asks for 30 minutes per run and 1,000 and 5,000 images; this "
                     "measurement has minutes per run as above and 1,000 images only. ada_kimg is "
                     "ADA's speed shortened from 500 to fit a run of this length. The 'none' "
                     "run measures r_t with an ADA controller whose p stays 0.",
        "runs": results,
    }
    opts.json.parent.mkdir(parents=True, exist_ok=True)
    opts.json.write_text(json.dumps(summary, indent=1) + "\n")
    for name, r in results.items():
        print(name, r["kimg"], r["final_ada_rt"], r["final_ada_p"],
              json.dumps(r["scores"])[:300])


if __name__ == "__main__":
    main()
