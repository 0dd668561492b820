"""What moves SWD on Fashion-MNIST: known changes to real images, and the generators' class mixture.

Three tables, each SWD ×10³ per pyramid level (32², 16²) and their average, against the test split:

1. `perturbations`: train images changed in one known way (Gaussian noise, a [1, 2, 1]² blur,
   random shifts, a 5% zoom, a grey-level gamma, a left-right flip, a faint haze on the black
   background) — how far each moves SWD.
2. `class_mixture`: train images drawn with each model's class shares (from the evaluation
   table, `eval.json`): what the generator's class imbalance alone would cost on perfect images.
   The shares are the classifier's labels of generated images (93% accurate on the test split,
   least certain among shirts, T-shirts, coats and pullovers), applied here to true labels.
3. `rebalanced`: each model's own images, a random subset against a class-balanced one
   (an equal number per class, as the classifier assigns them) — what the imbalance costs it.

    python benchmarks/swd_sensitivity.py runs/progan-tiny runs/stylegan2-tiny \
        --out benchmarks/results/swd_sensitivity.json

(a model whose rarest class has fewer than --per-class images among 2 × --num-images is skipped
in the third table). About 20 CPU-minutes on 2 cores.

Lesson: lessons/30_evaluation.md ("What SWD sees on Fashion-MNIST").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.evaluate_table import CLASSES, generated  # noqa: E402
from nanogan.classifier import random_shift  # noqa: E402
from nanogan.data import open_dataset  # noqa: E402
from nanogan.evaluate import as_saved, pick_real_images  # noqa: E402
from nanogan.features import extract  # noqa: E402
from nanogan.swd import swd  # noqa: E402

BINOMIAL_3 = torch.tensor([1.0, 2.0, 1.0]) / 4


def blur(x: torch.Tensor) -> torch.Tensor:
    """The separable [1, 2, 1]/4 blur (edges replicated): a lighter blur than a 3×3 box."""
    k = (BINOMIAL_3[:, None] * BINOMIAL_3[None]).view(1, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k)


def zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Scaled about the centre by `factor`, bilinear (which also blurs a little)."""
    theta = torch.tensor([[1 / factor, 0.0, 0.0], [0.0, 1 / factor, 0.0]]).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, align_corners=False) - 1  # background 0 + 1 outside


def gamma(x: torch.Tensor, g: float) -> torch.Tensor:
    return ((x + 1) / 2) ** g * 2 - 1


def haze(x: torch.Tensor, levels: int, generator: torch.Generator) -> torch.Tensor:
    """Every exactly black pixel raised by a uniform draw of 0 to `levels` grey levels (of 255),
    the rest unchanged: a faint background haze. It lifts every black pixel — about half of all
    pixels then lie 3–20 levels above black, four times the share in a linear-output tiny
    model's grid (lesson 30) — so its rows bound what such a haze can cost."""
    lift = torch.rand(x.shape, generator=generator) * (2 * levels / 255)
    return torch.where(x <= -1, x + lift, x)


def with_shares(labels: torch.Tensor, shares: torch.Tensor, n: int,
                g: torch.Generator) -> torch.Tensor:
    """Indices of n distinct images, round(n · share) of each class (the commonest class takes up
    the rounding), each class's drawn uniformly without replacement."""
    counts = (shares / shares.sum() * n).round().long()
    counts[counts.argmax()] += n - counts.sum()
    picks = []
    for c, k in enumerate(counts.tolist()):
        members = torch.nonzero(labels == c)[:, 0]
        if k > len(members):
            raise ValueError(f"class {c} has {len(members)} images, {k} wanted")
        picks.append(members[torch.randperm(len(members), generator=g)[:k]])
    return torch.cat(picks)


def balanced(labels: torch.Tensor, per_class: int, num_classes: int) -> torch.Tensor | None:
    """Indices of the first `per_class` images of every class, or None if a class has fewer."""
    members = [torch.nonzero(labels == c)[:, 0] for c in range(num_classes)]
    if min(len(m) for m in members) < per_class:
        return None
    return torch.cat([m[:per_class] for m in members])


