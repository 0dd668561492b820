"""The README's evaluation table on Fashion-MNIST 32×32: floor, ceiling and trained models.

    python benchmarks/evaluate_table.py runs/progan-tiny/model.safetensors \
        runs/stylegan2-tiny/model.safetensors runs/biggan-tiny/model.safetensors

Rows: the test split against a fixed subset of the train split (the floor: what two samples of
the real distribution score), uniform noise in [−1, 1] (the ceiling), and each model file's
G_ema (no truncation, StyleGAN2 with constant noise, BigGAN with the standing statistics its
model file holds and uniform labels). Every row is scored against the same 10,000 test images
with the same protocol: SWD (ProGAN §5, pixels), FID and KID on the features of the project's Fashion-MNIST classifier
("classifier-FID", `nanogan/features.py`), precision/recall (k = 3) on the same features, and
MS-SSIM between random pairs of the row's own images (diversity; lower is more diverse).
Writes Markdown to stdout and JSON (with every protocol) to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nanogan import models  # noqa: E402
from nanogan.data import open_dataset  # noqa: E402
from nanogan.evaluate import evaluate, evaluate_images, pick_real_images  # noqa: E402

METRICS = ("swd", "fid", "kid", "pr", "msssim")


def row(name: str, results: dict) -> dict:
    value = {k: r.value for k, r in results.items()}
    return {"name": name, "values": value,
            "protocols": {k: r.to_dict() for k, r in results.items()}}


def markdown(rows: list[dict], n: int) -> str:
    lines = [f"Fashion-MNIST 32×32, {n:,} generated (or real) images against the {n:,} test "
             "images; FID, KID and precision/recall on the project's Fashion-MNIST classifier "
             "features, SWD ×10³ on pixels (average of the 32² and 16² levels), MS-SSIM between "
             "random pairs of one set. KID is shown unscaled: the classifier's features are "
             "larger than Inception's, so its values are not comparable with published "
             "KID ×10³ figures.", "",
             "| images | SWD ↓ | classifier-FID ↓ | KID ↓ | precision ↑ | recall ↑ | "
             "MS-SSIM |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        v = r["values"]
        lines.append(f"| {r['name']} | {v['swd']['swd_avg']:.1f} | {v['fid']:.2f} | "
                     f"{v['kid']['mean']:.2f} | {v['pr']['precision']:.3f} | "
                     f"{v['pr']['recall']:.3f} | {v['msssim']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_files", nargs="*", type=Path)
    parser.add_argument("--num-images", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n = args.num_images

    test = open_dataset(None, split="test")
    train = open_dataset(None, split="train")
    reals = pick_real_images(test, n)
    rows = [row("test vs train split (floor)",
                evaluate_images(METRICS, pick_real_images(train, n), reals, dataset=test.name,
                                split="test vs train", seed=args.seed))]
    noise = torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(args.seed)) * 2 - 1
    rows.append(row("uniform noise (ceiling)",
                    evaluate_images(METRICS, noise, reals, dataset=test.name,
                                    split="test vs noise", seed=args.seed)))
    for path in args.model_files:
        spec, cfg, G = models.load_generator(path)
        results = evaluate(METRICS, generate=models.random_sampler(spec, G, cfg), dataset=test,
                           num_images=n, split="test", seed=args.seed)
        rows.append(row(f"{spec.name} `{path}`", results))
        print(f"{path}: done", file=sys.stderr, flush=True)
    print(markdown(rows, n))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
