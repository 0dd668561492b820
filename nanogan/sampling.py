"""What sample.py's sub-commands compute, without the command line: latents and styles for
seeds, latent paths, style-mixing grids, projection targets and reports, truncation curves,
scores; and the parsing of what a user writes for them (seed lists like 0-3,10, value lists,
style-layer ranges).

Every function takes a model's spec (`models.ModelSpec`), its G_ema and config, or the
`loading.Loaded` that holds them (the commands' steps, which also check the request), and goes
through the spec's functions: no model is named here. Errors are `SamplingError`s (a
ValueError, defined in loading.py) that name this library's parameters; sample.py translates
them into its options.

Lesson: lessons/00_reading_this_repo.md
"""

from __future__ import annotations

import csv
import functools
import json
import re
from pathlib import Path
from typing import Any

import torch

from nanogan import data, loading, models, sources
from nanogan.images import has_ffmpeg, make_grid, save_gif, save_grid, save_mp4, upscale
from nanogan.interpolate import key_path, lerp, slerp, smoothed_walk
from nanogan.loading import Loaded, SamplingError
from nanogan.randomness import derive_seed

CURVE_METRICS = ("fid", "pr")  # what truncation_curve scores at each value

Spec = models.ModelSpec
MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes seeds in [0, 2^64)
SINGULAR = {"seeds": "seed", "classes": "class", "indices": "index", "row seeds": "row seed",
            "column seeds": "column seed"}


def parse_seeds(text: str, what: str = "seeds") -> list[int]:
    """'0-63' or '1,5,9' or '0-3,10' -> list of ints in [0, 2^64), in the order written.
    `what` names the list in errors ("seeds", "classes", "indices", …)."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if match is None:
            if part.startswith("-") or "--" in part:
                raise SamplingError(what, f"{what} are whole numbers >= 0; got {part!r} in "
                                          f"{text!r}")
            raise SamplingError(what, f"{what} look like 0-63 or 1,5,9; got {text!r} ({part!r} "
                                      f"is not a number or a range like 0-63)")
        lo = int(match[1])
        hi = lo if match[2] is None else int(match[2])
        if hi < lo:
            raise SamplingError(what, f"{SINGULAR.get(what, what)} range {lo}-{hi} is reversed; "
                                      f"write {hi}-{lo}")
        if hi > MAX_SEED:
            raise SamplingError(what, f"{what} must be in [0, 2^64); got {hi} in {text!r}")
        seeds += range(lo, hi + 1)
    if not seeds:
        raise SamplingError(what, f"no {what} given")
    return seeds


def parse_floats(text: str, what: str) -> list[float]:
    """'1,0.7,0.5' -> [1.0, 0.7, 0.5]; `what` names the list in errors."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SamplingError(what, f"{what} look like 1,0.7,0.5; got {text!r}") from None
    if not values:
        raise SamplingError(what, f"no {what} given")
    return values


def parse_layers(spec: Spec, cfg: Any, layers: str) -> tuple[int, int]:
    """A named group of styles ('coarse', 'middle', 'fine') or a range ('0-3', '4-', '5') ->
    [start, stop) within the model's num_ws styles."""
    num_ws = spec.styles.num_ws(cfg)
    if layers in spec.styles.layer_names:
        start, stop = style_layers(spec, cfg, layers)
    else:
        lo, dash, hi = layers.partition("-")
        try:
            start = int(lo)
            stop = (int(hi) + 1 if hi else num_ws) if dash else start + 1
        except ValueError:
            raise SamplingError("layers", f"looks like coarse, middle, fine, 0-3, 4- or 5; "
                                          f"got {layers!r}") from None
    if not 0 <= start < stop <= num_ws:
        r = cfg.resolution
        raise SamplingError("layers", f"{layers} selects no styles of this {r}×{r} model, whose "
                                      f"styles are 0-{num_ws - 1} (coarse 0-3: 4²–8², middle "
                                      f"4-7: 16²–32², fine 8-: 64² and up)")
    return start, stop


