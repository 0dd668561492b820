"""How fast data reaches the model: preparation, streaming loaders, start-up, memory (issue 13).

    OMP_NUM_THREADS=1 python benchmarks/data_bench.py                # 20k images, ~10 minutes
    python benchmarks/data_bench.py --images 2000 --batches 100 --rss-steps 300   # a quick look
    python benchmarks/data_bench.py --markdown                       # also print the README table

Protocol. A synthetic dataset is made in the OS temp folder and deleted at the end (never
committed): `--images` PNGs at 256² in two class folders, each a random 8×8 colour field
upsampled bicubically plus Gaussian noise (σ 4), so that PNG compresses it about as much as a
photograph. Then:

- preparation: `python -m nanogan.prepare` of the folder at 256² and at 64², timed whole
  (img/s = images / wall seconds, start-up included); skipped with a note if the command is
  missing or fails, the zips are then written by this script instead;
- loader: `open_dataset(zip, cache="stream")` in a `DataLoader` (batch 32, `InfiniteSampler`,
  0, 1 and 2 workers), timed over `--batches` batches after `--warmup` batches; uint8 batches,
  no model. Rows at 64² and 256² from the zip prepared at that size, plus the 256² zip read at
  64² (each image resized on the fly);
- start-up: `open_dataset` on the zip (stream), on the folder with a cold index (listed) and a
  warm one (one stat per directory);
- memory: VmRSS (/proc/<pid>/status) of the main process and of every worker, every
  `--rss-every` steps over `--rss-steps` steps of the 256² loader with 2 workers: a flat line
  means no leak (the first sample is taken after one step).

Results go to JSON (`--out`) with the machine (CPU model, cores, torch, Pillow) and the load
average before and after, since other processes on the machine slow every row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from io import BytesIO
from itertools import islice
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nanogan.data import InfiniteSampler, open_dataset  # noqa: E402


def _make_image(args: tuple[Path, int]) -> None:
    path, seed = args
    g = np.random.default_rng(seed)
    coarse = Image.fromarray(g.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((256, 256), Image.Resampling.BICUBIC), np.float64)
    noisy = np.clip(smooth + g.normal(0, 4, smooth.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(path)


def make_folder(root: Path, n: int) -> float:
    """n PNGs at 256² in root/a and root/b; returns their mean size in bytes."""
    for c in "ab":
        (root / c).mkdir(parents=True)
    jobs = [(root / "ab"[i % 2] / f"{i:06d}.png", i) for i in range(n)]
    with Pool(os.cpu_count() or 1) as pool:
        pool.map(_make_image, jobs, chunksize=64)
    return float(np.mean([p.stat().st_size for p, _ in jobs[:200]]))


def write_zip(folder: Path, out: Path, resolution: int) -> None:
    """The prepared format written here (when nanogan.prepare is unavailable)."""
    dataset = open_dataset(folder, resolution=resolution, cache="stream",
                           cache_dir=out.parent / "cache")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for i in range(len(dataset)):
            image = dataset[i][0].permute(1, 2, 0).numpy()
            buffer = BytesIO()
            Image.fromarray(image).save(buffer, "png")
            z.writestr(f"images/{i:08d}.png", buffer.getvalue())
        z.writestr("dataset.json", json.dumps({
            "format": "nanogan-dataset", "version": 1, "resolution": resolution, "channels": 3,
            "class_names": list(dataset.class_names), "images": len(dataset),
            "labels": dataset.labels().tolist(), "skipped": [], "source": str(folder),
            "transform": "center-crop"}))


def prepare(folder: Path, out: Path, resolution: int, n: int) -> dict:
    """Run `python -m nanogan.prepare`, timed; fall back to write_zip (untimed) if it fails."""
    record = {"resolution": resolution, "images": n}
    if not (ROOT / "nanogan" / "prepare.py").is_file():
        record["note"] = "nanogan.prepare does not exist yet: zip written by the benchmark"
    else:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "nanogan.prepare", str(folder), str(out),
                               "--resolution", str(resolution)], cwd=ROOT, capture_output=True,
                              text=True, env={**os.environ, "COLUMNS": "120"})
        seconds = time.perf_counter() - start
        if done.returncode == 0 and out.is_file():
            return record | {"seconds": round(seconds, 2), "images_per_s": round(n / seconds, 1),
                             "zip_mb": round(out.stat().st_size / 1e6, 1)}
        record["note"] = (f"nanogan.prepare exited {done.returncode}: "
                          f"{(done.stderr or done.stdout).strip()[-300:]}; zip written by the "
                          "benchmark")
    out.unlink(missing_ok=True)
    write_zip(folder, out, resolution)
    return record


def loader(dataset, workers: int, batch: int = 32, seed: int = 0):
    return torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers,
                                       sampler=InfiniteSampler(len(dataset), seed=seed),
                                       drop_last=True)


def throughput(dataset, workers: int, batches: int, warmup: int) -> dict:
    """Images per second over `batches` batches of 32 after `warmup` batches."""
    it = iter(loader(dataset, workers))
    for _ in islice(it, warmup):
        pass
    start = time.perf_counter()
    count = sum(len(images) for images, _ in islice(it, batches))
    seconds = time.perf_counter() - start
    del it
    return {"workers": workers, "images": count, "seconds": round(seconds, 2),
            "images_per_s": round(count / seconds, 1)}


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory(dataset, steps: int, every: int, workers: int = 2) -> dict:
    """VmRSS of the main process and each worker, sampled every `every` steps."""
    it = iter(loader(dataset, workers, seed=1))
    samples = {"main": []} | {f"worker{k}": [] for k in range(workers)}
    for step, _ in enumerate(islice(it, steps), 1):
        if step == 1 or step % every == 0:
            samples["main"].append(round(rss_mib(os.getpid()), 1))
            for k, w in enumerate(it._workers):  # the DataLoader's worker processes
                samples[f"worker{k}"].append(round(rss_mib(w.pid), 1))
    del it
    growth = {k: round(v[-1] - v[1], 1) if len(v) > 2 else None for k, v in samples.items()}
    return {"steps": steps, "every": every, "workers": workers, "rss_mib": samples,
            "growth_after_first_100_mib": growth}


def startup(zip_path: Path, folder: Path, scratch: Path) -> dict:
    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return round(time.perf_counter() - start, 4)

    index = scratch / "index"
    shutil.rmtree(index, ignore_errors=True)
    return {
        "zip_s": timed(lambda: open_dataset(zip_path, cache="stream", cache_dir=index)),
        "folder_cold_index_s": timed(lambda: open_dataset(folder, resolution=256, cache="stream",
                                                          cache_dir=index)),
        "folder_warm_index_s": timed(lambda: open_dataset(folder, resolution=256, cache="stream",
                                                          cache_dir=index)),
    }


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                  .splitlines() if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__,
            "pillow": PIL.__version__, "python": platform.python_version(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def markdown(results: dict) -> str:
    rows = ["| source | read at | workers | img/s |", "|---|---|---|---|"]
    for row in results["loader"]:
        rows.append(f"| zip {row['zip']}² | {row['resolution']}² | {row['workers']} | "
                    f"{row['images_per_s']:.0f} |")
    prep = "; ".join(f"{p['resolution']}²: " + (f"{p['images_per_s']:.0f} img/s" if
                     "images_per_s" in p else p.get("note", "n/a")) for p in results["prepare"])
    s, m = results["startup"], results["memory"]
    flat = ", ".join(f"{k} {v[1]}→{v[-1]} MiB" for k, v in m["rss_mib"].items() if len(v) > 1)
    return "\n".join(rows) + (
        f"\n\nPreparation ({results['images']} images from 256² PNGs): {prep}. "
        f"Start-up: zip {s['zip_s']:.2f} s, folder {s['folder_cold_index_s']:.2f} s cold / "
        f"{s['folder_warm_index_s']:.2f} s with its index. RSS over {m['steps']} steps "
        f"(256², 2 workers, step 100 → last): {flat}. Machine: {results['machine']['cpu']}, "
        f"{results['machine']['cores']} cores, load {results['load_before'][0]:.1f} before.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rss-steps", type=int, default=1000)
    parser.add_argument("--rss-every", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "data.json")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {"machine": machine(), "images": args.images, "load_before": os.getloadavg()}
    scratch = Path(tempfile.mkdtemp(prefix="nanogan-data-bench-"))
    try:
        folder = scratch / "pngs"
        results["png_kb"] = round(make_folder(folder, args.images) / 1024, 1)
        zips = {r: scratch / f"set{r}.zip" for r in (256, 64)}
        results["prepare"] = [prepare(folder, zips[r], r, args.images) for r in (256, 64)]
        results["startup"] = startup(zips[256], folder, scratch)
        results["loader"] = []
        for zip_res, res in ((64, 64), (256, 256), (256, 64)):
            dataset = open_dataset(zips[zip_res], resolution=res, cache="stream",
                                   cache_dir=scratch / "index")
            for w in (args.workers if zip_res == res else [max(args.workers)]):
                row = throughput(dataset, w, args.batches, args.warmup)
                results["loader"].append({"zip": zip_res, "resolution": res} | row)
                print(json.dumps(results["loader"][-1]), flush=True)
        dataset = open_dataset(zips[256], cache="stream", cache_dir=scratch / "index")
        results["memory"] = memory(dataset, args.rss_steps, args.rss_every)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    if args.markdown:
        print(markdown(results))


if __name__ == "__main__":
    main()
