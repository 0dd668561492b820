"""How recognisable a model's garments are: the project's classifier's confidence on its images.

    python benchmarks/recognisability.py runs/progan-tiny/model.safetensors \
        runs/stylegan2-tiny/model.safetensors runs/biggan-tiny/model.safetensors \
        --out benchmarks/results/recognisability.json

For the test split and for each model file's G_ema (drawn as in `evaluate_table.py`, the same
10,000 images), the largest probability of the Fashion-MNIST classifier's softmax per image
(`nanogan/weights/`, test accuracy 0.93): its mean, the share of images above 0.9 (a garment the
classifier is sure of) and below 0.5 (no class gets half). lessons/07_progan.md reads the result.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from evaluate_table import model_file_parser, model_rows, write_rows  # noqa: E402

from nanogan.data import open_dataset  # noqa: E402
from nanogan.evaluate import as_saved, pick_real_images  # noqa: E402
from nanogan.features import extract  # noqa: E402

SURE, UNSURE = 0.9, 0.5


def confidence(probs: torch.Tensor) -> dict[str, float]:
    """Mean top probability and the shares of rows whose top probability is above SURE and
    below UNSURE, of class probabilities (n, k)."""
    top = probs.max(dim=1).values.double()
    return {"mean_top": top.mean().item(), "above_0.9": (top > SURE).double().mean().item(),
            "below_0.5": (top < UNSURE).double().mean().item()}


def score(name: str, images: torch.Tensor) -> dict:
    _, probs = extract("fashion", as_saved(images), batch_size=250)
    return {"name": name, "values": confidence(probs)}


def markdown(rows: list[dict]) -> str:
    lines = ["| images | mean top probability | share above 0.9 | share below 0.5 |",
             "|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['values']['mean_top']:.3f} | {r['values']['above_0.9']:.1%} | "
              f"{r['values']['below_0.5']:.1%} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    args = model_file_parser(__doc__.splitlines()[0]).parse_args()
    test = open_dataset(None, split="test")
    rows = [score("test split", pick_real_images(test, args.num_images))]
    rows += model_rows(args.model_files, args.num_images, args.seed, score)
    print(markdown(rows))
    write_rows(rows, args.out)


if __name__ == "__main__":
    main()