def mapped(spec: Spec, G: torch.nn.Module, cfg: Any, seeds: list[int],
           labels: torch.Tensor | None, truncation: float | None) -> torch.Tensor:
    """ws (b, num_ws, d) for seeds: the spec's mapping, then truncation in W."""
    device = models.device_of(G)
    z = spec.sample_latents(cfg, seeds).to(device)
    return spec.styles.map(G, z, None if labels is None else labels.to(device),
                           truncation=truncation)


def generated(spec: Spec, G: torch.nn.Module, cfg: Any, seeds: list[int],
              labels: torch.Tensor | None) -> torch.Tensor:
    """What G makes for seeds with fresh noise inputs (each seed its own), as a user sees them."""
    gens = [torch.Generator().manual_seed(derive_seed(s, "noise")) for s in seeds]
    ws = mapped(spec, G, cfg, seeds, labels, None)

    def noise(i, shape):  # each seed's noise from its own generator: batch-independent
        return torch.cat([torch.randn(1, *shape[1:], generator=g) for g in gens]).to(ws.device)

    return spec.styles.synthesize(G, ws, "random", noise=noise).float().cpu()


def seed_images(loaded: Loaded, seeds: list[int], *, label: int | None = None,
                truncation: float | None = None, noise_mode: str | None = None) -> torch.Tensor:
    """What G makes for seeds (label: a conditional model's class, 0 by default), checked."""
    labels, options = loading.request(loaded, len(seeds), label=label, truncation=truncation,
                                      noise_mode=noise_mode)
    return models.sample(loaded.spec, loaded.G, loaded.cfg, seeds, labels, **options)


def save_per_seed(folder: Path, seeds: list[int], images: torch.Tensor) -> None:
    """One PNG per seed in folder: seed0007.png for seed 7."""
    for s, image in zip(seeds, images):
        save_grid(folder / f"seed{s:04d}.png", image[None], nrow=1, padding=0)


def class_grid(loaded: Loaded, classes: list[int], seeds: list[int], *,
               truncation: float | None = None, noise_mode: str | None = None) -> torch.Tensor:
    """One row per class, one column per seed (the same seeds in every row), row-major."""
    k = loaded.cfg.num_classes
    if bad := [c for c in classes if not 0 <= c < k]:
        raise SamplingError("classes", f"must be in [0, {k}), got {bad}", "{classes}")
    loading.check_truncation(loaded, truncation)
    labels = torch.tensor(classes).repeat_interleave(len(seeds))
    return models.sample(loaded.spec, loaded.G, loaded.cfg, seeds * len(classes), labels,
                         truncation=truncation, **loading.generate_options(loaded, noise_mode))


def truncation_grid(loaded: Loaded, seeds: list[int], values: list[float], *,
                    label: int | None = None, noise_mode: str | None = None) -> torch.Tensor:
    """One row of the seeds' images per truncation value (checked by the caller), row-major."""
    options = loading.generate_options(loaded, noise_mode)
    labels = loading.labels_for(loaded, label, len(seeds))
    return torch.cat([models.sample(loaded.spec, loaded.G, loaded.cfg, seeds, labels,
                                    truncation=v, **options) for v in values])


def latent_path(spec: Spec, G: torch.nn.Module, cfg: Any, kind: str, seeds: list[int], *,
                labels_for, truncation: float | None, options: dict, frames: int = 24,
                loop: bool = True, num_frames: int = 1, sigma: float = 1.0) -> torch.Tensor:
    """Images along a path: "slerp" between the seeds' z, "lerp-w" between their (truncated) w,
    or "walk", a smoothed random walk of num_frames from the first seed (sigma in frames).
    `labels_for(n)` gives the labels of n images (None: unconditional)."""
    if kind == "walk":
        z = smoothed_walk(num_frames, cfg.z_dim, sigma, torch.Generator().manual_seed(seeds[0]))
        return models.render(spec, G, z, labels_for(len(z)), truncation=truncation, **options)
    if kind == "slerp":
        z = key_path(spec.sample_latents(cfg, seeds, truncation), frames, slerp, loop=loop)
        return models.render(spec, G, z, labels_for(len(z)), truncation=truncation, **options)
    # lerp in W after truncation: truncating the path is lerping the truncated keys
    ws = mapped(spec, G, cfg, seeds, labels_for(len(seeds)), truncation)
    return models.render_ws(spec, G, key_path(ws[:, 0], frames, lerp, loop=loop), **options)


