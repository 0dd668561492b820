"""The README's evaluation table on Fashion-MNIST 32×32: floor, controls, ceiling and trained models.

    python benchmarks/evaluate_table.py runs/progan-tiny/model.safetensors \
        runs/stylegan2-tiny/model.safetensors runs/biggan-tiny/model.safetensors \
        --out benchmarks/results/eval.json

Rows: the test split against a fixed subset of the train split (the floor: what two samples of
the real distribution score); the same train images blurred by a 3×3 box filter (a control:
every mode of the data is there, only the detail is gone); uniform noise in [−1, 1] (the
ceiling); and each model file's G_ema (no truncation, StyleGAN2 with constant noise, BigGAN with
the standing statistics its model file holds and uniform labels), `--num-images` images drawn
batch by batch from one generator seeded with `--seed`. Every row is scored against the same
10,000 test images with the same protocol: SWD (ProGAN §5, pixels); FID, KID,
precision/recall (k = 3) and density/coverage (k = 5) on the features of the project's
Fashion-MNIST classifier; precision/recall and coverage again on raw pixels; MS-SSIM between
random pairs of the row's own images (diversity; lower is more diverse); and the share of the
row's images the classifier puts in each class (`classes`; the rarest and commonest in the
table).

Scoring is slow (SWD sorts 1.3M descriptors per level): `--no-references` scores only the model
files and `--append` merges the new rows into those already in `--out` (a row whose name is
already there replaces it in place, so a model scored again or the references scored again do
not appear twice; a model row's name holds its path as typed, so spell it the same way), so that
rows can be scored as their models finish. Writes Markdown to stdout
and JSON (with every protocol) to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nanogan import models  # noqa: E402
from nanogan.data import open_dataset  # noqa: E402
from nanogan.evaluate import as_saved, batch_generator, evaluate_images, pick_real_images  # noqa: E402
from nanogan.features import extract  # noqa: E402

ON_CLASSIFIER = ("swd", "fid", "kid", "pr", "dc", "msssim")
ON_PIXELS = ("pr", "dc")
LATENTS = "batches of 250, batch j from nanogan.evaluate.batch_generator({seed}, j)"
CLASSES = ("T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
           "ankle boot")


def box_blur(images: torch.Tensor) -> torch.Tensor:
    """Each pixel replaced by the mean of its 3×3 neighbourhood (edges replicated)."""
    return F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


def generated(path: Path, n: int, seed: int, batch: int = 250) -> tuple[str, torch.Tensor]:
    """n images of the model at `path`, batch j drawn from `batch_generator(seed, j)` as in
    `nanogan.evaluate` (not from `manual_seed(seed)`, the stream a run trained with `--seed`
    drew its weights from)."""
    spec, cfg, G = models.load_generator(path)
    generate = models.random_sampler(spec, G, cfg)
    return spec.name, torch.cat([generate(min(batch, n - i), batch_generator(seed, j)).cpu()
                                 for j, i in enumerate(range(0, n, batch))])


def row(name: str, images: torch.Tensor, reals: torch.Tensor, split: str, dataset: str,
        seed: int) -> dict:
    on_classifier = evaluate_images(ON_CLASSIFIER, images, reals, dataset=dataset, split=split,
                                    seed=seed)
    on_pixels = evaluate_images(ON_PIXELS, images, reals, extractor="pixels", dataset=dataset,
                                split=split, seed=seed)
    _, probs = extract("fashion", as_saved(images), batch_size=250)
    share = torch.bincount(probs.argmax(1), minlength=len(CLASSES)).double() / len(images)
    results = on_classifier | {f"pixels_{k}": r for k, r in on_pixels.items()}
    return {"name": name, "values": {k: r.value for k, r in results.items()}
            | {"classes": dict(zip(CLASSES, share.tolist()))},
            "protocols": {k: r.to_dict() for k, r in results.items()}}


def markdown(rows: list[dict], n: int) -> str:
    lines = [f"Fashion-MNIST 32×32, {n:,} generated (or real) images against the {n:,} test "
             "images. SWD ×10³ on pixels (average of the 32² and 16² levels); FID, KID, "
             "precision/recall (k = 3) and coverage (k = 5) on the project's Fashion-MNIST "
             "classifier features, recall and coverage also on raw pixels (coverage on pixels is "
             "the one of the four that measures variety: benchmarks/variety.py); MS-SSIM "
             "between random pairs of one set; the classifier's rarest and commonest class among the "
             "set's images. KID is shown unscaled: the classifier's features are larger than "
             "Inception's, so its values are not comparable with published KID ×10³ figures.",
             "",
             "| images | SWD ↓ | classifier-FID ↓ | KID ↓ | precision ↑ | recall ↑ | coverage ↑ "
             "| pixel recall ↑ | pixel coverage (variety) ↑ | MS-SSIM | classes, min–max share |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        v = r["values"]
        share = v["classes"].values()
        lines.append(f"| {r['name']} | {v['swd']['swd_avg']:.1f} | {v['fid']:.2f} | "
                     f"{v['kid']['mean']:.2f} | {v['pr']['precision']:.3f} | "
                     f"{v['pr']['recall']:.3f} | {v['dc']['coverage']:.3f} | "
                     f"{v['pixels_pr']['recall']:.3f} | {v['pixels_dc']['coverage']:.3f} | "
                     f"{v['msssim']:.3f} | {min(share):.3f}–{max(share):.3f} |")
    return "\n".join(lines)


def model_file_parser(description: str) -> argparse.ArgumentParser:
    """The options of a table of model files (this one, variety.py, recognisability.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("model_files", nargs="*", type=Path)
    parser.add_argument("--num-images", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0, help="the models' latents (LATENTS)")
    parser.add_argument("--out", type=Path, default=None)
    return parser


def model_rows(paths: list[Path], n: int, seed: int,
               score: Callable[[str, torch.Tensor], dict]) -> list[dict]:
    """A row per model file: `score(name, images)` of its n images from `generated`, with how
    their latents were drawn."""
    rows = []
    for path in paths:
        model, images = generated(path, n, seed)
        rows.append(score(f"{model} `{path}`", images) | {"latents": LATENTS.format(seed=seed)})
        print(f"{path}: done", file=sys.stderr, flush=True)
    return rows


def write_rows(rows: list[dict], out: Path | None) -> None:
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=2))