def score(reals: torch.Tensor, images: torch.Tensor) -> dict:
    s = swd(reals, as_saved(images), generator=torch.Generator().manual_seed(1))
    return {k: round(v, 2) for k, v in s.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="model files or run folders")
    parser.add_argument("--num-images", type=int, default=3000)
    parser.add_argument("--per-class", type=int, default=300,
                        help="images per class in the rebalanced subsets")
    parser.add_argument("--eval", type=Path, default=ROOT / "benchmarks/results/eval.json",
                        help="the evaluation table whose class shares the mixture rows use")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n, g = args.num_images, torch.Generator().manual_seed(args.seed)
    if n < 1 or args.per_class < 1:
        parser.error(f"--num-images and --per-class must be positive, got {n} and {args.per_class}")
    if len(CLASSES) * args.per_class > n:
        parser.error(f"--per-class {args.per_class} × {len(CLASSES)} classes is more than "
                     f"--num-images {n} test images")

    test = pick_real_images(open_dataset(None, split="test"), n)
    train_set = open_dataset(None, split="train")
    train = pick_real_images(train_set, n)
    perturbed = {
        "none (the floor)": train,
        "Gaussian noise σ 0.05": train + 0.05 * torch.randn(train.shape, generator=g),
        "Gaussian noise σ 0.1": train + 0.1 * torch.randn(train.shape, generator=g),
        "[1, 2, 1]² blur, half strength": (train + blur(train)) / 2,
        "[1, 2, 1]² blur": blur(train),
        "shift by up to ±1 px": random_shift(train, 1, g),
        "shift by up to ±2 px": random_shift(train, 2, g),
        "zoom 0.95": zoom(train, 0.95),
        "zoom 1.05": zoom(train, 1.05),
        "gamma 0.8": gamma(train, 0.8),
        "left-right flip": train.flip(3),
    }
    # A stream of their own (score's is seed 1), so the rows above and the class draws keep theirs.
    g_haze = torch.Generator().manual_seed(args.seed + 2)
    perturbed |= {f"background haze, 0–{k} grey levels": haze(train, k, g_haze) for k in (10, 20)}
    out: dict = {"num_images": n, "per_class": args.per_class,
                 "rebalanced_images": len(CLASSES) * args.per_class, "seed": args.seed,
                 "perturbations": {}, "class_mixture": {}, "rebalanced": {}}
    for name, images in perturbed.items():
        out["perturbations"][name] = score(test, images)
        print(name, out["perturbations"][name], file=sys.stderr, flush=True)

    labels = train_set.labels()
    for row in json.loads(args.eval.read_text()):
        if "`" not in row["name"]:  # the reference rows; model rows are "model `path`"
            continue
        share = torch.tensor([row["values"]["classes"][c] for c in CLASSES])
        images = train_set.images_uint8(with_shares(labels, share, n, g)).float() / 127.5 - 1
        out["class_mixture"][row["name"]] = {"shares": [round(v, 3) for v in share.tolist()],
                                             "swd": score(test, images)}
        print(row["name"], out["class_mixture"][row["name"]], file=sys.stderr, flush=True)

    m = 10 * args.per_class
    for path in args.runs:
        model, images = generated(path, 2 * n, args.seed)
        images = as_saved(images)
        _, probs = extract("fashion", images, batch_size=250)
        label = probs.argmax(1)
        count = torch.bincount(label, minlength=len(CLASSES))
        even = balanced(label, args.per_class, len(CLASSES))
        if even is None:
            print(f"{path}: only {int(count.min())} images of its rarest class among {2 * n}; "
                  f"skipped (lower --per-class)", file=sys.stderr)
            continue
        chosen = images[torch.randperm(len(images), generator=g)[:m]]
        out["rebalanced"][f"{model} `{path}`"] = {
            "shares": [round(v, 3) for v in (count / count.sum()).tolist()],
            "random": score(test[:m], chosen), "balanced": score(test[:m], images[even])}
        print(path, out["rebalanced"][f"{model} `{path}`"], file=sys.stderr, flush=True)

    print(json.dumps(out, indent=2))
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