def video_frames(loaded: Loaded, path: str, seeds: list[int], *, label: int | None = None,
                 truncation: float | None = None, noise_mode: str | None = None,
                 **along: Any) -> torch.Tensor:
    """latent_path's images, the request checked: "lerp-w" needs a W space, "slerp" and
    "lerp-w" at least two seeds, and "walk" a truncation in W if any (resampling z would break
    the walk's smoothness). `along`: latent_path's frames, loop, num_frames, sigma."""
    options = loading.generate_options(loaded, noise_mode)
    loading.check_truncation(loaded, truncation)
    if path == "lerp-w":
        loading.require_styled(loaded, "{path} lerp-w")
    if path != "walk" and len(seeds) < 2:
        raise SamplingError("path", f"needs at least two seeds, got {seeds}", f"{{path}} {path}")
    rule = loaded.spec.truncation
    if path == "walk" and truncation is not None and rule.in_z:
        in_w = loading.having(lambda s: s.truncation and not s.truncation.in_z)
        raise SamplingError("truncation", f"applies to models that truncate in W "
                                          f"({', '.join(in_w)}); {loaded.name}'s {rule.symbol} "
                                          f"resamples z, which a smooth walk cannot do",
                            "{truncation} with {path} walk")
    return latent_path(loaded.spec, loaded.G, loaded.cfg, path, seeds, truncation=truncation,
                       options=options, **along,
                       labels_for=functools.partial(loading.labels_for, loaded, label))