def merge(rows: list[dict], new: list[dict]) -> list[dict]:
    """`rows` with each of `new` in place of the row of the same name, or appended after them."""
    merged, where = list(rows), {r["name"]: i for i, r in enumerate(rows)}
    for r in new:
        if r["name"] in where:
            merged[where[r["name"]]] = r
        else:
            where[r["name"]] = len(merged)
            merged.append(r)
    return merged


def main() -> None:
    parser = model_file_parser(__doc__.splitlines()[0])
    parser.add_argument("--no-references", action="store_true",
                        help="skip the floor, control and ceiling rows")
    parser.add_argument("--append", action="store_true",
                        help="merge into the rows in --out (a row of the same name is replaced)")
    args = parser.parse_args()
    n = args.num_images
    if args.append and not args.out:
        parser.error("--append needs --out")

    test = open_dataset(None, split="test")
    reals = pick_real_images(test, n)
    if args.append and args.out.exists():
        json.loads(args.out.read_text())  # a broken --out fails now, not after the scoring
    rows = []
    if not args.no_references:
        train = pick_real_images(open_dataset(None, split="train"), n)
        noise = torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(args.seed)) * 2 - 1
        for name, images, split in (
                ("test vs train split (floor)", train, "test vs train"),
                ("train split, 3×3 box blur (control)", box_blur(train), "test vs blurred train"),
                ("uniform noise (ceiling)", noise, "test vs noise")):
            rows.append(row(name, images, reals, split, test.name, args.seed))
            print(f"{name}: done", file=sys.stderr, flush=True)
    rows += model_rows(args.model_files, n, args.seed, lambda name, images: row(
        name, images, reals, "test", test.name, args.seed))
    if args.append and args.out.exists():  # read again: rows written meanwhile are kept
        rows = merge(json.loads(args.out.read_text()), rows)
    print(markdown(rows, n))
    write_rows(rows, args.out)


if __name__ == "__main__":
    main()
