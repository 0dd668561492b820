"""Which variety measure sees missing garments: recall and coverage, on classifier features and on
pixels, overall and per test class, for the floor, three controls and model files.

    python benchmarks/variety.py runs/progan-tiny/model.safetensors \
        runs/stylegan2-tiny/model.safetensors runs/biggan-tiny/model.safetensors \
        --out benchmarks/results/variety.json

A measure of variety must fall when garments are missing and stay high when every garment is
there, only less sharp. Rows, each 10,000 images scored against the 10,000 test images:
the train split (the floor, as in `evaluate_table.py`); the same blurred by a 3×3 box filter
(every garment there, the detail gone); 10,000 train images of the first five classes only
(T-shirt, trouser, pullover, dress, coat: half the classes missing); the floor's first 1,000
images ten times each (every class there, nine images in ten repeats: variety within each class
missing); and each model file's G_ema drawn as in the evaluation table. Recall (k = 3,
Kynkäänniemi et al. 2019) counts the test images inside the generated set's k-NN balls,
coverage (k = 5, Naeem et al. 2020) those whose own k-NN ball holds a generated image; each is
given per test class (the test split's own labels, 1,000 per class). Features: the project's
Fashion-MNIST classifier (128-d) and the raw 32×32 pixels. lessons/30_evaluation.md, "Which
measure sees missing garments", reads the result.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from evaluate_table import CLASSES, box_blur, model_file_parser, model_rows, write_rows  # noqa: E402

from nanogan.data import open_dataset  # noqa: E402
from nanogan.evaluate import as_saved, pick_real_images, real_indices  # noqa: E402
from nanogan.features import extract  # noqa: E402
from nanogan.precision_recall import per_real  # noqa: E402

SPACES = ("classifier", "pixels")
EXTRACTORS = {"classifier": "fashion", "pixels": "pixels"}
KEPT = 5  # the five-class control keeps classes 0..4


def features(images: torch.Tensor) -> dict[str, torch.Tensor]:
    saved = as_saved(images)
    return {space: extract(EXTRACTORS[space], saved, batch_size=250)[0] for space in SPACES}


def score(name: str, images: torch.Tensor, real: dict[str, torch.Tensor],
          labels: torch.Tensor) -> dict:
    """Recall and coverage of `images` against the test features `real`, overall and per class."""
    fake = features(images)
    values = {}
    for space in SPACES:
        hits = per_real(real[space], fake[space])
        for measure, hit in hits.items():
            values[f"{space}_{measure}"] = {
                "all": hit.double().mean().item(),
                "per_class": {c: hit[labels == k].double().mean().item()
                              for k, c in enumerate(CLASSES)}}
    return {"name": name, "values": values}


def five_classes(train, n: int) -> torch.Tensor:
    """n train images of classes 0..KEPT-1, a subset fixed by seed 0."""
    kept = torch.nonzero(train.labels() < KEPT).flatten()
    pick = kept[torch.randperm(len(kept), generator=torch.Generator().manual_seed(0))[:n]]
    return pick_real_images(torch.stack([train[i][0] for i in pick.tolist()]), n)


def markdown(rows: list[dict]) -> str:
    head = ("| images | recall, classifier | recall, pixels | coverage, classifier | "
            "coverage, pixels |\n|---|---|---|---|---|")
    lines = [head] + [
        f"| {r['name']} | " + " | ".join(f"{r['values'][k]['all']:.3f}" for k in (
            "classifier_recall", "pixels_recall", "classifier_coverage", "pixels_coverage"))
        + " |" for r in rows]
    lines += ["", "Coverage on pixels per test class:", "",
              "| images | " + " | ".join(CLASSES) + " |", "|---" * (len(CLASSES) + 1) + "|"]
    lines += [f"| {r['name']} | " + " | ".join(
        f"{v:.2f}" for v in r["values"]["pixels_coverage"]["per_class"].values()) + " |"
        for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = model_file_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    n = args.num_images
    if n < 1000 or n % 10:  # ten copies of n/10 images; about 100 test images per class
        parser.error(f"--num-images must be a multiple of 10 and at least 1000, got {n}")
    test = open_dataset(None, split="test")
    reals = pick_real_images(test, n)
    labels = test.labels()[real_indices(len(test), n)]  # the same subset's own labels
    real = features(reals)
    train = open_dataset(None, split="train")
    floor = pick_real_images(train, n)
    sets = [("test vs train split (floor)", floor),
            ("train split, 3×3 box blur (every garment, less detail)", box_blur(floor)),
            (f"train split, classes {CLASSES[0]}–{CLASSES[KEPT - 1]} only (half the classes)",
             five_classes(train, n)),
            (f"train split, {n // 10:,} images ×10 (a tenth of the variety)",
             floor[:n // 10].repeat(10, 1, 1, 1))]
    rows = []
    for name, images in sets:
        rows.append(score(name, images, real, labels))
        print(f"{name}: done", file=sys.stderr, flush=True)
    rows += model_rows(args.model_files, n, args.seed,
                       lambda name, images: score(name, images, real, labels))
    print(markdown(rows))
    write_rows(rows, args.out)


if __name__ == "__main__":
    main()