def save_video(out: Path, images: torch.Tensor, *, fps: int, scale: int | None = None
               ) -> list[Path]:
    """A GIF of the images upscaled by `scale` (default: to >= 256 px), and an MP4 beside it
    where ffmpeg exists: the files written."""
    scale = scale or max(1, 256 // images.shape[-1])
    video = [make_grid(upscale(image[None], scale), nrow=1, padding=0) for image in images]
    save_gif(out, video, fps=fps)
    if not has_ffmpeg():
        return [out]
    save_mp4(out.with_suffix(".mp4"), video, fps=fps)
    return [out, out.with_suffix(".mp4")]


def style_layers(spec: Spec, cfg: Any, name: str) -> tuple[int, int]:
    """A named group of styles ("coarse", …) as [start, stop) within the model's styles."""
    start, stop = spec.styles.layer_names[name]
    n = spec.styles.num_ws(cfg)
    return start, n if stop is None else min(stop, n)


def mixing_grid(spec: Spec, G: torch.nn.Module, ws_a: torch.Tensor, ws_b: torch.Tensor,
                start: int, stop: int, **options: Any) -> torch.Tensor:
    """StyleGAN Fig. 3: a blank corner, B along the top, A down the left, and each cell A's
    styles with B's in [start, stop); images in row-major order ((1 + a) × (1 + b))."""
    n = ws_a.shape[1]
    from_b = (torch.arange(n) >= start) & (torch.arange(n) < stop)
    cells = torch.where(from_b[None, None, :, None].to(ws_a.device), ws_b[None], ws_a[:, None])
    a, b = models.render_ws(spec, G, ws_a, **options), models.render_ws(spec, G, ws_b, **options)
    mixed = models.render_ws(spec, G, cells.flatten(0, 1), **options).unflatten(0, (len(a), len(b)))
    blank = torch.ones_like(a[:1])  # white: the corner has no source
    return torch.cat([blank, b] + [torch.cat([a[i : i + 1], mixed[i]]) for i in range(len(a))])


def style_mix(loaded: Loaded, row_seeds: list[int], column_seeds: list[int], start: int,
              stop: int, *, label: int | None = None, truncation: float | None = None,
              noise_mode: str | None = None) -> torch.Tensor:
    """mixing_grid of the seeds' (truncated) ws: rows A, columns B, B's styles in [start, stop)."""
    loading.check_truncation(loaded, truncation)
    options = loading.generate_options(loaded, noise_mode)
    ws_a, ws_b = (mapped(loaded.spec, loaded.G, loaded.cfg, seeds,
                         loading.labels_for(loaded, label, len(seeds)), truncation)
                  for seeds in (row_seeds, column_seeds))
    return mixing_grid(loaded.spec, loaded.G, ws_a, ws_b, start, stop, **options)


def open_data(source: str | None, split: str | None, cfg: Any):
    """(dataset, split): the dataset at the model's resolution and channels, in `split`, by
    default 'test' where the source has one, else 'train'."""
    split = split or ("test" if data.has_test_split(source) else "train")
    return data.open_dataset(source, resolution=cfg.resolution, channels=cfg.channels,
                             split=split), split


def evaluate_model(spec: Spec, G: torch.nn.Module, cfg: Any, metrics: list[str], dataset,
                   split: str, *, num_images: int, truncation: float | None, options: dict,
                   label: int | None, extractor: str, seed: int, batch_size: int,
                   cache_dir: Path | None):
    """nanogan.evaluate.evaluate on this model, with the metrics' random sampler (fresh latents
    and uniform labels, or all `label`, drawn from the evaluation's generator)."""
    from nanogan.evaluate import evaluate

    generate = models.random_sampler(spec, G, cfg, truncation=truncation, label=label, **options)
    return evaluate(metrics, generate=generate, dataset=dataset, num_images=num_images,
                    extractor=extractor, split=split, batch_size=batch_size, seed=seed,
                    cache_dir=cache_dir)


def truncation_curve(spec: Spec, G: torch.nn.Module, cfg: Any, values: list[float], dataset,
                     split: str, *, progress=lambda value: None, **evaluation: Any
                     ) -> tuple[list[dict], dict]:
    """FID and precision/recall at each truncation value: rows {"truncation", "fid",
    "precision", "recall"} and the first metric's protocol. `evaluation`: evaluate_model's
    keyword arguments but truncation; progress(value) is called before each point."""
    rows, protocol = [], {}
    for value in values:
        progress(value)
        scores = evaluate_model(spec, G, cfg, list(CURVE_METRICS), dataset, split,
                                truncation=value, **evaluation)
        rows.append({"truncation": value, **flat_values(scores)})
        protocol = protocol or next(iter(scores.values())).to_dict()
    return rows, protocol


def class_accuracies(spec: Spec, G: torch.nn.Module, cfg: Any, *, num_images: int,
                     truncation: float | None, options: dict, extractor: str, seed: int,
                     batch_size: int) -> dict:
    """num_images / K images of each class k (seeds drawn from `seed`), classified by the
    extractor: {"images_per_class", "extractor", "acc_0", …, "acc_mean"}, acc_k the share of
    class k's images that the classifier calls k."""
    from nanogan.evaluate import class_accuracy
    from nanogan.features import extract

    k = cfg.num_classes
    per = max(1, num_images // k)
    g = torch.Generator().manual_seed(seed)
    seeds = torch.randint(0, 2**31 - 1, (per * k,), generator=g).tolist()
    labels = torch.arange(k).repeat_interleave(per)
    images = models.sample(spec, G, cfg, seeds, labels, batch_size=batch_size,
                           truncation=truncation, **options)
    _, probs = extract(extractor, images, batch_size=batch_size)
    return {"images_per_class": per, "extractor": extractor,
            **class_accuracy(probs, labels, k)}


def save_scores(out: Path, results, *, model: str, truncation: float | None, label: int | None,
                seed: int, accuracy: dict | None = None) -> None:
    """The scores as JSON: each MetricResult with its protocol, and the per-class accuracy."""
    out.write_text(json.dumps({"model": model, "truncation": truncation, "class": label,
                               "seed": seed, "results": [r.to_dict() for r in results.values()]}
                              | ({"class_accuracy": accuracy} if accuracy else {}), indent=2))


def projection_targets(spec: Spec, G: torch.nn.Module, cfg: Any, *, images: list[Path],
                       dataset=None, split: str | None = None, indices: list[int] = (),
                       seeds: list[int] = (), labels_for=lambda n: None
                       ) -> tuple[torch.Tensor, list[str]]:
    """Targets in [-1, 1] at the model's size, and their names: image files, then the dataset's
    images at `indices`, then what G makes for `seeds` (labels_for(n): their labels)."""
    targets, names = [], []
    for file in images:
        if not Path(file).is_file():
            raise SamplingError("images", f"{file}: no such image file")
        pixels = sources.decode_image(Path(file).read_bytes(), cfg.resolution, cfg.channels)
        targets.append(data.to_float(torch.from_numpy(pixels.copy())))
        names.append(str(file))
    for i in indices:
        if not 0 <= i < len(dataset):
            raise SamplingError("indices", f"{dataset.name} ({split}) has {len(dataset)} "
                                           f"images, got index {i}")
        targets.append(data.to_float(dataset[i][0]))
        names.append(f"{dataset.name}[{split}][{i}]")
    if seeds:
        targets += list(generated(spec, G, cfg, list(seeds), labels_for(len(seeds))))
        names += [f"seed {s}" for s in seeds]
    if not targets:
        raise SamplingError("images", "nothing to project: give images, indices or seeds")
    return torch.stack(targets), names


def calibration_reals(cfg: Any, real_set, *, count: int, label: int | None) -> torch.Tensor:
    """`count` real images in [-1, 1] in a fixed random order (of `label`, 0 by default, for a
    conditional model); an error naming what is missing where real_set has fewer."""
    pick = torch.randperm(len(real_set), generator=torch.Generator().manual_seed(1))
    of = ""
    if models.conditional(cfg):
        pick = pick[real_set.labels()[pick] == (label or 0)]
        of = f" of class {label or 0}"
    if len(pick) < count:
        where = getattr(real_set, "name", "the data")
        remedy = (f"lower it to at most {len(pick)}" if len(pick) else
                  f"give data with images{of}") + " or give a threshold"
        raise SamplingError("calibrate", f"the calibration needs {count} real "
                                         f"image{'s' * (count != 1)}{of} and {where} has "
                                         f"{len(pick)}; {remedy}")
    return torch.stack([data.to_float(real_set[i][0]) for i in pick[:count].tolist()])


def calibration_targets(spec: Spec, G: torch.nn.Module, cfg: Any, real_set, *, count: int,
                        label: int | None, labels_for=lambda n: None) -> torch.Tensor:
    """Projection's detection without a threshold: `count` generated images (seeds far from
    the ones users pick), then `count` real ones (calibration_reals, checked before anything
    is generated), between which the threshold is set."""
    labels = labels_for(count)  # a bad label is named as such, not as missing real images
    reals = calibration_reals(cfg, real_set, count=count, label=label)
    fake_seeds = list(range(10**6, 10**6 + count))
    return torch.cat([generated(spec, G, cfg, fake_seeds, labels), reals])


def projection_inputs(loaded: Loaded, *, images: list[Path], dataset=None, split: str | None = None,
                      indices: list[int] = (), seeds: list[int] = (), label: int | None = None,
                      calibration_set=None, calibrate: int = 0) -> tuple[torch.Tensor, list[str]]:
    """projection_targets (the generated ones with `label`) and their names; with a
    calibration_set, calibration_targets follow them (`calibrate` generated, then real)."""
    labels_for = functools.partial(loading.labels_for, loaded, label)
    targets, names = projection_targets(loaded.spec, loaded.G, loaded.cfg, images=images,
                                         dataset=dataset, split=split, indices=indices,
                                         seeds=seeds, labels_for=labels_for)
    if calibration_set is not None:
        targets = torch.cat([targets, calibration_targets(
            loaded.spec, loaded.G, loaded.cfg, calibration_set, count=calibrate, label=label,
            labels_for=labels_for)])
    return targets, names


def projection(loaded: Loaded, targets: torch.Tensor, *, label: int | None, space: str,
               steps: int, pixel_weight: float, noise_weight: float, w_samples: int, seed: int):
    """projector.project of the targets into `space` ("w" or "w+") with the classifier
    distance, seeded by `seed`, about 60 snapshots for the progress GIF."""
    from nanogan.projector import ClassifierDistance, project

    distance = ClassifierDistance(pixel_weight=pixel_weight).to(models.device_of(loaded.G))
    return project(loaded.G, targets, steps=steps, space=space, distance=distance,
                   labels=loading.labels_for(loaded, label, len(targets)),
                   noise_weight=noise_weight, w_samples=w_samples,
                   generator=torch.Generator().manual_seed(seed),
                   snapshot_every=max(1, steps // 60))


def flat_values(results) -> dict[str, float]:
    """{"fid": 12.3, "precision": 0.7, "recall": 0.5, "kid_mean": …} from MetricResults."""
    out = {}
    for name, result in results.items():
        if isinstance(result.value, dict):
            for key, value in result.value.items():
                out[key if name in ("pr", "dc") else f"{name}_{key}"] = value
        else:
            out[name] = result.value
    return out


def save_curve(folder: Path, points: list[dict], protocol: dict, *, model: str, symbol: str,
               title: str) -> None:
    """truncation-curve.csv, .json (with the protocol) and .png in folder."""
    fields = ["truncation", "fid", "precision", "recall"]
    with (folder / "truncation-curve.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows({k: row[k] for k in fields} for row in points)
    (folder / "truncation-curve.json").write_text(json.dumps(
        {"model": model, "truncation": symbol, "points": points,
         "protocol": {k: v for k, v in protocol.items() if k not in ("metric", "value")}},
        indent=2))
    plot_curve(folder / "truncation-curve.png", points, symbol, title)


def plot_curve(path: Path, rows: list[dict], symbol: str, title: str) -> None:
    """FID against truncation, and precision (fidelity) against recall (variety)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["truncation"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    left.plot(t, [r["fid"] for r in rows], "o-")
    left.set(xlabel=f"truncation {symbol}", ylabel="FID (lower is better)")
    right.plot([r["recall"] for r in rows], [r["precision"] for r in rows], "o-")
    for r in rows:
        right.annotate(f"{r['truncation']:g}", (r["recall"], r["precision"]), fontsize=8,
                       xytext=(3, 3), textcoords="offset points")
    right.set(xlabel="recall (variety)", ylabel="precision (fidelity)", xlim=(-0.02, 1.02),
              ylim=(-0.02, 1.02))
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


DISTANCE = "classifier features (LPIPS form) + pixel MSE"


def save_projection(folder: Path, result, targets: torch.Tensor, names: list[str], *,
                    space: str, steps: int, model: str) -> None:
    """projected.safetensors (ws, noise maps, distances, targets), projection.png (targets over
    reconstructions) and projection.gif (the optimisation) for the first len(names) targets."""
    from safetensors.torch import save_file

    n = len(names)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"ws": result.ws[:n].cpu().contiguous(), "distance": result.distance[:n],
               "target": targets[:n].cpu().contiguous()}
    tensors |= {f"noise.{i}": m[:n].cpu().contiguous() for i, m in result.noise.items()}
    save_file(tensors, str(folder / "projected.safetensors"), metadata={
        "space": space, "steps": str(steps), "targets": json.dumps(names),
        "distance": DISTANCE, "model": model})
    save_grid(folder / "projection.png", torch.cat([targets[:n], result.images[:n]]), nrow=n)
    video = [make_grid(torch.cat([targets[:n], frame[:n]]), nrow=n) for frame in result.frames]
    save_gif(folder / "projection.gif", video, fps=12)


def detection_report(distance: torch.Tensor, names: list[str], threshold: float, *,
                     calibrate: int, space: str, steps: int) -> dict:
    """Each target called generated (distance <= threshold) or real (§5.1); distances past the
    first len(names) are the calibration's, `calibrate` generated then the real ones."""
    n = len(names)
    report = {"threshold": threshold, "space": space, "steps": steps, "distance": DISTANCE,
              "targets": [{"target": names[i], "distance": distance[i].item(),
                           "verdict": "generated" if distance[i] <= threshold else "real"}
                          for i in range(n)]}
    if len(distance) > n:
        calib = distance[n:].tolist()
        report["calibration"] = {"generated": calib[:calibrate], "real": calib[calibrate:]}
    return report


def detect(folder: Path, result, names: list[str], *, threshold: float | None, calibrate: int,
           space: str, steps: int) -> dict:
    """detection_report, written to folder/detection.json; without a threshold, the one that
    separates the calibration's `calibrate` generated images from its real ones."""
    from nanogan.projector import separating_threshold

    if threshold is None:
        calib = result.distance[len(names):]
        threshold = separating_threshold(calib[:calibrate], calib[calibrate:])
    report = detection_report(result.distance, names, threshold, calibrate=calibrate,
                              space=space, steps=steps)
    (folder / "detection.json").write_text(json.dumps(report, indent=2))
    return report
